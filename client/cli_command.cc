#include "client/cli_command.h"

#include <functional>
#include <utility>

#include "absl/flags/marshalling.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/cli_format.h"
#include "service/metrica/json_mapping.h"

namespace uploadwatch {

namespace v1 = ::metrika::offline_conversions::v1;

const absl::string_view kUsage =
    R"(usage: uploadwatch [--server=HOST:PORT] [TLS flags] [--json] [--timeout=DURATION] COMMAND
  get COUNTER ID | watch COUNTER ID | watch COUNTER [--type=T] |
  list COUNTER [--limit=N] [--offset=N] [--type=BASIC|CALLS|CHATS]
`uploadwatch --help` tells more.
)";

const absl::string_view kHelp =
    R"(usage: uploadwatch [flags] COMMAND
commands:
  get COUNTER ID     the current state of one uploading
  watch COUNTER ID   follow an uploading until it is processed or fails
  watch COUNTER [--type=BASIC|CALLS|CHATS]
                     follow every uploading of a counter, live, until stopped:
                     on a terminal a table that redraws, else one line per
                     event; resumes by itself when the server ends the stream
  list COUNTER [--limit=N] [--offset=N] [--type=BASIC|CALLS|CHATS]
                     a counter's uploadings, newest first
flags:
  --server=HOST:PORT the uploadwatch server (default localhost:50051)
  --tls              connect with TLS, trusting the system's CAs
  --ca_file=PEM      trust these CAs for the server's certificate (implies --tls)
  --cert_file=PEM --key_file=PEM
                     a client certificate and its key, for a server that
                     requires them (mutual TLS; implies --tls)
  --json             print JSON as the API does: get {"uploading":{...}}, list
                     {"uploadings":[...]}, watch one response per line
  --timeout=DURATION deadline of the call, e.g. 10s, 2m (default: 30s for
                     get and list, none for watch)
environment:
  METRIKA_OAUTH_TOKEN  Metrica OAuth token, sent as "authorization: OAuth ..."
                       (unset: the server uses its own)
exit status: 0 OK; 1-16 the gRPC code of the failed call (5 NOT_FOUND,
  7 PERMISSION_DENIED, 14 UNAVAILABLE, 16 UNAUTHENTICATED, ...; 3 or 5 for a
  TLS file that cannot be used); 64 bad usage
)";

