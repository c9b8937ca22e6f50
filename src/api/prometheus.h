// The Prometheus text exposition format (version 0.0.4), written by hand: counters and
// histograms that accumulate with labels, and free functions for gauges computed at scrape
// time. Debian 12 has no prometheus-cpp, and the format is a few lines.
//
//   # HELP name text          (backslash and newline escaped)
//   # TYPE name counter|gauge|histogram
//   name{label="value",...} 1.5      (backslash, double quote and newline escaped in values)
//
// Counters are written as name_total (HELP and TYPE included: in this format a family's
// name is its samples'); histograms as name_bucket{le=...} (cumulative, ending
// in +Inf), name_sum and name_count.
//
// Names and label names are the program's constants (REQUIRES: [a-zA-Z_:][a-zA-Z0-9_:]*);
// label values may be anything (a tenant, a model name) and are escaped.
//
// Thread safety: Counter and Histogram are thread-safe (one mutex each); the Write functions
// only append to the caller's string.
#ifndef LLMASOS_API_PROMETHEUS_H_
#define LLMASOS_API_PROMETHEUS_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/mutex.h"
#include "util/thread_annotations.h"

namespace llmasos::api::prom {

// (name, value) pairs of one series, in the order they are written.
using Labels = std::vector<std::pair<std::string, std::string>>;

// "# HELP" and "# TYPE" lines of a family.
void WriteFamily(std::string* out, std::string_view name, std::string_view type, std::string_view help);
// One sample line.
void WriteSample(std::string* out, std::string_view name, const Labels& labels, double value);
// A value as the format writes it: integers without a fraction, +Inf, -Inf, NaN.
std::string FormatValue(double value);

class Counter {
 public:
  Counter(std::string name, std::string help, std::vector<std::string> label_names);
  // REQUIRES: label_values.size() == the number of label names; amount >= 0.
  void Add(const std::vector<std::string>& label_values, double amount = 1);
  // The series' value (0 if it was never added to); for tests.
  double Value(const std::vector<std::string>& label_values) const;
  // The family (nothing but HELP and TYPE while no series exists).
  void Write(std::string* out) const;

 private:
  const std::string name_, help_;
  const std::vector<std::string> label_names_;
  mutable Mutex mu_;
  std::map<std::vector<std::string>, double> values_ GUARDED_BY(mu_);
};

class Histogram {
 public:
  // `bounds`: the buckets' upper bounds, strictly increasing (+Inf is added).
  Histogram(std::string name, std::string help, std::vector<std::string> label_names, std::vector<double> bounds);
  // Adds `count` observations of `value`.
  void Observe(const std::vector<std::string>& label_values, double value, uint64_t count = 1);
  void Write(std::string* out) const;

 private:
  struct Series {
    std::vector<uint64_t> buckets;  // [bounds.size() + 1], not cumulative; the last is +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  const std::string name_, help_;
  const std::vector<std::string> label_names_;
  const std::vector<double> bounds_;
  mutable Mutex mu_;
  std::map<std::vector<std::string>, Series> series_ GUARDED_BY(mu_);
};

}  // namespace llmasos::api::prom

#endif  // LLMASOS_API_PROMETHEUS_H_
