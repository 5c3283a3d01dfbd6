#include "service/grpc/state_proto.h"

namespace uploadwatch {

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t seconds = absl::ToUnixSeconds(t);
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
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
