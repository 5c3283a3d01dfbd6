#include "service/grpc/rpc_log.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace uploadwatch {

// The stderr writer: lines gather in `pending_` and one write(2) takes many
// of them. Lines are whole and in order: each is appended under mu_, and
// only the thread holding write_mu_ writes, in append order.
class RpcLog::BufferedStderr {
 public:
  BufferedStderr() : thread_([this] { Loop(); }) {}
  ~BufferedStderr() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
    Flush();
  }

  // `now`: written before returning, with everything appended before it.
  void Append(absl::string_view line, bool now) {
    bool full;
    {
      absl::MutexLock lock(&mu_);
      pending_.append(line.data(), line.size());
      pending_.push_back('\n');
      full = pending_.size() >= kFlushBytes;
    }
    if (now || full) Flush();
  }

  void Flush() {
    absl::MutexLock write_lock(&write_mu_);
    std::string out;
    {
      absl::MutexLock lock(&mu_);
      out.swap(pending_);
    }
    // stderr's own FILE buffer is bypassed: it is unbuffered anyway, and
    // other writers' fwrite calls are whole lines too.
    const char* data = out.data();
    size_t left = out.size();
    while (left > 0) {
      const ssize_t n = ::write(STDERR_FILENO, data, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // nowhere to log to: drop, never block the RPCs
      data += n;
      left -= static_cast<size_t>(n);
    }
  }

 private:
  void Loop() {
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      mu_.AwaitWithTimeout(absl::Condition(&stop_), kFlushEvery);
      if (pending_.empty()) continue;
      mu_.Unlock();
      Flush();
      mu_.Lock();
    }
  }

  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::string pending_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

namespace {

// "2026-12-01T10:00:00.123Z" of `now`. absl::FormatTime costs more than the
// rest of the line; this formats the seconds once per second per thread.
void AppendTimestamp(std::string& out, absl::Time now) {
  struct Cache {
    int64_t second = INT64_MIN;
    std::string text;  // up to the seconds
  };
  thread_local Cache cache;
  const int64_t ms = absl::ToUnixMillis(now);
  const int64_t second = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
  if (second != cache.second) {
    cache.second = second;
    cache.text = absl::FormatTime("%Y-%m-%dT%H:%M:%S", absl::FromUnixSeconds(second),
                                  absl::UTCTimeZone());
  }
  const int millis = static_cast<int>(ms - second * 1000);
  char tail[6] = {'.', static_cast<char>('0' + millis / 100),
                  static_cast<char>('0' + millis / 10 % 10),
                  static_cast<char>('0' + millis % 10), 'Z', 0};
  absl::StrAppend(&out, cache.text, tail);
}

// %.1f of a non-negative number of milliseconds, without printf.
void AppendTenths(std::string& out, double ms) {
  if (!(ms >= 0) || ms > 1e15) {  // NaN, negative or absurd: let printf say
    absl::StrAppend(&out, absl::StrFormat("%.1f", ms));
    return;
  }
  const int64_t tenths = std::llround(ms * 10);
  absl::StrAppend(&out, tenths / 10, ".", tenths % 10);
}

}  // namespace

RpcLog::RpcLog(Sink sink, Metrics* metrics) : sink_(std::move(sink)) {
  if (metrics != nullptr) {
    rpcs_ = metrics->AddCounter("uploadwatch_rpcs_total",
                                "Finished RPCs by method and status code.",
                                {"method", "code"});
    latency_ = metrics->AddHistogram(
        "uploadwatch_rpc_latency_seconds",
        "RPC duration (for WatchUploading: the stream's lifetime).",
        {"method"}, Metrics::LatencyBuckets());
    // Other names (none today) take the label path in Count.
    for (const char* method : {"GetUploading", "ListUploadings",
                               "WatchUploading", "WatchUploadings"}) {
      MethodSeries& m = methods_.emplace_back();
      m.method = method;
      for (size_t code = 0; code < m.rpcs.size(); ++code) {
        m.rpcs[code] = std::make_unique<Metrics::Counter::Handle>(
            rpcs_, Metrics::Labels{
                       method, absl::StatusCodeToString(
                                   static_cast<absl::StatusCode>(code))});
      }
      m.latency = std::make_unique<Metrics::Histogram::Handle>(
          latency_, Metrics::Labels{method});
    }
  }
  if (!sink_) stderr_ = std::make_unique<BufferedStderr>();
}

RpcLog::~RpcLog() = default;

void RpcLog::Flush() const {
  if (stderr_ != nullptr) stderr_->Flush();
}

void RpcLog::Log(absl::string_view method, int32_t counter_id,
                 int64_t uploading_id, const absl::Status& status,
                 absl::Duration latency,
                 absl::string_view token_fingerprint) const {
  // The thread's line buffer, reused: no allocation per line. The sink and
  // Append copy what they keep.
  thread_local std::string line;
  line.clear();
  AppendTimestamp(line, absl::Now());
  absl::StrAppend(&line, " rpc=", method, " counter=", counter_id,
                  " id=", uploading_id, " code=",
                  absl::StatusCodeToString(status.code()), " latency_ms=");
  AppendTenths(line, absl::ToDoubleMilliseconds(latency));
  absl::StrAppend(&line, " token=",
                  token_fingerprint.empty() ? "-" : token_fingerprint);
  if (!status.ok()) absl::StrAppend(&line, " msg=\"", status.message(), "\"");
  if (stderr_ != nullptr) {
    stderr_->Append(line, /*now=*/!status.ok());
  } else {
    sink_(line);
  }
  if (line.capacity() > 4096) line = std::string();  // a long error message
  Count(method, status, latency);
}

void RpcLog::Count(absl::string_view method, const absl::Status& status,
                   absl::Duration latency) const {
  if (rpcs_ == nullptr) return;
  const size_t code = static_cast<size_t>(status.code());
  for (const MethodSeries& m : methods_) {
    if (m.method == method && code < m.rpcs.size()) {
      m.rpcs[code]->Inc();
      m.latency->ObserveDuration(latency);
      return;
    }
  }
  rpcs_->Inc({std::string(method), absl::StatusCodeToString(status.code())});
  latency_->ObserveDuration({std::string(method)}, latency);
}

}  // namespace uploadwatch
