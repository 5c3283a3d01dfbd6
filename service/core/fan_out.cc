#include "service/core/fan_out.h"

#include <utility>

namespace uploadwatch {
namespace {

// Subscribers per executor task: one task per watcher would cost an
// allocation each in a 10,000-watch fan-out; one task for all would serialise
// it on one thread.
constexpr size_t kBatch = 256;

}  // namespace

void FanOut::Add(Subscriber* subscriber) {
  absl::MutexLock lock(&mu_);
  boxes_.try_emplace(subscriber, std::make_unique<Mailbox>());
}

void FanOut::Remove(Subscriber* subscriber) {
  absl::MutexLock lock(&mu_);
  auto it = boxes_.find(subscriber);
  if (it == boxes_.end() || it->second->removed) return;
  Mailbox* box = it->second.get();
  box->closed = true;
  box->removed = true;
  box->gone.store(true, std::memory_order_release);
  box->items.clear();
  if (box->delivering && box->delivering_on == std::this_thread::get_id()) {
    // From inside its own delivery: the drain erases it once the call returns.
    box->drain_erases = true;
    return;
  }
  if (box->delivering) {
    mu_.Await(absl::Condition(
        +[](Mailbox* b) { return !b->delivering; }, box));
  }
  // A drain task may still name it: it will find it gone.
  boxes_.erase(subscriber);
}

void FanOut::Post(const std::vector<Subscriber*>& to,
                  std::shared_ptr<const UploadingState> state) {
  PostItem(to, Item{std::move(state), absl::OkStatus()});
}

void FanOut::PostError(const std::vector<Subscriber*>& to,
                       const absl::Status& error) {
  PostItem(to, Item{nullptr, error});
}

void FanOut::PostItem(const std::vector<Subscriber*>& to, const Item& item) {
  if (to.empty()) return;
  std::vector<std::vector<Subscriber*>> batches;
  {
    absl::MutexLock lock(&mu_);
    for (Subscriber* s : to) {
      auto it = boxes_.find(s);
      if (it == boxes_.end() || it->second->closed) continue;
      Mailbox& box = *it->second;
      box.items.push_back(item);
      if (item.state == nullptr) box.closed = true;
      if (box.scheduled) continue;  // its drain will see the item
      box.scheduled = true;
      if (batches.empty() || batches.back().size() >= kBatch) {
        batches.emplace_back();
      }
      batches.back().push_back(s);
    }
  }
  for (auto& batch : batches) {
    executor_->Run([this, batch = std::move(batch)] { Drain(batch); });
  }
}

void FanOut::Drain(const std::vector<Subscriber*>& batch) {
  absl::MutexLock lock(&mu_);
  for (Subscriber* s : batch) {
    auto it = boxes_.find(s);
    // Not scheduled: removed (and maybe added again). Delivering: another
    // drain of the same subscriber holds it (calls never overlap).
    if (it == boxes_.end() || !it->second->scheduled ||
        it->second->delivering || it->second->removed) {
      continue;
    }
    Mailbox* box = it->second.get();
    while (!box->items.empty() && !box->removed) {
      // Everything queued goes out in one unlocked stretch: a counter watch
      // gets 100 items in a poll round, and taking mu_ (which every Post
      // and every other drain needs) around each would serialise them.
      std::vector<Item> items;
      items.swap(box->items);
      box->delivering = true;
      box->delivering_on = std::this_thread::get_id();
      mu_.Unlock();
      // Only the delivering drain touches `delivered` and `closed_seen`;
      // `gone` is how a Remove() meanwhile stops the rest of the stretch.
      bool called = false;
      for (Item& item : items) {
        if (box->gone.load(std::memory_order_acquire) || box->closed_seen) {
          break;
        }
        bool confirmation = false;
        if (item.state != nullptr) {
          Mailbox::Delivered& last =
              box->delivered[item.state->uploading.id()];
          if (item.state->version < last.version) continue;
          confirmation = item.state->version == last.version;
          if (confirmation &&
              (last.version == 0 || item.state->check_time <= last.check_time)) {
            continue;
          }
          last = {item.state->version, item.state->check_time};
        }
        if (confirmation) {
          s->OnConfirmed(*item.state);
        } else if (item.state != nullptr) {
          s->OnState(*item.state);
        } else {
          s->OnError(item.error);
          box->closed_seen = true;  // nothing after it, OnDrained included
        }
        called = true;
      }
      if (called && !box->closed_seen &&
          !box->gone.load(std::memory_order_acquire)) {
        s->OnDrained();
      }
      items.clear();  // the states' last references may go: not under mu_
      mu_.Lock();
      // Remove() may be waiting to erase the box: after this, touch it no
      // more unless it is still ours.
      box->delivering = false;
    }
    if (box->drain_erases) {
      boxes_.erase(s);
      continue;
    }
    if (!box->removed) box->scheduled = false;
  }
}

size_t FanOut::size() const {
  absl::MutexLock lock(&mu_);
  return boxes_.size();
}

}  // namespace uploadwatch
