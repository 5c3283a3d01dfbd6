#ifndef UPLOADWATCH_SERVICE_GRPC_STATE_PROTO_H_
#define UPLOADWATCH_SERVICE_GRPC_STATE_PROTO_H_

#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "google/protobuf/timestamp.pb.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"
#include "service/core/state_cache.h"

namespace uploadwatch {

// The wire form of what the core knows of an uploading, shared by the watch
// rpcs so that their times and histories read the same.

// `t` as a protobuf Timestamp (UTC, nanoseconds kept).
void SetTime(absl::Time t, google::protobuf::Timestamp* out);

// `statuses` (oldest first) appended to `out` as StatusObservation messages.
void AddStatusHistory(
    const std::vector<StatusSeen>& statuses,
    google::protobuf::RepeatedPtrField<
        ::metrika::offline_conversions::v1::StatusObservation>* out);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_STATE_PROTO_H_
