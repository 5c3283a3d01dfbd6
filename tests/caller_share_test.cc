// Issue 16, finding 1: callers without a token cannot spend the server
// token's day for everyone, and missing ids cost Metrica once per TTL. The
// real server and simulator on loopback. Prints the figures it measures.
#include <iostream>
#include <string>

#include "service/common/status_details.h"
#include "tests/service_fixture.h"

namespace uploadwatch::testing {
namespace {

class CallerShareTest : public ServiceTest {
 protected:
  CallerShareTest() {
    daily_budget_ = 40;
    config_.caller_identity_header = "x-caller";
    config_.hub.poll_interval = absl::Seconds(1);
  }
  // A Get on the server's token as `caller` (told apart by the proxy's
  // header: every test client shares 127.0.0.1).
  grpc::Status Get(const std::string& caller, int64_t id) {
    auto ctx = Context();
    ctx->AddMetadata("x-caller", caller);
    v1::GetUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(id);
    v1::GetUploadingResponse response;
    return stub_->GetUploading(ctx.get(), request, &response);
  }
  int UpstreamRequests() { return static_cast<int>(metrica_.requests().size()); }
};

TEST_F(CallerShareTest, MissingIdsFromOneCallerDoNotLockOutOthers) {
  metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::PROCESSED));
  metrica_.AddUploading(kCounter, MakeUploading(13, v1::Uploading::UPLOADED));
  StartServer();
  int not_found = 0, refused = 0;
  for (int i = 0; i < 40; ++i) {
    const grpc::Status s = Get("attacker", 5000 + i);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) ++not_found;
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++refused;
  }
  const int spent = UpstreamRequests();
  std::cerr << "40 Gets of missing ids: " << not_found << " NOT_FOUND, "
            << refused << " RESOURCE_EXHAUSTED, " << spent
            << " requests to Metrica\n";
  EXPECT_EQ(not_found + refused, 40);
  EXPECT_LT(spent, 40 / 4 + 1) << "the caller spent more than its share";

  // Another caller still gets its answer, and a new watch its first state.
  const grpc::Status other = Get("victim", 12);
  EXPECT_TRUE(other.ok()) << other.error_code() << " " << other.error_message();
  auto ctx = Context(absl::Seconds(10));
  ctx->AddMetadata("x-caller", "watcher");
  v1::WatchUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(13);
  auto reader = stub_->WatchUploading(ctx.get(), request);
  v1::WatchUploadingResponse first;
  EXPECT_TRUE(reader->Read(&first)) << "a watch got no first message";
  ctx->TryCancel();
  reader->Finish();
}

TEST_F(CallerShareTest, RepeatedGetsOfOneMissingIdAskMetricaOncePerTtl) {
  StartServer();
  for (int i = 0; i < 20; ++i) {
    const grpc::Status s = Get("caller", 404);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << i;
  }
  std::cerr << "20 Gets of one missing id: " << UpstreamCallsFor(404)
            << " requests to Metrica\n";
  EXPECT_LE(UpstreamCallsFor(404), 1);
}
}  // namespace
}  // namespace uploadwatch::testing
