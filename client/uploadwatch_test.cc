// The built `uploadwatch` binary, run as a user runs it, against the real
// server on the Metrica simulator.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/testing/counter_messages.h"
#include "client/testing/scripted_service.h"
#include "client/testing/service_fixture.h"
#include "client/testing/tls_fixture.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "service/metrica/json_mapping.h"

extern char** environ;

namespace uploadwatch::client_testing {
namespace {

using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

// Runs `uploadwatch --server=ADDRESS args...` with `token` in
// METRIKA_OAUTH_TOKEN (unset when empty) and waits for it to exit. With
// `tty`, its stdout is a pseudo-terminal (as in an interactive shell; the
// terminal turns "\n" into "\r\n").
CliRun RunUploadwatch(const std::string& address, std::vector<std::string> args,
                      const std::string& token, bool tty = false) {
  const std::string binary =
      absl::StrCat(std::getenv("TEST_SRCDIR"), "/uploadwatch/client/uploadwatch");
  const std::string tmp = std::getenv("TEST_TMPDIR");
  const std::string out_path = tmp + "/stdout", err_path = tmp + "/stderr";

  args.insert(args.begin(), {binary, "--server=" + address});
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!absl::StartsWith(*e, "METRIKA_OAUTH_TOKEN=")) env_strings.push_back(*e);
  }
  if (!token.empty()) env_strings.push_back("METRIKA_OAUTH_TOKEN=" + token);
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  int terminal = -1;  // the pseudo-terminal's master side
  std::string stdout_path = out_path;
  if (tty) {
    terminal = posix_openpt(O_RDWR | O_NOCTTY);
    if (terminal < 0 || grantpt(terminal) != 0 || unlockpt(terminal) != 0) {
      ADD_FAILURE() << "no pseudo-terminal";
      return CliRun{};
    }
    stdout_path = ptsname(terminal);
  }
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 1, stdout_path.c_str(),
                                   O_WRONLY | (tty ? O_NOCTTY : O_CREAT | O_TRUNC),
                                   0644);
  posix_spawn_file_actions_addopen(&files, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  CliRun run;
  const int spawned = posix_spawn(&pid, binary.c_str(), &files, nullptr,
                                  argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&files);
  if (spawned != 0) {
    ADD_FAILURE() << "cannot run " << binary << ": " << spawned;
    return run;
  }
  int wait_status = 0;
  waitpid(pid, &wait_status, 0);
  if (WIFEXITED(wait_status)) run.exit_code = WEXITSTATUS(wait_status);
  if (tty) {
    // What the child wrote stays readable until the master is closed; then
    // read() fails (EIO) as the slave side has no writer left.
    fcntl(terminal, F_SETFL, O_NONBLOCK);
    char buffer[4096];
    for (ssize_t n; (n = read(terminal, buffer, sizeof(buffer))) > 0;) {
      run.out.append(buffer, n);
    }
    close(terminal);
  } else {
    run.out = ReadFile(out_path);
  }
  run.err = ReadFile(err_path);
  return run;
}

class UploadwatchTest : public ServiceFixture {
 protected:
  CliRun Uploadwatch(std::vector<std::string> args, std::string token = kToken) {
    return RunUploadwatch(address(), std::move(args), token);
  }

