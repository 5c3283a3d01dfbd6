// uploadwatch: the command-line client of UploadingService. See kHelp in
// client/cli_command.cc, or run `uploadwatch --help`.
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/channel_credentials.h"
#include "client/cli_command.h"
#include "client/cli_format.h"
#include "client/uploading_client.h"

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
  command->terminal_output = isatty(STDOUT_FILENO) == 1;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      uploadwatch::CreateUploadingChannel(command->server, command->security);
  if (!channel.ok()) {
    std::cerr << uploadwatch::FormatError(channel.status()) << std::endl;
    return static_cast<int>(channel.status().code());
  }
  const char* token = std::getenv("METRIKA_OAUTH_TOKEN");
  uploadwatch::UploadingClient client(
      *channel,
      uploadwatch::ClientOptionsFor(*command, token != nullptr ? token : ""));
  return uploadwatch::RunCliCommand(*command, client, std::cout, std::cerr);
}
