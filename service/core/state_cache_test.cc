#include "service/core/state_cache.h"

#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

const UploadingKey kKey{"fp-a", 2215573, 12};
const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

v1::Uploading Make(v1::Uploading::Status status, int linked = 0) {
  v1::Uploading u;
  u.set_id(12);
  u.set_status(status);
  u.set_linked_quantity(linked);
  return u;
}

StateCache::Options Opts() {
  return {.fresh_for = absl::Seconds(5),
          .terminal_fresh_for = absl::Hours(24),
          .retention = absl::Hours(1)};
}

TEST(StateCache, VersionsCountChangesOfAnyField) {
  StateCache cache(Opts());
  bool changed = false;
  EXPECT_EQ(cache.Record(kKey, Make(v1::Uploading::UPLOADED), kT0, kT0, &changed).version, 1);
  EXPECT_TRUE(changed);
  EXPECT_EQ(cache.Record(kKey, Make(v1::Uploading::UPLOADED), kT0 + absl::Seconds(1), kT0 + absl::Seconds(1), &changed).version, 1);
  EXPECT_FALSE(changed);
  const UploadingState& s =
      cache.Record(kKey, Make(v1::Uploading::UPLOADED, 5), kT0 + absl::Seconds(2), kT0 + absl::Seconds(2), &changed);
  EXPECT_TRUE(changed);
  EXPECT_EQ(s.version, 2);
  EXPECT_EQ(s.observe_time, kT0 + absl::Seconds(2));
  EXPECT_EQ(s.check_time, kT0 + absl::Seconds(2));
  cache.Record(kKey, Make(v1::Uploading::UPLOADED, 5), kT0 + absl::Seconds(3), kT0 + absl::Seconds(3), &changed);
  EXPECT_EQ(cache.Find(kKey)->observe_time, kT0 + absl::Seconds(2));  // unchanged
  EXPECT_EQ(cache.Find(kKey)->check_time, kT0 + absl::Seconds(3));    // confirmed
}

TEST(StateCache, AnAnswerToAnOlderRequestIsNotAChange) {
  StateCache cache(Opts());
  bool changed;
  // A List sent at +2 s answers MATCHED first; a Get sent at +1 s answers
  // EXPORTED later: that is old news.
  cache.Record(kKey, Make(v1::Uploading::MATCHED), kT0 + absl::Seconds(3),
               kT0 + absl::Seconds(2), &changed);
  const UploadingState& s = cache.Record(kKey, Make(v1::Uploading::EXPORTED),
                                         kT0 + absl::Seconds(4),
                                         kT0 + absl::Seconds(1), &changed);
  EXPECT_FALSE(changed);
  EXPECT_EQ(s.uploading.status(), v1::Uploading::MATCHED);
  EXPECT_EQ(s.version, 1);
  cache.Record(kKey, Make(v1::Uploading::PROCESSED), kT0 + absl::Seconds(5),
               kT0 + absl::Seconds(4), &changed);
  EXPECT_TRUE(changed);
}

TEST(StateCache, ATerminalStateNeverTurnsBack) {
  StateCache cache(Opts());
  bool changed;
  cache.Record(kKey, Make(v1::Uploading::PROCESSED, 7), kT0, kT0, &changed);
  const UploadingState& s =
      cache.Record(kKey, Make(v1::Uploading::PREPARED), kT0 + absl::Seconds(1), kT0 + absl::Seconds(1), &changed);
  EXPECT_FALSE(changed);
  EXPECT_EQ(s.uploading.status(), v1::Uploading::PROCESSED);
  EXPECT_EQ(s.version, 1);
  // Terminal to terminal (counts settling) is still a change.
  cache.Record(kKey, Make(v1::Uploading::PROCESSED, 9), kT0 + absl::Seconds(2), kT0 + absl::Seconds(2), &changed);
  EXPECT_TRUE(changed);
}

TEST(StateCache, NonTerminalStatesGoStaleTerminalOnesDoNot) {
  StateCache cache(Opts());
  bool changed;
  cache.Record(kKey, Make(v1::Uploading::MATCHED), kT0, kT0, &changed);
  EXPECT_TRUE(cache.GetFresh(kKey, kT0 + absl::Seconds(5)).has_value());
  EXPECT_FALSE(cache.GetFresh(kKey, kT0 + absl::Seconds(6)).has_value());
  EXPECT_NE(cache.Find(kKey), nullptr);  // still known, for its version

  cache.Record(kKey, Make(v1::Uploading::PROCESSED), kT0, kT0, &changed);
  EXPECT_TRUE(cache.GetFresh(kKey, kT0 + absl::Hours(23)).has_value());
  EXPECT_FALSE(cache.GetFresh(kKey, kT0 + absl::Hours(25)).has_value());
}

TEST(StateCache, KeysKeepTenantsApart) {
  StateCache cache(Opts());
  bool changed;
  cache.Record(kKey, Make(v1::Uploading::PROCESSED), kT0, kT0, &changed);
  UploadingKey other = kKey;
  other.token_fingerprint = "fp-b";
  EXPECT_FALSE(cache.GetFresh(other, kT0).has_value());
  EXPECT_EQ(cache.Find(other), nullptr);
}

TEST(StateCache, SweepDropsWhatWasNotUsedForTheRetention) {
  StateCache cache(Opts());
  bool changed;
  cache.Record(kKey, Make(v1::Uploading::MATCHED), kT0, kT0, &changed);
  UploadingKey used = kKey;
  used.uploading_id = 13;
  cache.Record(used, Make(v1::Uploading::MATCHED), kT0, kT0, &changed);
  cache.Record(used, Make(v1::Uploading::MATCHED), kT0 + absl::Minutes(50), kT0 + absl::Minutes(50), &changed);
  EXPECT_EQ(cache.Sweep(kT0 + absl::Minutes(61)), 1u);
  EXPECT_EQ(cache.Find(kKey), nullptr);
  EXPECT_NE(cache.Find(used), nullptr);
}

