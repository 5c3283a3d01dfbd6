#ifndef UPLOADWATCH_BENCH_WORKLOAD_H_
#define UPLOADWATCH_BENCH_WORKLOAD_H_

#include <cstdint>

#include "metrika/offline_conversions/v1/uploading_service.pb.h"

namespace uploadwatch::bench {

namespace v1 = ::metrika::offline_conversions::v1;

// What every benchmark asks for: one token that reads one counter.
inline constexpr char kToken[] = "bench-token";
inline constexpr int32_t kCounter = 2215573;
// The uploading of the unary benchmark: terminal, so uploadwatch always
// answers it from its cache.
inline constexpr int64_t kTerminalId = 12;
// Watched uploadings are kFirstWatchedId, kFirstWatchedId + 1, ...
inline constexpr int64_t kFirstWatchedId = 1001;

// An uploading as a real CSV upload looks. The simulator and the bare server
// build theirs here, so both servers send messages of the same size.
// `marker` goes into linked_quantity: changing it is a change of the
// uploading that keeps its status.
v1::Uploading MakeUploading(int64_t id, v1::Uploading::Status status,
                            int32_t marker = 0);

}  // namespace uploadwatch::bench

#endif  // UPLOADWATCH_BENCH_WORKLOAD_H_
