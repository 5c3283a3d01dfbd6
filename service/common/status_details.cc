#include "service/common/status_details.h"

#include "absl/strings/cord.h"
#include "google/protobuf/any.pb.h"
#include "google/protobuf/duration.pb.h"
#include "google/rpc/status.pb.h"

namespace uploadwatch {
namespace {

google::protobuf::Duration ToProto(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
  return out;
}

}  // namespace

void SetErrorInfo(absl::Status& status, absl::string_view reason,
                  absl::string_view domain) {
  if (status.ok()) return;
  google::rpc::ErrorInfo info;
  info.set_reason(std::string(reason));
  info.set_domain(std::string(domain));
  status.SetPayload(kErrorInfoUrl, absl::Cord(info.SerializeAsString()));
}

void SetRetryInfo(absl::Status& status, absl::Duration retry_delay) {
  if (status.ok()) return;
  google::rpc::RetryInfo info;
  *info.mutable_retry_delay() = ToProto(retry_delay);
  status.SetPayload(kRetryInfoUrl, absl::Cord(info.SerializeAsString()));
}

std::optional<google::rpc::ErrorInfo> GetErrorInfo(const absl::Status& status) {
  auto payload = status.GetPayload(kErrorInfoUrl);
  google::rpc::ErrorInfo info;
  if (!payload || !info.ParseFromString(std::string(*payload))) {
    return std::nullopt;
  }
  return info;
}

std::optional<absl::Duration> GetRetryDelay(const absl::Status& status) {
  auto payload = status.GetPayload(kRetryInfoUrl);
  google::rpc::RetryInfo info;
  if (!payload || !info.ParseFromString(std::string(*payload))) {
    return std::nullopt;
  }
  return absl::Seconds(info.retry_delay().seconds()) +
         absl::Nanoseconds(info.retry_delay().nanos());
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  const std::string message(status.message());
  google::rpc::Status rich;
  rich.set_code(static_cast<int>(status.code()));
  rich.set_message(message);
  // Only the payloads we understand leave the process: a payload is internal
  // state otherwise, and could carry anything.
  for (absl::string_view url : {kErrorInfoUrl, kRetryInfoUrl}) {
    if (auto payload = status.GetPayload(url)) {
      google::protobuf::Any* any = rich.add_details();
      any->set_type_url(std::string(url));
      any->set_value(std::string(*payload));
    }
  }
  if (rich.details_size() == 0) return grpc::Status(code, message);
  return grpc::Status(code, message, rich.SerializeAsString());
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()),
                   status.error_message());
  google::rpc::Status rich;
  if (!status.error_details().empty() &&
      rich.ParseFromString(status.error_details())) {
    for (const google::protobuf::Any& any : rich.details()) {
      if (any.type_url() == kErrorInfoUrl || any.type_url() == kRetryInfoUrl) {
        out.SetPayload(any.type_url(), absl::Cord(any.value()));
      }
    }
  }
  return out;
}

}  // namespace uploadwatch
