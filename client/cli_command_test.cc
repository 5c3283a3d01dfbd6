// The CLI's command line: what parses, and what is a usage error.
#include "client/cli_command.h"

#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/testing/scripted_service.h"
#include "google/protobuf/util/json_util.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

namespace v1 = ::metrika::offline_conversions::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// The message of the usage error for `args`, or "parsed" if none.
std::string UsageError(const std::vector<std::string>& args) {
  absl::StatusOr<CliCommand> command = ParseCliCommand(args);
  if (command.ok()) return "parsed";
  EXPECT_EQ(command.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(command.status().message());
}

TEST(ParseCliCommandTest, GetWithDefaults) {
  absl::StatusOr<CliCommand> command = ParseCliCommand({"get", "2215573", "12"});
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_FALSE(command->help);
  EXPECT_EQ(command->verb, CliCommand::Verb::kGet);
  EXPECT_EQ(command->server, "localhost:50051");
  EXPECT_FALSE(command->json);
  EXPECT_FALSE(command->timeout.has_value());
  EXPECT_EQ(command->counter_id, 2215573);
  EXPECT_EQ(command->uploading_id, 12);
}

TEST(ParseCliCommandTest, FlagsGoBeforeOrAfterTheCommandInEitherForm) {
  absl::StatusOr<CliCommand> command = ParseCliCommand(
      {"--server=example.org:443", "watch", "2215573", "9007199254740993",
       "--json", "--timeout", "90s"});
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->verb, CliCommand::Verb::kWatch);
  EXPECT_EQ(command->server, "example.org:443");
  EXPECT_TRUE(command->json);
  EXPECT_EQ(command->timeout, absl::Seconds(90));
  EXPECT_EQ(command->uploading_id, 9007199254740993);  // beyond a double
}

TEST(ParseCliCommandTest, ListTakesPagingAndTypeIntoItsRequest) {
  absl::StatusOr<CliCommand> command = ParseCliCommand(
      {"list", "2215573", "--limit", "5", "--offset=10", "--type=calls"});
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->verb, CliCommand::Verb::kList);
  EXPECT_EQ(command->list.counter_id(), 2215573);
  EXPECT_EQ(command->list.limit(), 5);
  EXPECT_EQ(command->list.offset(), 10);
  EXPECT_EQ(command->list.type(), v1::Uploading::CALLS);
}

TEST(ParseCliCommandTest, ListWithoutFlagsAsksForMetricasDefaults) {
  absl::StatusOr<CliCommand> command = ParseCliCommand({"list", "2215573"});
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->list.limit(), 0);
  EXPECT_EQ(command->list.offset(), 0);
  EXPECT_EQ(command->list.type(), v1::Uploading::TYPE_UNSPECIFIED);
}

TEST(ParseCliCommandTest, WatchWithoutAnIdFollowsTheCounter) {
  absl::StatusOr<CliCommand> command =
      ParseCliCommand({"watch", "2215573", "--type=chats"});
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->verb, CliCommand::Verb::kWatchCounter);
  EXPECT_EQ(command->counter_id, 2215573);
  EXPECT_EQ(command->counter_watch.counter_id(), 2215573);
  EXPECT_EQ(command->counter_watch.type(), v1::Uploading::CHATS);
  EXPECT_EQ(command->counter_watch.resume_token(), "");
  EXPECT_FALSE(command->terminal_output);  // main() decides, not a flag

  absl::StatusOr<CliCommand> basic = ParseCliCommand({"watch", "2215573"});
  ASSERT_TRUE(basic.ok()) << basic.status();
  EXPECT_EQ(basic->counter_watch.type(), v1::Uploading::TYPE_UNSPECIFIED);
}

