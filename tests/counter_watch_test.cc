// WatchUploadings end to end: the real server on loopback against the HTTP
// Metrica simulator. One test per concern of the wiring; the framing's
// details are unit-tested in //service/grpc:counter_watch_test.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "service/common/status_details.h"
#include "tests/service_fixture.h"

namespace uploadwatch::testing {
namespace {

class CounterWatchTest : public ServiceTest {
 protected:
  struct Stream {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientReader<v1::WatchUploadingsResponse>> reader;
    std::vector<v1::WatchUploadingsResponse> messages;
    // The client's view: id -> status.
    std::map<int64_t, v1::Uploading::Status> view;
    bool Read() {
      v1::WatchUploadingsResponse m;
      if (!reader->Read(&m)) return false;
      if (m.reset()) view.clear();
      for (const auto& e : m.events()) view[e.uploading().id()] = e.uploading().status();
      messages.push_back(std::move(m));
      return true;
    }
    // Reads until a synced message (true) or the end of the stream.
    bool ReadToSynced() {
      while (Read()) {
        if (messages.back().synced()) return true;
      }
      return false;
    }
  };
  std::unique_ptr<Stream> Open(const std::string& resume_token = "",
                               const std::string& token = "",
                               absl::Duration timeout = absl::Seconds(20)) {
    auto s = std::make_unique<Stream>();
    s->ctx = Context(timeout, token);
    v1::WatchUploadingsRequest request;
    request.set_counter_id(kCounter);
    request.set_resume_token(resume_token);
    s->reader = stub_->WatchUploadings(s->ctx.get(), request);
    return s;
  }
  int ListCalls() {
    int n = 0;
    for (const auto& r : metrica_.requests()) {
      if (absl::EndsWith(r.path, "/uploadings")) ++n;
    }
    return n;
  }
};

TEST_F(CounterWatchTest, SnapshotThenLiveAddedAndModified) {
  metrica_.AddUploading(kCounter, MakeUploading(5, v1::Uploading::PROCESSED));
  metrica_.AddUploading(kCounter, MakeUploading(6, v1::Uploading::MATCHED));
  StartServer();
  auto s = Open();
  ASSERT_TRUE(s->ReadToSynced());
  EXPECT_EQ(s->view.size(), 2u);
  for (const auto& m : s->messages) {
    for (const auto& e : m.events()) {
      EXPECT_EQ(e.type(), v1::UploadingEvent::ADDED);
    }
    EXPECT_FALSE(m.resume_token().empty());
  }
  AddJourney(21);
  std::vector<v1::Uploading::Status> seen21;
  int added21 = 0;
  while (s->Read()) {
    for (const auto& e : s->messages.back().events()) {
      EXPECT_NE(e.uploading().id(), 5) << "a terminal uploading never changes";
      if (e.uploading().id() != 21) continue;
      if (e.type() == v1::UploadingEvent::ADDED) ++added21;
      if (!seen21.empty()) {
        EXPECT_EQ(e.type(), v1::UploadingEvent::MODIFIED);
        EXPECT_GT(e.uploading().status(), seen21.back()) << "only forward";
      }
      seen21.push_back(e.uploading().status());
    }
    if (!seen21.empty() && seen21.back() == v1::Uploading::PROCESSED) break;
  }
  EXPECT_EQ(added21, 1);
  ASSERT_FALSE(seen21.empty());
  EXPECT_EQ(seen21.back(), v1::Uploading::PROCESSED);
  EXPECT_EQ(s->view.size(), 3u);
}

TEST_F(CounterWatchTest, AResumeSendsOnlyWhatChangedAfterTheToken) {
  metrica_.AddUploading(kCounter, MakeUploading(5, v1::Uploading::PROCESSED));
  AddJourney(21, v1::Uploading::PROCESSED, absl::Milliseconds(300));
  StartServer();
  std::string token;
  {
    auto s = Open();
    ASSERT_TRUE(s->ReadToSynced());
    token = s->messages.back().resume_token();
    s->ctx->TryCancel();
  }
  // Another watcher keeps the counter polled (and the history growing)
  // while the first one is away.
  auto other = Open();
  ASSERT_TRUE(other->ReadToSynced());
  while (other->view[21] != v1::Uploading::PROCESSED && other->Read()) {
  }
  auto s = Open(token);
  ASSERT_TRUE(s->ReadToSynced());
  ASSERT_EQ(s->messages.size(), 1u);
  const auto& m = s->messages[0];
  EXPECT_FALSE(m.reset());
  ASSERT_EQ(m.events_size(), 1);  // 5 did not change
  EXPECT_EQ(m.events(0).uploading().id(), 21);
  EXPECT_EQ(m.events(0).type(), v1::UploadingEvent::MODIFIED);
  EXPECT_EQ(m.events(0).uploading().status(), v1::Uploading::PROCESSED);
}

TEST_F(CounterWatchTest, ATokenFromBeforeARestartGivesAResetThenTheSnapshot) {
  metrica_.AddUploading(kCounter, MakeUploading(5, v1::Uploading::PROCESSED));
  StartServer();
  std::string token;
  {
    auto s = Open();
    ASSERT_TRUE(s->ReadToSynced());
    token = s->messages.back().resume_token();
    s->ctx->TryCancel();
  }
  stub_.reset();
  server_->Shutdown(absl::ZeroDuration());
  StartServer();
  auto s = Open(token);
  ASSERT_TRUE(s->ReadToSynced());
  ASSERT_GE(s->messages.size(), 2u);
  EXPECT_TRUE(s->messages[0].reset());
  EXPECT_EQ(s->messages[0].events_size(), 0);
  EXPECT_EQ(s->view.size(), 1u);
}

TEST_F(CounterWatchTest, AMalformedTokenIsInvalidArgumentBeforeAnyMessage) {
  StartServer();
  auto s = Open("not a token");
  EXPECT_FALSE(s->Read());
  grpc::Status status = s->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "resume_token"))
      << status.error_message();
  // The server logs the call in OnDone, which may follow the client's status.
  bool logged = false;
  for (absl::Time end = absl::Now() + absl::Seconds(5);
       !logged && absl::Now() < end; absl::SleepFor(absl::Milliseconds(10))) {
    for (const auto& line : LogLines()) {
      logged = logged || (absl::StrContains(line, "rpc=WatchUploadings") &&
                          absl::StrContains(line, "INVALID_ARGUMENT"));
    }
  }
  EXPECT_TRUE(logged);
}

