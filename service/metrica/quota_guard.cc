#include "service/metrica/quota_guard.h"

#include <algorithm>
#include <utility>

namespace uploadwatch {

QuotaGuard::QuotaGuard(const Options& options, const Clock* clock)
    : options_(options),
      clock_(clock),
      bucket_(std::max(1, options.burst)),
      refilled_at_(clock->Now()) {}

void QuotaGuard::Enqueue(Ticket ticket, absl::string_view token,
                         absl::Time deadline) {
  Token* state = &*tokens_.try_emplace(std::string(token)).first;
  ++state->second.queued;
  queue_.push_back(Waiting{ticket, state, deadline});
  queued_[ticket] = std::prev(queue_.end());
}

bool QuotaGuard::Remove(Ticket ticket) {
  auto it = queued_.find(ticket);
  if (it == queued_.end()) return false;
  Token* token = it->second->token;
  --token->second.queued;
  queue_.erase(it->second);
  queued_.erase(it);
  Forget(token);
  return true;
}

void QuotaGuard::Release(Ticket ticket) {
  auto it = sent_.find(ticket);
  if (it == sent_.end()) return;
  EndSent(it);
}

bool QuotaGuard::Abandon(Ticket ticket) {
  auto it = sent_.find(ticket);
  if (it == sent_.end()) return false;
  if (it->second.abandoned) return true;
  const absl::Time hold_end = it->second.at + options_.abandoned_hold;
  if (clock_->Now() >= hold_end) {
    EndSent(it);
    return false;
  }
  it->second.abandoned = true;
  holds_.insert({hold_end, ticket});
  return true;
}

void QuotaGuard::EndSent(absl::flat_hash_map<Ticket, Sent>::iterator it) {
  const Sent sent = it->second;
  if (sent.abandoned) {
    holds_.erase({sent.at + options_.abandoned_hold, it->first});
  }
  --sent.token->second.in_flight;
  sent_.erase(it);
  Forget(sent.token);
}

void QuotaGuard::Forget(Token* token) {
  if (token->second.in_flight == 0 && token->second.queued == 0) {
    tokens_.erase(token->first);
  }
}

int QuotaGuard::in_flight(absl::string_view token) const {
  auto it = tokens_.find(token);
  return it == tokens_.end() ? 0 : it->second.in_flight;
}

void QuotaGuard::Refill(absl::Time now) {
  if (options_.requests_per_second <= 0 || now <= refilled_at_) return;
  bucket_ = std::min<double>(
      std::max(1, options_.burst),
      bucket_ + absl::ToDoubleSeconds(now - refilled_at_) *
                    options_.requests_per_second);
  refilled_at_ = now;
}

QuotaGuard::Step QuotaGuard::Advance() {
  const absl::Time now = clock_->Now();
  Refill(now);
  Step step;
  // Holds first: a slot they free may be used by this very pass.
  while (!holds_.empty() && holds_.begin()->first <= now) {
    const Ticket ticket = holds_.begin()->second;
    step.hold_over.push_back(ticket);
    EndSent(sent_.find(ticket));
  }
  if (!holds_.empty()) step.next_check = holds_.begin()->first;
  bool rate_limited = false;
  // One pass in FIFO order. A token at its cap stays at its cap for the rest
  // of the pass (counts only grow here), so each token's requests keep their
  // order while other tokens' requests go past them.
  for (auto it = queue_.begin(); it != queue_.end();) {
    const Waiting waiting = *it;
    TokenState& token = waiting.token->second;
    if (now >= waiting.deadline) {
      step.expired.push_back(waiting.ticket);
    } else {
      step.next_check = std::min(step.next_check, waiting.deadline);
      if (rate_limited || (options_.max_in_flight_per_token > 0 &&
                           token.in_flight >= options_.max_in_flight_per_token)) {
        ++it;
        continue;
      }
      if (options_.requests_per_second > 0) {
        if (bucket_ < 1.0) {
          rate_limited = true;
          step.next_check = std::min(
              step.next_check, now + absl::Seconds((1.0 - bucket_) /
                                                   options_.requests_per_second));
          ++it;
          continue;
        }
        bucket_ -= 1.0;
      }
      ++token.in_flight;
      step.send.push_back(waiting.ticket);
      sent_[waiting.ticket] = Sent{waiting.token, now};
    }
    --token.queued;
    queued_.erase(waiting.ticket);
    it = queue_.erase(it);
    Forget(waiting.token);
  }
  return step;
}

}  // namespace uploadwatch
