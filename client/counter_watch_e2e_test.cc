// END-TO-END cases of the counter watch (UploadingClient::WatchCounter, the
// `uploadwatch watch COUNTER` CLI) against the REAL server on the Metrica
// simulator (part of //...).
#include <atomic>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "client/counter_view.h"
#include "client/testing/service_fixture.h"
#include "client/uploading_client.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace uploadwatch::client_testing {
namespace {

class CounterWatchE2eTest : public ServiceFixture {
 protected:
  UploadingClient Client(absl::Duration timeout = absl::Seconds(20)) {
    UploadingClient::Options options;
    options.token = kToken;
    options.watch_timeout = timeout;
    return UploadingClient(
        grpc::CreateChannel(address(), grpc::InsecureChannelCredentials()),
        options);
  }
  static v1::WatchUploadingsRequest Request(const std::string& token = "") {
    v1::WatchUploadingsRequest request;
    request.set_counter_id(kCounter);
    request.set_resume_token(token);
    return request;
  }
};

TEST_F(CounterWatchE2eTest, TheSnapshotAddsEveryUploadingThenSyncs) {
  for (int64_t id : {5, 6, 7}) {
    metrica_.AddUploading(kCounter, MakeUploading(id, v1::Uploading::PROCESSED));
  }
  CounterView view;
  std::vector<v1::UploadingEvent::Type> types;
  absl::Status status =
      Client().WatchCounter(Request(), [&](const v1::WatchUploadingsResponse& m) {
        for (const auto& e : m.events()) types.push_back(e.type());
        view.Apply(m);
        return !m.synced();
      });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_TRUE(view.synced());
  EXPECT_EQ(view.size(), 3u);
  EXPECT_THAT(types, ::testing::Each(v1::UploadingEvent::ADDED));
}

TEST_F(CounterWatchE2eTest, ANewUploadingIsAddedThenModifiedToItsTerminalStatus) {
  metrica_.AddUploading(kCounter, MakeUploading(5, v1::Uploading::PROCESSED));
  CounterView view;
  bool added = false;
  absl::Status status =
      Client().WatchCounter(Request(), [&](const v1::WatchUploadingsResponse& m) {
        view.Apply(m);
        if (m.synced() && !added) {
          added = true;
          AddJourney(21);
        }
        for (const auto& e : m.events()) {
          if (e.uploading().id() == 21 && e.type() == v1::UploadingEvent::MODIFIED &&
              e.uploading().status() == v1::Uploading::PROCESSED) {
            return false;
          }
        }
        return true;
      });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(view.size(), 2u);
}

class CounterWatchLifetimeE2eTest : public CounterWatchE2eTest {
 protected:
  CounterWatchLifetimeE2eTest() {
    // Long enough that the first message (the snapshot's List) comes before
    // the first rotation on any build (300 ms was not, under TSan), so the
    // client always has a token to resume with; the journey below still
    // spans several rotations.
    config_.watch_limits.max_lifetime = absl::Seconds(1);
    config_.log_sink = [this](absl::string_view line) {
      if (absl::StrContains(line, "rpc=WatchUploadings")) ++calls_;
    };
  }
  std::atomic<int> calls_{0};
};

TEST_F(CounterWatchLifetimeE2eTest, ResumesAcrossRotatedStreamsWithoutAReset) {
  metrica_.AddUploading(kCounter, MakeUploading(5, v1::Uploading::PROCESSED));
  AddJourney(21, v1::Uploading::PROCESSED, absl::Milliseconds(800));
  bool reset = false;
  absl::Status status =
      Client().WatchCounter(Request(), [&](const v1::WatchUploadingsResponse& m) {
        reset = reset || m.reset();
        for (const auto& e : m.events()) {
          if (e.uploading().id() == 21 &&
              e.uploading().status() == v1::Uploading::PROCESSED) {
            return false;
          }
        }
        return true;
      });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_GE(calls_, 2);  // the server did rotate the stream
  EXPECT_FALSE(reset);   // its own tokens are honoured
}

TEST_F(CounterWatchE2eTest, AWellFormedTokenFromAnotherServerGivesAReset) {
  metrica_.AddUploading(kCounter, MakeUploading(5, v1::Uploading::PROCESSED));
  std::string token;
  ASSERT_TRUE(Client()
                  .WatchCounter(Request(),
                                [&](const v1::WatchUploadingsResponse& m) {
                                  token = m.resume_token();
                                  return !m.synced();
                                })
                  .ok());
  // A restart: the same world, a new server process.
  server_->Shutdown(absl::ZeroDuration());
  StartServer();
  std::vector<bool> resets;
  ASSERT_TRUE(Client()
                  .WatchCounter(Request(token),
                                [&](const v1::WatchUploadingsResponse& m) {
                                  resets.push_back(m.reset());
                                  return !m.synced();
                                })
                  .ok());
  ASSERT_FALSE(resets.empty());
  EXPECT_TRUE(resets.front());
}

TEST_F(CounterWatchE2eTest, AMalformedTokenIsInvalidArgument) {
  int messages = 0;
  absl::Status status = Client().WatchCounter(
      Request("not a token"), [&](const v1::WatchUploadingsResponse&) {
        ++messages;
        return true;
      });
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(messages, 0);
}

}  // namespace
}  // namespace uploadwatch::client_testing
