#include "service/redis/state_stream.h"

#include <map>
#include <memory>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "service/redis/testing/redis_server.h"

namespace uploadwatch::redis {
namespace {

using testing::RedisServer;
using testing::WaitFor;

constexpr char kGroup[] = "0123456789abcdef:2215573";

// A replica's Redis side of the history: a command and a reader connection.
struct Replica {
  Replica(const RedisServer& server, std::string name,
          StateStreamOptions options = {}) {
    RedisOptions o = testing::ClientOptions(server);
    commands = std::make_unique<RedisConnection>(o, &loop);
    o.client_name = name + "-reader";
    reader = std::make_unique<RedisConnection>(o, &loop);
    options.block = absl::Milliseconds(500);
    stream = std::make_unique<StateStream>(commands.get(), reader.get(), options);
  }
  ~Replica() {
    stream.reset();
    reader.reset();
    commands.reset();
  }
  bool Connected() const {
    return commands->state() == ConnectionState::kConnected &&
           reader->state() == ConnectionState::kConnected;
  }
  absl::StatusOr<std::string> Publish(int64_t version,
                                      std::optional<PublishFence> fence = {}) {
    return testing::Await<absl::StatusOr<std::string>>([&](auto done) {
      stream->Publish(kGroup, version, "state-" + std::to_string(version),
                      fence, std::move(done));
    });
  }
  void Subscribe(std::string after) {
    ASSERT_TRUE(stream
                    ->Subscribe(kGroup, std::move(after),
                                [this](const std::string& g, const StreamEntry& e) {
                                  absl::MutexLock lock(&mu);
                                  seen.push_back(e);
                                })
                    .ok());
    // Reading starts after the subscription's position is known.
    ASSERT_TRUE(WaitFor([&] { return !stream->LastDeliveredId(kGroup).empty(); }));
  }
  std::vector<int64_t> Versions() {
    absl::MutexLock lock(&mu);
    std::vector<int64_t> v;
    for (auto& e : seen) v.push_back(e.version);
    return v;
  }
  std::vector<StreamEntry> Seen() {
    absl::MutexLock lock(&mu);
    return seen;
  }

  EventLoop loop;
  std::unique_ptr<RedisConnection> commands, reader;
  std::unique_ptr<StateStream> stream;
  absl::Mutex mu;
  std::vector<StreamEntry> seen ABSL_GUARDED_BY(mu);
};

class StateStreamTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start().ok()); }
  std::unique_ptr<Replica> NewReplica(std::string name,
                                      StateStreamOptions o = {}) {
    auto r = std::make_unique<Replica>(server_, name, o);
    EXPECT_TRUE(WaitFor([&] { return r->Connected(); }));
    return r;
  }
  // Kills the connection named `name` from the Redis side.
  bool KillClient(const std::string& name) {
    auto list = server_.Run({"CLIENT", "LIST"});
    if (!list.ok()) return false;
    for (absl::string_view line : absl::StrSplit(*list, '\n')) {
      if (line.find("name=" + name + " ") == absl::string_view::npos) continue;
      absl::string_view id = line.substr(3, line.find(' ') - 3);  // "id=N "
      return server_.Run({"CLIENT", "KILL", "ID", std::string(id)}).ok();
    }
    return false;
  }
  RedisServer server_;
};

TEST_F(StateStreamTest, EveryReplicaSeesThePublishedStatesInOrderWithTheSameIds) {
  auto poller = NewReplica("a");
  auto b = NewReplica("b");
  auto c = NewReplica("c");
  b->Subscribe("");
  c->Subscribe("");
  std::vector<std::string> ids;
  for (int v = 1; v <= 5; ++v) {
    auto id = poller->Publish(v);
    ASSERT_TRUE(id.ok()) << id.status();
    ids.push_back(*id);
  }
  const std::vector<int64_t> want = {1, 2, 3, 4, 5};
  ASSERT_TRUE(WaitFor([&] { return b->Versions().size() >= 5; }));
  ASSERT_TRUE(WaitFor([&] { return c->Versions().size() >= 5; }));
  EXPECT_EQ(b->Versions(), want);
  EXPECT_EQ(c->Versions(), want);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(b->Seen()[i].id, ids[i]);
    EXPECT_EQ(c->Seen()[i].id, ids[i]);
    EXPECT_EQ(b->Seen()[i].payload, "state-" + std::to_string(i + 1));
  }
  EXPECT_EQ(b->stream->LastDeliveredId(kGroup), ids.back());
}

