#include "service/core/poll_planner.h"

#include <algorithm>

#include "service/metrica/metrica_limits.h"

namespace uploadwatch {
namespace {

// Batched pages are at least this big: recent uploadings, the ones still
// moving, come first, so one page usually covers everything watched.
constexpr int32_t kMinPageSize = 100;

}  // namespace

PollRound BeginRound(int32_t counter_id,
                     const absl::flat_hash_set<int64_t>& watched,
                     const std::vector<v1::Uploading::Type>& counter_types,
                     const PlannerOptions& options) {
  PollRound round;
  round.counter_id = counter_id;
  round.full_types = counter_types;
  std::sort(round.full_types.begin(), round.full_types.end());
  round.full_types.erase(
      std::unique(round.full_types.begin(), round.full_types.end()),
      round.full_types.end());
  round.batched =
      !round.full_types.empty() ||
      watched.size() >= std::max<size_t>(options.batch_min_uploadings, 2);
  if (!round.batched) {
    round.single_id = watched.empty() ? 0 : *watched.begin();
    round.single_done = watched.empty();
    return round;
  }
  round.unseen = watched;
  round.page_size =
      round.full_types.empty()
          ? static_cast<int32_t>(std::clamp<size_t>(
                watched.size() * 2, kMinPageSize, kMetricaMaxListLimit))
          : kMetricaMaxListLimit;
  return round;
}

PollStep NextStep(PollRound& round, const absl::flat_hash_set<int64_t>& watched,
                  const PlannerOptions& options) {
  PollStep step;
  if (!round.batched) {
    if (!round.single_done && watched.contains(round.single_id)) {
      round.single_done = true;
      step.kind = PollStep::kGet;
      step.uploading_id = round.single_id;
    }
    return step;
  }
  for (auto it = round.unseen.begin(); it != round.unseen.end();) {
    if (!watched.contains(*it)) {
      round.unseen.erase(it++);
    } else {
      ++it;
    }
  }
  // Full listings of counter targets first, each to its last page.
  while (!round.full_types.empty() && round.listing_done) {
    round.full_types.erase(round.full_types.begin());
    round.page = 0;
    round.listing_done = false;
    round.listed_in_full = true;
  }
  if (!round.full_types.empty()) {
    step.kind = PollStep::kList;
    step.page.counter_id = round.counter_id;
    step.page.limit = round.page_size;
    step.page.offset = round.page * round.page_size;
    // BASIC is what TYPE_UNSPECIFIED lists; ask for it the way Gets' groups do
    // so that both share one flight.
    step.page.type = round.full_types.front() == v1::Uploading::BASIC
                         ? v1::Uploading::TYPE_UNSPECIFIED
                         : round.full_types.front();
    round.page += 1;
    return step;
  }
  if (!round.listed_in_full && !round.unseen.empty() && !round.listing_done &&
      round.page < options.batch_max_pages) {
    step.kind = PollStep::kList;
    step.page.counter_id = round.counter_id;
    step.page.limit = round.page_size;
    step.page.offset = round.page * round.page_size;
    round.page += 1;
    return step;
  }
  // Not on the pages (older, or another type): one Get each.
  step.gets.assign(round.unseen.begin(), round.unseen.end());
  std::sort(step.gets.begin(), step.gets.end());
  round.unseen.clear();
  return step;
}

void PageSeen(PollRound& round, const v1::ListUploadingsResponse& page) {
  for (const v1::Uploading& u : page.uploadings()) round.unseen.erase(u.id());
  if (page.uploadings_size() < round.page_size) round.listing_done = true;
}

}  // namespace uploadwatch
