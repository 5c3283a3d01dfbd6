// A caller who gives up on a Get or List (CallerWait::Leave), through the
// hub on simulated time against the in-memory Metrica (issue 13): the last
// waiter leaving abandons the flight, a waiter still there keeps it, and the
// caller's admission slot comes back.
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "service/common/status_details.h"
#include "service/core/uploading_hub.h"
#include "service/testing/fake_metrica_client.h"
#include "service/testing/hub_test_util.h"
#include "service/testing/simulated_time.h"

namespace uploadwatch {
namespace {

using ::uploadwatch::testing::CountingSubscriber;
using ::uploadwatch::testing::ErrorReason;
using ::uploadwatch::testing::FakeMetricaClient;
using ::uploadwatch::testing::kCounter;
using ::uploadwatch::testing::kServerToken;
using ::uploadwatch::testing::MakeUploading;
using ::uploadwatch::testing::SimulatedTime;


class CallerWaitTest : public ::testing::Test {
 protected:
  CallerWaitTest() : client_(&time_) {
    for (int64_t id = 1; id <= 5; ++id) client_.SetUploading(kCounter, MakeUploading(id));
    client_.set_hold(true);  // answers come when the test releases them
    hub_ = std::make_unique<UploadingHub>(&client_, &time_, &time_, &time_,
                                          UploadingHub::Options{});
  }
  ~CallerWaitTest() override {
    hub_->Shutdown(absl::UnavailableError("test over"));
    time_.RunPending();
  }

  // A Get whose answers land in `out`.
  CallerWait StartGet(const Credentials& c, int64_t id,
                      std::vector<absl::Status>* out) {
    return hub_->Get(c, kCounter, id, [out](absl::StatusOr<UploadingState> s) {
      out->push_back(s.status());
    });
  }
  static Credentials Caller(const std::string& who) {
    Credentials c(kServerToken);
    c.set_server_token(true);
    c.set_caller(who);
    return c;
  }
  // Releases every request still pending at the fake, then lets time run.
  void AnswerAll() {
    for (const FakeMetricaClient::Request& r : client_.requests()) {
      client_.Release(r.id);
    }
    time_.Advance(absl::Milliseconds(10));
  }

  SimulatedTime time_;
  FakeMetricaClient client_;
  std::unique_ptr<UploadingHub> hub_;
  const Credentials own_{"AQAAAAA-callers-own-token"};
};

TEST_F(CallerWaitTest, TheLastWaiterLeavingCancelsTheRequest) {
  std::vector<absl::Status> a, b;
  CallerWait wa = StartGet(own_, 1, &a);
  CallerWait wb = StartGet(own_, 1, &b);  // joins the same flight
  time_.RunPending();
  ASSERT_EQ(client_.count("get"), 1);
  wa.Leave();
  time_.RunPending();
  EXPECT_FALSE(client_.requests()[0].cancelled);  // b still waits
  wb.Leave();
  time_.RunPending();
  EXPECT_TRUE(client_.requests()[0].cancelled);  // nobody waits: called off
  EXPECT_EQ(hub_->stats().flights, 0u);
  AnswerAll();
  EXPECT_TRUE(a.empty());  // a caller who left is never answered
  EXPECT_TRUE(b.empty());
}

TEST_F(CallerWaitTest, AWaiterStillThereKeepsTheFlight) {
  std::vector<absl::Status> a, b;
  CallerWait wa = StartGet(own_, 2, &a);
  CallerWait wb = StartGet(own_, 2, &b);
  time_.RunPending();
  wa.Leave();  // the one whose call started the flight
  time_.RunPending();
  ASSERT_EQ(client_.count("get"), 1);
  EXPECT_FALSE(client_.requests()[0].cancelled);
  EXPECT_EQ(hub_->stats().flights, 1u);
  AnswerAll();
  EXPECT_TRUE(a.empty());
  ASSERT_EQ(b.size(), 1u);
  EXPECT_TRUE(b[0].ok()) << b[0];
  wb.Leave();  // after the answer: nothing to leave, nothing cancelled
  time_.RunPending();
  EXPECT_FALSE(client_.requests()[0].cancelled);
  EXPECT_EQ(client_.count("get"), 1);
}

TEST_F(CallerWaitTest, ALeftListIsCancelledToo) {
  ListParams params;
  params.counter_id = kCounter;
  std::vector<absl::Status> got;
  CallerWait w = hub_->List(
      own_, params, [&got](absl::StatusOr<v1::ListUploadingsResponse> l) {
        got.push_back(l.status());
      });
  time_.RunPending();
  ASSERT_EQ(client_.count("list"), 1);
  w.Leave();
  time_.RunPending();
  EXPECT_TRUE(client_.requests()[0].cancelled);
  AnswerAll();
  EXPECT_TRUE(got.empty());
  // The next List is not answered by the abandoned one: it asks again.
  hub_->List(own_, params, [&got](absl::StatusOr<v1::ListUploadingsResponse> l) {
    got.push_back(l.status());
  });
  AnswerAll();
  EXPECT_EQ(client_.count("list"), 2);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].ok()) << got[0];
}

// A caller on the server token holds one of its parallel slots per request
// it has at Metrica; giving up gives it back (else a caller who gives up
// three times would be refused for good).
TEST_F(CallerWaitTest, ACallerWhoLeavesGetsItsAdmissionSlotBack) {
  const Credentials x = Caller("x");
  std::vector<absl::Status> out;
  std::vector<CallerWait> waits;
  for (int64_t id = 1; id <= 3; ++id) waits.push_back(StartGet(x, id, &out));
  time_.RunPending();
  ASSERT_EQ(client_.count("get"), 3);  // a lone caller may use every slot
  StartGet(x, 4, &out);
  time_.RunPending();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(GetErrorInfo(out[0])->reason(), "CALLER_CONCURRENCY") << out[0];
  out.clear();
  waits[0].Leave();
  time_.RunPending();
  CallerWait fourth = StartGet(x, 4, &out);
  time_.RunPending();
  EXPECT_TRUE(out.empty());  // admitted, at Metrica now
  EXPECT_EQ(client_.count("get"), 4);
  AnswerAll();
  ASSERT_EQ(out.size(), 3u);  // 2, 3 and 4; never 1
  for (const absl::Status& s : out) EXPECT_TRUE(s.ok()) << s;
}

// A caller whose Get joined another caller's flight holds no slot: its
// leaving gives nothing back twice (the flight's owner keeps its own).
TEST_F(CallerWaitTest, AJoinerLeavingGivesNoSlotBack) {
  const Credentials x = Caller("x"), y = Caller("y");
  std::vector<absl::Status> out;
  std::vector<CallerWait> waits;
  for (int64_t id = 1; id <= 3; ++id) waits.push_back(StartGet(x, id, &out));
  CallerWait joiner = StartGet(y, 1, &out);  // costs nothing
  time_.RunPending();
  joiner.Leave();
  time_.RunPending();
  // x still holds all three slots: a fourth of x is refused.
  StartGet(x, 4, &out);
  time_.RunPending();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(GetErrorInfo(out[0])->reason(), "CALLER_CONCURRENCY") << out[0];
  EXPECT_FALSE(client_.requests()[0].cancelled);  // x still waits for 1
  AnswerAll();  // before `out` goes: the shutdown would fail them into it
  EXPECT_EQ(out.size(), 4u);
}

}  // namespace
}  // namespace uploadwatch
