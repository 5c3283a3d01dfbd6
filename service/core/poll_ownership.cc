#include "service/core/poll_ownership.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace uploadwatch {

std::string PollGroupKey(absl::string_view token_fingerprint,
                         int64_t counter_id) {
  return absl::StrCat(token_fingerprint, ":", counter_id);
}

std::string PollUploadingKey(absl::string_view token_fingerprint,
                             int64_t counter_id, int64_t uploading_id) {
  return absl::StrCat(token_fingerprint, ":", counter_id, ":", uploading_id);
}

std::string PollCounterKey(absl::string_view token_fingerprint,
                           int64_t counter_id, int type) {
  return PollUploadingKey(token_fingerprint, counter_id, CounterWantId(type));
}

bool ParsePollUploadingKey(absl::string_view name, std::string* fingerprint,
                           int64_t* counter_id, int64_t* uploading_id) {
  std::vector<absl::string_view> parts = absl::StrSplit(name, ':');
  if (parts.size() != 3 || parts[0].empty()) return false;
  if (!absl::SimpleAtoi(parts[1], counter_id) ||
      !absl::SimpleAtoi(parts[2], uploading_id)) {
    return false;
  }
  *fingerprint = std::string(parts[0]);
  return true;
}

bool ParsePollGroupKey(absl::string_view name, std::string* fingerprint,
                       int64_t* counter_id) {
  std::vector<absl::string_view> parts = absl::StrSplit(name, ':');
  if (parts.size() != 2 || parts[0].empty()) return false;
  if (!absl::SimpleAtoi(parts[1], counter_id)) return false;
  *fingerprint = std::string(parts[0]);
  return true;
}

void LocalPollOwnership::Want(const std::string& name) {
  absl::MutexLock lock(&mu_);
  wanted_.insert(name);
}

void LocalPollOwnership::Unwant(const std::string& name) {
  absl::MutexLock lock(&mu_);
  wanted_.erase(name);
}

bool LocalPollOwnership::ShouldPoll(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  return wanted_.contains(name);
}

}  // namespace uploadwatch
