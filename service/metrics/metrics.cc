#include "service/metrics/metrics.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace uploadwatch {
namespace {

std::string Escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  return absl::StrFormat("%.9g", v);
}

// {a="x",b="y"} plus optional extra label; "" when there are none.
std::string LabelText(const std::vector<std::string>& names,
                      const std::vector<std::string>& values,
                      const std::string& extra_name = "",
                      const std::string& extra_value = "") {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    absl::StrAppend(&out, out.empty() ? "" : ",", names[i], "=\"",
                    Escape(values[i]), "\"");
  }
  if (!extra_name.empty()) {
    absl::StrAppend(&out, out.empty() ? "" : ",", extra_name, "=\"",
                    extra_value, "\"");
  }
  return out.empty() ? "" : absl::StrCat("{", out, "}");
}

// Where a sample for `labels` goes in `series`: its own entry, or the
// overflow entry once `max` label sets exist.
template <typename Map>
typename Map::mapped_type& Bounded(Map& series, const Metrics::Labels& labels,
                                   size_t max) {
  auto it = series.find(labels);
  if (it != series.end()) return it->second;
  Metrics::Labels other(labels.size(), "other");
  const size_t own = series.size() - series.count(other);
  return series[own < max ? labels : other];
}

}  // namespace

void Metrics::Counter::Inc(const Labels& labels, double by) {
  absl::MutexLock lock(&mu_);
  Bounded(values_, labels, max_series_) += by;
}

void Metrics::Counter::Handle::Inc(double by) {
  double* value = value_.load(std::memory_order_acquire);
  absl::MutexLock lock(&counter_->mu_);
  if (value == nullptr) {
    // Resolved at the first increment, not before: an unused series stays
    // off /metrics, as with Inc(labels). Racing resolvers find one entry.
    value = &Bounded(counter_->values_, labels_, counter_->max_series_);
    value_.store(value, std::memory_order_release);
  }
  *value += by;
}

void Metrics::Histogram::AddLocked(Series& s, double value) {
  const size_t bucket =
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  if (s.buckets.empty()) s.buckets.assign(bounds_.size() + 1, 0);
  s.buckets[bucket] += 1;  // the last slot is +Inf
  s.sum += value;
  s.count += 1;
}

void Metrics::Histogram::Observe(const Labels& labels, double value) {
  absl::MutexLock lock(&mu_);
  AddLocked(Bounded(series_, labels, max_series_), value);
}

void Metrics::Histogram::Handle::Observe(double value) {
  Series* series = series_.load(std::memory_order_acquire);
  absl::MutexLock lock(&histogram_->mu_);
  if (series == nullptr) {
    series = &Bounded(histogram_->series_, labels_, histogram_->max_series_);
    series_.store(series, std::memory_order_release);
  }
  histogram_->AddLocked(*series, value);
}

Metrics::Counter* Metrics::AddCounter(std::string name, std::string help,
                                      std::vector<std::string> label_names) {
  auto family = std::make_unique<Family>();
  family->name = std::move(name);
  family->help = std::move(help);
  family->type = "counter";
  family->label_names = std::move(label_names);
  family->counter.reset(new Counter(options_.max_series_per_family));
  Counter* out = family->counter.get();
  absl::MutexLock lock(&mu_);
  families_.push_back(std::move(family));
  return out;
}

Metrics::Histogram* Metrics::AddHistogram(std::string name, std::string help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  std::sort(bounds.begin(), bounds.end());
  auto family = std::make_unique<Family>();
  family->name = std::move(name);
  family->help = std::move(help);
  family->type = "histogram";
  family->label_names = std::move(label_names);
  family->histogram.reset(
      new Histogram(std::move(bounds), options_.max_series_per_family));
  Histogram* out = family->histogram.get();
  absl::MutexLock lock(&mu_);
  families_.push_back(std::move(family));
  return out;
}

void Metrics::AddGauge(std::string name, std::string help,
                       std::vector<std::string> label_names,
                       GaugeReader reader) {
  auto family = std::make_unique<Family>();
  family->name = std::move(name);
  family->help = std::move(help);
  family->type = "gauge";
  family->label_names = std::move(label_names);
  family->gauge = std::move(reader);
  absl::MutexLock lock(&mu_);
  families_.push_back(std::move(family));
}

std::vector<double> Metrics::LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
          0.25,  0.5,    1,     2.5,  5,     10,   30};
}

std::string Metrics::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& f : families_) {
    absl::StrAppend(&out, "# HELP ", f->name, " ", f->help, "\n# TYPE ",
                    f->name, " ", f->type, "\n");
    if (f->counter) {
      absl::MutexLock l(&f->counter->mu_);
      for (const auto& [labels, value] : f->counter->values_) {
        absl::StrAppend(&out, f->name, LabelText(f->label_names, labels), " ",
                        Number(value), "\n");
      }
    } else if (f->histogram) {
      Histogram& h = *f->histogram;
      absl::MutexLock l(&h.mu_);
      for (const auto& [labels, series] : h.series_) {
        uint64_t cumulative = 0;
        for (size_t i = 0; i <= h.bounds_.size(); ++i) {
          cumulative += series.buckets[i];
          const std::string le =
              i < h.bounds_.size() ? Number(h.bounds_[i]) : "+Inf";
          absl::StrAppend(&out, f->name, "_bucket",
                          LabelText(f->label_names, labels, "le", le), " ",
                          cumulative, "\n");
        }
        absl::StrAppend(&out, f->name, "_sum", LabelText(f->label_names, labels),
                        " ", Number(series.sum), "\n", f->name, "_count",
                        LabelText(f->label_names, labels), " ", series.count,
                        "\n");
      }
    } else if (f->gauge) {
      std::vector<std::pair<Labels, double>> samples = f->gauge();
      const size_t max = options_.max_series_per_family;
      if (samples.size() > max) {
        double rest = 0;
        for (size_t i = max; i < samples.size(); ++i) rest += samples[i].second;
        samples.resize(max);
        samples.emplace_back(Labels(f->label_names.size(), "other"), rest);
      }
      for (const auto& [labels, value] : samples) {
        absl::StrAppend(&out, f->name, LabelText(f->label_names, labels), " ",
                        Number(value), "\n");
      }
    }
  }
  return out;
}

}  // namespace uploadwatch
