#include "service/redis/redis_metrics.h"

#include <string>
#include <utility>
#include <vector>

namespace uploadwatch::redis {

namespace {

using Samples = std::vector<std::pair<Metrics::Labels, double>>;

// One sample per connection of `coordinator`, from its stats.
template <typename Read>
Metrics::GaugeReader PerConnection(RedisCoordinator* coordinator, Read read) {
  return [coordinator, read]() {
    return Samples{
        {{"commands"}, static_cast<double>(read(coordinator->commands().stats()))},
        {{"reader"}, static_cast<double>(read(coordinator->reader().stats()))}};
  };
}

}  // namespace

void RegisterRedisMetrics(RedisCoordinator* coordinator, Metrics* metrics) {
  metrics->AddGauge(
      "uploadwatch_redis_degraded",
      "1 while Redis is unreachable and this replica runs in fallback mode.",
      {}, [coordinator]() {
        return Samples{{{}, coordinator->state() == ConnectionState::kConnected
                                ? 0.0
                                : 1.0}};
      });
  metrics->AddGauge(
      "uploadwatch_redis_connection_state",
      "1 for each Redis connection's current state.", {"connection", "state"},
      [coordinator]() {
        Samples out;
        for (auto [name, c] :
             {std::pair<const char*, RedisConnection*>{"commands",
                                                       &coordinator->commands()},
              {"reader", &coordinator->reader()}}) {
          for (ConnectionState s :
               {ConnectionState::kConnecting, ConnectionState::kConnected,
                ConnectionState::kDegraded}) {
            out.push_back({{name, std::string(ConnectionStateName(s))},
                           c->state() == s ? 1.0 : 0.0});
          }
        }
        return out;
      });
  metrics->AddGauge("uploadwatch_redis_commands",
                    "Redis commands sent since start.", {"connection"},
                    PerConnection(coordinator, [](const ConnectionStats& s) {
                      return s.commands;
                    }));
  metrics->AddGauge(
      "uploadwatch_redis_failures",
      "Redis error replies, timeouts and lost answers since start.",
      {"connection"}, PerConnection(coordinator, [](const ConnectionStats& s) {
        return s.failures;
      }));
  metrics->AddGauge("uploadwatch_redis_connects",
                    "Successful Redis (re)connects since start.", {"connection"},
                    PerConnection(coordinator, [](const ConnectionStats& s) {
                      return s.connects;
                    }));
  metrics->AddGauge("uploadwatch_poll_leases_held",
                    "Poll groups whose lease this replica holds.", {},
                    [coordinator]() {
                      return Samples{
                          {{}, static_cast<double>(
                                   coordinator->leases().HeldCount())}};
                    });
}

}  // namespace uploadwatch::redis
