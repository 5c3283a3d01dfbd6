#ifndef UPLOADWATCH_SERVICE_METRICS_METRICS_H_
#define UPLOADWATCH_SERVICE_METRICS_METRICS_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace uploadwatch {

// A small Prometheus registry: counters, histograms and callback gauges,
// rendered in the text exposition format 0.0.4. Debian ships no C++
// Prometheus client, and the format is small and stable.
//
// Label values are the caller's responsibility: never put a token in one
// (use its fingerprint). Whatever values clients cause, each family keeps at
// most Options::max_series_per_family label sets; samples for further ones
// are added up in one overflow series whose every label is "other", so
// /metrics stays bounded and totals stay right. Thread-safe.
class Metrics {
 public:
  using Labels = std::vector<std::string>;  // values, in label_names order

  struct Options {
    // Distinct label sets per family, the overflow series not counted.
    size_t max_series_per_family = 200;
  };

  class Counter {
   public:
    void Inc(const Labels& labels, double by = 1);

    // One label set of the counter, for a caller that increments it on a
    // hot path: Inc without building a label vector or finding it in the
    // family. Counts exactly as Inc(labels) would (the series appears on
    // /metrics with its first increment, and the cap applies then). Keep
    // it no longer than the registry. Thread-safe.
    class Handle {
     public:
      Handle(Counter* counter, Labels labels)
          : counter_(counter), labels_(std::move(labels)) {}
      Handle(const Handle&) = delete;
      Handle& operator=(const Handle&) = delete;
      void Inc(double by = 1);

     private:
      Counter* const counter_;
      const Labels labels_;
      // The family's entry once resolved (map nodes never move).
      std::atomic<double*> value_{nullptr};
    };

   private:
    friend class Metrics;
    explicit Counter(size_t max_series) : max_series_(max_series) {}
    const size_t max_series_;
    absl::Mutex mu_;
    std::map<Labels, double> values_ ABSL_GUARDED_BY(mu_);
  };

  class Histogram {
   public:
    void Observe(const Labels& labels, double value);
    void ObserveDuration(const Labels& labels, absl::Duration d) {
      Observe(labels, absl::ToDoubleSeconds(d));
    }

   private:
    struct Series;

   public:
    // One label set of the histogram, as Counter::Handle is of a counter.
    class Handle {
     public:
      Handle(Histogram* histogram, Labels labels)
          : histogram_(histogram), labels_(std::move(labels)) {}
      Handle(const Handle&) = delete;
      Handle& operator=(const Handle&) = delete;
      void Observe(double value);
      void ObserveDuration(absl::Duration d) {
        Observe(absl::ToDoubleSeconds(d));
      }

     private:
      Histogram* const histogram_;
      const Labels labels_;
      std::atomic<Series*> series_{nullptr};
    };

   private:
    friend class Metrics;
    struct Series {
      std::vector<uint64_t> buckets;  // cumulative at render time only
      double sum = 0;
      uint64_t count = 0;
    };
    // Adds `value` to `s` (one of series_). Requires mu_.
    void AddLocked(Series& s, double value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
    Histogram(std::vector<double> bounds, size_t max_series)
        : bounds_(std::move(bounds)), max_series_(max_series) {}
    const std::vector<double> bounds_;
    const size_t max_series_;
    absl::Mutex mu_;
    std::map<Labels, Series> series_ ABSL_GUARDED_BY(mu_);
  };

  // Returns the current samples of a gauge family. Beyond the series cap, the
  // samples after the first max_series_per_family are summed into "other".
  using GaugeReader = std::function<std::vector<std::pair<Labels, double>>()>;

  Metrics() : Metrics(Options()) {}
  explicit Metrics(Options options) : options_(options) {}
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Families live as long as the registry; the pointers stay valid.
  Counter* AddCounter(std::string name, std::string help,
                      std::vector<std::string> label_names);
  Histogram* AddHistogram(std::string name, std::string help,
                          std::vector<std::string> label_names,
                          std::vector<double> bounds);
  void AddGauge(std::string name, std::string help,
                std::vector<std::string> label_names, GaugeReader reader);

  // Latency buckets in seconds, 1 ms .. 30 s.
  static std::vector<double> LatencyBuckets();

  // The whole registry in Prometheus text format.
  std::string Render() const;

 private:
  struct Family {
    std::string name, help, type;
    std::vector<std::string> label_names;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Histogram> histogram;
    GaugeReader gauge;
  };
  const Options options_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Family>> families_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_METRICS_METRICS_H_
