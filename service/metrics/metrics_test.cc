#include "service/metrics/metrics.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(Metrics, CountersRenderWithLabelsAndEscaping) {
  Metrics m;
  auto* c = m.AddCounter("x_total", "Things.", {"method", "code"});
  c->Inc({"Get", "OK"});
  c->Inc({"Get", "OK"}, 2);
  c->Inc({"Get", "a\"b\\c\nd"});
  const std::string text = m.Render();
  EXPECT_THAT(text, HasSubstr("# HELP x_total Things.\n# TYPE x_total counter\n"));
  EXPECT_THAT(text, HasSubstr("x_total{method=\"Get\",code=\"OK\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("code=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

TEST(Metrics, HistogramsAreCumulativeWithSumAndCount) {
  Metrics m;
  auto* h = m.AddHistogram("lat_seconds", "Latency.", {"m"}, {0.1, 1});
  h->Observe({"a"}, 0.05);
  h->Observe({"a"}, 0.5);
  h->Observe({"a"}, 0.1);  // on the bound: counts as <= 0.1
  h->Observe({"a"}, 5);
  const std::string text = m.Render();
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{m=\"a\",le=\"0.1\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{m=\"a\",le=\"1\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{m=\"a\",le=\"+Inf\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_sum{m=\"a\"} 5.65\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_count{m=\"a\"} 4\n"));
}

TEST(Metrics, GaugesAreReadAtRenderTime) {
  Metrics m;
  double value = 1;
  m.AddGauge("open_watches", "Open watches.", {}, [&] {
    return std::vector<std::pair<Metrics::Labels, double>>{{{}, value}};
  });
  EXPECT_THAT(m.Render(), HasSubstr("open_watches 1\n"));
  value = 42;
  EXPECT_THAT(m.Render(), HasSubstr("open_watches 42\n"));
}

TEST(Metrics, CounterLabelSetsAreCappedWithAnOtherSeries) {
  Metrics m(Metrics::Options{.max_series_per_family = 3});
  auto* c = m.AddCounter("calls_total", "Calls.", {"token", "code"});
  for (int i = 0; i < 100; ++i) c->Inc({absl::StrCat("t", i), "OK"});
  c->Inc({"t0", "OK"}, 5);  // a kept series still counts on its own
  const std::string text = m.Render();
  EXPECT_THAT(text, HasSubstr("calls_total{token=\"t0\",code=\"OK\"} 6\n"));
  EXPECT_THAT(text, HasSubstr("calls_total{token=\"t2\",code=\"OK\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("t3")));
  EXPECT_THAT(text, HasSubstr("calls_total{token=\"other\",code=\"other\"} 97\n"));
}

TEST(Metrics, HistogramLabelSetsAreCappedWithAnOtherSeries) {
  Metrics m(Metrics::Options{.max_series_per_family = 2});
  auto* h = m.AddHistogram("lat_seconds", "Latency.", {"m"}, {1});
  for (int i = 0; i < 50; ++i) h->Observe({absl::StrCat("m", i)}, 0.5);
  const std::string text = m.Render();
  EXPECT_THAT(text, HasSubstr("lat_seconds_count{m=\"m1\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("m=\"m2\"")));
  EXPECT_THAT(text, HasSubstr("lat_seconds_count{m=\"other\"} 48\n"));
}

TEST(Metrics, GaugeSamplesBeyondTheCapAreSummedIntoOther) {
  Metrics m(Metrics::Options{.max_series_per_family = 2});
  m.AddGauge("used", "Used.", {"token"}, [] {
    std::vector<std::pair<Metrics::Labels, double>> out;
    for (int i = 0; i < 10; ++i) out.push_back({{absl::StrCat("t", i)}, 1});
    return out;
  });
  const std::string text = m.Render();
  EXPECT_THAT(text, HasSubstr("used{token=\"t1\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("t2")));
  EXPECT_THAT(text, HasSubstr("used{token=\"other\"} 8\n"));
}

TEST(Metrics, HandlesCountLikeTheirLabelsAndShowOnlyOnceUsed) {
  Metrics m;
  auto* c = m.AddCounter("x_total", "Things.", {"method", "code"});
  auto* h = m.AddHistogram("lat_seconds", "Latency.", {"m"}, {0.1, 1});
  Metrics::Counter::Handle ok(c, {"Get", "OK"});
  Metrics::Counter::Handle unused(c, {"Get", "NOT_FOUND"});
  Metrics::Histogram::Handle a(h, {"a"});
  EXPECT_THAT(m.Render(), Not(HasSubstr("x_total{")));
  EXPECT_THAT(m.Render(), Not(HasSubstr("lat_seconds_count")));
  ok.Inc();
  c->Inc({"Get", "OK"}, 2);  // the same series by its labels
  ok.Inc(0.5);
  a.Observe(0.05);
  h->Observe({"a"}, 0.5);
  a.ObserveDuration(absl::Seconds(5));
  const std::string text = m.Render();
  EXPECT_THAT(text, HasSubstr("x_total{method=\"Get\",code=\"OK\"} 3.5\n"));
  EXPECT_THAT(text, Not(HasSubstr("NOT_FOUND")));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{m=\"a\",le=\"0.1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{m=\"a\",le=\"1\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_count{m=\"a\"} 3\n"));
}

TEST(Metrics, HandlesBeyondTheCapCountInTheOtherSeries) {
  Metrics m(Metrics::Options{.max_series_per_family = 1});
  auto* c = m.AddCounter("calls_total", "Calls.", {"token"});
  c->Inc({"t0"});
  Metrics::Counter::Handle late(c, {"t1"});
  late.Inc();
  late.Inc();
  const std::string text = m.Render();
  EXPECT_THAT(text, Not(HasSubstr("t1")));
  EXPECT_THAT(text, HasSubstr("calls_total{token=\"other\"} 2\n"));
}

}  // namespace
}  // namespace uploadwatch
