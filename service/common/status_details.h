#ifndef UPLOADWATCH_SERVICE_COMMON_STATUS_DETAILS_H_
#define UPLOADWATCH_SERVICE_COMMON_STATUS_DETAILS_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/rpc/error_details.pb.h"
#include "grpcpp/support/status.h"

namespace uploadwatch {

// Rich error details travel inside absl::Status as payloads keyed by their
// google.rpc type URL, and leave the process as google.rpc.Status in gRPC's
// `grpc-status-details-bin` trailer (what every gRPC language's "rich error"
// helpers decode). This file is the one place that converts between the two.

inline constexpr absl::string_view kErrorInfoUrl =
    "type.googleapis.com/google.rpc.ErrorInfo";
inline constexpr absl::string_view kRetryInfoUrl =
    "type.googleapis.com/google.rpc.RetryInfo";

// Attaches google.rpc.ErrorInfo{reason, domain}. No-op on an OK status.
void SetErrorInfo(absl::Status& status, absl::string_view reason,
                  absl::string_view domain);
// Attaches google.rpc.RetryInfo{retry_delay}. No-op on an OK status.
void SetRetryInfo(absl::Status& status, absl::Duration retry_delay);

std::optional<google::rpc::ErrorInfo> GetErrorInfo(const absl::Status& status);
std::optional<absl::Duration> GetRetryDelay(const absl::Status& status);

// absl::Status -> grpc::Status, carrying the details above. Codes are
// numerically identical in both libraries.
grpc::Status ToGrpcStatus(const absl::Status& status);
// grpc::Status -> absl::Status, decoding details back into payloads.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_COMMON_STATUS_DETAILS_H_