namespace {

// Metrica's cap on one page of uploadings.
constexpr int32_t kMaxLimit = 10000;

absl::Status UsageError(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

// A command-line flag: where `--name=value` goes, through absl::ParseFlag.
struct Flag {
  absl::string_view name;
  bool boolean;  // `--name` alone means true
  std::function<bool(absl::string_view, std::string*)> set;
};

template <typename T>
std::function<bool(absl::string_view, std::string*)> Into(T* field) {
  return [field](absl::string_view text, std::string* error) {
    return absl::ParseFlag(text, field, error);
  };
}

template <typename T>
absl::StatusOr<T> PositiveId(absl::string_view name, absl::string_view text) {
  T value = 0;
  if (!absl::SimpleAtoi(text, &value) || value <= 0) {
    return UsageError(
        absl::StrCat(name, " must be a positive integer, got \"", text, "\""));
  }
  return value;
}

}  // namespace

absl::StatusOr<CliCommand> ParseCliCommand(const std::vector<std::string>& args) {
  CliCommand command;
  std::optional<absl::Duration> timeout;
  std::optional<int32_t> limit;
  std::optional<int32_t> offset;
  std::optional<std::string> type;
  const Flag flags[] = {
      {"server", false, Into(&command.server)},
      {"tls", true, Into(&command.security.tls)},
      {"ca_file", false, Into(&command.security.ca_file)},
      {"cert_file", false, Into(&command.security.cert_file)},
      {"key_file", false, Into(&command.security.key_file)},
      {"json", true, Into(&command.json)},
      {"timeout", false, Into(&timeout)},
      {"limit", false, Into(&limit)},
      {"offset", false, Into(&offset)},
      {"type", false, Into(&type)},
      {"help", true, Into(&command.help)},
  };

  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positional.insert(positional.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (arg == "-h") {
      command.help = true;
      continue;
    }
    // "-5" is a (bad) number, not a flag: validation below says so.
    if (!absl::StartsWith(arg, "--")) {
      positional.push_back(arg);
      continue;
    }
    absl::string_view body = absl::string_view(arg).substr(2);
    const size_t eq = body.find('=');
    const absl::string_view name = body.substr(0, eq);
    const Flag* flag = nullptr;
    for (const Flag& f : flags) {
      if (f.name == name) flag = &f;
    }
    if (flag == nullptr) return UsageError(absl::StrCat("unknown flag --", name));
    std::string value;
    if (eq != absl::string_view::npos) {
      value = std::string(body.substr(eq + 1));
    } else if (flag->boolean) {
      value = "true";
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return UsageError(absl::StrCat("--", name, " needs a value"));
    }
    std::string error;
    if (!flag->set(value, &error)) {
      return UsageError(absl::StrCat("bad value \"", value, "\" for --", name,
                                     ": ", error));
    }
  }
  if (!positional.empty() && positional.front() == "help") command.help = true;
  if (command.help) return command;

  if (positional.empty()) return UsageError("missing command");
  const std::string& verb = positional.front();
  size_t arity = 0;
  if (verb == "get") {
    command.verb = CliCommand::Verb::kGet;
    arity = 2;
  } else if (verb == "watch") {
    // watch COUNTER ID follows one uploading, watch COUNTER the counter.
    const bool one = positional.size() != 2;
    command.verb = one ? CliCommand::Verb::kWatch : CliCommand::Verb::kWatchCounter;
    arity = one ? 2 : 1;
  } else if (verb == "list") {
    command.verb = CliCommand::Verb::kList;
    arity = 1;
  } else {
    return UsageError(absl::StrCat("unknown command \"", verb, "\""));
  }
  if (positional.size() != arity + 1) {
    return UsageError(absl::StrCat(verb, " takes ",
                                   verb == "watch" ? "COUNTER [ID]"
                                   : arity == 2    ? "COUNTER ID"
                                                   : "COUNTER",
                                   ", got ", positional.size() - 1,
                                   " argument(s)"));
  }
  absl::StatusOr<int32_t> counter = PositiveId<int32_t>("COUNTER", positional[1]);
  if (!counter.ok()) return counter.status();
  command.counter_id = *counter;
  if (arity == 2) {
    absl::StatusOr<int64_t> id = PositiveId<int64_t>("ID", positional[2]);
    if (!id.ok()) return id.status();
    command.uploading_id = *id;
  }

  if (timeout && *timeout <= absl::ZeroDuration()) {
    return UsageError("--timeout must be positive");
  }
  command.timeout = timeout;
  if (command.security.cert_file.empty() != command.security.key_file.empty()) {
    return UsageError("--cert_file and --key_file go together");
  }

  std::optional<v1::Uploading::Type> parsed_type;
  if (type) {
    v1::Uploading::Type parsed;
    if (!v1::Uploading::Type_Parse(absl::AsciiStrToUpper(*type), &parsed) ||
        parsed == v1::Uploading::TYPE_UNSPECIFIED) {
      return UsageError(absl::StrCat("--type must be BASIC, CALLS or CHATS, got \"",
                                     *type, "\""));
    }
    parsed_type = parsed;
  }
  if (command.verb == CliCommand::Verb::kWatchCounter) {
    if (limit || offset) {
      return UsageError("--limit and --offset apply to list only");
    }
    command.counter_watch.set_counter_id(command.counter_id);
    if (parsed_type) command.counter_watch.set_type(*parsed_type);
    return command;
  }
  if (command.verb != CliCommand::Verb::kList) {
    if (limit || offset || type) {
      return UsageError(
          "--limit, --offset and --type apply to list (and --type to watch "
          "COUNTER) only");
    }
    return command;
  }
  command.list.set_counter_id(command.counter_id);
  if (parsed_type) command.list.set_type(*parsed_type);
  if (limit) {
    if (*limit < 1 || *limit > kMaxLimit) {
      return UsageError(absl::StrCat("--limit must be 1..", kMaxLimit));
    }
    command.list.set_limit(*limit);
  }
  if (offset) {
    if (*offset < 0) return UsageError("--offset must be 0 or more");
    command.list.set_offset(*offset);
  }
  return command;
}

UploadingClient::Options ClientOptionsFor(const CliCommand& command,
                                          std::string token) {
  UploadingClient::Options options;
  options.token = std::move(token);
  if (command.timeout) {
    options.timeout = *command.timeout;
    options.watch_timeout = *command.timeout;
  }
  return options;
}

int RunCliCommand(const CliCommand& command, const UploadingClient& client,
                  std::ostream& out, std::ostream& err) {
  absl::Status status;
  switch (command.verb) {
    case CliCommand::Verb::kGet: {
      absl::StatusOr<v1::Uploading> uploading =
          client.GetUploading(command.counter_id, command.uploading_id);
      status = uploading.status();
      if (!status.ok()) break;
      if (command.json) {
        v1::GetUploadingResponse response;  // Metrica's envelope, as list's
        *response.mutable_uploading() = *std::move(uploading);
        out << GetUploadingResponseToJson(response) << "\n";
      } else {
        out << FormatUploading(*uploading);
      }
      break;
    }
    case CliCommand::Verb::kList: {
      absl::StatusOr<std::vector<v1::Uploading>> uploadings =
          client.ListUploadings(command.list);
      status = uploadings.status();
      if (!status.ok()) break;
      if (command.json) {
        v1::ListUploadingsResponse response;
        for (auto& u : *uploadings) *response.add_uploadings() = std::move(u);
        out << ListUploadingsResponseToJson(response) << "\n";
      } else {
        out << FormatUploadingTable(*uploadings);
      }
      break;
    }
    case CliCommand::Verb::kWatch: {
      WatchTimeline timeline(absl::Now(), absl::LocalTimeZone());
      status = client.WatchUploading(
          command.counter_id, command.uploading_id,
          [&](const v1::WatchUploadingResponse& message) {
            out << (command.json ? WatchResponseToJsonLine(message)
                                 : timeline.Line(message, absl::Now()))
                << std::endl;  // live: one flush per message
          });
      break;
    }
    case CliCommand::Verb::kWatchCounter: {
      CounterWatchPrinter printer(
          command.json               ? CounterWatchPrinter::Mode::kJson
          : command.terminal_output  ? CounterWatchPrinter::Mode::kTable
                                     : CounterWatchPrinter::Mode::kLines,
          command.counter_id, command.counter_watch.type(),
          absl::LocalTimeZone());
      status = client.WatchCounter(
          command.counter_watch, [&](const v1::WatchUploadingsResponse& message) {
            out << printer.Print(message, absl::Now());
            out.flush();  // live
            return true;  // until an error, the deadline or ^C
          });
      break;
    }
  }
  out.flush();
  if (status.ok()) return 0;
  err << FormatError(status) << std::endl;
  return static_cast<int>(status.code());
}

}  // namespace uploadwatch
