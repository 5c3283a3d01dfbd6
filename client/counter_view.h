#ifndef UPLOADWATCH_CLIENT_COUNTER_VIEW_H_
#define UPLOADWATCH_CLIENT_COUNTER_VIEW_H_

#include <cstdint>
#include <map>
#include <vector>

#include "metrika/offline_conversions/v1/uploading_service.pb.h"

namespace uploadwatch {

// What a client of WatchUploadings holds for one counter: the latest state of
// every uploading the stream has told about. Feed it every message, in order;
// choose it to draw a dashboard without reimplementing the reset rule.
// Not thread-safe.
class CounterView {
 public:
  // Applies one stream message: a `reset` drops everything held first (a
  // fresh snapshot follows); each event then stores its uploading by id,
  // ADDED or MODIFIED alike (the event carries the full state).
  void Apply(const metrika::offline_conversions::v1::WatchUploadingsResponse&
                 message);

  // True once a `synced` message arrived since the start or the last reset:
  // the view then holds the whole counter.
  bool synced() const { return synced_; }
  size_t size() const { return uploadings_.size(); }
  // Every uploading held, newest (highest id) first, as Metrica lists them.
  std::vector<metrika::offline_conversions::v1::Uploading> Uploadings() const;

 private:
  std::map<int64_t, metrika::offline_conversions::v1::Uploading> uploadings_;
  bool synced_ = false;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_CLIENT_COUNTER_VIEW_H_
