#ifndef UPLOADWATCH_SERVICE_SIMULATOR_METRICA_JSON_WRITER_H_
#define UPLOADWATCH_SERVICE_SIMULATOR_METRICA_JSON_WRITER_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"

namespace uploadwatch {

// The simulator's own JSON for Metrica's bodies, written by hand from
// Metrica's documented field names: never through the production mapping
// (service/metrica/json_mapping.h), so that a wrong name there fails tests
// instead of being mirrored here.
//
// With `vary`, each uploading object independently, from a seeded random
// source, takes any of the representations Metrica's pages and clients show:
// the id as a string instead of a number, enum values in lower case,
// create_time with a +03:00 offset instead of Z, unknown fields (scalars,
// arrays, nested objects, null), and any field order; envelopes may carry an
// unknown field too. Every variant means the same uploading. Without `vary`
// the canonical form: documented order, numeric id, upper-case values, Z.
// Not thread-safe (the simulator calls it under its lock).
class MetricaJsonWriter {
 public:
  MetricaJsonWriter(bool vary, uint64_t seed) : vary_(vary), random_(seed) {}

  // `{"uploading": {...}}`
  std::string UploadingBody(
      const metrika::offline_conversions::v1::Uploading& uploading);
  // `{"uploadings": [...]}`
  std::string UploadingsBody(
      const std::vector<metrika::offline_conversions::v1::Uploading>&
          uploadings);
  // One uploading object.
  std::string UploadingObject(
      const metrika::offline_conversions::v1::Uploading& uploading);

 private:
  bool Coin();  // true half of the time when varying, never otherwise

  const bool vary_;
  std::mt19937_64 random_;
};

// `text` as a JSON string literal, quotes included.
std::string JsonQuote(absl::string_view text);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_SIMULATOR_METRICA_JSON_WRITER_H_
