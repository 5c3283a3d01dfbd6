#ifndef UPLOADWATCH_CLIENT_CLI_COMMAND_H_
#define UPLOADWATCH_CLIENT_CLI_COMMAND_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/channel_credentials.h"
#include "client/uploading_client.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"

namespace uploadwatch {

// The `uploadwatch` command line: parsing and running, apart from main() so
// that tests can drive both.

// Exit status of a usage error: EX_USAGE from <sysexits.h>, far from the
// gRPC codes (0..16) that every other exit status is.
inline constexpr int kUsageExitCode = 64;

// The synopsis printed after a usage error.
extern const absl::string_view kUsage;
// The whole help printed by --help: commands, flags, environment, exit status.
extern const absl::string_view kHelp;

// A validated command line.
struct CliCommand {
  // kWatch follows one uploading, kWatchCounter a whole counter.
  enum class Verb { kGet, kWatch, kWatchCounter, kList };

  bool help = false;  // --help, -h or `help`: print kHelp, nothing else
  Verb verb = Verb::kGet;
  std::string server = "localhost:50051";
  // --tls, --ca_file, --cert_file, --key_file.
  ChannelSecurity security;
  bool json = false;
  // Not a flag: main() sets it when stdout is a terminal, and a counter
  // watch then redraws a table instead of printing one line per event.
  bool terminal_output = false;
  // --timeout; unset: 30 s for get and list, none for watch.
  std::optional<absl::Duration> timeout;
  int32_t counter_id = 0;           // > 0
  int64_t uploading_id = 0;         // > 0; get and watch
  metrika::offline_conversions::v1::ListUploadingsRequest list;  // list
  // watch COUNTER: counter_id, --type.
  metrika::offline_conversions::v1::WatchUploadingsRequest counter_watch;
};

// Parses the arguments after the program name. Flags use Abseil's syntax and
// value parsing (`--name=value`, `--name value`, `--json`, durations such as
// `10s`) and may come before or after the command; `--` ends flags. Any
// mistake (unknown flag, missing or extra argument, a non-numeric or
// non-positive id, a flag of another command) is INVALID_ARGUMENT with a
// message naming it. Unlike absl::ParseCommandLine this never exits.
absl::StatusOr<CliCommand> ParseCliCommand(const std::vector<std::string>& args);

// Client options for `command`: its timeout, and `token` ("" for none).
UploadingClient::Options ClientOptionsFor(const CliCommand& command,
                                          std::string token);

// Runs a parsed, non-help command: results to `out` (a watch flushes every
// line), an error line (see FormatError) to `err`. Returns the exit status:
// 0, or the code of the failed call (e.g. 5 for NOT_FOUND).
int RunCliCommand(const CliCommand& command, const UploadingClient& client,
                  std::ostream& out, std::ostream& err);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_CLIENT_CLI_COMMAND_H_
