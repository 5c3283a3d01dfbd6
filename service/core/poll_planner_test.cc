#include "service/core/poll_planner.h"

#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

constexpr int32_t kCounter = 5;

v1::ListUploadingsResponse Page(std::initializer_list<int64_t> ids) {
  v1::ListUploadingsResponse page;
  for (int64_t id : ids) page.add_uploadings()->set_id(id);
  return page;
}

v1::ListUploadingsResponse FullPage(int32_t size, int64_t from) {
  v1::ListUploadingsResponse page;
  for (int64_t i = 0; i < size; ++i) page.add_uploadings()->set_id(from - i);
  return page;
}

TEST(PollPlanner, OneWatchedUploadingIsOneGet) {
  const PlannerOptions options;
  const absl::flat_hash_set<int64_t> watched = {12};
  PollRound round = BeginRound(kCounter, watched, {}, options);
  PollStep step = NextStep(round, watched, options);
  ASSERT_EQ(step.kind, PollStep::kGet);
  EXPECT_EQ(step.uploading_id, 12);
  step = NextStep(round, watched, options);
  EXPECT_EQ(step.kind, PollStep::kDone);
  EXPECT_TRUE(step.gets.empty());
}

TEST(PollPlanner, ManyWatchedAreOneListPageWhenItShowsThemAll) {
  const PlannerOptions options;
  const absl::flat_hash_set<int64_t> watched = {1, 2, 3};
  PollRound round = BeginRound(kCounter, watched, {}, options);
  PollStep step = NextStep(round, watched, options);
  ASSERT_EQ(step.kind, PollStep::kList);
  EXPECT_EQ(step.page.counter_id, kCounter);
  EXPECT_EQ(step.page.limit, 100);  // at least 100, else twice the watched
  EXPECT_EQ(step.page.offset, 0);
  PageSeen(round, Page({3, 2, 1}));
  step = NextStep(round, watched, options);
  EXPECT_EQ(step.kind, PollStep::kDone);
  EXPECT_TRUE(step.gets.empty());
}

TEST(PollPlanner, PagesGoOnOnlyWhileWatchedUploadingsAreUnseen) {
  const PlannerOptions options;
  const absl::flat_hash_set<int64_t> watched = {150, 1};
  PollRound round = BeginRound(kCounter, watched, {}, options);
  ASSERT_EQ(NextStep(round, watched, options).kind, PollStep::kList);
  PageSeen(round, FullPage(100, 150));  // 150..51
  PollStep step = NextStep(round, watched, options);
  ASSERT_EQ(step.kind, PollStep::kList);
  EXPECT_EQ(step.page.offset, 100);
  PageSeen(round, FullPage(50, 50));  // short: the last page
  step = NextStep(round, watched, options);
  EXPECT_EQ(step.kind, PollStep::kDone);
  EXPECT_TRUE(step.gets.empty());
}

TEST(PollPlanner, WhatThePagesDidNotShowGetsAGetEach) {
  PlannerOptions options;
  options.batch_max_pages = 1;
  const absl::flat_hash_set<int64_t> watched = {150, 1, 500};
  PollRound round = BeginRound(kCounter, watched, {}, options);
  ASSERT_EQ(NextStep(round, watched, options).kind, PollStep::kList);
  PageSeen(round, FullPage(100, 150));
  const PollStep step = NextStep(round, watched, options);
  ASSERT_EQ(step.kind, PollStep::kDone);
  EXPECT_EQ(step.gets, (std::vector<int64_t>{1, 500}));
}

TEST(PollPlanner, AShortPageEndsTheListingAndTheRestAreGets) {
  const PlannerOptions options;
  const absl::flat_hash_set<int64_t> watched = {7, 8, 900};
  PollRound round = BeginRound(kCounter, watched, {}, options);
  NextStep(round, watched, options);
  PageSeen(round, Page({8, 7}));  // 900 is another type, say
  const PollStep step = NextStep(round, watched, options);
  ASSERT_EQ(step.kind, PollStep::kDone);
  EXPECT_EQ(step.gets, (std::vector<int64_t>{900}));
}

TEST(PollPlanner, UploadingsNoLongerWatchedAreNotFetched) {
  PlannerOptions options;
  options.batch_max_pages = 1;
  const absl::flat_hash_set<int64_t> watched = {1, 2, 3};
  PollRound round = BeginRound(kCounter, watched, {}, options);
  NextStep(round, watched, options);
  PageSeen(round, FullPage(100, 1000));  // none of them
  const PollStep step = NextStep(round, {2}, options);  // 1 and 3 left
  EXPECT_EQ(step.gets, (std::vector<int64_t>{2}));
  // Not batched, the single Get of an uploading that left is not made.
  PollRound single = BeginRound(kCounter, {4}, {}, options);
  EXPECT_EQ(NextStep(single, {}, options).kind, PollStep::kDone);
}

TEST(PollPlanner, ACounterTargetListsItsTypeToTheLastPage) {
  PlannerOptions options;
  options.batch_max_pages = 1;  // does not cap a counter listing
  PollRound round = BeginRound(kCounter, {}, {v1::Uploading::CALLS}, options);
  PollStep step = NextStep(round, {}, options);
  ASSERT_EQ(step.kind, PollStep::kList);
  EXPECT_EQ(step.page.type, v1::Uploading::CALLS);
  EXPECT_EQ(step.page.limit, 10000);
  PageSeen(round, FullPage(10000, 20000));
  step = NextStep(round, {}, options);
  ASSERT_EQ(step.kind, PollStep::kList);
  EXPECT_EQ(step.page.offset, 10000);
  PageSeen(round, Page({1}));
  EXPECT_EQ(NextStep(round, {}, options).kind, PollStep::kDone);
}

}  // namespace
}  // namespace uploadwatch
