#ifndef UPLOADWATCH_SERVICE_METRICA_QUOTA_GUARD_H_
#define UPLOADWATCH_SERVICE_METRICA_QUOTA_GUARD_H_

#include <cstdint>
#include <list>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/common/clock.h"

namespace uploadwatch {

// Keeps the requests this process sends inside Metrica's Management API
// quotas (30 requests/s per IP, 3 parallel requests per user), whatever its
// callers do. A passive scheduler: it decides, its owner sends.
//
// Requests wait in one FIFO queue. A request may be sent when its token has
// fewer than `max_in_flight_per_token` requests in flight and the process-wide
// token bucket has a token; a request whose token is at its cap does not hold
// up other tokens' requests behind it. A queued request whose deadline comes
// is expired, never sent (so work nobody waits for is dropped, not sent late).
//
// A sent request whose caller gives up (cancelled, or its deadline passed) is
// still at Metrica, which counts it against the parallel limit until it has
// answered: Abandon() keeps its slot until Release() (the answer came anyway)
// or until `abandoned_hold` after it was sent (Metrica can be assumed done),
// whichever is first. So however impatient the callers, no more than the cap
// is ever at Metrica, and a new request waits only for what really is there.
// Thread-compatible: the fetcher uses one from its event-loop thread; tests
// drive it with a FakeClock.
class QuotaGuard {
 public:
  struct Options {
    // Metrica allows 3 parallel requests per user (token owner). <= 0: no cap.
    int max_in_flight_per_token = 3;
    // Sends per second for the whole guard (one per fetcher, so per process);
    // below Metrica's 30/s per IP. <= 0: no rate limit.
    double requests_per_second = 25;
    // Sends allowed back to back after a quiet spell. With 25/s, any one
    // second then holds at most 5 + 25 = 30 sends.
    int burst = 5;
    // How long after it was sent an abandoned request keeps its slot when no
    // answer comes: the upstream timeout, beyond which Metrica is assumed to
    // have given up too.
    absl::Duration abandoned_hold = absl::Seconds(20);
  };

  using Ticket = uint64_t;

  // What Advance() decided.
  struct Step {
    std::vector<Ticket> send;     // now in flight: send them, Release() each later
    std::vector<Ticket> expired;  // dropped at their deadline: fail them
    // Abandoned tickets whose hold ended: their slots are free again; stop
    // their transfers (no Release() needed).
    std::vector<Ticket> hold_over;
    // When a queued request may next become sendable or expire, or a hold
    // end, by time alone (InfiniteFuture if none); Release(), Abandon() and
    // Enqueue() may make it sooner.
    absl::Time next_check = absl::InfiniteFuture();
  };

  // `clock` is not owned and must outlive this object.
  QuotaGuard(const Options& options, const Clock* clock);
  QuotaGuard(const QuotaGuard&) = delete;
  QuotaGuard& operator=(const QuotaGuard&) = delete;

  // Queues `ticket` (not queued or in flight already) for `token`.
  void Enqueue(Ticket ticket, absl::string_view token, absl::Time deadline);
  // Takes a queued ticket out (e.g. cancelled). False if it was not queued.
  bool Remove(Ticket ticket);
  // Ends an in-flight ticket, freeing its token's slot. Unknown tickets are
  // ignored.
  void Release(Ticket ticket);
  // The caller of an in-flight ticket gave up. True: the slot stays taken
  // until Release() or the hold ends (see Step::hold_over); keep the transfer
  // running, without a waiter, so that its answer can end the hold early.
  // False (the hold is already over, or the ticket is not in flight): the
  // slot is free now; stop the transfer.
  bool Abandon(Ticket ticket);

  // Expires, then sends, in FIFO order, everything allowed at the clock's now.
  Step Advance();

  size_t queued() const { return queue_.size(); }
  int in_flight(absl::string_view token) const;
  // Of those, how many were abandoned and are held.
  size_t held() const { return holds_.size(); }

 private:
  struct TokenState {
    int in_flight = 0;
    int queued = 0;
  };
  // A node of tokens_: pointer-stable, so queue entries point at their
  // token's state instead of hashing the token on every pass.
  using Token = std::pair<const std::string, TokenState>;

  struct Waiting {
    Ticket ticket;
    Token* token;
    absl::Time deadline;
  };
  struct Sent {
    Token* token;
    absl::Time at;
    bool abandoned = false;
  };

  void Refill(absl::Time now);
  // Frees the slot of a sent ticket (held or not).
  void EndSent(absl::flat_hash_map<Ticket, Sent>::iterator it);
  // Drops a token's state once nothing refers to it.
  void Forget(Token* token);

  const Options options_;
  const Clock* const clock_;
  absl::node_hash_map<std::string, TokenState> tokens_;
  std::list<Waiting> queue_;
  absl::flat_hash_map<Ticket, std::list<Waiting>::iterator> queued_;
  absl::flat_hash_map<Ticket, Sent> sent_;
  // Abandoned tickets by the end of their hold.
  std::set<std::pair<absl::Time, Ticket>> holds_;
  double bucket_;           // sends available now, <= burst
  absl::Time refilled_at_;  // when bucket_ was last brought up to date
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_METRICA_QUOTA_GUARD_H_