TEST(ParseCliCommandTest, TlsFlags) {
  absl::StatusOr<CliCommand> plain = ParseCliCommand({"get", "1", "2"});
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->security.UsesTls());

  absl::StatusOr<CliCommand> tls = ParseCliCommand({"--tls", "get", "1", "2"});
  ASSERT_TRUE(tls.ok());
  EXPECT_TRUE(tls->security.tls);
  EXPECT_TRUE(tls->security.ca_file.empty());

  absl::StatusOr<CliCommand> mutual = ParseCliCommand(
      {"--ca_file=/etc/ca.pem", "--cert_file", "me.pem", "--key_file=me.key",
       "list", "1"});
  ASSERT_TRUE(mutual.ok()) << mutual.status();
  EXPECT_TRUE(mutual->security.UsesTls());  // implied by the files
  EXPECT_EQ(mutual->security.ca_file, "/etc/ca.pem");
  EXPECT_EQ(mutual->security.cert_file, "me.pem");
  EXPECT_EQ(mutual->security.key_file, "me.key");

  EXPECT_EQ(UsageError({"--cert_file=me.pem", "get", "1", "2"}),
            "--cert_file and --key_file go together");
  EXPECT_EQ(UsageError({"--key_file=me.key", "get", "1", "2"}),
            "--cert_file and --key_file go together");
  EXPECT_EQ(UsageError({"get", "1", "2", "--ca_file"}), "--ca_file needs a value");
}

TEST(ParseCliCommandTest, HelpNeedsNothingElse) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--help"}, {"-h"}, {"help"}, {"get", "--help"}}) {
    absl::StatusOr<CliCommand> command = ParseCliCommand(args);
    ASSERT_TRUE(command.ok()) << command.status();
    EXPECT_TRUE(command->help);
  }
}

TEST(ParseCliCommandTest, DoubleDashEndsFlags) {
  EXPECT_THAT(UsageError({"get", "--", "1", "--json"}),
              HasSubstr("ID must be a positive integer, got \"--json\""));
}

TEST(ParseCliCommandTest, MissingOrUnknownCommand) {
  EXPECT_EQ(UsageError({}), "missing command");
  EXPECT_EQ(UsageError({"--json"}), "missing command");
  EXPECT_EQ(UsageError({"status", "1", "2"}), "unknown command \"status\"");
}

TEST(ParseCliCommandTest, WrongNumberOfArguments) {
  EXPECT_EQ(UsageError({"get", "2215573"}),
            "get takes COUNTER ID, got 1 argument(s)");
  EXPECT_EQ(UsageError({"watch", "2215573", "12", "13"}),
            "watch takes COUNTER [ID], got 3 argument(s)");
  EXPECT_EQ(UsageError({"watch"}), "watch takes COUNTER [ID], got 0 argument(s)");
  EXPECT_EQ(UsageError({"list"}), "list takes COUNTER, got 0 argument(s)");
}

TEST(ParseCliCommandTest, IdsMustBePositiveIntegers) {
  EXPECT_EQ(UsageError({"get", "abc", "12"}),
            "COUNTER must be a positive integer, got \"abc\"");
  EXPECT_EQ(UsageError({"get", "0", "12"}),
            "COUNTER must be a positive integer, got \"0\"");
  EXPECT_EQ(UsageError({"get", "-5", "12"}),
            "COUNTER must be a positive integer, got \"-5\"");
  // Counters are int32 in Metrica's API.
  EXPECT_EQ(UsageError({"list", "2147483648"}),
            "COUNTER must be a positive integer, got \"2147483648\"");
  EXPECT_EQ(UsageError({"watch", "2215573", "12x"}),
            "ID must be a positive integer, got \"12x\"");
  EXPECT_EQ(UsageError({"watch", "2215573", "1.5"}),
            "ID must be a positive integer, got \"1.5\"");
}

TEST(ParseCliCommandTest, BadFlags) {
  EXPECT_EQ(UsageError({"--verbose", "get", "1", "2"}), "unknown flag --verbose");
  EXPECT_EQ(UsageError({"get", "1", "2", "--server"}), "--server needs a value");
  EXPECT_THAT(UsageError({"--timeout=soon", "get", "1", "2"}),
              HasSubstr("bad value \"soon\" for --timeout"));
  EXPECT_EQ(UsageError({"--timeout=0s", "get", "1", "2"}),
            "--timeout must be positive");
  EXPECT_THAT(UsageError({"--json=maybe", "get", "1", "2"}),
              HasSubstr("bad value \"maybe\" for --json"));
}

