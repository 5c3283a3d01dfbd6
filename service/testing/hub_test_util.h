#ifndef UPLOADWATCH_SERVICE_TESTING_HUB_TEST_UTIL_H_
#define UPLOADWATCH_SERVICE_TESTING_HUB_TEST_UTIL_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"
#include "service/common/status_details.h"
#include "service/core/subscriber.h"

// What the hub's tests on simulated time share: the demo counter, a server
// token, uploadings by id and status, the ErrorInfo reason of a refusal, and
// a subscriber that counts what it is shown.
namespace uploadwatch::testing {

inline constexpr int32_t kCounter = 2215573;
inline constexpr char kServerToken[] = "AQAAAAA-server-token";

inline v1::Uploading MakeUploading(
    int64_t id, v1::Uploading::Status status = v1::Uploading::PREPARED) {
  v1::Uploading u;
  u.set_id(id);
  u.set_status(status);
  return u;
}

// The google.rpc.ErrorInfo reason `s` carries; empty if none.
inline std::string ErrorReason(const absl::Status& s) {
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(s);
  return info ? info->reason() : "";
}

// Counts states and keeps the error; for tests that read it after time ran
// (the hub's fan-out calls it on the simulated executor, one call at a time).
class CountingSubscriber : public Subscriber {
 public:
  void OnState(const UploadingState&) override { ++states; }
  void OnError(const absl::Status& s) override { error = s; }
  int states = 0;
  std::optional<absl::Status> error;
};

}  // namespace uploadwatch::testing

#endif  // UPLOADWATCH_SERVICE_TESTING_HUB_TEST_UTIL_H_
