// Issue 16, finding 2: whatever tokens clients send, /metrics stays bounded
// and junk tokens share one small bucket instead of a budget each. The real server and simulator on loopback.
#include <string>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "service/metrics/metrics.h"
#include "tests/service_fixture.h"

namespace uploadwatch::testing {
namespace {

using ::testing::HasSubstr;

// Series of one family in a rendering (sample lines starting with `name{`).
int SeriesOf(const std::string& text, const std::string& name) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, name + "{")) ++n;
  }
  return n;
}

class MetricCardinalityTest : public ServiceTest {};

TEST_F(MetricCardinalityTest, JunkTokensDoNotGrowMetricsWithoutBound) {
  daily_budget_ = 4000;  // per-token budgets, and so per-token quota series
  config_.hub.poll_interval = absl::Seconds(30);
  StartServer();
  constexpr int kJunkTokens = 300;
  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(12);
  v1::GetUploadingResponse response;
  for (int i = 0; i < kJunkTokens; ++i) {
    grpc::Status s = stub_->GetUploading(
        Context(absl::Seconds(10), absl::StrCat("bogus-", 10000 + i)).get(),
        request, &response);
    ASSERT_FALSE(s.ok());
  }
  const std::string text = server_->metrics().Render();
  const int upstream = static_cast<int>(metrica_.requests().size());
  std::cerr << kJunkTokens << " junk tokens: " << upstream
            << " requests to Metrica\n";
  // Metrica never accepted them: none has a series (not even one kept under
  // the cardinality cap), and together they spent one small bucket
  // (--unverified_token_budget, 100), not a budget each.
  EXPECT_LE(upstream, 100);
  for (const char* family : {"uploadwatch_quota_used_today",
                             "uploadwatch_quota_remaining_today"}) {
    const int series = SeriesOf(text, family);
    std::cerr << family << ": " << series << " series after " << kJunkTokens
              << " junk tokens\n";
    EXPECT_EQ(series, 0) << family;
  }
}

}  // namespace
}  // namespace uploadwatch::testing
