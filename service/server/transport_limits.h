#ifndef UPLOADWATCH_SERVICE_SERVER_TRANSPORT_LIMITS_H_
#define UPLOADWATCH_SERVICE_SERVER_TRANSPORT_LIMITS_H_

#include <cstdint>

#include "grpcpp/grpcpp.h"

namespace uploadwatch {

// What one client may make gRPC's transport hold, whatever it sends: HTTP/2
// streams per connection, memory for calls in progress, and request
// compression. Bursts beyond them are refused, not absorbed.
struct TransportLimits {
  // Advertised as SETTINGS_MAX_CONCURRENT_STREAMS. A client that opens more
  // loses its connection ("Max stream count exceeded"); one that respects it
  // queues. Choose a little above the per-connection watch cap, so every
  // allowed watch fits with room for unary calls. <= 0: gRPC's default (none).
  int max_streams_per_connection = 1100;
  // gRPC's ResourceQuota for the server's memory (call arenas, transport
  // buffers), in bytes: a ceiling on what gRPC itself accounts for, under
  // which it shrinks flow-control windows. Measured with gRPC 1.51 it does not
  // bound a rapid open-and-reset burst (see README "Abuse and limits"); it is
  // kept as the ceiling for what it does account. 10,000 open watches take
  // about 200 MB in all (docs/PERFORMANCE.md). <= 0: unlimited.
  int64_t memory_quota_bytes = int64_t{1} << 30;
  // Requests are a few ids: compressed ones are refused at their headers
  // (UNIMPLEMENTED "Compression algorithm 'gzip' is disabled") instead of
  // being inflated in full before the size limit applies.
  bool accept_compressed_requests = false;
};

// Sets `limits` on `builder` (channel args, the resource quota, the enabled
// compression algorithms). Call before BuildAndStart.
void ApplyTransportLimits(const TransportLimits& limits,
                          grpc::ServerBuilder& builder);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_SERVER_TRANSPORT_LIMITS_H_
