#ifndef UPLOADWATCH_SERVICE_METRICA_METRICA_LIMITS_H_
#define UPLOADWATCH_SERVICE_METRICA_METRICA_LIMITS_H_

#include <cstdint>

namespace uploadwatch {

// Metrica's bound on the `limit` of a list of uploadings, and the size of a
// list that gives none (the Management API reference, "uploadings").
inline constexpr int32_t kMetricaMaxListLimit = 10000;

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_METRICA_METRICA_LIMITS_H_
