// lora_oracle_tool: runs the training pass on a given batch and prints what the JAX oracle
// (tests/e2e/test_train_oracle.py) recomputes: the initial LoRA parameters, the loss and its
// gradients, then a few AdamW steps (clipping, schedule) on the same batch.
//
//   lora_oracle_tool < request.json > result.json
//   request: {"model": PATH, "rank": R, "alpha": A, "targets": "q,v" | "all", "seed": S,
//             "b_init_std": F (B starts random so every gradient is non-zero; 0 keeps B = 0),
//             "sequences": [{"tokens": [...], "is_target": [0/1 ...]}, ...],
//             "steps": N, "lr": F, "warmup": N, "clip": F, "weight_decay": F, "threads": N}
//   result:  {"params0": {tensor: [floats]}, "loss0": F, "num_targets": N,
//             "grads0": {tensor: [floats]}, "steps": [{"loss", "grad_norm", "lr"}],
//             "params_final": {tensor: [floats]}}   (each step also has "seconds": its wall time;
//             bench/train/run.py uses it)
// Tensor names are the adapter file's (blk.N.attn_q.weight.lora_a: A [rank, in] row-major).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "model/train/optimizer.h"
#include "model/train/train_graph.h"

namespace {

using nlohmann::json;
using namespace llmasos;

json Tensors(const train::LoraLayout& layout, const std::vector<float>& v) {
  json out = json::object();
  const size_t rank = layout.config().rank;
  for (const train::LoraSlot& s : layout.slots()) {
    const std::string stem = "blk." + std::to_string(s.layer) + "." +
                             std::string(train::LoraTargetTensor(s.target)) + ".weight.lora_";
    out[stem + "a"] = std::vector<float>(v.begin() + s.a_offset, v.begin() + s.a_offset + rank * s.in);
    out[stem + "b"] = std::vector<float>(v.begin() + s.b_offset, v.begin() + s.b_offset + s.out * rank);
  }
  return out;
}

Status Run(const json& req) {
  // As finetune loads it: training reads the file's layout, a repacked copy would go unused.
  arch::LoadOptions load;
  load.repack = false;
  ASSIGN_OR_RETURN(auto model, arch::Model::Load(req.at("model").get<std::string>(), load));
  train::LoraConfig lora;
  lora.rank = req.value("rank", 4);
  lora.alpha = req.value("alpha", 8.0f);
  RETURN_IF_ERROR(train::ParseLoraTargets(req.value("targets", std::string("all")), &lora));
  RETURN_IF_ERROR(train::ValidateLoraConfig(lora, model->config()));
  train::LoraLayout layout(lora, model->config());
  std::vector<float> params = train::InitLoraParams(layout, req.value("seed", 1));
  const float b_std = req.value("b_init_std", 0.0f);
  if (b_std > 0) {
    std::mt19937_64 rng(req.value("seed", 1) + 99);
    std::normal_distribution<float> normal(0.0f, b_std);
    for (const train::LoraSlot& s : layout.slots()) {
      for (size_t i = 0; i < s.out * lora.rank; ++i) params[s.b_offset + i] = normal(rng);
    }
  }
  std::vector<train::TrainSequence> seqs;
  size_t total_tokens = 0, targets = 0;
  for (const json& s : req.at("sequences")) {
    train::TrainSequence seq;
    seq.tokens = s.at("tokens").get<std::vector<int32_t>>();
    seq.is_target = s.at("is_target").get<std::vector<uint8_t>>();
    total_tokens += seq.tokens.size();
    for (size_t i = 1; i < seq.is_target.size(); ++i) targets += seq.is_target[i] != 0;
    seqs.push_back(std::move(seq));
  }
  std::vector<const train::TrainSequence*> batch;
  for (const auto& s : seqs) batch.push_back(&s);
  ThreadPool pool(req.value("threads", 2));
  train::TrainGraph graph(*model, layout, pool, std::max<size_t>(total_tokens, 1));
  const float scale = 1.0f / static_cast<float>(std::max<size_t>(targets, 1));

  json out;
  const bool dump = req.value("dump_tensors", true);  // false: the benchmark needs timings only
  if (dump) out["params0"] = Tensors(layout, params);
  out["num_targets"] = targets;
  std::vector<float> grads(layout.num_params(), 0.0f);
  ASSIGN_OR_RETURN(train::LossSum l0, graph.Run(batch, params.data(), grads.data(), scale, 0));
  out["loss0"] = l0.sum / static_cast<double>(targets);
  if (dump) out["grads0"] = Tensors(layout, grads);

  train::AdamWOptions adam;
  adam.lr = req.value("lr", 1e-3f);
  adam.warmup_steps = req.value("warmup", 0);
  adam.clip_norm = req.value("clip", 1.0f);
  adam.weight_decay = req.value("weight_decay", 0.0f);
  adam.total_steps = std::max<size_t>(req.value("steps", 0), 1);
  RETURN_IF_ERROR(train::ValidateAdamWOptions(adam));
  train::AdamW opt(adam, layout.num_params());
  out["steps"] = json::array();
  for (size_t step = 0; step < req.value("steps", 0u); ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    std::fill(grads.begin(), grads.end(), 0.0f);
    ASSIGN_OR_RETURN(train::LossSum l, graph.Run(batch, params.data(), grads.data(), scale, 0));
    const double norm = train::ClipGradNorm(grads, adam.clip_norm);
    const float lr = opt.Step(step, grads, params);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out["steps"].push_back({{"loss", l.sum / static_cast<double>(targets)}, {"grad_norm", norm},
                            {"lr", lr}, {"seconds", secs}});
  }
  if (dump) out["params_final"] = Tensors(layout, params);
  std::cout << out.dump() << "\n";
  return OkStatus();
}

}  // namespace

int main() {
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  json req = json::parse(input, nullptr, false);
  if (req.is_discarded() || !req.is_object()) {
    std::fprintf(stderr, "lora_oracle_tool: stdin is not a JSON object\n");
    return 2;
  }
  llmasos::Status st;
  try {
    st = Run(req);
  } catch (const json::exception& e) {
    st = llmasos::InvalidArgumentError(std::string("bad request: ") + e.what());
  }
  if (!st.ok()) {
    std::fprintf(stderr, "lora_oracle_tool: %s\n", st.ToString().c_str());
    return 2;
  }
  return 0;
}
