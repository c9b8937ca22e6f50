#include "api/prometheus.h"

#include <charconv>
#include <cmath>

#include "util/logging.h"

namespace llmasos::api::prom {
namespace {

void AppendEscaped(std::string* out, std::string_view text, bool quotes) {
  for (char c : text) {
    if (c == '\\') {
      *out += "\\\\";
    } else if (c == '\n') {
      *out += "\\n";
    } else if (c == '"' && quotes) {
      *out += "\\\"";
    } else {
      *out += c;
    }
  }
}

Labels Zip(const std::vector<std::string>& names, const std::vector<std::string>& values) {
  Labels labels;
  labels.reserve(names.size());
  for (size_t i = 0; i < names.size(); ++i) labels.emplace_back(names[i], values[i]);
  return labels;
}

}  // namespace

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<int64_t>(value));
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, end);
}

void WriteFamily(std::string* out, std::string_view name, std::string_view type, std::string_view help) {
  *out += "# HELP ";
  *out += name;
  *out += ' ';
  AppendEscaped(out, help, /*quotes=*/false);
  *out += "\n# TYPE ";
  *out += name;
  *out += ' ';
  *out += type;
  *out += '\n';
}

void WriteSample(std::string* out, std::string_view name, const Labels& labels, double value) {
  *out += name;
  if (!labels.empty()) {
    *out += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i > 0) *out += ',';
      *out += labels[i].first;
      *out += "=\"";
      AppendEscaped(out, labels[i].second, /*quotes=*/true);
      *out += '"';
    }
    *out += '}';
  }
  *out += ' ';
  *out += FormatValue(value);
  *out += '\n';
}

Counter::Counter(std::string name, std::string help, std::vector<std::string> label_names)
    : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {}

void Counter::Add(const std::vector<std::string>& label_values, double amount) {
  CHECK_EQ(label_values.size(), label_names_.size()) << name_;
  if (!(amount >= 0)) return;  // a counter never goes down (and NaN is no amount)
  MutexLock lock(mu_);
  values_[label_values] += amount;
}

double Counter::Value(const std::vector<std::string>& label_values) const {
  MutexLock lock(mu_);
  auto it = values_.find(label_values);
  return it == values_.end() ? 0.0 : it->second;
}

void Counter::Write(std::string* out) const {
  // The classic text format names the family as its samples: name_total.
  const std::string sample = name_ + "_total";
  WriteFamily(out, sample, "counter", help_);
  MutexLock lock(mu_);
  for (const auto& [values, value] : values_) WriteSample(out, sample, Zip(label_names_, values), value);
}

Histogram::Histogram(std::string name, std::string help, std::vector<std::string> label_names,
                     std::vector<double> bounds)
    : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)), bounds_(std::move(bounds)) {
  for (size_t i = 1; i < bounds_.size(); ++i) CHECK_LT(bounds_[i - 1], bounds_[i]) << name_;
}

void Histogram::Observe(const std::vector<std::string>& label_values, double value, uint64_t count) {
  CHECK_EQ(label_values.size(), label_names_.size()) << name_;
  if (std::isnan(value) || count == 0) return;
  // The first bucket whose bound is >= value (Prometheus buckets are "less than or equal").
  size_t idx = 0;
  while (idx < bounds_.size() && value > bounds_[idx]) ++idx;
  MutexLock lock(mu_);
  Series& s = series_[label_values];
  if (s.buckets.empty()) s.buckets.assign(bounds_.size() + 1, 0);
  s.buckets[idx] += count;
  s.sum += value * static_cast<double>(count);
  s.count += count;
}

void Histogram::Write(std::string* out) const {
  WriteFamily(out, name_, "histogram", help_);
  const std::string bucket = name_ + "_bucket", sum = name_ + "_sum", count = name_ + "_count";
  MutexLock lock(mu_);
  for (const auto& [values, s] : series_) {
    Labels labels = Zip(label_names_, values);
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= bounds_.size(); ++i) {
      cumulative += s.buckets[i];
      Labels with_le = labels;
      with_le.emplace_back("le", i < bounds_.size() ? FormatValue(bounds_[i]) : "+Inf");
      WriteSample(out, bucket, with_le, static_cast<double>(cumulative));
    }
    WriteSample(out, sum, labels, s.sum);
    WriteSample(out, count, labels, static_cast<double>(s.count));
  }
}

}  // namespace llmasos::api::prom
