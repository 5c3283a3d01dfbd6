#ifndef UPLOADWATCH_SERVICE_CORE_SINGLE_FLIGHT_H_
#define UPLOADWATCH_SERVICE_CORE_SINGLE_FLIGHT_H_

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace uploadwatch {

// One upstream call per key, shared by everyone who asks for that key while
// it is on its way (after Go's singleflight, plus "cancel when the last
// caller leaves"). A passive bookkeeper like QuotaGuard: it decides, its owner
// sends, cancels and runs callbacks, outside its own lock.
//
// Life of a flight: Join() by the first caller says `send`; the owner calls
// ShouldSend() just before sending (false: everyone left meanwhile, so the
// call is never sent) and Sent() with the request id after (false: everyone
// left while it was being sent, so the owner cancels it). Late callers Join()
// the same flight. Leave() by the last waiter removes the flight and returns
// the request to cancel. Complete() hands the answer's waiters to the owner;
// the answer of a flight that was left or superseded finds no waiters and is
// dropped. Thread-compatible: the owner guards it.
template <typename Key, typename Result>
class SingleFlight {
 public:
  using RequestId = uint64_t;
  // `sent`: when the flight's request was sent (for ordering answers).
  using Callback =
      absl::AnyInvocable<void(const absl::StatusOr<Result>&, absl::Time sent) &&>;

  // What Join() decided, and what Leave() needs.
  struct Ticket {
    Key key;
    uint64_t flight = 0;  // tells this flight from later ones of the same key
    uint64_t waiter = 0;
    bool send = false;  // a new flight: the caller sends its request
  };
  // A flight removed from the table: its request (0 if never sent) and the
  // waiters still waiting (failed by the owner on shutdown).
  struct Abandoned {
    RequestId request = 0;
    std::vector<Callback> waiters;
  };

  // `done` waits for the answer of the key's flight, a new one unless one is
  // under way. `now` becomes the send time of a new flight.
  Ticket Join(const Key& key, Callback done, absl::Time now) {
    auto [it, created] = flights_.try_emplace(key);
    Flight& f = it->second;
    if (created) {
      f.id = next_id_++;
      f.sent = now;
    }
    const uint64_t waiter = next_id_++;
    f.waiters.emplace_back(waiter, std::move(done));
    return Ticket{key, f.id, waiter, created};
  }

  // Whether the flight still has waiters, i.e. its request is still wanted.
  bool ShouldSend(const Key& key, uint64_t flight) const {
    auto it = flights_.find(key);
    return it != flights_.end() && it->second.id == flight;
  }

  // Records the request sent for `flight`. False when the flight is gone
  // (everyone left during the send): the owner cancels `request`.
  bool Sent(const Key& key, uint64_t flight, RequestId request) {
    auto it = flights_.find(key);
    if (it == flights_.end() || it->second.id != flight) return false;
    it->second.request = request;
    return true;
  }

  // Takes `ticket`'s waiter out. When it was the last one the flight is
  // removed: the result says which request to cancel (0: not sent yet, and
  // now never will be). nullopt when others still wait or it was not waiting.
  // `left`, if given, receives the waiter's callback (never to be called),
  // so that the owner destroys it outside its lock.
  std::optional<RequestId> Leave(const Ticket& ticket,
                                 Callback* left = nullptr) {
    auto it = flights_.find(ticket.key);
    if (it == flights_.end() || it->second.id != ticket.flight) {
      return std::nullopt;
    }
    auto& waiters = it->second.waiters;
    const size_t before = waiters.size();
    for (auto w = waiters.begin(); w != waiters.end(); ++w) {
      if (w->first == ticket.waiter) {
        if (left != nullptr) *left = std::move(w->second);
        waiters.erase(w);
        break;
      }
    }
    if (waiters.size() == before || !waiters.empty()) return std::nullopt;
    const RequestId request = it->second.request;
    flights_.erase(it);
    return request;
  }

  // The waiters of `flight`, which answered; the flight is removed. Empty
  // when the flight was left or superseded: its answer is to be dropped.
  std::vector<Callback> Complete(const Key& key, uint64_t flight,
                                 absl::Time* sent) {
    std::vector<Callback> out;
    auto it = flights_.find(key);
    if (it == flights_.end() || it->second.id != flight) return out;
    *sent = it->second.sent;
    for (auto& [id, cb] : it->second.waiters) out.push_back(std::move(cb));
    flights_.erase(it);
    return out;
  }

  // Removes every flight (shutdown).
  std::vector<Abandoned> TakeAll() {
    std::vector<Abandoned> out;
    for (auto& [key, f] : flights_) {
      Abandoned a;
      a.request = f.request;
      for (auto& [id, cb] : f.waiters) a.waiters.push_back(std::move(cb));
      out.push_back(std::move(a));
    }
    flights_.clear();
    return out;
  }

  size_t size() const { return flights_.size(); }
  bool contains(const Key& key) const { return flights_.contains(key); }

 private:
  struct Flight {
    uint64_t id = 0;
    RequestId request = 0;
    absl::Time sent;
    std::vector<std::pair<uint64_t, Callback>> waiters;
  };
  uint64_t next_id_ = 1;
  absl::flat_hash_map<Key, Flight> flights_;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_SINGLE_FLIGHT_H_
