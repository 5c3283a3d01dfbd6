#ifndef UPLOADWATCH_SERVICE_SIMULATOR_FAKE_METRICA_H_
#define UPLOADWATCH_SERVICE_SIMULATOR_FAKE_METRICA_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"
#include "service/common/clock.h"

namespace uploadwatch {

// A Metrica simulator: a real HTTP server on loopback that speaks Metrica's
// offline-conversion paths, JSON and error bodies. Used by every test and by
// the demo (`scripts/run.sh` without a token). Thread-safe.
//
// Paths served (GET only):
//   /management/v1/counter/{c}/offline_conversions/uploading/{id}
//   /management/v1/counter/{c}/offline_conversions/uploadings?limit=&offset=&type=
// Authentication as Metrica: no/unknown token -> 401 `unauthorized`;
// a known token without access to the counter -> 403 `access_denied`;
// unknown counter or uploading -> 404 `not_found`; bad ids/params -> 400
// `invalid_parameter`. Tokens are read from `Authorization: OAuth <t>`.
class FakeMetrica {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 0;  // 0: any free port
    // Drives uploading schedules. Not owned; defaults to the real clock.
    Clock* clock = nullptr;
    // Both set: serve HTTPS with this PEM certificate chain and key
    // (base_url() then says https). Start() fails if they cannot be loaded.
    std::string tls_cert_file;
    std::string tls_key_file;
    // Vary the JSON of uploadings the way Metrica may (ids as strings,
    // lower-case values, +03:00 offsets, unknown fields, any order; see
    // metrica_json_writer.h), from `json_seed`. Off: one canonical form.
    bool vary_json = true;
    uint64_t json_seed = 20221229;
  };

  // One request as it reached the simulator.
  struct RecordedRequest {
    std::string method;
    std::string path;   // without the query
    std::string query;  // raw, without '?'
    std::string token;  // as sent (this is a test fake: it may see tokens)
    absl::Time time;    // arrival, by Options::clock
    int in_flight = 0;  // requests of the same token being served, this one included
    int http_status = 0;  // what was answered (0 if the connection was dropped)
  };

  // A scripted misbehaviour, applied to the next `times` requests whose path
  // contains `path_substring` (empty: any). Fields combine: `delay` first, then
  // either a drop, or the reply described by the rest.
  struct Fault {
    std::string path_substring;
    int times = 1;  // -1: until ClearFaults()
    absl::Duration delay = absl::ZeroDuration();  // stall before answering
    bool drop_connection = false;  // close the connection without an answer
    int http_status = 0;           // 0: answer normally (after `delay`)
    std::string error_type;        // with http_status: Metrica error body of this type
    std::optional<int> retry_after_seconds;  // `Retry-After` header
    std::optional<std::string> body;  // raw body instead (malformed JSON, custom JSON)
    size_t huge_body_bytes = 0;    // > 0: a 200 chunked body of this many bytes
    bool truncate = false;         // announce a Content-Length, send half, close
  };

  // Where an uploading is going: at `after` (since AddUploading) it takes `status`.
  struct Step {
    absl::Duration after;
    metrika::offline_conversions::v1::Uploading::Status status;
  };

  explicit FakeMetrica(Options options);
  ~FakeMetrica();  // stops the server
  FakeMetrica(const FakeMetrica&) = delete;
  FakeMetrica& operator=(const FakeMetrica&) = delete;

  // Binds and starts serving on background threads; returns once accepting.
  absl::Status Start();
  void Stop();
  int port() const;
  std::string base_url() const;  // e.g. "http://127.0.0.1:34567"

  // Lets `token` read `counter_id` (and makes the counter exist).
  void GrantAccess(const std::string& token, int32_t counter_id);
  // Makes `token` known (401 no more) without access to any counter.
  void AddToken(const std::string& token);

  // Adds or replaces an uploading; `schedule` moves its status over time.
  void AddUploading(int32_t counter_id,
                    const metrika::offline_conversions::v1::Uploading& uploading,
                    std::vector<Step> schedule = {});
  // Replaces the current state at once (any field), cancelling its schedule.
  void SetUploading(int32_t counter_id,
                    const metrika::offline_conversions::v1::Uploading& uploading);
  std::optional<metrika::offline_conversions::v1::Uploading> GetUploading(
      int32_t counter_id, int64_t uploading_id) const;

  void InjectFault(Fault fault);
  void ClearFaults();

  std::vector<RecordedRequest> requests() const;
  void ClearRequests();
  // Highest `in_flight` seen for `token` since the last ClearRequests().
  int max_in_flight(const std::string& token) const;

  // The demo world used by scripts/run.sh: counter 2215573 readable by
  // `token`, with settled uploadings 12-19 at every stage (12 is the example
  // of Metrica's docs), and live uploads: a new one (ids 101, 102, ...) every
  // 30 s that walks to PROCESSED or LINKAGE_FAILURE in 90 s, three of them
  // already under way, so a watch started at any time has something to show.
  // `speed` > 1 runs the live uploads that many times faster (tests).
  void SeedDemo(const std::string& token, double speed = 1.0);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_SIMULATOR_FAKE_METRICA_H_
