// The Prometheus endpoint, end to end.
#include <httplib.h>

#include "gmock/gmock.h"
#include "service/auth/token.h"
#include "tests/service_fixture.h"

namespace uploadwatch::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class MetricsTest : public ServiceTest {
 protected:
  std::string Scrape() {
    httplib::Client client("127.0.0.1", server_->metrics_port());
    auto res = client.Get("/metrics");
    EXPECT_TRUE(res) << "no answer from the metrics port";
    if (!res) return "";
    EXPECT_EQ(res->status, 200);
    EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("text/plain"));
    return res->body;
  }
};

TEST_F(MetricsTest, CountsRpcsUpstreamCacheWatchesAndQuotaWithoutTokens) {
  config_.metrics_listen = "127.0.0.1:0";
  daily_budget_ = 4000;
  config_.hub.poll_interval = absl::Seconds(30);  // no polls during the test
  metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::PROCESSED));
  metrica_.AddUploading(kCounter, MakeUploading(13, v1::Uploading::MATCHED));
  StartServer();
  ASSERT_GT(server_->metrics_port(), 0);

  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(12);
  v1::GetUploadingResponse response;
  ASSERT_TRUE(stub_->GetUploading(Context().get(), request, &response).ok());
  ASSERT_TRUE(stub_->GetUploading(Context().get(), request, &response).ok());
  request.set_uploading_id(404);
  EXPECT_FALSE(stub_->GetUploading(Context().get(), request, &response).ok());

  auto ctx = Context();
  v1::WatchUploadingRequest watch;
  watch.set_counter_id(kCounter);
  watch.set_uploading_id(13);
  auto reader = stub_->WatchUploading(ctx.get(), watch);
  v1::WatchUploadingResponse m;
  ASSERT_TRUE(reader->Read(&m));

  const std::string text = Scrape();
  EXPECT_THAT(text, HasSubstr("uploadwatch_rpcs_total{method=\"GetUploading\",code=\"OK\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("uploadwatch_rpcs_total{method=\"GetUploading\",code=\"NOT_FOUND\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("uploadwatch_rpc_latency_seconds_count{method=\"GetUploading\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("uploadwatch_cache_lookups_total{rpc=\"GetUploading\",result=\"hit\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("uploadwatch_cache_lookups_total{rpc=\"GetUploading\",result=\"miss\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("uploadwatch_upstream_requests_total{endpoint=\"get\",outcome=\"OK\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("uploadwatch_upstream_requests_total{endpoint=\"get\",outcome=\"NOT_FOUND\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("uploadwatch_open_watches 1\n"));
  EXPECT_THAT(text, HasSubstr("uploadwatch_pollers 1\n"));
  const std::string fp = Credentials(kToken).fingerprint();
  EXPECT_THAT(text, HasSubstr("uploadwatch_quota_used_today{token=\"" + fp + "\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("uploadwatch_quota_remaining_today{token=\"" + fp + "\"} 3997\n"));
  EXPECT_THAT(text, Not(HasSubstr(kToken)));

  ctx->TryCancel();
  reader->Finish();
  absl::SleepFor(absl::Milliseconds(100));
  const std::string after = Scrape();
  EXPECT_THAT(after, HasSubstr("uploadwatch_open_watches 0\n"));
  EXPECT_THAT(after, HasSubstr("uploadwatch_rpcs_total{method=\"WatchUploading\",code=\"CANCELLED\"} 1\n"));
}

TEST_F(MetricsTest, NoMetricsPortUnlessAskedFor) {
  StartServer();
  EXPECT_EQ(server_->metrics_port(), 0);
}

}  // namespace
}  // namespace uploadwatch::testing
