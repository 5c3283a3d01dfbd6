#include "service/server/transport_limits.h"

#include <algorithm>
#include <limits>

#include "grpcpp/resource_quota.h"

namespace uploadwatch {

void ApplyTransportLimits(const TransportLimits& limits,
                          grpc::ServerBuilder& builder) {
  if (limits.max_streams_per_connection > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                               limits.max_streams_per_connection);
  }
  if (limits.memory_quota_bytes > 0) {
    grpc::ResourceQuota quota("uploadwatch-server");
    quota.Resize(static_cast<size_t>(std::min<int64_t>(
        limits.memory_quota_bytes, std::numeric_limits<size_t>::max())));
    builder.SetResourceQuota(quota);  // the builder keeps its own reference
  }
  if (!limits.accept_compressed_requests) {
    // The enabled set is checked when a call's headers arrive, before any
    // message is read: the only point at which nothing was inflated yet.
    builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_DEFLATE, false);
    builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_GZIP, false);
  }
}

}  // namespace uploadwatch