  // The CLI's watch of `id` (PREPARED until then), whose journey to `last`
  // starts only once the server has the watch and has fetched the first
  // state for it: however slowly the CLI starts (TSan), it sees it all.
  CliRun WatchJourney(std::vector<std::string> args, int64_t id,
                      v1::Uploading::Status last) {
    metrica_.AddUploading(kCounter, MakeUploading(id, v1::Uploading::PREPARED));
    std::future<CliRun> run = std::async(
        std::launch::async, [&] { return Uploadwatch(std::move(args)); });
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while ((server_->stats().watchers == 0 || UpstreamCallsFor(id) == 0) &&
           absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    AddJourney(id, last, absl::Milliseconds(400));
    return run.get();
  }

  v1::Uploading Documented() {
    v1::Uploading u = MakeUploading(12, v1::Uploading::PROCESSED);
    u.set_comment("CRM export, December");
    u.set_linked_quantity(90);
    return u;
  }
};

TEST_F(UploadwatchTest, GetPrintsAlignedFields) {
  metrica_.AddUploading(kCounter, Documented());
  CliRun run = Uploadwatch({"get", "2215573", "12"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.err, "");
  EXPECT_THAT(Lines(run.out),
              ElementsAre("id:                      12",
                          "status:                  PROCESSED",
                          "type:                    BASIC",
                          "client_id_type:          CLIENT_ID",
                          "create_time:             2023-11-14T22:13:20Z",
                          "source_quantity:         100",
                          "line_quantity:           98",
                          "linked_quantity:         90",
                          "user_not_found_quantity: 0",
                          "goal_not_found_quantity: 0",
                          "comment:                 CRM export, December"));
}

TEST_F(UploadwatchTest, GetJsonPrintsMetricasEnvelope) {
  metrica_.AddUploading(kCounter, Documented());
  CliRun run = Uploadwatch({"--json", "get", "2215573", "12"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  ASSERT_THAT(run.out, StartsWith("{\"uploading\":{"));
  ASSERT_THAT(run.out, EndsWith("}}\n"));
  // Exactly what Metrica's GET .../uploading/12 body parses to.
  absl::StatusOr<v1::GetUploadingResponse> parsed = ParseUploadingBody(run.out);
  ASSERT_TRUE(parsed.ok()) << parsed.status() << run.out;
  EXPECT_EQ(parsed->uploading().SerializeAsString(),
            Documented().SerializeAsString());
  EXPECT_THAT(run.out, HasSubstr("\"id\":12"));  // a number, as Metrica's
  // And the proto's GetUploadingResponse in its JSON form.
  v1::GetUploadingResponse as_proto;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(run.out, &as_proto).ok());
  EXPECT_EQ(as_proto.uploading().id(), 12);
}

TEST_F(UploadwatchTest, ListPrintsATableNewestFirst) {
  metrica_.AddUploading(kCounter, Documented());
  metrica_.AddUploading(kCounter, MakeUploading(101, v1::Uploading::MATCHED));
  CliRun run = Uploadwatch({"list", "2215573", "--limit", "10"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(
      Lines(run.out),
      ElementsAre(
          " ID  STATUS     TYPE   CREATED               LINES  LINKED  COMMENT",
          "101  MATCHED    BASIC  2023-11-14T22:13:20Z     98       0  upload 101",
          " 12  PROCESSED  BASIC  2023-11-14T22:13:20Z     98      90  CRM export, December"));
}

TEST_F(UploadwatchTest, ListJsonIsMetricasEnvelope) {
  metrica_.AddUploading(kCounter, Documented());
  metrica_.AddUploading(kCounter, MakeUploading(101, v1::Uploading::MATCHED));
  CliRun run = Uploadwatch({"list", "2215573", "--json", "--offset=1"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  absl::StatusOr<v1::ListUploadingsResponse> parsed = ParseUploadingsBody(run.out);
  ASSERT_TRUE(parsed.ok()) << parsed.status() << run.out;
  ASSERT_EQ(parsed->uploadings_size(), 1);
  EXPECT_EQ(parsed->uploadings(0).id(), 12);
}

TEST_F(UploadwatchTest, WatchPrintsATimelineUntilTheTerminalLine) {
  CliRun run = WatchJourney({"--timeout=30s", "watch", "2215573", "21"}, 21,
                            v1::Uploading::PROCESSED);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.err, "");
  EXPECT_THAT(run.out, Not(HasSubstr("\n\n")));
  std::vector<std::string> lines = Lines(run.out);
  ASSERT_GE(lines.size(), 2u) << run.out;
  EXPECT_THAT(lines.front(), HasSubstr("  PREPARED  "));
  EXPECT_THAT(lines.front(), HasSubstr("  +0s  "));
  EXPECT_THAT(lines.front(), HasSubstr("(watching)"));
  EXPECT_THAT(lines.back(), HasSubstr("  PROCESSED  "));
  EXPECT_THAT(lines.back(), HasSubstr("(in MATCHED "));
  EXPECT_THAT(lines.back(), EndsWith("  terminal"));
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    EXPECT_THAT(lines[i], Not(HasSubstr("terminal"))) << i;
  }
}

TEST_F(UploadwatchTest, WatchJsonPrintsEachMessageOnItsOwnLine) {
  CliRun run = WatchJourney({"--json", "watch", "2215573", "22"}, 22,
                            v1::Uploading::LINKAGE_FAILURE);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  std::vector<std::string> lines = Lines(run.out);
  ASSERT_GE(lines.size(), 2u) << run.out;
  int64_t previous_version = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    v1::WatchUploadingResponse m;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[i], &m).ok())
        << lines[i];
    EXPECT_EQ(m.uploading().id(), 22);
    EXPECT_GT(m.version(), previous_version);
    EXPECT_GT(m.observe_time().seconds(), 0);
    EXPECT_EQ(m.terminal(), i + 1 == lines.size()) << lines[i];
    previous_version = m.version();
  }
  v1::WatchUploadingResponse last;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines.back(), &last).ok());
  EXPECT_EQ(last.uploading().status(), v1::Uploading::LINKAGE_FAILURE);
}

