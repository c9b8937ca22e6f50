#include "model/train/lora.h"

#include <algorithm>
#include <cmath>
#include <tuple>

namespace llmasos::train {
namespace {

constexpr std::string_view kNames[kNumLoraTargets] = {"q", "k", "v", "o", "gate", "up", "down"};
constexpr std::string_view kTensors[kNumLoraTargets] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                        "ffn_gate", "ffn_up", "ffn_down"};

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// (in, out) of a projection.
std::pair<size_t, size_t> Shape(LoraTarget t, const arch::ModelConfig& m) {
  switch (t) {
    case LoraTarget::kQ: return {m.embd, m.q_dim()};
    case LoraTarget::kK: return {m.embd, m.kv_dim()};
    case LoraTarget::kV: return {m.embd, m.kv_dim()};
    case LoraTarget::kO: return {m.q_dim(), m.embd};
    case LoraTarget::kGate: return {m.embd, m.ffn};
    case LoraTarget::kUp: return {m.embd, m.ffn};
    case LoraTarget::kDown: return {m.ffn, m.embd};
  }
  return {0, 0};
}

}  // namespace

std::string_view LoraTargetName(LoraTarget t) { return kNames[static_cast<size_t>(t)]; }
std::string_view LoraTargetTensor(LoraTarget t) { return kTensors[static_cast<size_t>(t)]; }

Status ParseLoraTargets(std::string_view list, LoraConfig* config) {
  std::array<bool, kNumLoraTargets> targets{};
  if (list == "all") {
    targets.fill(true);
  } else {
    size_t begin = 0;
    while (begin <= list.size()) {
      size_t end = list.find(',', begin);
      if (end == std::string_view::npos) end = list.size();
      std::string_view name = list.substr(begin, end - begin);
      bool found = false;
      for (size_t i = 0; i < kNumLoraTargets; ++i) {
        if (name == kNames[i]) targets[i] = found = true;
      }
      if (!found) {
        return InvalidArgumentError("unknown LoRA target '" + std::string(name) +
                                    "' (known: q k v o gate up down, or all)");
      }
      begin = end + 1;
    }
  }
  config->targets = targets;
  return OkStatus();
}

std::string LoraTargetList(const LoraConfig& config) {
  std::string s;
  for (size_t i = 0; i < kNumLoraTargets; ++i) {
    if (!config.targets[i]) continue;
    if (!s.empty()) s += ',';
    s += kNames[i];
  }
  return s;
}

Status ValidateLoraConfig(const LoraConfig& c, const arch::ModelConfig& m) {
  const size_t max_rank = std::min({m.embd, m.kv_dim(), m.ffn});
  if (c.rank == 0 || c.rank > max_rank) {
    return InvalidArgumentError("LoRA rank " + std::to_string(c.rank) + " must be in [1, " +
                                std::to_string(max_rank) + "] for this model");
  }
  if (!(c.alpha > 0.0f) || !std::isfinite(c.alpha)) {
    return InvalidArgumentError("LoRA alpha must be positive");
  }
  if (!(c.dropout >= 0.0f && c.dropout < 1.0f)) {
    return InvalidArgumentError("LoRA dropout must be in [0, 1)");
  }
  bool any = false;
  for (bool t : c.targets) any |= t;
  if (!any) return InvalidArgumentError("no LoRA target chosen");
  return OkStatus();
}

LoraLayout::LoraLayout(const LoraConfig& config, const arch::ModelConfig& model)
    : config_(config), index_(model.num_layers * kNumLoraTargets, -1) {
  for (size_t l = 0; l < model.num_layers; ++l) {
    for (size_t t = 0; t < kNumLoraTargets; ++t) {
      if (!config.targets[t]) continue;
      LoraSlot s;
      s.layer = l;
      s.target = static_cast<LoraTarget>(t);
      std::tie(s.in, s.out) = Shape(s.target, model);
      s.a_offset = num_params_;
      num_params_ += config.rank * s.in;
      s.b_offset = num_params_;
      num_params_ += s.out * config.rank;
      index_[l * kNumLoraTargets + t] = static_cast<int>(slots_.size());
      slots_.push_back(s);
    }
  }
}

float HashUniform(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t h = SplitMix64(seed);
  h = SplitMix64(h ^ a);
  h = SplitMix64(h ^ b);
  h = SplitMix64(h ^ c);
  return static_cast<float>(h >> 40) * (1.0f / 16777216.0f);  // 24 random bits
}

std::vector<float> InitLoraParams(const LoraLayout& layout, uint64_t seed) {
  std::vector<float> values(layout.num_params(), 0.0f);
  const size_t rank = layout.config().rank;
  for (size_t s = 0; s < layout.slots().size(); ++s) {
    const LoraSlot& slot = layout.slots()[s];
    const float bound = 1.0f / std::sqrt(static_cast<float>(slot.in));
    for (size_t i = 0; i < rank * slot.in; ++i) {
      values[slot.a_offset + i] = bound * (2.0f * HashUniform(seed, 0x10AA, s, i) - 1.0f);
    }
  }
  return values;
}

}  // namespace llmasos::train