TEST_F(StateStreamTest, AReaderThatLostItsConnectionCatchesUpWithoutLossOrDuplicates) {
  auto poller = NewReplica("a");
  auto b = NewReplica("b");
  b->Subscribe("");
  ASSERT_TRUE(poller->Publish(1).ok());
  ASSERT_TRUE(WaitFor([&] { return b->Versions().size() == 1; }));
  ASSERT_TRUE(KillClient("b-reader"));
  // Published while b's reader is away (or reconnecting).
  for (int v = 2; v <= 4; ++v) ASSERT_TRUE(poller->Publish(v).ok());
  ASSERT_TRUE(WaitFor([&] { return b->Versions().size() >= 4; }));
  EXPECT_EQ(b->Versions(), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_GE(b->reader->stats().connects, 2);
}

TEST_F(StateStreamTest, ASubscriptionResumesFromAnIdSeenElsewhere) {
  // What a resume token carries: a client moves to another replica.
  auto poller = NewReplica("a");
  std::vector<std::string> ids;
  for (int v = 1; v <= 4; ++v) ids.push_back(*poller->Publish(v));
  auto b = NewReplica("b");
  b->Subscribe(ids[1]);  // had seen versions 1 and 2
  ASSERT_TRUE(WaitFor([&] { return b->Versions().size() >= 2; }));
  ASSERT_TRUE(poller->Publish(5).ok());
  ASSERT_TRUE(WaitFor([&] { return b->Versions().size() >= 3; }));
  EXPECT_EQ(b->Versions(), (std::vector<int64_t>{3, 4, 5}));
  auto all = NewReplica("c");
  all->Subscribe("0-0");
  ASSERT_TRUE(WaitFor([&] { return all->Versions().size() >= 5; }));
  EXPECT_EQ(all->Versions(), (std::vector<int64_t>{1, 2, 3, 4, 5}));
}

TEST_F(StateStreamTest, SubscriptionsSurviveARedisRestart) {
  auto poller = NewReplica("a");
  auto b = NewReplica("b");
  b->Subscribe("");
  ASSERT_TRUE(poller->Publish(1).ok());
  ASSERT_TRUE(WaitFor([&] { return b->Versions().size() == 1; }));
  server_.Kill();
  ASSERT_TRUE(WaitFor([&] { return !poller->Connected(); }));
  absl::Time start = absl::Now();
  EXPECT_EQ(poller->Publish(2).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));  // at once, not a timeout
  ASSERT_TRUE(server_.Start().ok());  // empty: no persistence
  ASSERT_TRUE(WaitFor([&] { return poller->Connected() && b->Connected(); }));
  ASSERT_TRUE(poller->Publish(2).ok());
  ASSERT_TRUE(WaitFor([&] { return b->Versions().size() >= 2; }));
  EXPECT_EQ(b->Versions(), (std::vector<int64_t>{1, 2}));
}

