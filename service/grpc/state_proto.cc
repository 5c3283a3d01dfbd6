#include "service/grpc/state_proto.h"

#include "google/protobuf/util/time_util.h"

namespace uploadwatch {

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  *out = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
      absl::ToUnixNanos(t));
}

void AddStatusHistory(
    const std::vector<StatusSeen>& statuses,
    google::protobuf::RepeatedPtrField<
        ::metrika::offline_conversions::v1::StatusObservation>* out) {
  out->Reserve(out->size() + static_cast<int>(statuses.size()));
  for (const StatusSeen& s : statuses) {
    ::metrika::offline_conversions::v1::StatusObservation* o = out->Add();
    o->set_status(s.status);
    o->set_status_raw(s.status_raw);
    SetTime(s.observe_time, o->mutable_observe_time());
  }
}

}  // namespace uploadwatch
