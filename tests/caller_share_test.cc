// Issue 16, finding 1: callers without a token cannot spend the server
// token's day for everyone, and missing ids cost Metrica once per TTL. The
// real server and simulator on loopback. Prints the figures it measures.
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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

  // A WatchUploading on the server's token as `caller`, on `stub` (default:
  // the fixture's connection): open with its first message, or ended.
  struct CallerWatch {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientReader<v1::WatchUploadingResponse>> reader;
    bool got_message = false;
    grpc::Status status;  // when it ended before its first message
    ~CallerWatch() {
      if (ctx != nullptr && got_message) {
        ctx->TryCancel();
        reader->Finish();
      }
    }
  };
  std::unique_ptr<CallerWatch> WatchAs(const std::string& caller, int64_t id,
                                       v1::UploadingService::Stub* stub =
                                           nullptr) {
    auto w = std::make_unique<CallerWatch>();
    w->ctx = Context(absl::Seconds(10));
    w->ctx->AddMetadata("x-caller", caller);
    v1::WatchUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(id);
    w->reader = (stub != nullptr ? stub : stub_.get())
                    ->WatchUploading(w->ctx.get(), request);
    v1::WatchUploadingResponse first;
    w->got_message = w->reader->Read(&first);
    if (!w->got_message) w->status = w->reader->Finish();
    return w;
  }
  static std::string Reason(const grpc::Status& s) {
    std::optional<google::rpc::ErrorInfo> info =
        GetErrorInfo(FromGrpcStatus(s));
    return info ? info->reason() : "";
  }
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
TEST_F(CallerShareTest, WatchesOfMissingIdsFromOneCallerDoNotLockOutOthers) {
  metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::PROCESSED));
  metrica_.AddUploading(kCounter, MakeUploading(13, v1::Uploading::UPLOADED));
  StartServer();
  int not_found = 0, refused = 0;
  for (int i = 0; i < 40; ++i) {
    auto w = WatchAs("attacker", 6000 + i);
    EXPECT_FALSE(w->got_message);
    if (w->status.error_code() == grpc::StatusCode::NOT_FOUND) ++not_found;
    if (w->status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      EXPECT_EQ(Reason(w->status), "CALLER_BUDGET_EXHAUSTED")
          << w->status.error_message();
      ++refused;
    }
  }
  const int spent = UpstreamRequests();
  std::cerr << "40 watches of missing ids: " << not_found << " NOT_FOUND, "
            << refused << " RESOURCE_EXHAUSTED, " << spent
            << " requests to Metrica\n";
  EXPECT_EQ(not_found + refused, 40);
  EXPECT_LE(spent, 1) << "the caller spent more than its share (1 of 4)";

  const grpc::Status other = Get("victim", 12);
  EXPECT_TRUE(other.ok()) << other.error_code() << " " << other.error_message();
  EXPECT_TRUE(WatchAs("watcher", 13)->got_message)
      << "another caller's watch got no first message";
}

TEST_F(CallerShareTest, WatchesOfExistingIdsFromOneCallerAreChargedToIt) {
  for (int i = 0; i < 40; ++i) {
    metrica_.AddUploading(kCounter,
                          MakeUploading(200 + i, v1::Uploading::UPLOADED));
  }
  StartServer();
  std::vector<std::unique_ptr<CallerWatch>> open;
  int refused = 0;
  for (int i = 0; i < 40; ++i) {
    auto w = WatchAs("attacker", 200 + i);
    if (Reason(w->status) == "CALLER_BUDGET_EXHAUSTED") ++refused;
    if (w->got_message) open.push_back(std::move(w));
  }
  std::cerr << "40 watches of existing ids: " << open.size() << " open, "
            << refused << " refused, " << UpstreamRequests()
            << " requests to Metrica\n";
  EXPECT_EQ(open.size(), 1u);
  EXPECT_EQ(refused, 39);
  // Joining what is watched costs nothing, and others have their own share.
  EXPECT_TRUE(WatchAs("attacker", 200)->got_message);
  EXPECT_TRUE(WatchAs("watcher", 201)->got_message);
}

TEST_F(CallerShareTest, OpenWatchesPerCallerAreCappedAcrossConnections) {
  config_.hub.max_watches_per_caller = 2;
  metrica_.AddUploading(kCounter, MakeUploading(13, v1::Uploading::UPLOADED));
  StartServer();
  auto a = WatchAs("dashboard", 13);
  auto b = WatchAs("dashboard", 13);
  ASSERT_TRUE(a->got_message && b->got_message);
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto other = v1::UploadingService::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", server_->port()),
      grpc::InsecureChannelCredentials(), args));
  auto c = WatchAs("dashboard", 13, other.get());
  EXPECT_EQ(c->status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Reason(c->status), "CALLER_WATCH_LIMIT");
  EXPECT_NE(c->status.error_message().find("--max_watches_per_caller"),
            std::string::npos)
      << c->status.error_message();
  EXPECT_TRUE(WatchAs("someone else", 13, other.get())->got_message);
}

TEST_F(CallerShareTest, RequireCallerTokenRefusesCallsWithoutOne) {
  config_.require_caller_token = true;
  metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::PROCESSED));
  StartServer();
  const grpc::Status get = Get("anyone", 12);
  EXPECT_EQ(get.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(get.error_message().find("--require_caller_token"),
            std::string::npos)
      << get.error_message();
  auto watch = WatchAs("anyone", 12);
  EXPECT_FALSE(watch->got_message);
  EXPECT_EQ(watch->status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(UpstreamRequests(), 0);
  // A call with its own token is served as ever.
  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(12);
  v1::GetUploadingResponse response;
  const grpc::Status own = stub_->GetUploading(
      Context(absl::Seconds(10), kToken).get(), request, &response);
  EXPECT_TRUE(own.ok()) << own.error_message();
}

}  // namespace
}  // namespace uploadwatch::testing
