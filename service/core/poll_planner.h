#ifndef UPLOADWATCH_SERVICE_CORE_POLL_PLANNER_H_
#define UPLOADWATCH_SERVICE_CORE_POLL_PLANNER_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"
#include "service/metrica/metrica_client.h"

namespace uploadwatch {

// What one poll round of a (token, counter) group asks Metrica, as pure
// functions of what is watched and what the pages showed: one Get when one
// uploading is watched; else List pages (newest first) until every watched
// uploading was seen, a page came back short, or the page cap, then one Get
// for each watched uploading the pages did not show. Counter targets (issue
// 11) list every page of their type.
struct PlannerOptions {
  // Watching this many uploadings of one counter or more, a round lists.
  size_t batch_min_uploadings = 2;
  // List pages per batched round.
  int batch_max_pages = 3;
};

// A round in progress; a value, owned by the group's poller.
struct PollRound {
  int32_t counter_id = 0;
  bool batched = false;
  int64_t single_id = 0;  // not batched: the one uploading
  bool single_done = false;
  absl::flat_hash_set<int64_t> unseen;  // watched, not on a page yet
  // Counter types still to list in full, the current one first.
  std::vector<v1::Uploading::Type> full_types;
  int page = 0;  // pages of the current listing requested so far
  int32_t page_size = 0;
  bool listing_done = false;  // a page came back short
  bool listed_in_full = false;  // a counter type was listed to its end
};

struct PollStep {
  enum Kind { kGet, kList, kDone };
  Kind kind = kDone;
  int64_t uploading_id = 0;  // kGet
  ListParams page;           // kList
  std::vector<int64_t> gets;  // kDone: one Get each, outside the round
};

PollRound BeginRound(int32_t counter_id,
                     const absl::flat_hash_set<int64_t>& watched,
                     const std::vector<v1::Uploading::Type>& counter_types,
                     const PlannerOptions& options);
// The next request of the round. `watched`: what is watched now (watches
// may have left mid-round; they are not fetched for).
PollStep NextStep(PollRound& round, const absl::flat_hash_set<int64_t>& watched,
                  const PlannerOptions& options);
// The page last asked for (by NextStep) came back.
void PageSeen(PollRound& round, const v1::ListUploadingsResponse& page);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_POLL_PLANNER_H_
