#include "service/grpc/rpc_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/metrics/metrics.h"

namespace uploadwatch {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

TEST(RpcLogTest, ALineSaysWhatTheRpcDidWithTheFingerprintOnly) {
  std::vector<std::string> lines;
  Metrics metrics;
  RpcLog log([&](absl::string_view line) { lines.emplace_back(line); },
             &metrics);
  log.Log("GetUploading", 2215573, 12, absl::OkStatus(),
          absl::Microseconds(3149), "ba78");
  log.Log("GetUploading", 1, 2, absl::NotFoundError("no such uploading"),
          absl::Milliseconds(1500), "");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0],
              MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                           "[0-9]{2}\\.[0-9]{3}Z rpc=GetUploading "
                           "counter=2215573 id=12 code=OK latency_ms=3\\.1 "
                           "token=ba78"));
  EXPECT_THAT(lines[1], HasSubstr(" code=NOT_FOUND latency_ms=1500.0 token=- "
                                  "msg=\"no such uploading\""));
  const std::string text = metrics.Render();
  EXPECT_THAT(text, HasSubstr("uploadwatch_rpcs_total{method=\"GetUploading\","
                              "code=\"OK\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("uploadwatch_rpcs_total{method=\"GetUploading\","
                              "code=\"NOT_FOUND\"} 1\n"));
}

// Without a sink the lines go to stderr through a buffer: here stderr is a
// file of the test's.
class StderrLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/rpc_log_test.XXXXXX";
    const int fd = mkstemp(name);
    ASSERT_GE(fd, 0);
    path_ = name;
    saved_ = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
  }
  void TearDown() override {
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    unlink(path_.c_str());
  }
  std::vector<std::string> Lines() {
    std::ifstream in(path_);
    std::stringstream text;
    text << in.rdbuf();
    return absl::StrSplit(text.str(), '\n', absl::SkipEmpty());
  }
  std::string path_;
  int saved_ = -1;
};

TEST_F(StderrLogTest, AnErrorIsWrittenAtOnceWithEverythingBeforeIt) {
  RpcLog log;
  log.Log("GetUploading", 1, 1, absl::OkStatus(), absl::Milliseconds(1), "a");
  log.Log("GetUploading", 1, 2, absl::OkStatus(), absl::Milliseconds(1), "a");
  log.Log("GetUploading", 1, 3, absl::InvalidArgumentError("bad"),
          absl::Milliseconds(1), "a");
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], HasSubstr(" id=1 "));
  EXPECT_THAT(lines[1], HasSubstr(" id=2 "));
  EXPECT_THAT(lines[2], HasSubstr(" id=3 code=INVALID_ARGUMENT"));
}

TEST_F(StderrLogTest, FlushAndTheDestructorWriteWhatIsBuffered) {
  {
    RpcLog log;
    for (int i = 1; i <= 100; ++i) {
      log.Log("ListUploadings", 7, i, absl::OkStatus(), absl::Milliseconds(2),
              "fp");
    }
    log.Flush();
    EXPECT_EQ(Lines().size(), 100u);
    log.Log("ListUploadings", 7, 101, absl::OkStatus(), absl::Milliseconds(2),
            "fp");
  }
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 101u);
  for (int i = 0; i < 101; ++i) {  // whole and in order
    EXPECT_THAT(lines[i], HasSubstr(absl::StrCat(" id=", i + 1, " code=OK")));
  }
}

}  // namespace
}  // namespace uploadwatch
