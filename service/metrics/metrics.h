#ifndef UPLOADWATCH_SERVICE_METRICS_METRICS_H_
#define UPLOADWATCH_SERVICE_METRICS_METRICS_H_

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
    friend class Metrics;
    struct Series {
      std::vector<uint64_t> buckets;  // cumulative at render time only
      double sum = 0;
      uint64_t count = 0;
    };
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
