// CounterWatch (the logic of WatchUploadings) on simulated time, against the
// real UploadingHub over FakeMetricaClient: snapshot and chunking, ADDED and
// MODIFIED, no duplicates, resume, resets, malformed tokens, bookmarks,
// coalescing for a slow reader, errors, and the cost of many watchers.
#include "service/grpc/counter_watch.h"

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/wire_format_lite.h"
#include "gtest/gtest.h"
#include "service/core/change_history.h"
#include "service/core/resume_token.h"
#include "service/testing/fake_metrica_client.h"
#include "service/testing/fixed_random.h"
#include "service/testing/simulated_time.h"

namespace uploadwatch {
namespace {

using ::metrika::offline_conversions::v1::UploadingEvent;
using ::uploadwatch::testing::FakeMetricaClient;
using ::uploadwatch::testing::FixedRandom;
using ::uploadwatch::testing::SimulatedTime;
using Message = CounterWatch::Message;

constexpr int32_t kCounter = 2215573;
constexpr char kToken[] = "AQAAAAA-counter-watch-test-token";
constexpr absl::Duration kInterval = absl::Seconds(30);

// Records what the watch writes; the test acknowledges writes (a slow
// reader simply does not).
class FakeSink : public CounterWatch::Sink {
 public:
  void Write(const Message* message,
             const std::vector<std::shared_ptr<const std::string>>& events)
      override {
    absl::MutexLock lock(&mu_);
    EXPECT_FALSE(unacked_) << "a second write while one is in flight";
    // What the client gets: the wire form, parsed (live events follow the
    // message as entries of `events`, from their serialized bytes).
    std::string bytes = message->SerializeAsString();
    {
      google::protobuf::io::StringOutputStream out(&bytes);
      google::protobuf::io::CodedOutputStream coded(&out);
      for (const std::shared_ptr<const std::string>& event : events) {
        google::protobuf::internal::WireFormatLite::WriteBytes(
            Message::kEventsFieldNumber, *event, &coded);
      }
    }
    Message wire;
    EXPECT_TRUE(wire.ParseFromString(bytes));
    messages_.push_back(std::move(wire));
    unacked_ = true;
  }
  void Finish(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    EXPECT_FALSE(finished_.has_value()) << "finished twice";
    finished_ = status;
  }
  bool TakeUnacked() {
    absl::MutexLock lock(&mu_);
    const bool was = unacked_;
    unacked_ = false;
    return was;
  }
  std::vector<Message> messages() {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  std::optional<absl::Status> finished() {
    absl::MutexLock lock(&mu_);
    return finished_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Message> messages_;
  bool unacked_ = false;
  std::optional<absl::Status> finished_;
};

struct Stream {
  FakeSink sink;
  std::unique_ptr<CounterWatch> watch;
  bool slow = false;  // does not acknowledge writes
};

v1::Uploading Make(int64_t id, v1::Uploading::Status status,
                   v1::Uploading::Type type = v1::Uploading::TYPE_UNSPECIFIED) {
  v1::Uploading u;
  u.set_id(id);
  u.set_status(status);
  u.set_type(type);
  return u;
}

std::vector<std::pair<UploadingEvent::Type, int64_t>> Events(const Message& m) {
  std::vector<std::pair<UploadingEvent::Type, int64_t>> out;
  for (const auto& e : m.events()) out.emplace_back(e.type(), e.uploading().id());
  // Within a round, events come in the order Metrica listed them, which is
  // not relied on: compare by id.
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  return out;
}

// Ownership on a replica that polls nothing (another one holds the lease).
PollOwnership* NobodyPolls() {
  class Nobody : public PollOwnership {
   public:
    void Want(const std::string&) override {}
    void Unwant(const std::string&) override {}
    bool ShouldPoll(const std::string&) const override { return false; }
  };
  static Nobody* nobody = new Nobody();  // outlives every hub
  return nobody;
}

// What Events() gives for a message of one MODIFIED event of `id`.
std::vector<std::pair<UploadingEvent::Type, int64_t>> OneModified(int64_t id) {
  return {{UploadingEvent::MODIFIED, id}};
}

// SharedChanges of a test: a stream of entries the test appends, Advance
// over them as the bridge does, and catch-ups the test answers.
class FakeSharedChanges : public SharedChanges {
 public:
  // Ids "<n>-0", n growing.
  void Append(int64_t n, const v1::Uploading& u, int64_t version) {
    entries_.push_back(Entry{absl::StrCat(n, "-0"), u.id(), version,
                             SharedChanges::ContentHash(u)});
  }
  std::optional<std::string> Advance(
      const WatchTarget&, const std::string& from,
      absl::FunctionRef<bool(const Entry&)> covers) override {
    std::optional<std::string> at;
    if (!from.empty()) at = from;
    for (const Entry& e : entries_) {
      if (!from.empty() && N(e.id) <= N(from)) continue;
      if (!covers(e)) break;
      at = e.id;
    }
    return at;
  }
  void CatchUp(const WatchTarget&, const std::string& after, absl::Time,
               CatchUpCallback done) override {
    asked_after = after;
    pending = std::move(done);
  }
  void Listen(const WatchTarget&, Listener* l) override { listener = l; }
  bool Reading(const WatchTarget&) const override { return reading; }
  void Unlisten(Listener* l) override {
    if (listener == l) listener = nullptr;
  }

  bool reading = true;  // false: degraded, nothing is relayed
  std::string asked_after;
  CatchUpCallback pending;
  Listener* listener = nullptr;

 private:
  static int64_t N(const std::string& id) {
    int64_t n = 0;
    EXPECT_TRUE(absl::SimpleAtoi(id.substr(0, id.find('-')), &n)) << id;
    return n;
  }
  std::vector<Entry> entries_;
};

class CounterWatchTest : public ::testing::Test {
 protected:
  CounterWatchTest() : client_(&time_) {
    client_.set_latency(absl::ZeroDuration());
    hub_options_.poll_interval = kInterval;
    hub_options_.random = &random_;
    options_.bookmark_interval = absl::Hours(1);
  }
  void TearDown() override {
    for (auto& s : streams_) s->watch->Stop();
    if (hub_ != nullptr) hub_->Shutdown(absl::UnavailableError("test over"));
    time_.RunPending();
    streams_.clear();
    hub_.reset();
  }
  void StartHub() {
    hub_ = std::make_unique<UploadingHub>(&client_, &time_, &time_, &time_,
                                          hub_options_);
  }
  // A format 2 token of this caller's BASIC watch of kCounter at
  // `stream_id`, as another replica would issue it.
  std::string SharedToken(absl::string_view stream_id) {
    absl::StatusOr<ResumeToken> t =
        SharedResumeToken(FingerprintHash(credentials_.fingerprint()),
                          kCounter, v1::Uploading::BASIC, stream_id);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? EncodeResumeToken(*t) : "";
  }
  Stream& Open(const std::string& token = "",
               v1::Uploading::Type type = v1::Uploading::TYPE_UNSPECIFIED,
               absl::Status* status = nullptr) {
    if (hub_ == nullptr) StartHub();
    auto s = std::make_unique<Stream>();
    s->watch = std::make_unique<CounterWatch>(hub_.get(), &history_, &time_,
                                              &time_, &s->sink, options_);
    absl::Status st = s->watch->Start(credentials_, kCounter, type, token);
    if (status != nullptr) {
      *status = st;
    } else {
      EXPECT_TRUE(st.ok()) << st;
    }
    streams_.push_back(std::move(s));
    return *streams_.back();
  }
  // Runs what is due now and acknowledges every write of a non-slow stream.
  void Settle() {
    for (int i = 0; i < 100; ++i) {
      time_.RunPending();
      bool acked = false;
      for (auto& s : streams_) {
        if (!s->slow && s->sink.TakeUnacked()) {
          s->watch->WriteDone(true);
          acked = true;
        }
      }
      if (!acked && time_.NextDue() > time_.Now()) return;
    }
  }
  void Advance(absl::Duration d) {
    time_.Advance(d);
    Settle();
  }
  void Put(const v1::Uploading& u) { client_.SetUploading(kCounter, u); }
  // A watch of a replica on one Redis (shared_): uploadings 1 and 2
  // UPLOADED in Metrica and in the changes stream (entries 1-0, 2-0), its
  // snapshot written.
  Stream& OpenSharedOnTwo() {
    options_.shared = &shared_;
    Put(Make(1, v1::Uploading::UPLOADED));
    Put(Make(2, v1::Uploading::UPLOADED));
    shared_.Append(1, Make(1, v1::Uploading::UPLOADED), 1);
    shared_.Append(2, Make(2, v1::Uploading::UPLOADED), 1);
    Stream& s = Open();
    Settle();
    return s;
  }
  // The token of `s`'s last message (a default one when it does not
  // decode, which fails the test).
  static ResumeToken LastToken(Stream& s) {
    absl::StatusOr<ResumeToken> t =
        DecodeResumeToken(s.sink.messages().back().resume_token());
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : ResumeToken{};
  }

  SimulatedTime time_;
  FakeMetricaClient client_;
  FixedRandom random_;
  UploadingHub::Options hub_options_;
  CounterWatch::Options options_;
  LocalChangeHistory history_{&time_, {}, /*instance=*/1234};
  // options_.shared of the tests that set it (outlives their watches).
  FakeSharedChanges shared_;
  const Credentials credentials_{kToken};
  std::unique_ptr<UploadingHub> hub_;
  std::vector<std::unique_ptr<Stream>> streams_;
};

TEST_F(CounterWatchTest, TheSnapshotAddsEveryUploadingInChunksThenSyncs) {
  for (int64_t id = 1; id <= 1200; ++id) Put(Make(id, v1::Uploading::UPLOADED));
  options_.max_events_per_message = 500;
  Stream& s = Open();
  Settle();
  const std::vector<Message> m = s.sink.messages();
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].events_size(), 500);
  EXPECT_EQ(m[1].events_size(), 500);
  EXPECT_EQ(m[2].events_size(), 200);
  EXPECT_FALSE(m[0].synced());
  EXPECT_FALSE(m[1].synced());
  EXPECT_TRUE(m[2].synced());
  std::set<int64_t> ids;
  for (const Message& msg : m) {
    EXPECT_FALSE(msg.reset());
    EXPECT_FALSE(msg.resume_token().empty());
    for (const auto& [type, id] : Events(msg)) {
      EXPECT_EQ(type, UploadingEvent::ADDED);
      ids.insert(id);
    }
  }
  EXPECT_EQ(ids.size(), 1200u);
  // The snapshot's page and the poll round's are one request.
  EXPECT_EQ(client_.count("list"), 1);
  EXPECT_FALSE(s.sink.finished().has_value());
}

// On a replica that does not poll the counter (another one holds it), a
// counter watch's snapshot shows what the holder relayed since, not the list
// cache's older copy of it.
TEST_F(CounterWatchTest, ASnapshotOnANonHolderShowsTheRelayedStates) {
  hub_options_.ownership = NobodyPolls();
  hub_options_.cache_ttl = absl::Seconds(5);
  Put(Make(1, v1::Uploading::UPLOADED));
  Put(Make(2, v1::Uploading::UPLOADED));
  Stream& first = Open();
  Settle();
  ASSERT_FALSE(first.sink.messages().empty());
  EXPECT_EQ(client_.count("list"), 1);  // its own snapshot, no poll
  // The holder relays a change; Metrica has it too, but the list cache not.
  Put(Make(1, v1::Uploading::PROCESSED));
  hub_->ObserveRelayed(UploadingKey{credentials_.fingerprint(), kCounter, 1},
                       Make(1, v1::Uploading::PROCESSED), 2, time_.Now());
  Advance(absl::Seconds(1));
  Stream& second = Open();
  Settle();
  EXPECT_EQ(client_.count("list"), 1);  // the cached page
  const std::vector<Message> m = second.sink.messages();
  ASSERT_FALSE(m.empty());
  ASSERT_TRUE(m.back().synced());
  std::map<int64_t, v1::Uploading::Status> shown;
  for (const Message& msg : m) {
    for (const auto& e : msg.events()) {
      shown[e.uploading().id()] = e.uploading().status();
    }
  }
  EXPECT_EQ(shown[1], v1::Uploading::PROCESSED);
  EXPECT_EQ(shown[2], v1::Uploading::UPLOADED);
  // The first watch got the relay live, once.
  int modified = 0;
  for (const Message& msg : first.sink.messages()) {
    for (const auto& e : msg.events()) {
      if (e.type() == UploadingEvent::MODIFIED) {
        EXPECT_EQ(e.uploading().id(), 1);
        ++modified;
      }
    }
  }
  EXPECT_EQ(modified, 1);
}

TEST_F(CounterWatchTest, AnEmptyCounterSyncsAtOnce) {
  Stream& s = Open();
  Settle();
  ASSERT_EQ(s.sink.messages().size(), 1u);
  EXPECT_TRUE(s.sink.messages()[0].synced());
  EXPECT_EQ(s.sink.messages()[0].events_size(), 0);
}

TEST_F(CounterWatchTest, OneMessagePerRoundAddedAndModifiedNeverADuplicate) {
  Put(Make(1, v1::Uploading::UPLOADED));
  Stream& s = Open();
  Settle();
  ASSERT_EQ(s.sink.messages().size(), 1u);
  Put(Make(1, v1::Uploading::MATCHED));
  Put(Make(2, v1::Uploading::UPLOADED));
  Advance(kInterval);
  std::vector<Message> m = s.sink.messages();
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(Events(m[1]),
            (std::vector<std::pair<UploadingEvent::Type, int64_t>>{
                {UploadingEvent::MODIFIED, 1}, {UploadingEvent::ADDED, 2}}));
  EXPECT_FALSE(m[1].synced());
  // Nothing changes: rounds go on, nothing is sent.
  Advance(kInterval);
  Advance(kInterval);
  EXPECT_EQ(s.sink.messages().size(), 2u);
  // A terminal status is a MODIFIED like any other, and the watch goes on.
  Put(Make(1, v1::Uploading::PROCESSED));
  Advance(kInterval);
  m = s.sink.messages();
  ASSERT_EQ(m.size(), 3u);
  ASSERT_EQ(m[2].events_size(), 1);
  EXPECT_EQ(m[2].events(0).type(), UploadingEvent::MODIFIED);
  EXPECT_EQ(m[2].events(0).uploading().status(), v1::Uploading::PROCESSED);
  // Any field counts, not only the status.
  v1::Uploading commented = Make(2, v1::Uploading::UPLOADED);
  commented.set_comment("now with a comment");
  Put(commented);
  Advance(kInterval);
  m = s.sink.messages();
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(Events(m[3]),
            (std::vector<std::pair<UploadingEvent::Type, int64_t>>{
                {UploadingEvent::MODIFIED, 2}}));
  EXPECT_FALSE(s.sink.finished().has_value());
}

absl::Time TimeOf(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

std::vector<std::pair<v1::Uploading::Status, absl::Time>> History(
    const UploadingEvent& e) {
  std::vector<std::pair<v1::Uploading::Status, absl::Time>> out;
  for (const auto& o : e.status_history()) {
    out.emplace_back(o.status(), TimeOf(o.observe_time()));
  }
  return out;
}

TEST_F(CounterWatchTest, EventsCarryTheStatusesTheServerObservedWithTheirTimes) {
  const absl::Time t0 = time_.Now();
  Put(Make(1, v1::Uploading::UPLOADED));
  Stream& s = Open();
  Settle();
  ASSERT_EQ(s.sink.messages().size(), 1u);
  ASSERT_EQ(s.sink.messages()[0].events_size(), 1);
  EXPECT_EQ(History(s.sink.messages()[0].events(0)),
            (std::vector<std::pair<v1::Uploading::Status, absl::Time>>{
                {v1::Uploading::UPLOADED, t0}}));
  Advance(kInterval);  // no change: no message
  v1::Uploading linked = Make(1, v1::Uploading::UPLOADED);
  linked.set_linked_quantity(7);  // not a status change: no new entry
  Put(linked);
  Advance(kInterval);
  Put(Make(1, v1::Uploading::MATCHED));
  Advance(kInterval);
  Put(Make(1, v1::Uploading::PROCESSED));
  Advance(kInterval);
  const std::vector<Message> m = s.sink.messages();
  ASSERT_EQ(m.size(), 4u);
  const UploadingEvent& last = m[3].events(0);
  EXPECT_EQ(History(last),
            (std::vector<std::pair<v1::Uploading::Status, absl::Time>>{
                {v1::Uploading::UPLOADED, t0},
                {v1::Uploading::MATCHED, t0 + 3 * kInterval},
                {v1::Uploading::PROCESSED, t0 + 4 * kInterval}}));
  // A fresh watcher gets the same history in its snapshot.
  Stream& later = Open();
  Settle();
  ASSERT_FALSE(later.sink.messages().empty());
  EXPECT_EQ(History(later.sink.messages().back().events(0)), History(last));
}

TEST_F(CounterWatchTest, CheckTimesSayWhenEveryHeldStateWasLastConfirmed) {
  options_.bookmark_interval = absl::Seconds(100);
  const absl::Time t0 = time_.Now();
  Put(Make(1, v1::Uploading::UPLOADED));
  Put(Make(2, v1::Uploading::UPLOADED));
  Stream& s = Open();
  Settle();
  ASSERT_EQ(s.sink.messages().size(), 1u);
  const Message snapshot = s.sink.messages()[0];
  EXPECT_EQ(TimeOf(snapshot.check_time()), t0);
  for (const auto& e : snapshot.events()) EXPECT_EQ(TimeOf(e.check_time()), t0);
  // A change of one: its event is checked now; the message's check_time is
  // the round's, since the round confirmed the other one too.
  Advance(kInterval);
  Put(Make(1, v1::Uploading::MATCHED));
  Advance(kInterval);
  std::vector<Message> m = s.sink.messages();
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(TimeOf(m[1].events(0).check_time()), t0 + 2 * kInterval);
  EXPECT_EQ(TimeOf(m[1].check_time()), t0 + 2 * kInterval);
  // Rounds that change nothing send nothing; the next bookmark says how
  // recent the last confirmation is.
  Advance(kInterval);
  Advance(kInterval);
  Advance(kInterval);  // t0 + 150 s: rounds at 90, 120, 150
  EXPECT_EQ(s.sink.messages().size(), 2u);
  Advance(absl::Seconds(10));  // 100 s after the last message
  m = s.sink.messages();
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[2].events_size(), 0);
  EXPECT_EQ(TimeOf(m[2].check_time()), t0 + 5 * kInterval);
}

// On a replica that does not poll the counter, the holder's confirmations
// (UploadingHub::ConfirmRelayed, from its changes stream) move check_time as
// this replica's own rounds would -- only for the state they name.
TEST_F(CounterWatchTest, ANonHoldersCheckTimeMovesWithTheHoldersConfirmations) {
  hub_options_.ownership = NobodyPolls();
  options_.bookmark_interval = absl::Seconds(100);
  const absl::Time t0 = time_.Now();
  Put(Make(1, v1::Uploading::UPLOADED));
  Put(Make(2, v1::Uploading::UPLOADED));
  Stream& s = Open();
  Settle();
  ASSERT_EQ(s.sink.messages().size(), 1u);
  EXPECT_EQ(TimeOf(s.sink.messages()[0].check_time()), t0);
  const UploadingKey one{credentials_.fingerprint(), kCounter, 1};
  const UploadingKey two{credentials_.fingerprint(), kCounter, 2};
  Advance(kInterval);
  const absl::Time t1 = time_.Now();
  // The state of 1 it holds; for 2 another state (a change not read here
  // yet): says nothing of what this replica holds.
  hub_->ConfirmRelayed(one, SharedChanges::ContentHash(Make(1, v1::Uploading::UPLOADED)), t1);
  hub_->ConfirmRelayed(two, SharedChanges::ContentHash(Make(2, v1::Uploading::MATCHED)), t1);
  Advance(absl::Seconds(100));
  std::vector<Message> m = s.sink.messages();
  ASSERT_EQ(m.size(), 2u);  // the bookmark
  EXPECT_EQ(TimeOf(m[1].check_time()), t0) << "2 was not confirmed";
  const absl::Time t2 = time_.Now();
  hub_->ConfirmRelayed(two, SharedChanges::ContentHash(Make(2, v1::Uploading::UPLOADED)), t2);
  Advance(absl::Seconds(100));
  m = s.sink.messages();
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[2].events_size(), 0);  // a confirmation is no change
  EXPECT_EQ(TimeOf(m[2].check_time()), t1);  // both confirmed, 1 at t1
  EXPECT_EQ(client_.count("list"), 1);  // its snapshot only: no polls here
}

TEST_F(CounterWatchTest, AResumeWithinTheHistorySendsOnlyTheLatestChanges) {
  Put(Make(1, v1::Uploading::UPLOADED));
  Put(Make(2, v1::Uploading::UPLOADED));
  Stream& a = Open();
  Settle();
  const std::string token = a.sink.messages().back().resume_token();
  a.watch->Stop();
  // While nobody watches via this token, another watcher sees two changes
  // of 1 and a new 3.
  Open();
  Settle();
  Put(Make(1, v1::Uploading::MATCHED));
  Advance(kInterval);
  Put(Make(1, v1::Uploading::PROCESSED));
  Put(Make(3, v1::Uploading::UPLOADED));
  Advance(kInterval);
  Stream& b = Open(token);
  Settle();
  const std::vector<Message> m = b.sink.messages();
  ASSERT_GE(m.size(), 1u);
  EXPECT_FALSE(m[0].reset());
  EXPECT_TRUE(m[0].synced());
  EXPECT_EQ(Events(m[0]),
            (std::vector<std::pair<UploadingEvent::Type, int64_t>>{
                {UploadingEvent::MODIFIED, 1}, {UploadingEvent::ADDED, 3}}));
  for (const auto& e : m[0].events()) {
    if (e.uploading().id() == 1) {
      EXPECT_EQ(e.uploading().status(), v1::Uploading::PROCESSED);
    }
  }
  // The round its subscription started repeats nothing it was sent.
  EXPECT_EQ(m.size(), 1u);
  // And it goes on live.
  Put(Make(2, v1::Uploading::MATCHED));
  Advance(kInterval);
  ASSERT_EQ(b.sink.messages().size(), 2u);
  EXPECT_EQ(Events(b.sink.messages()[1]),
            (std::vector<std::pair<UploadingEvent::Type, int64_t>>{
                {UploadingEvent::MODIFIED, 2}}));
}

TEST_F(CounterWatchTest, ATokenOfAnotherInstanceGivesAResetThenTheSnapshot) {
  Put(Make(1, v1::Uploading::UPLOADED));
  ResumeToken foreign;
  foreign.instance = 999;  // another process
  foreign.fingerprint_hash = FingerprintHash(credentials_.fingerprint());
  foreign.counter_id = kCounter;
  foreign.type = v1::Uploading::BASIC;
  foreign.sequence = 1;
  Stream& s = Open(EncodeResumeToken(foreign));
  Settle();
  const std::vector<Message> m = s.sink.messages();
  ASSERT_EQ(m.size(), 2u);
  EXPECT_TRUE(m[0].reset());
  EXPECT_EQ(m[0].events_size(), 0);
  EXPECT_FALSE(m[1].reset());
  EXPECT_TRUE(m[1].synced());
  EXPECT_EQ(Events(m[1]),
            (std::vector<std::pair<UploadingEvent::Type, int64_t>>{
                {UploadingEvent::ADDED, 1}}));
}

// A format 2 token (a changes stream position, issue 14) is well-formed, but
// this build has no shared history to catch up from: a reset and the
// snapshot, never INVALID_ARGUMENT and never a catch-up from a sequence.
TEST_F(CounterWatchTest, AStreamPositionTokenGivesAResetThenTheSnapshot) {
  Put(Make(1, v1::Uploading::UPLOADED));
  absl::Status status;
  Stream& s = Open(SharedToken("1764620000123-0"),
                   v1::Uploading::TYPE_UNSPECIFIED, &status);
  Settle();
  ASSERT_TRUE(status.ok()) << status;
  const std::vector<Message> m = s.sink.messages();
  ASSERT_EQ(m.size(), 2u);
  EXPECT_TRUE(m[0].reset());
  EXPECT_TRUE(m[1].synced());
  EXPECT_EQ(Events(m[1]),
            (std::vector<std::pair<UploadingEvent::Type, int64_t>>{
                {UploadingEvent::ADDED, 1}}));
  // Its own tokens stay this process's (format 1).
  absl::StatusOr<ResumeToken> issued = DecodeResumeToken(m[1].resume_token());
  ASSERT_TRUE(issued.ok());
  EXPECT_EQ(issued->format, ResumeToken::kFormat);
}

UploadingState StateOf(const v1::Uploading& u, int64_t version, absl::Time t) {
  return UploadingState{u, version, t, t, {StatusSeen{u.status(), "", t}}};
}

// Replicas on one Redis: the token names a stream position as soon as what
// the watch sent covers the stream, and moves on with it -- in a live
// message, or in a bookmark after entries the client already holds.
TEST_F(CounterWatchTest, TokensNameTheSharedPositionWhatWasSentCovers) {
  FakeSharedChanges& shared = shared_;
  Stream& s = OpenSharedOnTwo();
  auto token = [&] { return LastToken(s); };
  ASSERT_TRUE(s.sink.messages().back().synced());
  EXPECT_EQ(token().format, ResumeToken::kSharedFormat);
  EXPECT_EQ(StreamIdOf(token()), "2-0");
  EXPECT_EQ(token().instance, 1234u);  // exact on this replica too
  // An entry the client does not hold yet: the position stays.
  shared.Append(3, Make(3, v1::Uploading::UPLOADED), 1);
  ASSERT_NE(shared.listener, nullptr);
  shared.listener->OnStreamRead();
  Advance(absl::Milliseconds(10));
  const size_t before = s.sink.messages().size();
  EXPECT_EQ(before, 1u);  // no bookmark: nothing to move to
  // It comes: the live message covers it.
  Put(Make(3, v1::Uploading::UPLOADED));
  Advance(kInterval);
  ASSERT_EQ(s.sink.messages().size(), before + 1);
  EXPECT_EQ(Events(s.sink.messages().back()),
            (std::vector<std::pair<UploadingEvent::Type, int64_t>>{
                {UploadingEvent::ADDED, 3}}));
  EXPECT_EQ(StreamIdOf(token()), "3-0");
  // A state it holds entered the stream again (another holder's relay):
  // a bookmark, no event, moves the token past it.
  shared.Append(4, Make(1, v1::Uploading::UPLOADED), 1);
  shared.listener->OnStreamRead();
  Advance(absl::Milliseconds(10));
  ASSERT_EQ(s.sink.messages().size(), before + 2);
  EXPECT_EQ(s.sink.messages().back().events_size(), 0);
  EXPECT_EQ(StreamIdOf(token()), "4-0");
}

// Replicas on one Redis: a live message waits until its states' own
// entries are read here, so that its token covers them (a client resuming
// with it elsewhere is not shown them again); a state whose entry never
// comes goes after max_entry_wait with the position reached.
TEST_F(CounterWatchTest, ALiveMessageWaitsForItsStatesEntriesInTheStream) {
  FakeSharedChanges& shared = shared_;
  options_.max_entry_wait = 2 * kInterval;  // longer than a poll interval
  Stream& s = OpenSharedOnTwo();
  ASSERT_EQ(s.sink.messages().size(), 1u);
  ASSERT_NE(shared.listener, nullptr);
  auto token = [&] { return StreamIdOf(LastToken(s)); };
  EXPECT_EQ(token(), "2-0");
  // The poll sees a change; its entry is not read yet: nothing written.
  Put(Make(2, v1::Uploading::MATCHED));
  Advance(kInterval);
  EXPECT_EQ(s.sink.messages().size(), 1u);
  // Another entry comes first (a state the client holds, relayed again):
  // still waiting.
  shared.Append(3, Make(1, v1::Uploading::UPLOADED), 1);
  shared.listener->OnStreamRead();
  Advance(absl::Milliseconds(10));
  EXPECT_EQ(s.sink.messages().size(), 1u);
  // Its own entry: the message goes, and its token covers it.
  shared.Append(4, Make(2, v1::Uploading::MATCHED), 2);
  shared.listener->OnStreamRead();
  Advance(absl::Milliseconds(10));
  ASSERT_EQ(s.sink.messages().size(), 2u);
  EXPECT_EQ(Events(s.sink.messages().back()), OneModified(2));
  EXPECT_EQ(token(), "4-0");
  // A change whose entry never comes (the lease moved, say): it goes once
  // the wait is over, with the position reached.
  Put(Make(1, v1::Uploading::MATCHED));
  Advance(kInterval);
  EXPECT_EQ(s.sink.messages().size(), 2u);
  Advance(2 * kInterval);
  ASSERT_EQ(s.sink.messages().size(), 3u);
  EXPECT_EQ(Events(s.sink.messages().back()), OneModified(1));
  EXPECT_EQ(token(), "4-0");
  // The next one waits again.
  Put(Make(1, v1::Uploading::PROCESSED));
  Advance(kInterval);
  EXPECT_EQ(s.sink.messages().size(), 3u);
}

// Degraded (Redis unreachable): nothing is relayed, nothing to wait for.
TEST_F(CounterWatchTest, WithoutTheSharedStreamALiveMessageGoesAtOnce) {
  FakeSharedChanges& shared = shared_;
  options_.shared = &shared;
  options_.max_entry_wait = 2 * kInterval;
  Put(Make(1, v1::Uploading::UPLOADED));
  shared.Append(1, Make(1, v1::Uploading::UPLOADED), 1);
  Stream& s = Open();
  Settle();
  ASSERT_EQ(s.sink.messages().size(), 1u);
  shared.reading = false;
  Put(Make(1, v1::Uploading::MATCHED));
  Advance(kInterval);
  ASSERT_EQ(s.sink.messages().size(), 2u);
  EXPECT_EQ(Events(s.sink.messages().back()), OneModified(1));
}

// What the client holds beyond the position (sent before its entry was read
// here: in degraded mode, or after the entry wait) travels in the token, and
// leaves it once the position passes the state's entry.
TEST_F(CounterWatchTest, ATokenListsWhatTheClientHoldsBeyondItsPosition) {
  FakeSharedChanges& shared = shared_;
  Stream& s = OpenSharedOnTwo();
  auto token = [&] { return LastToken(s); };
  ASSERT_EQ(s.sink.messages().size(), 1u);
  EXPECT_EQ(StreamIdOf(token()), "2-0");
  EXPECT_TRUE(token().held.empty());
  shared.reading = false;  // Redis unreachable: written at once
  Put(Make(1, v1::Uploading::MATCHED));
  Advance(kInterval);
  ASSERT_EQ(s.sink.messages().size(), 2u);
  EXPECT_EQ(StreamIdOf(token()), "2-0");
  EXPECT_EQ(token().held,
            (std::vector<std::pair<int64_t, uint64_t>>{
                {1, SharedChanges::ContentHash(Make(1, v1::Uploading::MATCHED))}}));
  // Its entry is read: the bookmark's position passes it, nothing held.
  shared.reading = true;
  shared.Append(3, Make(1, v1::Uploading::MATCHED), 2);
  shared.listener->OnStreamRead();
  Advance(absl::Milliseconds(10));
  ASSERT_EQ(s.sink.messages().size(), 3u);
  EXPECT_EQ(StreamIdOf(token()), "3-0");
  EXPECT_TRUE(token().held.empty());
}

// Resumed elsewhere with such a token: a change the catch-up finds that the
// client holds already is not shown, and one the stream has no entry of yet
// is taken as held (its poll here shows nothing new).
TEST_F(CounterWatchTest, ACatchUpLeavesOutWhatTheTokenSaysTheClientHolds) {
  FakeSharedChanges& shared = shared_;
  options_.shared = &shared;
  Put(Make(1, v1::Uploading::PROCESSED));
  Put(Make(2, v1::Uploading::MATCHED));
  Put(Make(3, v1::Uploading::UPLOADED));
  absl::StatusOr<ResumeToken> t =
      SharedResumeToken(FingerprintHash(credentials_.fingerprint()), kCounter,
                        v1::Uploading::BASIC, "2-0");
  ASSERT_TRUE(t.ok());
  t->held = {{2, SharedChanges::ContentHash(Make(2, v1::Uploading::MATCHED))},
             {3, SharedChanges::ContentHash(Make(3, v1::Uploading::UPLOADED))}};
  Stream& s = Open(EncodeResumeToken(*t));
  Settle();
  ASSERT_TRUE(shared.pending != nullptr);
  SharedChanges::Missed missed;
  const absl::Time now = time_.Now();
  missed.changes = {{StateOf(Make(2, v1::Uploading::MATCHED), 4, now), false},
                    {StateOf(Make(1, v1::Uploading::PROCESSED), 3, now), false}};
  missed.known = {StateOf(Make(1, v1::Uploading::PROCESSED), 3, now),
                  StateOf(Make(2, v1::Uploading::MATCHED), 4, now)};
  missed.head = "6-0";
  std::move(shared.pending)(std::move(missed));
  shared.reading = false;  // nothing to wait for below
  Settle();
  std::vector<Message> m = s.sink.messages();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_TRUE(m[0].synced());
  EXPECT_FALSE(m[0].reset());
  EXPECT_EQ(Events(m[0]), OneModified(1));
  // The poll shows 3 as the client holds it: nothing; then its change.
  Advance(kInterval);
  EXPECT_EQ(s.sink.messages().size(), 1u);
  Put(Make(3, v1::Uploading::MATCHED));
  Advance(kInterval);
  m = s.sink.messages();
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(Events(m[1]), OneModified(3));
}

// Another replica's token: the catch-up (what changed after its position,
// and what the client holds), then `synced`, then live; what the poll
// delivered meanwhile is not shown again.
TEST_F(CounterWatchTest, AStreamPositionResumesWithItsCatchUpThenLive) {
  FakeSharedChanges& shared = shared_;
  options_.shared = &shared;
  Put(Make(1, v1::Uploading::UPLOADED));
  Put(Make(2, v1::Uploading::UPLOADED));
  Stream& first = Open();
  Settle();
  Put(Make(2, v1::Uploading::MATCHED));  // version 2 here
  Advance(kInterval);
  absl::StatusOr<ResumeToken> own =
      DecodeResumeToken(first.sink.messages().back().resume_token());
  ASSERT_TRUE(own.ok());
  absl::StatusOr<ResumeToken> elsewhere =
      SharedResumeToken(own->fingerprint_hash, own->counter_id, own->type,
                        "2-0");  // instance 0: another replica's
  ASSERT_TRUE(elsewhere.ok());
  Stream& s = Open(EncodeResumeToken(*elsewhere));
  Settle();
  EXPECT_EQ(shared.asked_after, "2-0");
  EXPECT_TRUE(s.sink.messages().empty());  // waits for the catch-up
  ASSERT_TRUE(shared.pending != nullptr);
  SharedChanges::Missed missed;
  const absl::Time t = time_.Now();
  missed.changes.emplace_back(StateOf(Make(2, v1::Uploading::MATCHED), 2, t),
                              false);
  missed.known = {StateOf(Make(1, v1::Uploading::UPLOADED), 1, t),
                  StateOf(Make(2, v1::Uploading::MATCHED), 2, t)};
  missed.head = "5-0";
  std::move(shared.pending)(std::move(missed));
  Settle();
  std::vector<Message> m = s.sink.messages();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_FALSE(m[0].reset());
  EXPECT_TRUE(m[0].synced());
  EXPECT_EQ(Events(m[0]),
            (std::vector<std::pair<UploadingEvent::Type, int64_t>>{
                {UploadingEvent::MODIFIED, 2}}));
  absl::StatusOr<ResumeToken> next = DecodeResumeToken(m[0].resume_token());
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(StreamIdOf(*next), "5-0");
  // Rounds show 1 and 2 as they are: nothing new for the client.
  Advance(kInterval);
  EXPECT_EQ(s.sink.messages().size(), 1u);
  Put(Make(2, v1::Uploading::PROCESSED));
  shared.Append(6, Make(2, v1::Uploading::PROCESSED), 3);  // the holder's relay
  Advance(kInterval);
  m = s.sink.messages();
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(Events(m[1]),
            (std::vector<std::pair<UploadingEvent::Type, int64_t>>{
                {UploadingEvent::MODIFIED, 2}}));
  EXPECT_EQ(m[1].events(0).uploading().status(), v1::Uploading::PROCESSED);
}

TEST_F(CounterWatchTest, AStreamPositionWithoutACatchUpGivesAResetThenTheSnapshot) {
  FakeSharedChanges& shared = shared_;
  options_.shared = &shared;
  Put(Make(1, v1::Uploading::UPLOADED));
  Stream& s = Open(SharedToken("7-0"));
  Settle();
  ASSERT_TRUE(shared.pending != nullptr);
  std::move(shared.pending)(std::nullopt);  // trimmed past, say
  Settle();
  const std::vector<Message> m = s.sink.messages();
  ASSERT_EQ(m.size(), 2u);
  EXPECT_TRUE(m[0].reset());
  EXPECT_TRUE(m[1].synced());
  EXPECT_EQ(Events(m[1]),
            (std::vector<std::pair<UploadingEvent::Type, int64_t>>{
                {UploadingEvent::ADDED, 1}}));
}

TEST_F(CounterWatchTest, TokensTooOldOrOfAnotherCounterTypeOrCallerReset) {
  Put(Make(1, v1::Uploading::UPLOADED));
  Stream& first = Open();
  Settle();
  const std::string token = first.sink.messages().back().resume_token();
  // Another type: a reset.
  Stream& calls = Open(token, v1::Uploading::CALLS);
  Settle();
  ASSERT_FALSE(calls.sink.messages().empty());
  EXPECT_TRUE(calls.sink.messages()[0].reset());
  // Too old: a history that keeps 15 minutes.
  for (int i = 0; i < 3; ++i) {
    Put(Make(1, i % 2 == 0 ? v1::Uploading::MATCHED : v1::Uploading::UPLOADED));
    Advance(absl::Minutes(8));
  }
  Stream& late = Open(token);
  Settle();
  ASSERT_FALSE(late.sink.messages().empty());
  EXPECT_TRUE(late.sink.messages()[0].reset());
  EXPECT_TRUE(late.sink.messages().back().synced());
}

TEST_F(CounterWatchTest, AMalformedTokenFailsBeforeAnyMessage) {
  absl::Status status;
  Stream& s = Open("not a token", v1::Uploading::TYPE_UNSPECIFIED, &status);
  Settle();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(s.sink.messages().empty());
  EXPECT_FALSE(s.sink.finished().has_value());  // the caller finishes it
  EXPECT_EQ(hub_->stats().watchers, 0u);
}

TEST_F(CounterWatchTest, AnIdleStreamGetsBookmarksWithAFreshToken) {
  options_.bookmark_interval = absl::Seconds(10);
  hub_options_.poll_interval = absl::Minutes(5);
  Put(Make(1, v1::Uploading::UPLOADED));
  Stream& s = Open();
  Settle();
  ASSERT_EQ(s.sink.messages().size(), 1u);
  Advance(absl::Seconds(9));
  EXPECT_EQ(s.sink.messages().size(), 1u);
  Advance(absl::Seconds(1));
  ASSERT_EQ(s.sink.messages().size(), 2u);
  Advance(absl::Seconds(10));
  ASSERT_EQ(s.sink.messages().size(), 3u);
  const Message bookmark = s.sink.messages()[2];
  EXPECT_EQ(bookmark.events_size(), 0);
  EXPECT_FALSE(bookmark.synced());
  EXPECT_FALSE(bookmark.resume_token().empty());
  // The bookmark's token resumes without a reset.
  Stream& r = Open(bookmark.resume_token());
  Settle();
  ASSERT_FALSE(r.sink.messages().empty());
  EXPECT_FALSE(r.sink.messages()[0].reset());
  EXPECT_TRUE(r.sink.messages()[0].synced());
}

TEST_F(CounterWatchTest, ASlowReaderGetsTheLatestStatePerUploadingInOrder) {
  Put(Make(1, v1::Uploading::UPLOADED));
  Stream& s = Open();
  Settle();
  ASSERT_EQ(s.sink.messages().size(), 1u);
  s.slow = true;
  // Round 1: 1 changes (that write stays in flight).
  Put(Make(1, v1::Uploading::EXPORTED));
  Advance(kInterval);
  ASSERT_EQ(s.sink.messages().size(), 2u);
  // Rounds 2 and 3 while the reader is stuck: 2 is new, then both change.
  Put(Make(2, v1::Uploading::UPLOADED));
  Put(Make(1, v1::Uploading::MATCHED));
  Advance(kInterval);
  Put(Make(2, v1::Uploading::EXPORTED));
  Put(Make(1, v1::Uploading::PROCESSED));
  Advance(kInterval);
  EXPECT_EQ(s.sink.messages().size(), 2u);
  s.slow = false;
  ASSERT_TRUE(s.sink.TakeUnacked());
  s.watch->WriteDone(true);
  Settle();
  const std::vector<Message> m = s.sink.messages();
  ASSERT_EQ(m.size(), 3u);
  ASSERT_EQ(m[2].events_size(), 2);
  EXPECT_EQ(m[2].events(0).type(), UploadingEvent::ADDED);  // never dropped
  EXPECT_EQ(m[2].events(0).uploading().id(), 2);
  EXPECT_EQ(m[2].events(0).uploading().status(), v1::Uploading::EXPORTED);
  EXPECT_EQ(m[2].events(1).type(), UploadingEvent::MODIFIED);
  EXPECT_EQ(m[2].events(1).uploading().status(), v1::Uploading::PROCESSED);
}

TEST_F(CounterWatchTest, PermanentErrorsEndTheStreamTransientOnesDoNot) {
  Put(Make(1, v1::Uploading::UPLOADED));
  client_.Fail({.endpoint = "list",
                .status = absl::UnavailableError("metrica hiccup"),
                .times = 2});
  Stream& s = Open();
  Settle();
  EXPECT_FALSE(s.sink.finished().has_value());
  Advance(absl::Seconds(3));  // the watch's retry
  Advance(kInterval);
  EXPECT_FALSE(s.sink.finished().has_value());
  ASSERT_FALSE(s.sink.messages().empty());
  EXPECT_TRUE(s.sink.messages().back().synced());
  client_.Fail({.endpoint = "list",
                .status = absl::PermissionDeniedError("no access to counter"),
                .times = -1});
  Advance(kInterval * 10);
  ASSERT_TRUE(s.sink.finished().has_value());
  EXPECT_EQ(s.sink.finished()->code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(CounterWatchTest, HundredCounterWatchersAndAnUploadingWatchShareOnePoll) {
  for (int64_t id = 1; id <= 10; ++id) Put(Make(id, v1::Uploading::UPLOADED));
  for (int i = 0; i < 100; ++i) Open();
  // And a WatchUploading of one of them, with the same token.
  struct Quiet : Subscriber {
    void OnState(const UploadingState&) override { ++states; }
    void OnError(const absl::Status&) override {}
    int states = 0;
  } uploading_watch;
  ASSERT_TRUE(hub_->Subscribe(credentials_, kCounter, 3, &uploading_watch).ok());
  Settle();
  for (auto& s : streams_) {
    ASSERT_FALSE(s->sink.messages().empty());
    EXPECT_TRUE(s->sink.messages().back().synced());
  }
  client_.ClearLog();
  Put(Make(3, v1::Uploading::MATCHED));
  Advance(kInterval);
  EXPECT_EQ(client_.count("list"), 1);
  EXPECT_EQ(client_.count("get"), 0);
  for (auto& s : streams_) {
    EXPECT_EQ(Events(s->sink.messages().back()),
              (std::vector<std::pair<UploadingEvent::Type, int64_t>>{
                  {UploadingEvent::MODIFIED, 3}}));
  }
  EXPECT_GE(uploading_watch.states, 2);  // it saw the change too
  client_.ClearLog();
  Advance(kInterval * 3);
  EXPECT_EQ(client_.count("list"), 3);  // one per interval
  EXPECT_EQ(client_.count("get"), 0);
  hub_->Unsubscribe(&uploading_watch);
}

TEST_F(CounterWatchTest, ACallsWatchPollsTheCallsList) {
  Put(Make(1, v1::Uploading::UPLOADED));
  Put(Make(2, v1::Uploading::UPLOADED, v1::Uploading::CALLS));
  Stream& s = Open("", v1::Uploading::CALLS);
  Settle();
  ASSERT_EQ(s.sink.messages().size(), 1u);
  EXPECT_EQ(Events(s.sink.messages()[0]),
            (std::vector<std::pair<UploadingEvent::Type, int64_t>>{
                {UploadingEvent::ADDED, 2}}));
  client_.ClearLog();
  Put(Make(2, v1::Uploading::MATCHED, v1::Uploading::CALLS));
  Advance(kInterval);
  for (const auto& r : client_.requests()) {
    EXPECT_EQ(r.endpoint, "list");
    EXPECT_EQ(r.list.type, v1::Uploading::CALLS);
  }
  EXPECT_EQ(s.sink.messages().size(), 2u);
}

}  // namespace
}  // namespace uploadwatch
