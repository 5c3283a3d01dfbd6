#include "service/redis/redis_coordinator.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace uploadwatch::redis {

absl::StatusOr<CoordinatorOptions> OptionsFromFlags(
    const MultiReplicaFlags& flags) {
  CoordinatorOptions o;
  if (absl::Status s = ParseRedisAddress(flags.redis, &o.redis); !s.ok()) {
    return s;
  }
  if (!flags.redis_password_file.empty()) {
    absl::StatusOr<std::string> password =
        ReadPasswordFile(flags.redis_password_file);
    if (!password.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--redis_password_file: ", password.status().message()));
    }
    o.redis.password = *std::move(password);
  }
  o.redis.key_prefix = flags.redis_key_prefix;
  if (flags.redis_fallback_parallel < 1) {
    return absl::InvalidArgumentError(
        "--redis_fallback_parallel must be at least 1");
  }
  if (flags.max_in_flight_per_token < 1) {
    return absl::InvalidArgumentError(
        "--max_in_flight_per_token must be at least 1");
  }
  if (flags.lease_ttl < absl::Milliseconds(300)) {
    return absl::InvalidArgumentError(
        "--redis_lease_ttl must be at least 300ms (it is renewed every third)");
  }
  o.lease.ttl = flags.lease_ttl;
  o.wants.ttl = flags.lease_ttl;
  o.parallel_cap.cap = flags.max_in_flight_per_token;
  o.parallel_cap.fallback_parallel =
      std::min(flags.redis_fallback_parallel, flags.max_in_flight_per_token);
  o.daily_budget.per_token = flags.daily_budget;
  o.daily_budget.reset = flags.daily_reset;
  // A replica alone spends a quarter: three replicas cut off from Redis stay
  // within the budget.
  o.daily_budget.fallback_per_token = std::max<int64_t>(1, flags.daily_budget / 4);
  return o;
}

RedisCoordinator::RedisCoordinator(CoordinatorOptions options,
                                   PollOwnership::ChangeCallback on_poll_change,
                                   GroupWants::WantedCallback on_wanted)
    : replica_id_(options.lease.owner_id.empty() ? MakeReplicaId()
                                                 : options.lease.owner_id) {
  RedisOptions command_options = options.redis;
  command_options.client_name = absl::StrCat("uploadwatch:", replica_id_);
  RedisOptions reader_options = options.redis;
  reader_options.client_name = absl::StrCat("uploadwatch-reader:", replica_id_);
  commands_ = std::make_unique<RedisConnection>(command_options, &loop_);
  reader_ = std::make_unique<RedisConnection>(reader_options, &loop_);
  options.lease.owner_id = replica_id_;
  options.parallel_cap.owner_id = replica_id_;
  options.wants.owner_id = replica_id_;
  leases_ = std::make_unique<LeaseManager>(commands_.get(), options.lease,
                                           std::move(on_poll_change));
  wants_ = std::make_unique<GroupWants>(commands_.get(), options.wants,
                                        std::move(on_wanted));
  parallel_cap_ =
      std::make_unique<SharedParallelCap>(commands_.get(), options.parallel_cap);
  daily_budget_ =
      std::make_unique<SharedDailyBudget>(commands_.get(), options.daily_budget);
  history_ = std::make_unique<StateStream>(commands_.get(), reader_.get(),
                                           options.history);
}

RedisCoordinator::~RedisCoordinator() {
  // Parts before the connections they use, connections before the loop.
  history_.reset();
  daily_budget_.reset();
  parallel_cap_.reset();
  wants_.reset();
  leases_.reset();
  reader_.reset();
  commands_.reset();
}

ConnectionState RedisCoordinator::state() const {
  ConnectionState a = commands_->state(), b = reader_->state();
  if (a == ConnectionState::kConnected && b == ConnectionState::kConnected) {
    return ConnectionState::kConnected;
  }
  if (a == ConnectionState::kDegraded || b == ConnectionState::kDegraded) {
    return ConnectionState::kDegraded;
  }
  return ConnectionState::kConnecting;
}

}  // namespace uploadwatch::redis
