#include "bench/counter_load.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "google/protobuf/util/time_util.h"

namespace uploadwatch::bench {

class CounterFleet::Stream
    : public grpc::ClientReadReactor<v1::WatchUploadingsResponse> {
 public:
  Stream(CounterFleet* fleet, int32_t counter_id) : fleet_(fleet) {
    request_.set_counter_id(counter_id);
  }
  void Start(v1::UploadingService::Stub* stub) {
    stub->async()->WatchUploadings(&context_, &request_, this);
    StartRead(&message_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    fleet_->Record(message_, absl::Now());
    StartRead(&message_);
  }
  void OnDone(const grpc::Status& /*status*/) override { fleet_->Ended(); }

 private:
  CounterFleet* const fleet_;
  grpc::ClientContext context_;
  v1::WatchUploadingsRequest request_;
  v1::WatchUploadingsResponse message_;
};

CounterFleet::CounterFleet() = default;

CounterFleet::~CounterFleet() {
  if (!CancelAll()) {
    std::fprintf(stderr, "CounterFleet: streams did not end after cancel\n");
    std::abort();
  }
}

void CounterFleet::Open(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels,
    int32_t counter_id, int streams) {
  const size_t first_stub = stubs_.size();
  for (const auto& channel : channels) {
    stubs_.push_back(v1::UploadingService::NewStub(channel));
  }
  for (int i = 0; i < streams; ++i) {
    streams_.push_back(std::make_unique<Stream>(this, counter_id));
    streams_.back()->Start(stubs_[first_stub + i % channels.size()].get());
  }
}

void CounterFleet::Record(const v1::WatchUploadingsResponse& message,
                          absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (message.synced()) ++synced_;
  for (const auto& e : message.events()) {
    const int32_t marker = e.uploading().linked_quantity();
    ++marker_counts_[marker];
    Delivery& d = deliveries_[{e.uploading().id(), marker}];
    if (d.receivers++ == 0) {
      d.observe_time = absl::FromUnixNanos(
          google::protobuf::util::TimeUtil::TimestampToNanoseconds(
              e.observe_time()));
      d.last_receipt = now;
    } else {
      d.last_receipt = std::max(d.last_receipt, now);
    }
  }
}

void CounterFleet::Ended() {
  absl::MutexLock lock(&mu_);
  ++ended_;
}

bool CounterFleet::AwaitSynced(absl::Duration timeout) {
  const int n = static_cast<int>(streams_.size());
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return synced_ >= n || ended_ > 0;
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return synced_ >= n && ended_ == 0;
}

bool CounterFleet::AwaitMarker(int32_t marker, int count,
                               absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return marker_counts_[marker] >= count;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

CounterFleet::Deliveries CounterFleet::deliveries() {
  absl::MutexLock lock(&mu_);
  return deliveries_;
}

int CounterFleet::ended() {
  absl::MutexLock lock(&mu_);
  return ended_;
}

bool CounterFleet::CancelAll(absl::Duration timeout) {
  for (auto& s : streams_) s->Cancel();
  const int n = static_cast<int>(streams_.size());
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return ended_ >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

}  // namespace uploadwatch::bench
