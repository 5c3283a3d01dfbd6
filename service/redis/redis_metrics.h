#ifndef UPLOADWATCH_SERVICE_REDIS_REDIS_METRICS_H_
#define UPLOADWATCH_SERVICE_REDIS_REDIS_METRICS_H_

#include "service/metrics/metrics.h"
#include "service/redis/redis_coordinator.h"

namespace uploadwatch::redis {

// Adds multi-replica mode's gauges to `metrics`, read at each scrape:
//   uploadwatch_redis_degraded                       1 while in fallback mode
//   uploadwatch_redis_connection_state{connection,state}  1 for the current one
//   uploadwatch_redis_commands{connection}          sent since start
//   uploadwatch_redis_failures{connection}          errors, timeouts, lost answers
//   uploadwatch_redis_connects{connection}          successful (re)connects
//   uploadwatch_poll_leases_held                     groups this replica polls
// (`connection` is "commands" or "reader"). The counts are cumulative but
// exported as gauges, which is all the registry offers for values read on
// demand. `coordinator` must outlive `metrics`' last Render.
void RegisterRedisMetrics(RedisCoordinator* coordinator, Metrics* metrics);

}  // namespace uploadwatch::redis

#endif  // UPLOADWATCH_SERVICE_REDIS_REDIS_METRICS_H_
