#include "bench/load.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/blocking_counter.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/time_util.h"

namespace uploadwatch::bench {
namespace {

// Keeps calls in flight until told to stop. Every answer starts the next call
// on the same channel, from the callback (the callback API allows it).
class UnaryLoop {
 public:
  // `limit`: how many calls to start in all (-1: until StopAndWait).
  UnaryLoop(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
            const v1::GetUploadingRequest& request, int outstanding_per_channel,
            int64_t limit = -1)
      : request_(request),
        slots_(static_cast<int>(channels.size()) * outstanding_per_channel),
        limit_(limit),
        drained_(slots_) {
    for (const auto& channel : channels) {
      stubs_.push_back(v1::UploadingService::NewStub(channel));
    }
  }

  void Start() {
    for (int slot = 0; slot < slots_; ++slot) {
      if (TakeCall()) {
        Issue(slot);
      } else {
        drained_.DecrementCount();
      }
    }
  }
  // With a limit: waits until every call has ended.
  void Wait() { drained_.Wait(); }
  int64_t ok() const { return ok_.load(std::memory_order_relaxed); }
  int64_t failed() const { return failed_.load(std::memory_order_relaxed); }
  void StopAndWait() {
    stopping_.store(true);
    drained_.Wait();
  }

 private:
  struct Call {
    grpc::ClientContext context;
    v1::GetUploadingResponse response;
  };

  void Issue(int slot) {
    auto* call = new Call;
    stubs_[slot % stubs_.size()]->async()->GetUploading(
        &call->context, &request_, &call->response,
        [this, call, slot](grpc::Status status) {
          (status.ok() ? ok_ : failed_).fetch_add(1, std::memory_order_relaxed);
          delete call;
          if (stopping_.load() || !TakeCall()) {
            drained_.DecrementCount();
          } else {
            Issue(slot);
          }
        });
  }

  // False once `limit_` calls have been started.
  bool TakeCall() {
    return limit_ < 0 || started_.fetch_add(1, std::memory_order_relaxed) <
                             limit_;
  }

  const v1::GetUploadingRequest request_;
  const int slots_;
  const int64_t limit_;
  std::atomic<int64_t> started_{0};
  std::vector<std::unique_ptr<v1::UploadingService::Stub>> stubs_;
  std::atomic<int64_t> ok_{0};
  std::atomic<int64_t> failed_{0};
  std::atomic<bool> stopping_{false};
  absl::BlockingCounter drained_;
};

}  // namespace

double OwnCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

std::vector<std::shared_ptr<grpc::Channel>> MakeChannels(
    const std::string& target, int n) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < n; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channels.push_back(grpc::CreateCustomChannel(
        target, grpc::InsecureChannelCredentials(), args));
  }
  return channels;
}

UnaryFigures RunUnaryLoad(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels,
    const v1::GetUploadingRequest& request, int outstanding_per_channel,
    absl::Duration warmup, absl::Duration duration,
    const std::function<double()>& server_cpu_seconds) {
  UnaryLoop loop(channels, request, outstanding_per_channel);
  loop.Start();
  absl::SleepFor(warmup);
  const int64_t before = loop.ok();
  const double cpu_before = server_cpu_seconds();
  const double own_before = OwnCpuSeconds();
  const absl::Time start = absl::Now();
  absl::SleepFor(duration);
  const int64_t after = loop.ok();
  const absl::Duration measured = absl::Now() - start;
  const double cpu_after = server_cpu_seconds();
  const double own_after = OwnCpuSeconds();
  loop.StopAndWait();
  const double calls = static_cast<double>(after - before);
  UnaryFigures figures;
  figures.qps = calls / absl::ToDoubleSeconds(measured);
  figures.server_cpu_us_per_call = 1e6 * (cpu_after - cpu_before) / calls;
  figures.client_cpu_us_per_call = 1e6 * (own_after - own_before) / calls;
  figures.failed = loop.failed();
  return figures;
}

int64_t RunUnaryCalls(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels,
    const v1::GetUploadingRequest& request, int outstanding_per_channel,
    int64_t calls) {
  UnaryLoop loop(channels, request, outstanding_per_channel, calls);
  loop.Start();
  loop.Wait();
  return loop.failed();
}

UnaryProbe::UnaryProbe(std::shared_ptr<grpc::Channel> channel,
                       const v1::GetUploadingRequest& request,
                       absl::Duration every)
    : stub_(v1::UploadingService::NewStub(channel)),
      request_(request),
      every_(every),
      thread_([this] { Loop(); }) {}

