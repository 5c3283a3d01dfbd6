#include "service/redis/poll_ownership.h"

#include "absl/strings/str_cat.h"

namespace uploadwatch::redis {

std::string PollGroupKey(absl::string_view token_fingerprint,
                         int64_t counter_id) {
  return absl::StrCat(token_fingerprint, ":", counter_id);
}

void LocalPollOwnership::Want(const std::string& group) {
  absl::MutexLock lock(&mu_);
  wanted_.insert(group);
}

void LocalPollOwnership::Unwant(const std::string& group) {
  absl::MutexLock lock(&mu_);
  wanted_.erase(group);
}

bool LocalPollOwnership::ShouldPoll(const std::string& group) const {
  absl::MutexLock lock(&mu_);
  return wanted_.contains(group);
}

}  // namespace uploadwatch::redis
