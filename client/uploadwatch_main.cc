// uploadwatch: the command-line client of UploadingService. See kHelp in
// client/cli_command.cc, or run `uploadwatch --help`.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cli_command.h"
#include "client/uploading_client.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

int main(int argc, char** argv) {
  absl::StatusOr<uploadwatch::CliCommand> command = uploadwatch::ParseCliCommand(
      std::vector<std::string>(argv + 1, argv + argc));
  if (!command.ok()) {
    std::cerr << "error: " << command.status().message() << "\n"
              << uploadwatch::kUsage;
    return uploadwatch::kUsageExitCode;
  }
  if (command->help) {
    std::cout << uploadwatch::kHelp;
    return 0;
  }
  const char* token = std::getenv("METRIKA_OAUTH_TOKEN");
  uploadwatch::UploadingClient client(
      grpc::CreateChannel(command->server, grpc::InsecureChannelCredentials()),
      uploadwatch::ClientOptionsFor(*command, token != nullptr ? token : ""));
  return uploadwatch::RunCliCommand(*command, client, std::cout, std::cerr);
}