TEST(StateCache, SweepKeepsWhatTheOwnerStillNeeds) {
  StateCache cache(Opts());
  bool changed;
  cache.Record(kKey, Make(v1::Uploading::MATCHED), kT0, kT0, &changed);
  EXPECT_EQ(cache.Sweep(kT0 + absl::Hours(5),
                        [](const UploadingKey& k) { return k == kKey; }),
            0u);
  ASSERT_NE(cache.Find(kKey), nullptr);
  EXPECT_EQ(cache.Find(kKey)->version, 1);
}

TEST(StateCache, ASharedStateTakesItsVersionAndIsAChangeOnlyIfItDiffers) {
  StateCache cache(Opts());
  bool changed;
  cache.Record(kKey, Make(v1::Uploading::UPLOADED), kT0, kT0, &changed);  // v1
  cache.Record(kKey, Make(v1::Uploading::MATCHED), kT0 + absl::Seconds(1),
               kT0 + absl::Seconds(1), &changed);  // v2, seen here alone
  // Older by version: news to nobody.
  cache.RecordShared(kKey, Make(v1::Uploading::EXPORTED), 2,
                     kT0 + absl::Seconds(2), &changed);
  EXPECT_FALSE(changed);
  EXPECT_EQ(cache.Find(kKey)->uploading.status(), v1::Uploading::MATCHED);
  // The holder numbered the same state after ours: the version moves on,
  // watchers are not told the same state again.
  const UploadingState& same = cache.RecordShared(
      kKey, Make(v1::Uploading::MATCHED), 5, kT0 + absl::Seconds(3), &changed);
  EXPECT_FALSE(changed);
  EXPECT_EQ(same.version, 5);
  EXPECT_EQ(same.observe_time, kT0 + absl::Seconds(1));
  // A different state above it is a change.
  const UploadingState& next = cache.RecordShared(
      kKey, Make(v1::Uploading::EXPORTED), 6, kT0 + absl::Seconds(4), &changed);
  EXPECT_TRUE(changed);
  EXPECT_EQ(next.version, 6);
  EXPECT_EQ(next.observe_time, kT0 + absl::Seconds(4));
  // And a local fetch continues from it.
  EXPECT_EQ(cache.Record(kKey, Make(v1::Uploading::PROCESSED),
                         kT0 + absl::Seconds(6), kT0 + absl::Seconds(5), &changed)
                .version,
            7);
}

TEST(StateCache, KeepsEveryStatusSeenWithWhenItWasFirstSeen) {
  StateCache cache(Opts());
  bool changed = false;
  const absl::Duration s = absl::Seconds(1);
  cache.Record(kKey, Make(v1::Uploading::UPLOADED), kT0, kT0, &changed);
  cache.Record(kKey, Make(v1::Uploading::UPLOADED), kT0 + s, kT0 + s, &changed);
  cache.Record(kKey, Make(v1::Uploading::UPLOADED, 3), kT0 + 2 * s, kT0 + 2 * s, &changed);
  cache.Record(kKey, Make(v1::Uploading::EXPORTED, 3), kT0 + 3 * s, kT0 + 3 * s, &changed);
  v1::Uploading unknown = Make(v1::Uploading::STATUS_UNSPECIFIED, 3);
  unknown.set_status_raw("ARCHIVED");
  cache.Record(kKey, unknown, kT0 + 4 * s, kT0 + 4 * s, &changed);
  cache.Record(kKey, Make(v1::Uploading::PROCESSED, 3), kT0 + 5 * s, kT0 + 5 * s, &changed);
  // Older news changes nothing, so it adds no status either.
  cache.Record(kKey, Make(v1::Uploading::MATCHED, 3), kT0 + 6 * s, kT0, &changed);
  const std::vector<StatusSeen> want = {
      {v1::Uploading::UPLOADED, "", kT0},
      {v1::Uploading::EXPORTED, "", kT0 + 3 * s},
      {v1::Uploading::STATUS_UNSPECIFIED, "ARCHIVED", kT0 + 4 * s},
      {v1::Uploading::PROCESSED, "", kT0 + 5 * s},
  };
  EXPECT_EQ(cache.Find(kKey)->statuses, want);
}

TEST(StateCache, ASharedStateAddsItsStatusAsOfWhenItArrived) {
  StateCache cache(Opts());
  bool changed = false;
  cache.Record(kKey, Make(v1::Uploading::UPLOADED), kT0, kT0, &changed);
  cache.RecordShared(kKey, Make(v1::Uploading::MATCHED), 2, kT0 + absl::Seconds(7), &changed);
  cache.RecordShared(kKey, Make(v1::Uploading::MATCHED, 9), 3, kT0 + absl::Seconds(8), &changed);
  const std::vector<StatusSeen> want = {
      {v1::Uploading::UPLOADED, "", kT0},
      {v1::Uploading::MATCHED, "", kT0 + absl::Seconds(7)},
  };
  EXPECT_EQ(cache.Find(kKey)->statuses, want);
}

TEST(IsTerminal, OnlyProcessedAndLinkageFailure) {
  for (int s = 0; s <= 6; ++s) {
    const auto status = static_cast<v1::Uploading::Status>(s);
    EXPECT_EQ(IsTerminal(Make(status)),
              status == v1::Uploading::PROCESSED ||
                  status == v1::Uploading::LINKAGE_FAILURE)
        << s;
  }
}

}  // namespace
}  // namespace uploadwatch
