#ifndef UPLOADWATCH_SERVICE_CORE_WATCH_TARGET_H_
#define UPLOADWATCH_SERVICE_CORE_WATCH_TARGET_H_

#include <cstdint>
#include <string>
#include <tuple>

#include "metrika/offline_conversions/v1/uploading_service.pb.h"
#include "service/core/state_cache.h"

namespace uploadwatch {

// The uploadings of one counter as seen by one token: they are polled
// together, on one timer.
struct GroupKey {
  std::string token_fingerprint;
  int32_t counter_id = 0;

  friend bool operator==(const GroupKey& a, const GroupKey& b) {
    return a.counter_id == b.counter_id &&
           a.token_fingerprint == b.token_fingerprint;
  }
  template <typename H>
  friend H AbslHashValue(H h, const GroupKey& k) {
    return H::combine(std::move(h), k.token_fingerprint, k.counter_id);
  }
};

inline GroupKey GroupOf(const UploadingKey& key) {
  return GroupKey{key.token_fingerprint, key.counter_id};
}

// What a watch follows: one uploading, or every uploading of a counter and
// type (the counter-wide watch of issue 11). A counter target receives every
// observed uploading of (token, counter, type) and is not ended by an
// uploading turning terminal.
struct WatchTarget {
  GroupKey group;
  int64_t uploading_id = 0;  // 0: the whole counter
  // Counter targets only; TYPE_UNSPECIFIED is normalised to BASIC.
  v1::Uploading::Type type = v1::Uploading::TYPE_UNSPECIFIED;

  static WatchTarget Uploading(const UploadingKey& key) {
    return WatchTarget{GroupOf(key), key.uploading_id,
                       v1::Uploading::TYPE_UNSPECIFIED};
  }
  static WatchTarget Counter(GroupKey group, v1::Uploading::Type type) {
    return WatchTarget{std::move(group), 0,
                       type == v1::Uploading::TYPE_UNSPECIFIED
                           ? v1::Uploading::BASIC
                           : type};
  }
  bool is_counter() const { return uploading_id == 0; }
  UploadingKey uploading_key() const {
    return UploadingKey{group.token_fingerprint, group.counter_id,
                        uploading_id};
  }

  friend bool operator==(const WatchTarget& a, const WatchTarget& b) {
    return std::tie(a.group, a.uploading_id, a.type) ==
           std::tie(b.group, b.uploading_id, b.type);
  }
  template <typename H>
  friend H AbslHashValue(H h, const WatchTarget& t) {
    return H::combine(std::move(h), t.group, t.uploading_id,
                      static_cast<int>(t.type));
  }
};

// An uploading's type for matching counter targets (none means BASIC).
inline v1::Uploading::Type TypeOf(const v1::Uploading& uploading) {
  return uploading.type() == v1::Uploading::TYPE_UNSPECIFIED
             ? v1::Uploading::BASIC
             : uploading.type();
}

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_WATCH_TARGET_H_