TEST_F(StateStreamTest, OnlyTheLeaseHolderPublishesAndVersionsOnlyGoUp) {
  auto poller = NewReplica("a");
  PublishFence fence{"t:lease:" + std::string(kGroup), "replica-a"};
  ASSERT_TRUE(server_.Run({"SET", fence.lease_key, "replica-b"}).ok());
  auto not_owner = poller->Publish(1, fence);
  EXPECT_EQ(not_owner.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(not_owner.status().message().find("NOTOWNER"), std::string::npos);
  ASSERT_TRUE(server_.Run({"SET", fence.lease_key, "replica-a"}).ok());
  ASSERT_TRUE(poller->Publish(7, fence).ok());
  auto stale = poller->Publish(7, fence);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(poller->Publish(6, fence).status().code(), absl::StatusCode::kAborted);
  auto last = testing::Await<absl::StatusOr<std::optional<StreamEntry>>>(
      [&](auto done) { poller->stream->Last(kGroup, std::move(done)); });
  ASSERT_TRUE(last.ok());
  ASSERT_TRUE(last->has_value());
  EXPECT_EQ((*last)->version, 7);
  EXPECT_EQ((*last)->payload, "state-7");
}

// A counter's changes stream holds many uploadings' states: no version
// check (each uploading's own goes up), but the same lease fence, and every
// entry says who appended it and when its request went.
TEST_F(StateStreamTest, ChangesAreFencedAndCarryTheirOwnerAndTime) {
  auto holder = NewReplica("a");
  auto other = NewReplica("b");
  other->Subscribe("0-0");
  PublishFence fence{"t:lease:" + std::string(kGroup), "replica-a"};
  auto append = [&](int64_t version, const std::string& payload) {
    return testing::Await<absl::StatusOr<std::string>>([&](auto done) {
      holder->stream->AppendChange(kGroup, version, version, payload, 1234567,
                                   fence, std::move(done));
    });
  };
  ASSERT_TRUE(server_.Run({"SET", fence.lease_key, "replica-b"}).ok());
  auto not_owner = append(1, "x");
  EXPECT_EQ(not_owner.status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(server_.Run({"SET", fence.lease_key, "replica-a"}).ok());
  ASSERT_TRUE(append(5, "u1-v5").ok());
  ASSERT_TRUE(append(2, "u2-v2").ok());  // another uploading, a lower version
  ASSERT_TRUE(WaitFor([&] { return other->Seen().size() == 2; }));
  const std::vector<StreamEntry> seen = other->Seen();
  EXPECT_EQ(seen[0].version, 5);
  EXPECT_EQ(seen[0].payload, "u1-v5");
  EXPECT_EQ(seen[1].version, 2);
  for (const StreamEntry& e : seen) {
    EXPECT_EQ(e.owner, "replica-a");
    EXPECT_EQ(e.sent_ms, 1234567);
    EXPECT_FALSE(e.floor);
  }
}

// A holder's confirmations: one entry {c, o, t} for many uploadings, fenced
// like a change, read as no state, and never an uploading's newest entry.
TEST_F(StateStreamTest, ConfirmationsAreOneFencedEntryThatIsNoState) {
  auto holder = NewReplica("a");
  auto other = NewReplica("b");
  other->Subscribe("0-0");
  PublishFence fence{"t:lease:" + std::string(kGroup), "replica-a"};
  const std::vector<StateStream::Confirmed> confirmed = {{11, 3}, {12, 1}};
  auto append = [&] {
    return testing::Await<absl::StatusOr<std::string>>([&](auto done) {
      holder->stream->AppendConfirmations(kGroup, confirmed, 7654321, fence,
                                          std::move(done));
    });
  };
  ASSERT_TRUE(server_.Run({"SET", fence.lease_key, "replica-b"}).ok());
  EXPECT_EQ(append().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(server_.Run({"SET", fence.lease_key, "replica-a"}).ok());
  ASSERT_TRUE(append().ok());
  ASSERT_TRUE(WaitFor([&] { return other->Seen().size() == 1; }));
  const StreamEntry e = other->Seen()[0];
  EXPECT_TRUE(e.confirmations);
  EXPECT_FALSE(e.floor);
  EXPECT_EQ(e.version, 0);
  EXPECT_EQ(e.owner, "replica-a");
  EXPECT_EQ(e.sent_ms, 7654321);
  EXPECT_EQ(e.payload, "11:3,12:1");  // readable in redis-cli
  std::optional<std::vector<StateStream::Confirmed>> parsed =
      ParseConfirmations(e.payload);
  ASSERT_TRUE(parsed.has_value());
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[0].uploading_id, 11);
  EXPECT_EQ((*parsed)[0].version, 3);
  EXPECT_EQ((*parsed)[1].uploading_id, 12);
  EXPECT_EQ((*parsed)[1].version, 1);
  // No uploading's newest entry: a resume's "what the client holds" stays.
  EXPECT_EQ(server_.Integer({"EXISTS", holder->stream->LatestKey(kGroup)}), 0);
  for (const char* bad : {"11", "11:", ":3", "x:3", "11:3,", "11:0", "-1:2"}) {
    EXPECT_FALSE(ParseConfirmations(bad).has_value()) << bad;
  }
}

TEST_F(StateStreamTest, APositionOlderThanTheKeptHistoryIsReportedAsAGap) {
  StateStreamOptions o;
  o.max_len = 10;
  auto poller = NewReplica("a", o);
  std::string old_id = *poller->Publish(1);
  // Exact trimming (MAXLEN without ~ trims to the entry), from outside.
  for (int v = 2; v <= 30; ++v) ASSERT_TRUE(poller->Publish(v).ok());
  const std::string key = "t:history:" + std::string(kGroup);
  ASSERT_TRUE(server_.Run({"XTRIM", key, "MAXLEN", "5"}).ok());
  auto b = NewReplica("b");
  b->Subscribe(old_id);
  ASSERT_TRUE(WaitFor([&] { return b->Versions().size() >= 5; }));
  auto seen = b->Seen();
  EXPECT_EQ(seen.front().version, 26);
  EXPECT_TRUE(seen.front().after_gap);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_FALSE(seen[i].after_gap);
  // A position still kept is no gap.
  auto c = NewReplica("c");
  c->Subscribe(seen[1].id);
  ASSERT_TRUE(WaitFor([&] { return c->Versions().size() >= 3; }));
  EXPECT_FALSE(c->Seen().front().after_gap);
  EXPECT_EQ(c->Seen().front().version, 28);
}

TEST_F(StateStreamTest, TheHistoryIsTrimmed) {
  StateStreamOptions o;
  o.max_len = 10;
  auto poller = NewReplica("a", o);
  for (int v = 1; v <= 400; ++v) ASSERT_TRUE(poller->Publish(v).ok());
  long long len = server_.Integer({"XLEN", "t:history:" + std::string(kGroup)});
  // MAXLEN ~ trims whole stream nodes (100 entries by default).
  EXPECT_GE(len, 10);
  EXPECT_LT(len, 400);
}

// A resume token's catch-up (issue 14): what came after a position, or "cannot
// say" -- never a range with a hole in it.
TEST_F(StateStreamTest, ChangesAfterAPositionAreReadOrRefusedWhenTrimmedPast) {
  auto a = NewReplica("a");
  std::vector<std::string> ids;
  for (int v = 1; v <= 6; ++v) ids.push_back(*a->Publish(v));
  using Answer = absl::StatusOr<std::optional<StateStream::Range>>;
  auto after = [&](const std::string& id, const std::string& until,
                   absl::Time not_before = absl::InfinitePast()) {
    return testing::Await<Answer>([&](auto done) {
      a->stream->ChangesAfter(kGroup, id, until, not_before, std::move(done));
    });
  };
  auto versions = [](const StateStream::Range& r) {
    std::vector<int64_t> v;
    for (const StreamEntry& e : r.entries) v.push_back(e.version);
    return v;
  };
  Answer all = after(ids[1], "+");
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_TRUE(all->has_value());
  EXPECT_EQ(versions(**all), (std::vector<int64_t>{3, 4, 5, 6}));
  EXPECT_EQ((*all)->head, ids[5]);
  EXPECT_EQ((*all)->entries[0].payload, "state-3");
  // Up to a bound (inclusive), and nothing after the newest.
  Answer bounded = after(ids[1], ids[3]);
  ASSERT_TRUE(bounded.ok() && bounded->has_value());
  EXPECT_EQ(versions(**bounded), (std::vector<int64_t>{3, 4}));
  Answer none = after(ids[5], "+");
  ASSERT_TRUE(none.ok() && none->has_value());
  EXPECT_TRUE((*none)->entries.empty());
  // The first entry kept is the position: still complete.
  const std::string key = "t:history:" + std::string(kGroup);
  ASSERT_TRUE(server_.Run({"XTRIM", key, "MAXLEN", "4"}).ok());  // 3..6 kept
  Answer at_oldest = after(ids[2], "+");
  ASSERT_TRUE(at_oldest.ok() && at_oldest->has_value());
  EXPECT_EQ(versions(**at_oldest), (std::vector<int64_t>{4, 5, 6}));
  // Trimmed past: entry 2 is gone, so what followed it is not known whole.
  Answer trimmed = after(ids[1], "+");
  ASSERT_TRUE(trimmed.ok()) << trimmed.status();
  EXPECT_FALSE(trimmed->has_value());
  // After the newest entry (another Redis, or a flushed one): refused.
  auto [ms, seq] = *ParseStreamId(ids[5]);
  Answer future = after(absl::StrCat(ms + 60000, "-0"), "+");
  ASSERT_TRUE(future.ok());
  EXPECT_FALSE(future->has_value());
  // Older than the caller honours.
  Answer old = after(ids[3], "+", absl::FromUnixMillis(ms + 1));
  ASSERT_TRUE(old.ok());
  EXPECT_FALSE(old->has_value());
  // An empty (or deleted) stream says nothing.
  ASSERT_TRUE(server_.Run({"DEL", key}).ok());
  Answer gone = after(ids[3], "+");
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  // Not an id: a caller's bug, told apart from "cannot say".
  EXPECT_EQ(after("yesterday", "+").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(after(ids[1], "soon").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// What a resume elsewhere takes the client to hold: every uploading's newest
// entry of a changes stream, kept beside it by the append, untrimmed.
TEST_F(StateStreamTest, ChangesKeepEachUploadingsNewestEntryForResumes) {
  StateStreamOptions o;
  o.max_len = 1;
  auto holder = NewReplica("a", o);
  PublishFence fence{"t:lease:" + std::string(kGroup), "replica-a"};
  ASSERT_TRUE(server_.Run({"SET", fence.lease_key, "replica-a"}).ok());
  auto append = [&](int64_t uploading, int64_t version) {
    return *testing::Await<absl::StatusOr<std::string>>([&](auto done) {
      holder->stream->AppendChange(kGroup, uploading, version,
                                   absl::StrCat("u", uploading, "|v", version),
                                   1, fence, std::move(done));
    });
  };
  const std::string a1 = append(7, 1);
  const std::string b1 = append(8, 1);
  const std::string a2 = append(7, 2);
  // The same state again (a new holder's first relay of it): not appended.
  EXPECT_EQ(append(7, 2), a2);
  auto range = testing::Await<absl::StatusOr<std::optional<StateStream::Range>>>(
      [&](auto done) {
        holder->stream->ChangesAfter(kGroup, b1, "+", absl::InfinitePast(),
                                     std::move(done));
      });
  ASSERT_TRUE(range.ok()) << range.status();
  ASSERT_TRUE(range->has_value());
  ASSERT_EQ((*range)->entries.size(), 1u);
  EXPECT_EQ((*range)->entries[0].id, a2);
  std::map<int64_t, StateStream::Latest> latest;
  for (const auto& l : (*range)->latest) latest[l.uploading_id] = l;
  ASSERT_EQ(latest.size(), 2u);
  EXPECT_EQ(latest[7].first_id, a1);
  EXPECT_EQ(latest[7].entry.id, a2);
  EXPECT_EQ(latest[7].entry.version, 2);
  EXPECT_EQ(latest[7].entry.payload, "u7|v2");  // a '|' in it survives
  EXPECT_EQ(latest[8].first_id, b1);
  EXPECT_EQ(latest[8].entry.id, b1);
  EXPECT_GT(server_.Integer({"PTTL", "t:changes:" + std::string(kGroup)}), 0);
}

TEST(StreamIdTest, ParsesRedisStreamIds) {
  EXPECT_EQ(ParseStreamId("1700000000000-3"),
            (std::pair<uint64_t, uint64_t>{1700000000000ULL, 3}));
  for (const char* bad : {"", "-", "12", "a-1", "1-b", "1-2-3"}) {
    EXPECT_FALSE(ParseStreamId(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace uploadwatch::redis
