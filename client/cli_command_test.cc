// The CLI's command line: what parses, and what is a usage error.
#include "client/cli_command.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

namespace v1 = ::metrika::offline_conversions::v1;
using ::testing::HasSubstr;

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
            "watch takes COUNTER ID, got 3 argument(s)");
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
            "--limit, --offset and --type apply to list only");
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
       {"get COUNTER ID", "watch COUNTER ID", "list COUNTER", "--server",
        "--json", "--timeout", "--limit", "--offset", "--type",
        "METRIKA_OAUTH_TOKEN", "64 bad usage"}) {
    EXPECT_THAT(std::string(kHelp), HasSubstr(word));
  }
}

}  // namespace
}  // namespace uploadwatch