TEST(ParseCliCommandTest, ListFlagsAreValidatedAndBelongToListOnly) {
  EXPECT_THAT(UsageError({"list", "1", "--limit=ten"}),
              HasSubstr("bad value \"ten\" for --limit"));
  EXPECT_EQ(UsageError({"list", "1", "--limit=0"}), "--limit must be 1..10000");
  EXPECT_EQ(UsageError({"list", "1", "--limit=10001"}),
            "--limit must be 1..10000");
  EXPECT_EQ(UsageError({"list", "1", "--offset=-1"}),
            "--offset must be 0 or more");
  EXPECT_EQ(UsageError({"list", "1", "--type=SMS"}),
            "--type must be BASIC, CALLS or CHATS, got \"SMS\"");
  EXPECT_EQ(UsageError({"list", "1", "--type=TYPE_UNSPECIFIED"}),
            "--type must be BASIC, CALLS or CHATS, got \"TYPE_UNSPECIFIED\"");
  EXPECT_EQ(UsageError({"get", "1", "2", "--limit=5"}),
            "--limit, --offset and --type apply to list (and --type to watch "
            "COUNTER) only");
  EXPECT_EQ(UsageError({"watch", "1", "2", "--type=CALLS"}),
            "--limit, --offset and --type apply to list (and --type to watch "
            "COUNTER) only");
  EXPECT_EQ(UsageError({"watch", "1", "--limit=5"}),
            "--limit and --offset apply to list only");
  EXPECT_EQ(UsageError({"watch", "1", "--type=SMS"}),
            "--type must be BASIC, CALLS or CHATS, got \"SMS\"");
}

TEST(ClientOptionsForTest, TimeoutAppliesToTheCommandsCallAndTokenIsPassed) {
  absl::StatusOr<CliCommand> get = ParseCliCommand({"get", "1", "2"});
  ASSERT_TRUE(get.ok());
  UploadingClient::Options defaults = ClientOptionsFor(*get, "");
  EXPECT_EQ(defaults.token, "");
  EXPECT_EQ(defaults.timeout, absl::Seconds(30));
  EXPECT_EQ(defaults.watch_timeout, absl::InfiniteDuration());

  absl::StatusOr<CliCommand> watch =
      ParseCliCommand({"--timeout=5m", "watch", "1", "2"});
  ASSERT_TRUE(watch.ok());
  UploadingClient::Options bounded = ClientOptionsFor(*watch, "AQAA-token");
  EXPECT_EQ(bounded.token, "AQAA-token");
  EXPECT_EQ(bounded.watch_timeout, absl::Minutes(5));
}

TEST(HelpTest, DocumentsEveryCommandFlagAndExitStatus) {
  for (const char* word :
       {"get COUNTER ID", "watch COUNTER ID", "watch COUNTER [--type",
        "list COUNTER", "--server", "--tls", "--ca_file", "--cert_file",
        "--key_file",
        "--json", "--timeout", "--limit", "--offset", "--type",
        "METRIKA_OAUTH_TOKEN", "64 bad usage"}) {
    EXPECT_THAT(std::string(kHelp), HasSubstr(word));
  }
}

// --- RunCliCommand: watch COUNTER against a scripted server ---

class CounterWatchCommandTest : public ::testing::Test {
 protected:
  CounterWatchCommandTest() {
    v1::WatchUploadingsResponse snapshot;
    AddEvent(&snapshot, v1::UploadingEvent::ADDED, 5, v1::Uploading::PREPARED);
    AddEvent(&snapshot, v1::UploadingEvent::ADDED, 6, v1::Uploading::PROCESSED);
    snapshot.set_synced(true);
    snapshot.set_resume_token("t1");
    v1::WatchUploadingsResponse changed;
    AddEvent(&changed, v1::UploadingEvent::MODIFIED, 5, v1::Uploading::UPLOADED);
    changed.set_resume_token("t2");
    // The resume's token is too old: a reset, then a fresh snapshot.
    v1::WatchUploadingsResponse reset;
    reset.set_reset(true);
    reset.set_resume_token("t3");
    v1::WatchUploadingsResponse fresh;
    AddEvent(&fresh, v1::UploadingEvent::ADDED, 7, v1::Uploading::PREPARED);
    fresh.set_synced(true);
    fresh.set_resume_token("t4");
    server_.service().counter_watches = {
        {{snapshot, changed}, absl::UnavailableError("stream lifetime")},
        {{reset, fresh}, absl::PermissionDeniedError("access revoked")}};
  }