TEST_F(CounterWatchTest, AHundredCounterWatchersCostOnePollPerInterval) {
  config_.hub.poll_interval = absl::Milliseconds(500);
  for (int64_t id = 1; id <= 20; ++id) {
    metrica_.AddUploading(kCounter, MakeUploading(id, v1::Uploading::MATCHED));
  }
  StartServer();
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < 100; ++i) streams.push_back(Open());
  for (auto& s : streams) {
    ASSERT_TRUE(s->ReadToSynced());
    EXPECT_EQ(s->view.size(), 20u);
  }
  // And a WatchUploading of one of them shares the same polls.
  OpenWatch single = Watch(3);
  const int before = ListCalls();
  const int gets_before = UpstreamCallsFor(3);
  absl::SleepFor(absl::Milliseconds(2600));
  const int lists = ListCalls() - before;
  // Five intervals (a sixth may be under way); a watcher each would be 500.
  EXPECT_GE(lists, 4);
  EXPECT_LE(lists, 6);
  EXPECT_EQ(UpstreamCallsFor(3), gets_before);  // no Get: the list serves it
  single.ctx->TryCancel();
  for (auto& s : streams) s->ctx->TryCancel();
}

TEST_F(CounterWatchTest, TokensAreIsolatedAndAPermanentErrorEndsTheStream) {
  metrica_.AddUploading(kCounter, MakeUploading(5, v1::Uploading::PROCESSED));
  metrica_.AddToken("tenant-b-token");  // known, but no access to kCounter
  StartServer();
  auto a = Open();
  ASSERT_TRUE(a->ReadToSynced());
  auto b = Open("", "tenant-b-token");
  EXPECT_FALSE(b->ReadToSynced());
  EXPECT_TRUE(b->view.empty());  // never shown tenant A's uploadings
  grpc::Status status = b->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  auto info = GetErrorInfo(FromGrpcStatus(status));
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "ACCESS_DENIED");
  // A's stream goes on: a new uploading reaches it.
  AddJourney(30);
  while (a->view.count(30) == 0 && a->Read()) {
  }
  EXPECT_EQ(a->view.count(30), 1u);
}

TEST_F(CounterWatchTest, TheMaxLifetimeEndsTheStreamWithUnavailable) {
  // Long enough for the snapshot to arrive on any build (400 ms was not
  // under TSan on a loaded machine): the stream must work, then end.
  config_.watch_limits.max_lifetime = absl::Seconds(2);
  StartServer();
  auto s = Open();
  ASSERT_TRUE(s->ReadToSynced());
  while (s->Read()) {
  }
  grpc::Status status = s->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "resume_token"));
}

TEST_F(CounterWatchTest, ALifetimeBeforeTheSnapshotEndsTheStreamRightAfterIt) {
  // The snapshot's List takes 800 ms; the lifetime is 90-100 % of 200 ms.
  // Ending the stream at its lifetime would leave the client no token (and
  // every client gives up on an UNAVAILABLE before any message): it ends
  // right after the synced message instead.
  config_.watch_limits.max_lifetime = absl::Milliseconds(200);
  StartServer();
  FakeMetrica::Fault slow;
  slow.path_substring = "/uploadings";
  slow.delay = absl::Milliseconds(800);
  metrica_.InjectFault(slow);
  auto s = Open();
  ASSERT_TRUE(s->ReadToSynced());
  EXPECT_FALSE(s->messages.back().resume_token().empty());
  EXPECT_FALSE(s->Read());  // nothing after it
  grpc::Status status = s->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "resume_token"))
      << status.error_message();
}

TEST_F(CounterWatchTest, CounterWatchesCountAgainstThePerConnectionCap) {
  config_.watch_limits.max_per_connection = 2;
  StartServer();
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a->ReadToSynced());
  ASSERT_TRUE(b->ReadToSynced());
  auto c = Open();
  EXPECT_FALSE(c->Read());
  EXPECT_EQ(c->reader->Finish().error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

}  // namespace
}  // namespace uploadwatch::testing
