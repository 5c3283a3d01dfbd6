// WatchUploading end to end: the semantics promised in the proto.
#include <atomic>
#include <thread>

#include "gmock/gmock.h"
#include "tests/service_fixture.h"

namespace uploadwatch::testing {
namespace {

using ::testing::HasSubstr;

class WatchTest : public ServiceTest {
 protected:
  static void ExpectWellFormed(const WatchResult& r) {
    ASSERT_FALSE(r.messages.empty());
    for (size_t i = 0; i < r.messages.size(); ++i) {
      const auto& m = r.messages[i];
      EXPECT_GT(m.version(), 0);
      EXPECT_GT(m.observe_time().seconds(), 0);
      EXPECT_GE(m.check_time().seconds(), m.observe_time().seconds());
      EXPECT_EQ(m.terminal(), i + 1 == r.messages.size()) << i;
      if (i > 0) {
        EXPECT_GT(m.version(), r.messages[i - 1].version());
        // Never a duplicate.
        EXPECT_NE(m.uploading().SerializeAsString(),
                  r.messages[i - 1].uploading().SerializeAsString());
      }
    }
  }
};

TEST_F(WatchTest, FollowsTheJourneyToTheTerminalStatusThenEndsOk) {
  metrica_.AddUploading(kCounter, MakeUploading(21, v1::Uploading::PREPARED));
  StartServer();
  auto ctx = Context();
  v1::WatchUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(21);
  auto reader = stub_->WatchUploading(ctx.get(), request);
  WatchResult r;
  v1::WatchUploadingResponse message;
  ASSERT_TRUE(reader->Read(&message));
  r.messages.push_back(message);
  // The journey starts once the watch has shown where it starts, so that
  // however slow the server's start (TSan), no step is over before the
  // watch began; steps of 400 ms leave polls every 100 ms room to spare.
  AddJourney(21, v1::Uploading::PROCESSED, absl::Milliseconds(400));
  while (reader->Read(&message)) r.messages.push_back(message);
  r.status = reader->Finish();
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ExpectWellFormed(r);
  EXPECT_EQ(r.messages.front().uploading().status(), v1::Uploading::PREPARED);
  EXPECT_EQ(r.messages.back().uploading().status(), v1::Uploading::PROCESSED);
  // Polling every 100 ms catches every 400 ms step: versions 1..5, no gaps.
  std::vector<v1::Uploading::Status> seen;
  for (const auto& m : r.messages) seen.push_back(m.uploading().status());
  EXPECT_THAT(seen, ::testing::ElementsAre(
                        v1::Uploading::PREPARED, v1::Uploading::UPLOADED,
                        v1::Uploading::EXPORTED, v1::Uploading::MATCHED,
                        v1::Uploading::PROCESSED));
  EXPECT_EQ(r.messages.back().version(), 5);
  // The last message carries the timeline: each status with the
  // observe_time of the message that first reported it.
  const auto& history = r.messages.back().status_history();
  ASSERT_EQ(history.size(), 5);
  for (int i = 0; i < history.size(); ++i) {
    EXPECT_EQ(history[i].status(), seen[i]) << i;
    EXPECT_EQ(history[i].observe_time().SerializeAsString(),
              r.messages[i].observe_time().SerializeAsString())
        << i;
  }
}

TEST_F(WatchTest, LinkageFailureIsTerminalToo) {
  AddJourney(22, v1::Uploading::LINKAGE_FAILURE);
  StartServer();
  WatchResult r = WatchToEnd(22);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.messages.back().uploading().status(),
            v1::Uploading::LINKAGE_FAILURE);
  EXPECT_TRUE(r.messages.back().terminal());
}

TEST_F(WatchTest, AnAlreadyTerminalUploadingGivesExactlyOneMessage) {
  metrica_.AddUploading(kCounter, MakeUploading(23, v1::Uploading::PROCESSED));
  StartServer();
  WatchResult r = WatchToEnd(23);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_TRUE(r.messages[0].terminal());
  EXPECT_EQ(r.messages[0].version(), 1);
  // And again, now from the cache: still one message, same version.
  WatchResult again = WatchToEnd(23);
  ASSERT_EQ(again.messages.size(), 1u);
  EXPECT_EQ(again.messages[0].version(), 1);
  EXPECT_EQ(UpstreamCallsFor(23), 1);
}

TEST_F(WatchTest, AChangeOfAnyFieldIsAMessage) {
  metrica_.AddUploading(kCounter, MakeUploading(24, v1::Uploading::MATCHED));
  StartServer();
  auto ctx = Context();
  v1::WatchUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(24);
  auto reader = stub_->WatchUploading(ctx.get(), request);
  v1::WatchUploadingResponse m;
  ASSERT_TRUE(reader->Read(&m));
  EXPECT_EQ(m.uploading().linked_quantity(), 0);

  v1::Uploading more = MakeUploading(24, v1::Uploading::MATCHED);
  more.set_linked_quantity(50);  // same status, another field
  metrica_.SetUploading(kCounter, more);
  ASSERT_TRUE(reader->Read(&m));
  EXPECT_EQ(m.uploading().linked_quantity(), 50);
  EXPECT_EQ(m.version(), 2);
  EXPECT_FALSE(m.terminal());

  metrica_.SetUploading(kCounter, MakeUploading(24, v1::Uploading::PROCESSED));
  ASSERT_TRUE(reader->Read(&m));
  EXPECT_TRUE(m.terminal());
  EXPECT_FALSE(reader->Read(&m));
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(WatchTest, TransientUpstreamErrorsDoNotEndTheStream) {
  AddJourney(25);
  StartServer();
  // After the first answer, Metrica fails for a while: 503s, then 429s.
  FakeMetrica::Fault unavailable;
  unavailable.path_substring = "/uploading/25";
  unavailable.http_status = 503;
  unavailable.error_type = "backend_error";
  unavailable.times = 4;
  FakeMetrica::Fault quota = unavailable;
  quota.http_status = 429;
  quota.error_type = "quota_parallel_requests";
  quota.times = 4;

  auto ctx = Context();
  v1::WatchUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(25);
  auto reader = stub_->WatchUploading(ctx.get(), request);
  v1::WatchUploadingResponse m;
  ASSERT_TRUE(reader->Read(&m));
  metrica_.InjectFault(unavailable);
  metrica_.InjectFault(quota);
  v1::Uploading::Status last = m.uploading().status();
  while (reader->Read(&m)) last = m.uploading().status();
  grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(last, v1::Uploading::PROCESSED);
}

TEST_F(WatchTest, PermanentErrorsEndTheStreamWithTheirCode) {
  StartServer();
  WatchResult missing = WatchToEnd(999999);
  EXPECT_EQ(missing.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(missing.messages.empty());

  metrica_.AddToken("tenant-b-token");
  metrica_.AddUploading(kCounter, MakeUploading(26, v1::Uploading::MATCHED));
  WatchResult denied = WatchToEnd(26, absl::Seconds(5), "tenant-b-token");
  EXPECT_EQ(denied.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);

  WatchResult invalid = WatchToEnd(0);
  EXPECT_EQ(invalid.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // Mid-stream: the uploading vanishes (404 from now on).
  auto ctx = Context();
  v1::WatchUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(26);
  auto reader = stub_->WatchUploading(ctx.get(), request);
  v1::WatchUploadingResponse m;
  ASSERT_TRUE(reader->Read(&m));
  FakeMetrica::Fault gone;
  gone.path_substring = "/uploading/26";
  gone.http_status = 404;
  gone.error_type = "not_found";
  gone.times = -1;
  metrica_.InjectFault(gone);
  while (reader->Read(&m)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

// Uploading 32 reaches PROCESSED about when the 50 watchers start, so many
// of them race the first one's poll or its fresh terminal state: this is
// the case that found the lost joiner (a watcher that joined a target
// between its Add and its fresh first state was never shown anything).
TEST_F(WatchTest, FiftyWatchersCostAboutWhatOneDoes) {
  AddJourney(31);
  AddJourney(32);
  StartServer();
  WatchResult single = WatchToEnd(31);
  ASSERT_TRUE(single.status.ok());
  const int one_watcher = UpstreamCallsFor(31);

  constexpr int kWatchers = 50;
  std::vector<std::thread> watchers;
  std::vector<WatchResult> results(kWatchers);
  for (int i = 0; i < kWatchers; ++i) {
    watchers.emplace_back([&, i] { results[i] = WatchToEnd(32); });
  }
  for (auto& t : watchers) t.join();
  for (const auto& r : results) {
    ASSERT_TRUE(r.status.ok()) << r.status.error_message() << " after "
                               << r.messages.size() << " messages";
    EXPECT_EQ(r.messages.back().uploading().status(), v1::Uploading::PROCESSED);
  }
  const int fifty_watchers = UpstreamCallsFor(32);
  EXPECT_LE(fifty_watchers, one_watcher + 2)
      << "one watcher: " << one_watcher << ", fifty: " << fifty_watchers;
  EXPECT_EQ(server_->stats().pollers, 0u);
  EXPECT_EQ(server_->stats().watchers, 0u);
}

TEST_F(WatchTest, CancellingTheLastWatcherStopsPolling) {
  metrica_.AddUploading(kCounter, MakeUploading(33, v1::Uploading::EXPORTED));
  StartServer();
  auto ctx = Context();
  v1::WatchUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(33);
  auto reader = stub_->WatchUploading(ctx.get(), request);
  v1::WatchUploadingResponse m;
  ASSERT_TRUE(reader->Read(&m));
  absl::SleepFor(absl::Milliseconds(350));  // a few polls happen
  EXPECT_GE(UpstreamCallsFor(33), 2);
  EXPECT_EQ(server_->stats().pollers, 1u);

  const absl::Time cancelled = absl::Now();
  ctx->TryCancel();
  EXPECT_FALSE(reader->Read(&m));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(absl::Now() - cancelled, absl::Milliseconds(500));
  absl::SleepFor(absl::Milliseconds(100));  // the server sees the cancel
  EXPECT_EQ(server_->stats().pollers, 0u);
  const int after_cancel = UpstreamCallsFor(33);
  absl::SleepFor(absl::Milliseconds(500));  // five poll intervals
  EXPECT_EQ(UpstreamCallsFor(33), after_cancel);
}

TEST_F(WatchTest, TheClientsDeadlineEndsTheStreamAtOnce) {
  metrica_.AddUploading(kCounter, MakeUploading(34, v1::Uploading::EXPORTED));
  StartServer();
  // The deadline is long enough for the first state to beat it at any build
  // speed (TSan on a loaded machine). What is timed is the end against the
  // deadline itself: the stream must end when the deadline passes, after
  // that one state, and the server must let the watcher go at once.
  constexpr absl::Duration kDeadline = absl::Seconds(5);
  const absl::Time deadline = absl::Now() + kDeadline;
  WatchResult r = WatchToEnd(34, kDeadline);
  const absl::Time ended = absl::Now();
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(r.messages.size(), 1u);
  EXPECT_LT(ended - deadline, absl::Milliseconds(600));
  // The server's side: the watcher is gone well before the client could
  // have given up in any other way (no sleep: wait for it, bounded).
  absl::Time limit = ended + absl::Seconds(2);
  while (server_->stats().watchers != 0 && absl::Now() < limit) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_->stats().watchers, 0u);
}

TEST_F(WatchTest, AWatcherJoiningLaterGetsTheCurrentStateAtOnce) {
  metrica_.AddUploading(kCounter, MakeUploading(35, v1::Uploading::UPLOADED));
  StartServer();
  auto first_ctx = Context();
  v1::WatchUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(35);
  auto first = stub_->WatchUploading(first_ctx.get(), request);
  v1::WatchUploadingResponse m;
  ASSERT_TRUE(first->Read(&m));
  const int calls = UpstreamCallsFor(35);

  auto second_ctx = Context();
  auto second = stub_->WatchUploading(second_ctx.get(), request);
  ASSERT_TRUE(second->Read(&m));
  EXPECT_EQ(m.uploading().status(), v1::Uploading::UPLOADED);
  EXPECT_EQ(m.version(), 1);  // the same state, the same version
  EXPECT_LE(UpstreamCallsFor(35), calls + 1);  // at most one poll meanwhile
  first_ctx->TryCancel();
  second_ctx->TryCancel();
}

TEST_F(WatchTest, TheWatchCapIsEnforcedWithAClearMessage) {
  config_.hub.max_watches = 2;
  metrica_.AddUploading(kCounter, MakeUploading(36, v1::Uploading::UPLOADED));
  StartServer();
  OpenWatch w1 = Watch(36), w2 = Watch(36);
  WatchResult third = WatchToEnd(36);
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(third.status.error_message(), HasSubstr("limit of 2 open watches"));
  w1.ctx->TryCancel();
  w2.ctx->TryCancel();
}

TEST_F(WatchTest, SlowReadersGetTheLatestStateNotABacklog) {
  metrica_.AddUploading(kCounter, MakeUploading(37, v1::Uploading::PREPARED));
  StartServer();
  // A client whose HTTP/2 window is tiny: unread messages back up to the
  // server instead of sitting in the client's socket buffers.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto slow_stub = v1::UploadingService::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", server_->port()),
      grpc::InsecureChannelCredentials(), args));
  auto ctx = Context();
  v1::WatchUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(37);
  auto reader = slow_stub->WatchUploading(ctx.get(), request);
  v1::WatchUploadingResponse m;
  ASSERT_TRUE(reader->Read(&m));
  EXPECT_EQ(m.version(), 1);
  // Read nothing while the uploading makes its whole journey, started only
  // now (so a slow start cannot skip steps), until the server has seen its
  // terminal status (it then stops polling it) and so has handed it on.
  AddJourney(37, v1::Uploading::PROCESSED, absl::Milliseconds(400));
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (absl::Now() < give_up &&
         (metrica_.GetUploading(kCounter, 37)->status() !=
              v1::Uploading::PROCESSED ||
          server_->stats().pollers != 0)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(server_->stats().pollers, 0u) << "the server never saw the end";
  std::vector<v1::WatchUploadingResponse> rest;
  while (reader->Read(&m)) rest.push_back(m);
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(rest.back().uploading().status(), v1::Uploading::PROCESSED);
  EXPECT_EQ(rest.back().version(), 5);
  // At most the one write that was in flight, then the latest state.
  EXPECT_LE(rest.size(), 2u);
}

}  // namespace
}  // namespace uploadwatch::testing