UnaryProbe::~UnaryProbe() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void UnaryProbe::Loop() {
  absl::Time next = absl::Now();
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithDeadline(absl::Condition(&stop_), next)) return;
    }
    grpc::ClientContext context;
    const absl::Time start = absl::Now();
    context.set_deadline(absl::ToChronoTime(start + absl::Seconds(10)));
    v1::GetUploadingResponse response;
    const bool ok = stub_->GetUploading(&context, request_, &response).ok();
    const absl::Time end = absl::Now();
    absl::MutexLock lock(&mu_);
    samples_.push_back(Sample{start, end - start, ok});
    next = std::max(next + every_, end);
  }
}

std::vector<UnaryProbe::Sample> UnaryProbe::SamplesBetween(absl::Time from,
                                                           absl::Time to) {
  absl::MutexLock lock(&mu_);
  std::vector<Sample> out;
  for (const Sample& s : samples_) {
    if (s.start >= from && s.start < to) out.push_back(s);
  }
  return out;
}

// One watch: reads until the stream ends. Owned by the fleet, which outlives
// it until OnDone.
class WatchFleet::Stream
    : public grpc::ClientReadReactor<v1::WatchUploadingResponse> {
 public:
  Stream(WatchFleet* fleet, int32_t counter_id, int64_t uploading_id)
      : fleet_(fleet) {
    request_.set_counter_id(counter_id);
    request_.set_uploading_id(uploading_id);
  }

  void Start(v1::UploadingService::Stub* stub) {
    stub->async()->WatchUploading(&context_, &request_, this);
    StartRead(&message_);
    StartCall();
  }

  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended: OnDone follows
    const absl::Time now = absl::Now();
    fleet_->Record(message_, !had_message_, now);
    had_message_ = true;
    StartRead(&message_);
  }

  void OnDone(const grpc::Status& /*status*/) override { fleet_->Ended(); }

 private:
  WatchFleet* const fleet_;
  grpc::ClientContext context_;
  v1::WatchUploadingRequest request_;
  v1::WatchUploadingResponse message_;
  bool had_message_ = false;  // only touched by this stream's reactions
};

WatchFleet::WatchFleet() = default;

WatchFleet::~WatchFleet() {
  // A stream that outlived its fleet would call into freed memory.
  if (!CancelAll()) {
    std::fprintf(stderr, "WatchFleet: streams did not end after cancel\n");
    std::abort();
  }
}

void WatchFleet::Open(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels,
    int32_t counter_id, const std::vector<int64_t>& uploading_ids,
    int streams) {
  const size_t first_stub = stubs_.size();
  for (const auto& channel : channels) {
    stubs_.push_back(v1::UploadingService::NewStub(channel));
  }
  const size_t c = channels.size();
  for (int i = 0; i < streams; ++i) {
    streams_.push_back(std::make_unique<Stream>(
        this, counter_id, uploading_ids[(i / c) % uploading_ids.size()]));
    streams_.back()->Start(stubs_[first_stub + i % c].get());
  }
}

void WatchFleet::Record(const v1::WatchUploadingResponse& message, bool first,
                        absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (first) ++with_message_;
  ++marker_counts_[message.uploading().linked_quantity()];
  Delivery& d = deliveries_[{message.uploading().id(), message.version()}];
  if (d.receivers++ == 0) {
    d.observe_time = absl::FromUnixNanos(
        google::protobuf::util::TimeUtil::TimestampToNanoseconds(
            message.observe_time()));
    d.marker = message.uploading().linked_quantity();
    d.last_receipt = now;
  } else {
    d.last_receipt = std::max(d.last_receipt, now);
  }
}

void WatchFleet::Ended() {
  absl::MutexLock lock(&mu_);
  ++ended_;
}

bool WatchFleet::AwaitFirstMessages(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const int total = static_cast<int>(streams_.size());
  auto done = [this, total]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return with_message_ >= total || ended_ > 0;
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return with_message_ >= total && ended_ == 0;
}

bool WatchFleet::AwaitMarker(int32_t marker, int count,
                             absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [this, marker, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = marker_counts_.find(marker);
    return it != marker_counts_.end() && it->second >= count;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

WatchFleet::Deliveries WatchFleet::deliveries() {
  absl::MutexLock lock(&mu_);
  return deliveries_;
}

int WatchFleet::streams_with_message() {
  absl::MutexLock lock(&mu_);
  return with_message_;
}

int WatchFleet::ended() {
  absl::MutexLock lock(&mu_);
  return ended_;
}

bool WatchFleet::CancelAll(absl::Duration timeout) {
  for (auto& stream : streams_) stream->Cancel();
  absl::MutexLock lock(&mu_);
  const int total = static_cast<int>(streams_.size());
  auto done = [this, total]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ended_ >= total;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

}  // namespace uploadwatch::bench
