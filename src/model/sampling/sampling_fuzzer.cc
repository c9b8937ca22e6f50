// Fuzzes the Sampler with arbitrary parameters (those ValidateSamplingParams accepts), penalty
// windows and logits (NaN and infinities included), and the StopMatcher with arbitrary stops
// and split points, checking the properties each must keep.
//
// Input: a mode byte; mode even -> sampler, odd -> stop matcher.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "model/sampling/sampler.h"
#include "util/logging.h"

using llmasos::sampling::SamplingParams;
using llmasos::sampling::Sampler;
using llmasos::sampling::StopMatcher;
using llmasos::sampling::TokenId;

namespace {

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  template <typename T>
  T Next() {
    T v{};
    const size_t n = std::min(sizeof(T), size_ - pos_);
    std::memcpy(&v, data_ + pos_, n);
    pos_ += n;
    return v;
  }
  size_t left() const { return size_ - pos_; }
  std::string_view Rest() {
    std::string_view r(reinterpret_cast<const char*>(data_ + pos_), size_ - pos_);
    pos_ = size_;
    return r;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

void FuzzSampler(Reader& in) {
  SamplingParams p;
  p.temperature = in.Next<float>();
  p.top_k = in.Next<int32_t>();
  p.top_p = in.Next<float>();
  p.min_p = in.Next<float>();
  p.repeat_penalty = in.Next<float>();
  p.presence_penalty = in.Next<float>();
  p.frequency_penalty = in.Next<float>();
  p.penalty_last_n = in.Next<int32_t>();
  p.seed = in.Next<uint64_t>();
  if (!llmasos::sampling::ValidateSamplingParams(p).ok()) return;

  std::vector<TokenId> accepted(in.Next<uint8_t>() % 32);
  for (TokenId& t : accepted) t = in.Next<int16_t>();
  std::vector<float> logits(std::min<size_t>(in.left() / sizeof(float), 4096));
  for (float& l : logits) l = in.Next<float>();
  if (logits.empty()) return;

  Sampler a(p), b(p);
  for (TokenId t : accepted) {
    a.Accept(t);
    b.Accept(t);
  }
  std::vector<float> la = logits, lb = logits;
  const TokenId ta = a.Sample(la);
  const TokenId tb = b.Sample(lb);
  CHECK(ta >= 0 && static_cast<size_t>(ta) < logits.size()) << "token " << ta;
  CHECK_EQ(ta, tb) << "same seed, same inputs, different tokens";
  if (p.temperature <= 0.0f || p.top_k == 1) {
    // Greedy: nothing (NaN aside) beats the chosen token after the penalties, applied in place.
    for (size_t i = 0; i < la.size(); ++i) CHECK(!(la[i] > la[ta])) << "token " << i << " beats " << ta;
  }
}

// Where the whole text is cut: before the stop that completes first (longest on a tie).
size_t ReferenceCut(std::string_view text, const std::vector<std::string>& stops) {
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t longest = 0;
    for (const std::string& s : stops) {
      if (s.size() <= end && text.substr(end - s.size(), s.size()) == s) longest = std::max(longest, s.size());
    }
    if (longest > 0) return end - longest;
  }
  return std::string::npos;
}

void FuzzStopMatcher(Reader& in) {
  std::vector<std::string> stops(in.Next<uint8_t>() % 5);
  for (std::string& s : stops) {
    const size_t len = in.Next<uint8_t>() % 8;
    for (size_t i = 0; i < len; ++i) s.push_back(static_cast<char>('a' + in.Next<uint8_t>() % 4));
  }
  std::vector<size_t> splits(in.Next<uint8_t>() % 16);
  for (size_t& s : splits) s = in.Next<uint8_t>();
  std::string_view text = in.Rest();
  std::vector<std::string> nonempty;
  for (const std::string& s : stops) {
    if (!s.empty()) nonempty.push_back(s);
  }

  StopMatcher m(stops);
  std::string emitted;
  size_t pos = 0;
  for (size_t i = 0; pos < text.size() && !m.stopped(); ++i) {
    const size_t len = i < splits.size() ? std::min(splits[i], text.size() - pos) : text.size() - pos;
    emitted += m.Push(text.substr(pos, len));
    pos += len;
  }
  if (!m.stopped()) emitted += m.Flush();
  const size_t cut = ReferenceCut(text, nonempty);
  CHECK_EQ(m.stopped(), cut != std::string::npos);
  CHECK(emitted == text.substr(0, cut)) << "emitted " << emitted.size() << " bytes";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  if (in.Next<uint8_t>() % 2 == 0) {
    FuzzSampler(in);
  } else {
    FuzzStopMatcher(in);
  }
  return 0;
}
