#ifndef UPLOADWATCH_SERVICE_METRICA_METRICA_CLIENT_H_
#define UPLOADWATCH_SERVICE_METRICA_METRICA_CLIENT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"
#include "service/metrica/daily_budget.h"

namespace uploadwatch {

namespace v1 = ::metrika::offline_conversions::v1;

// Parameters of Metrica's GET .../offline_conversions/uploadings.
struct ListParams {
  int32_t counter_id = 0;
  int32_t limit = 0;   // 0: Metrica's default (10000)
  int32_t offset = 0;  // 0: from the start
  v1::Uploading::Type type = v1::Uploading::TYPE_UNSPECIFIED;  // default BASIC
};

// The upstream seam: Metrica's offline-conversion status endpoints, asynchronous.
//
// Contract for every call:
// - `token` is the caller's OAuth token; it is used for the request and for
//   per-token quota accounting and is never logged or put in a status.
// - `done` runs exactly once, on the client's own thread (never inline in the
//   caller's stack), with the parsed envelope or an absl::Status mapped from
//   Metrica's answer (see README "Errors"), including CANCELLED after Cancel()
//   and DEADLINE_EXCEEDED once `deadline` passes. It must not block.
// - Returns an id for Cancel(); ids are never reused.
// Thread-safe.
class MetricaClient {
 public:
  using RequestId = uint64_t;
  using GetCallback =
      absl::AnyInvocable<void(absl::StatusOr<v1::GetUploadingResponse>) &&>;
  using ListCallback =
      absl::AnyInvocable<void(absl::StatusOr<v1::ListUploadingsResponse>) &&>;

  virtual ~MetricaClient() = default;

  // GET /management/v1/counter/{counter_id}/offline_conversions/uploading/{id}
  virtual RequestId GetUploading(absl::string_view token, int32_t counter_id,
                                 int64_t uploading_id, absl::Time deadline,
                                 GetCallback done) = 0;

  // GET /management/v1/counter/{counter_id}/offline_conversions/uploadings
  virtual RequestId ListUploadings(absl::string_view token,
                                   const ListParams& params,
                                   absl::Time deadline, ListCallback done) = 0;

  // Abandons a request: its callback runs soon with CANCELLED unless it has
  // already run or is running. Unknown or finished ids are ignored.
  virtual void Cancel(RequestId id) = 0;

  // Today's upstream requests of a token (by fingerprint, see auth/token.h)
  // against the client's daily budget; nullopt when it keeps none.
  virtual std::optional<QuotaUsage> DailyUsage(
      const std::string& token_fingerprint) {
    return std::nullopt;
  }
  // The same for every token seen today.
  virtual std::vector<std::pair<std::string, QuotaUsage>> AllDailyUsage() {
    return {};
  }
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_METRICA_METRICA_CLIENT_H_
