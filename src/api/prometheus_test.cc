// The Prometheus text format as written by prometheus.h: escaping, counters, cumulative
// histogram buckets, number formatting. (tests/e2e/test_serve_metrics.py parses a whole
// exposition with prometheus_client.)
#include "api/prometheus.h"

#include <gtest/gtest.h>

#include <limits>

namespace llmasos::api::prom {
namespace {

TEST(PrometheusTest, EscapesLabelValuesAndHelpText) {
  std::string out;
  WriteFamily(&out, "x", "gauge", "line\\one\ntwo \"q\"");
  WriteSample(&out, "x", {{"tenant", "a\"b\\c\nd"}, {"m", ""}}, 2);
  EXPECT_EQ(out,
            "# HELP x line\\\\one\\ntwo \"q\"\n"
            "# TYPE x gauge\n"
            "x{tenant=\"a\\\"b\\\\c\\nd\",m=\"\"} 2\n");
}

TEST(PrometheusTest, FormatsValuesAsTheFormatSpellsThem) {
  EXPECT_EQ(FormatValue(3), "3");
  EXPECT_EQ(FormatValue(0.25), "0.25");
  EXPECT_EQ(FormatValue(-1.5), "-1.5");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(PrometheusTest, CounterSumsPerLabelSetAndNeverGoesDown) {
  Counter c("llmasos_things", "things", {"model"});
  std::string empty;
  c.Write(&empty);
  EXPECT_EQ(empty, "# HELP llmasos_things_total things\n# TYPE llmasos_things_total counter\n");
  c.Add({"a"});
  c.Add({"a"}, 2.5);
  c.Add({"b"}, 4);
  c.Add({"b"}, -1);  // ignored
  EXPECT_DOUBLE_EQ(c.Value({"a"}), 3.5);
  EXPECT_DOUBLE_EQ(c.Value({"b"}), 4);
  EXPECT_DOUBLE_EQ(c.Value({"c"}), 0);
  std::string out;
  c.Write(&out);
  EXPECT_NE(out.find("llmasos_things_total{model=\"a\"} 3.5\n"), std::string::npos) << out;
  EXPECT_NE(out.find("llmasos_things_total{model=\"b\"} 4\n"), std::string::npos) << out;
}

TEST(PrometheusTest, HistogramBucketsAreCumulativeAndInclusive) {
  Histogram h("lat_seconds", "latency", {"model"}, {0.1, 1});
  h.Observe({"m"}, 0.1);      // on the bound: counts in le=0.1
  h.Observe({"m"}, 0.5, 2);   // two observations
  h.Observe({"m"}, 7);        // only +Inf
  std::string out;
  h.Write(&out);
  EXPECT_EQ(out,
            "# HELP lat_seconds latency\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{model=\"m\",le=\"0.1\"} 1\n"
            "lat_seconds_bucket{model=\"m\",le=\"1\"} 3\n"
            "lat_seconds_bucket{model=\"m\",le=\"+Inf\"} 4\n"
            "lat_seconds_sum{model=\"m\"} 8.1\n"
            "lat_seconds_count{model=\"m\"} 4\n");
}

}  // namespace
}  // namespace llmasos::api::prom
