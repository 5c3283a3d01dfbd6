#include "service/metrics/metrics.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

using ::testing::HasSubstr;

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

}  // namespace
}  // namespace uploadwatch
