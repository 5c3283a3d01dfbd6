#ifndef UPLOADWATCH_SERVICE_TESTING_FAKE_METRICA_CLIENT_H_
#define UPLOADWATCH_SERVICE_TESTING_FAKE_METRICA_CLIENT_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/metrica/metrica_client.h"
#include "service/testing/simulated_time.h"

namespace uploadwatch::testing {

// An in-memory MetricaClient for unit tests of the logic above the upstream
// seam (the HTTP FakeMetrica stays for integration tests). It answers from a
// small world of counters and uploadings, or with scripted errors, after a
// latency in simulated time; it keeps a log of every request and the most
// requests it ever had in flight at once. An answer is what the world held
// when the request was *sent* (as Metrica reads it then); it arrives after
// `latency`, or when the test releases it if held. Callbacks run on the
// SimulatedTime's thread, never inline. Thread-safe.
class FakeMetricaClient : public MetricaClient {
 public:
  struct Request {
    RequestId id = 0;
    std::string endpoint;  // "get" or "list"
    std::string token;
    int32_t counter_id = 0;
    int64_t uploading_id = 0;  // get only
    ListParams list;           // list only
    absl::Time sent;
    bool answered = false;
    bool cancelled = false;  // Cancel() reached it before its answer
  };
  // A scripted failure: the next `times` requests that match fail with
  // `status` (times < 0: all of them). Zero fields match anything.
  struct Failure {
    std::string endpoint;  // "get", "list" or "" for both
    int32_t counter_id = 0;
    int64_t uploading_id = 0;
    absl::Status status;
    int times = 1;
  };

  explicit FakeMetricaClient(SimulatedTime* time) : time_(time) {}
  ~FakeMetricaClient() override = default;

  // The world. Lists show a counter's uploadings of the requested type
  // (TYPE_UNSPECIFIED: BASIC, also for uploadings without a type), newest
  // (highest id) first.
  void SetUploading(int32_t counter_id, const v1::Uploading& uploading);
  void Fail(Failure failure);
  void ClearFailures();
  // How long an answer takes (default 10 ms).
  void set_latency(absl::Duration latency);
  // While held, answers wait for Release() instead of the latency.
  void set_hold(bool hold);
  // Delivers the answer of a held request now (in simulated time: on the
  // next RunPending/Advance). False if it is not pending.
  bool Release(RequestId id);
  void SetDailyUsage(const std::string& token_fingerprint, QuotaUsage usage);

  std::vector<Request> requests() const;
  int count(absl::string_view endpoint) const;
  void ClearLog();
  int in_flight() const;
  int max_in_flight() const;

  RequestId GetUploading(absl::string_view token, int32_t counter_id,
                         int64_t uploading_id, absl::Time deadline,
                         GetCallback done) override;
  RequestId ListUploadings(absl::string_view token, const ListParams& params,
                           absl::Time deadline, ListCallback done) override;
  void Cancel(RequestId id) override;
  std::optional<QuotaUsage> DailyUsage(
      const std::string& token_fingerprint) override;
  std::vector<std::pair<std::string, QuotaUsage>> AllDailyUsage() override;

 private:
  struct Pending {
    size_t log_index;
    absl::AnyInvocable<void(absl::Status) &&> finish;  // delivers answer or error
    Scheduler::TaskId timer = 0;
    absl::Time deadline;
    bool held = false;
  };

  std::optional<absl::Status> ScriptedLocked(absl::string_view endpoint,
                                             int32_t counter_id,
                                             int64_t uploading_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  RequestId StartLocked(Request request, absl::Time deadline,
                        absl::AnyInvocable<void(absl::Status) &&> finish)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs the pending request's callback with OK (its answer) or `status`.
  void Finish(RequestId id, absl::Status status);

  SimulatedTime* const time_;
  mutable absl::Mutex mu_;
  std::map<int32_t, std::map<int64_t, v1::Uploading>> world_ ABSL_GUARDED_BY(mu_);
  std::deque<Failure> failures_ ABSL_GUARDED_BY(mu_);
  absl::Duration latency_ ABSL_GUARDED_BY(mu_) = absl::Milliseconds(10);
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  RequestId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<Request> log_ ABSL_GUARDED_BY(mu_);
  size_t log_base_ ABSL_GUARDED_BY(mu_) = 0;  // ids before ClearLog
  absl::flat_hash_map<RequestId, Pending> pending_ ABSL_GUARDED_BY(mu_);
  int max_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, QuotaUsage> usage_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch::testing

#endif  // UPLOADWATCH_SERVICE_TESTING_FAKE_METRICA_CLIENT_H_