TEST_F(UploadwatchTest, NotFoundExitsWithItsCodeAndTheServersMessage) {
  for (const char* command : {"get", "watch"}) {
    CliRun run = Uploadwatch({command, "2215573", "404"});
    EXPECT_EQ(run.exit_code, 5) << command;
    EXPECT_EQ(run.out, "") << command;
    EXPECT_THAT(run.err, StartsWith("error: NOT_FOUND: ")) << command;
    EXPECT_THAT(run.err, HasSubstr("(reason NOT_FOUND)")) << command;
    EXPECT_EQ(Lines(run.err).size(), 1u) << run.err;
  }
}

TEST_F(UploadwatchTest, WithoutATokenExitsUnauthenticated) {
  CliRun run = Uploadwatch({"get", "2215573", "12"}, /*token=*/"");
  EXPECT_EQ(run.exit_code, 16);
  EXPECT_THAT(run.err, StartsWith("error: UNAUTHENTICATED: "));
}

TEST_F(UploadwatchTest, BadUsageExits64WithAShortUsage) {
  CliRun run = Uploadwatch({"get", "2215573", "twelve"});
  EXPECT_EQ(run.exit_code, 64);
  EXPECT_EQ(run.out, "");
  EXPECT_THAT(run.err, StartsWith("error: ID must be a positive integer, got "
                                  "\"twelve\"\nusage: uploadwatch "));
  EXPECT_LE(Lines(run.err).size(), 5u) << run.err;
  EXPECT_TRUE(metrica_.requests().empty());

  CliRun unknown_flag = Uploadwatch({"--verbose", "list", "2215573"});
  EXPECT_EQ(unknown_flag.exit_code, 64);
  EXPECT_THAT(unknown_flag.err, StartsWith("error: unknown flag --verbose\n"));
}

TEST_F(UploadwatchTest, HelpPrintsTheUsageAndExitsZero) {
  CliRun run = Uploadwatch({"--help"});
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_THAT(run.out, StartsWith("usage: uploadwatch "));
  EXPECT_THAT(run.out, HasSubstr("exit status:"));
  EXPECT_EQ(run.err, "");
}

class UploadwatchTlsTest : public TlsServiceFixture {
 protected:
  explicit UploadwatchTlsTest(bool mutual = false) : TlsServiceFixture(mutual) {
    metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::PROCESSED));
  }
  CliRun Uploadwatch(std::vector<std::string> args) {
    args.push_back("--timeout=5s");
    return RunUploadwatch(address(), std::move(args), kToken);
  }
};

