// Issue 16, finding 2 (the part in service/metrics): whatever tokens clients
// send, /metrics stays bounded. The real server and simulator on loopback.
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
  const size_t cap = Metrics::Options().max_series_per_family;
  ASSERT_LT(cap, static_cast<size_t>(kJunkTokens));
  for (const char* family : {"uploadwatch_quota_used_today",
                             "uploadwatch_quota_remaining_today"}) {
    const int series = SeriesOf(text, family);
    std::cerr << family << ": " << series << " series after " << kJunkTokens
              << " junk tokens\n";
    EXPECT_LE(series, static_cast<int>(cap) + 1) << family;
    EXPECT_THAT(text, HasSubstr(absl::StrCat(family, "{token=\"other\"}")));
  }
}

}  // namespace
}  // namespace uploadwatch::testing