  static void AddEvent(v1::WatchUploadingsResponse* m,
                       v1::UploadingEvent::Type type, int64_t id,
                       v1::Uploading::Status status) {
    v1::UploadingEvent* e = m->add_events();
    e->set_type(type);
    e->mutable_uploading()->set_id(id);
    e->mutable_uploading()->set_status(status);
    e->mutable_uploading()->set_type(v1::Uploading::CALLS);
  }

  // Runs `args` against the scripted server; its exit code.
  int Run(std::vector<std::string> args, bool terminal = false) {
    absl::StatusOr<CliCommand> command = ParseCliCommand(args);
    EXPECT_TRUE(command.ok()) << command.status();
    if (!command.ok()) return -1;
    command->terminal_output = terminal;
    UploadingClient client(server_.Channel(), ClientOptionsFor(*command, "tok"));
    return RunCliCommand(*command, client, out_, err_);
  }

  client_testing::ScriptedServer server_;
  std::ostringstream out_, err_;
};

TEST_F(CounterWatchCommandTest, LinesFollowTheCounterThroughAResumeAndAReset) {
  EXPECT_EQ(Run({"watch", "2215573", "--type=CALLS"}), 7);  // PERMISSION_DENIED
  EXPECT_EQ(err_.str(), "error: PERMISSION_DENIED: access revoked\n");
  std::vector<std::string> kinds;
  for (absl::string_view line : absl::StrSplit(out_.str(), '\n', absl::SkipEmpty())) {
    // "HH:MM:SS  KIND  ...": the time varies, the rest is cli_format_test's.
    std::vector<absl::string_view> words =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    ASSERT_GE(words.size(), 3u) << line;
    kinds.push_back(absl::StrCat(words[1], " ", words[2]));
  }
  EXPECT_THAT(kinds, ElementsAre("ADDED 5", "ADDED 6", "SYNCED 2", "MODIFIED 5",
                                 "RESET dropped", "ADDED 7", "SYNCED 1"));
  std::vector<std::string> tokens;
  for (const auto& r : server_.service().counter_watch_requests()) {
    EXPECT_EQ(r.counter_id(), 2215573);
    EXPECT_EQ(r.type(), v1::Uploading::CALLS);
    tokens.push_back(r.resume_token());
  }
  EXPECT_THAT(tokens, ElementsAre("", "t2"));
}

TEST_F(CounterWatchCommandTest, JsonPrintsOneResponsePerLine) {
  EXPECT_EQ(Run({"--json", "watch", "2215573"}), 7);
  std::vector<std::string> lines = absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << out_.str();
  std::vector<std::string> tokens;
  for (const std::string& line : lines) {
    v1::WatchUploadingsResponse m;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &m).ok()) << line;
    tokens.push_back(m.resume_token());
  }
  EXPECT_THAT(tokens, ElementsAre("t1", "t2", "t3", "t4"));
  EXPECT_THAT(lines[2], HasSubstr("\"reset\":true"));
}

TEST_F(CounterWatchCommandTest, OnATerminalTheTableIsRedrawnAndTheResetDropsRows) {
  EXPECT_EQ(Run({"watch", "2215573", "--type=CALLS"}, /*terminal=*/true), 7);
  std::vector<std::string> screens =
      absl::StrSplit(out_.str(), "\x1b[H\x1b[2J", absl::SkipEmpty());
  ASSERT_EQ(screens.size(), 4u) << out_.str();  // one per message
  EXPECT_THAT(screens[0], HasSubstr("counter 2215573 CALLS: 2 uploadings, synced"));
  EXPECT_THAT(screens[1], HasSubstr("\n 5  UPLOADED "));
  EXPECT_THAT(screens[2], HasSubstr(": 0 uploadings, syncing"));
  EXPECT_THAT(screens[3], HasSubstr(": 1 uploading, synced"));
  EXPECT_THAT(screens[3], HasSubstr("\n 7  PREPARED "));
  EXPECT_THAT(screens[3], Not(HasSubstr("\n 5 ")));
  EXPECT_THAT(screens[3], Not(HasSubstr("\n 6 ")));
}

}  // namespace
}  // namespace uploadwatch