TEST_F(UploadwatchTlsTest, CaFileConnectsWithTls) {
  CliRun run = Uploadwatch({"--ca_file=" + Path("ca.pem"), "get", "2215573", "12"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("status:                  PROCESSED"));
}

TEST_F(UploadwatchTlsTest, PlaintextOrAnUntrustedServerIsUnavailable) {
  CliRun plaintext = Uploadwatch({"get", "2215573", "12"});
  EXPECT_EQ(plaintext.exit_code, 14) << plaintext.err;
  EXPECT_THAT(plaintext.err, StartsWith("error: UNAVAILABLE"));
  // --tls alone trusts the system's CAs, which did not sign the test server.
  CliRun system_roots = Uploadwatch({"--tls", "get", "2215573", "12"});
  EXPECT_EQ(system_roots.exit_code, 14) << system_roots.err;
  CliRun stranger =
      Uploadwatch({"--ca_file=" + Path("stranger.pem"), "get", "2215573", "12"});
  EXPECT_EQ(stranger.exit_code, 14) << stranger.err;
}

TEST_F(UploadwatchTlsTest, AMissingCaFileIsNamedBeforeAnyCall) {
  CliRun run = Uploadwatch({"--ca_file=" + Path("nope.pem"), "get", "2215573", "12"});
  EXPECT_EQ(run.exit_code, 5);
  EXPECT_THAT(run.err, StartsWith("error: NOT_FOUND: cannot read ca_file "));
  EXPECT_THAT(run.err, HasSubstr("nope.pem"));
  EXPECT_EQ(run.out, "");
}

class UploadwatchMtlsTest : public UploadwatchTlsTest {
 protected:
  UploadwatchMtlsTest() : UploadwatchTlsTest(/*mutual=*/true) {}
};

TEST_F(UploadwatchMtlsTest, AClientCertificateIsSentWithCertAndKeyFiles) {
  CliRun with_cert = Uploadwatch(
      {"--ca_file=" + Path("ca.pem"), "--cert_file=" + Path("client.pem"),
       "--key_file=" + Path("client.key"), "--json", "get", "2215573", "12"});
  EXPECT_EQ(with_cert.exit_code, 0) << with_cert.err;
  EXPECT_THAT(with_cert.out, StartsWith("{\"uploading\":{\"id\":12"));

  CliRun without = Uploadwatch({"--ca_file=" + Path("ca.pem"), "get", "2215573", "12"});
  EXPECT_EQ(without.exit_code, 14) << without.err;
  CliRun strangers = Uploadwatch(
      {"--ca_file=" + Path("ca.pem"), "--cert_file=" + Path("stranger.pem"),
       "--key_file=" + Path("stranger.key"), "get", "2215573", "12"});
  EXPECT_EQ(strangers.exit_code, 14) << strangers.err;
}

// The binary's counter watch, against a scripted server (the real one has no
// WatchUploadings yet): stdout is a file, so one line per event.
TEST(UploadwatchCounterWatchTest, PrintsLinesThroughAResumeAndExitsWithTheEndingCode) {
  ScriptedServer server;
  server.service().counter_watches = {
      {{CounterMessage("t1", {{5, v1::Uploading::PREPARED}}, /*synced=*/true)},
       absl::UnavailableError("stream lifetime")},
      {{CounterMessage("t2", {{5, v1::Uploading::UPLOADED}}, false, false,
                       v1::UploadingEvent::MODIFIED)},
       absl::NotFoundError("counter 2215573 is gone")}};
  CliRun run = RunUploadwatch(server.address(), {"watch", "2215573"}, "tok");
  EXPECT_EQ(run.exit_code, 5) << run.err;
  EXPECT_EQ(run.err, "error: NOT_FOUND: counter 2215573 is gone\n");
  EXPECT_THAT(run.out, Not(HasSubstr("\x1b[")));  // no redraw into a file
  std::vector<std::string> lines = Lines(run.out);
  ASSERT_EQ(lines.size(), 3u) << run.out;
  EXPECT_THAT(lines[0], HasSubstr("  ADDED     5  PREPARED  "));
  EXPECT_THAT(lines[1], HasSubstr("  SYNCED    1 uploadings"));
  EXPECT_THAT(lines[2], HasSubstr("  MODIFIED  5  UPLOADED  "));
  std::vector<std::string> tokens;
  for (const auto& r : server.service().counter_watch_requests()) {
    tokens.push_back(r.resume_token());
  }
  EXPECT_THAT(tokens, ElementsAre("", "t1"));
}

TEST(UploadwatchCounterWatchTest, OnATerminalRedrawsATable) {
  ScriptedServer server;
  server.service().counter_watches = {
      {{CounterMessage("t1", {{5, v1::Uploading::PREPARED}}, /*synced=*/true),
        CounterMessage("t2", {}),  // a bookmark: nothing to redraw
        CounterMessage("t3", {{6, v1::Uploading::UPLOADED}})},
       absl::NotFoundError("counter 2215573 is gone")}};
  CliRun run = RunUploadwatch(server.address(), {"watch", "2215573"}, "tok",
                              /*tty=*/true);
  EXPECT_EQ(run.exit_code, 5) << run.err;
  std::vector<std::string> screens =
      absl::StrSplit(run.out, "\x1b[H\x1b[2J", absl::SkipEmpty());
  ASSERT_EQ(screens.size(), 2u) << run.out;
  EXPECT_THAT(screens[0], StartsWith("counter 2215573 BASIC: 1 uploading, synced, updated "));
  EXPECT_THAT(screens[1], StartsWith("counter 2215573 BASIC: 2 uploadings, synced, updated "));
  EXPECT_THAT(screens[1], HasSubstr("\r\n 6  UPLOADED "));
  EXPECT_THAT(screens[1], HasSubstr("\r\n 5  PREPARED "));
}

}  // namespace
}  // namespace uploadwatch::client_testing
