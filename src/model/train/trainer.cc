#include "model/train/trainer.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

#include "model/train/dataset.h"
#include "util/file.h"

namespace llmasos::train {
namespace {

constexpr std::string_view kCheckpointMagic = "LLMASOS-LORA-CHECKPOINT 1\n";
constexpr size_t kMaxCheckpointBytes = size_t{1} << 34;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

void AppendFloats(std::string* out, const std::vector<float>& v) {
  out->append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

}  // namespace

size_t PeakRssBytes() {
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<size_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

// The training graph (train_graph.cc) computes the plain llama block: RMSNorm, RoPE with one
// base and no scaling, softmax attention over the whole causal context, SwiGLU. A model that
// needs more would get a forward that differs from inference and gradients of the wrong
// function, so it is refused by name until the graph learns the feature.
namespace {

Status CheckTrainableArchitecture(const arch::ModelConfig& c) {
  const char* feature = nullptr;
  if (c.qk_norm) feature = "per-head Q/K RMSNorm (qwen3, gemma3)";
  else if (c.post_norms) feature = "post-attention and post-FFN norms (gemma2, gemma3)";
  else if (c.embd_scale) feature = "scaled token embeddings (gemma)";
  else if (c.ffn_activation != arch::FfnActivation::kSilu) feature = "a GELU feed-forward (gemma)";
  else if (c.attn_softcap > 0.0f || c.final_softcap > 0.0f) feature = "logit soft-capping (gemma2)";
  else if (c.sliding_window > 0) feature = "sliding-window attention (gemma2, gemma3)";
  else if (c.rope_freq_factors || c.rope_linear_factor != 1.0f || c.longrope ||
           c.rope_attn_factor != 1.0f) {
    feature = "scaled RoPE (Llama 3.x, LongRoPE)";
  } else if (c.architecture == "phi3") {
    // The graph would run phi3's fused matrices through their row views, but its adapters
    // name attn_q/k/v and ffn_gate/up, where a phi3 adapter (llama.cpp's) names the fused
    // attn_qkv and ffn_up.
    feature = "LoRA adapters on fused QKV and gate/up matrices (phi3)";
  }
  else if (c.query_scale > 0.0f &&
           std::abs(c.query_scale * std::sqrt(static_cast<float>(c.head_dim)) - 1.0f) > 1e-6f) {
    feature = "a query scale other than 1/sqrt(head_dim)";
  }
  if (feature == nullptr) return OkStatus();
  return UnimplementedError("fine-tuning a '" + c.architecture +
                            "' model is not supported yet: the training pass does not implement " +
                            feature);
}

}  // namespace

Status ValidateTrainOptions(const TrainOptions& o, const arch::ModelConfig& model) {
  RETURN_IF_ERROR(CheckTrainableArchitecture(model));
  RETURN_IF_ERROR(ValidateLoraConfig(o.lora, model));
  if (o.batch == 0 || o.batch > 4096) return InvalidArgumentError("--batch must be in [1, 4096]");
  if (o.max_len < 2 || o.max_len > model.context_length) {
    return InvalidArgumentError("--max-len must be in [2, " + std::to_string(model.context_length) +
                                "] (the model's context)");
  }
  if (o.steps == 0 && (o.epochs == 0 || o.epochs > 100000)) {
    return InvalidArgumentError("--epochs must be in [1, 100000] when --steps is not given");
  }
  if (o.steps > 100000000) return InvalidArgumentError("--steps is too large");
  if (o.checkpoint_every > 0 && o.checkpoint_path.empty()) {
    return InvalidArgumentError("checkpoints every N steps need a checkpoint path");
  }
  AdamWOptions adam = o.adam;
  adam.total_steps = std::max<size_t>(adam.total_steps, 1);
  return ValidateAdamWOptions(adam);
}

Trainer::Trainer(const arch::Model& model, ThreadPool& pool, const TrainOptions& options)
    : model_(model), pool_(pool), options_(options), layout_(options.lora, model.config()) {}

StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const arch::Model& model, ThreadPool& pool,
                                                   std::vector<TrainSequence> train,
                                                   std::vector<TrainSequence> eval,
                                                   const TrainOptions& options) {
  RETURN_IF_ERROR(ValidateTrainOptions(options, model.config()));
  if (train.empty()) return InvalidArgumentError("no training examples");
  for (const std::vector<TrainSequence>* set : {&train, &eval}) {
    for (const TrainSequence& s : *set) {
      if (s.tokens.size() > options.max_len) {
        return InvalidArgumentError("example from line " + std::to_string(s.source_line) +
                                    " is longer than --max-len");
      }
    }
  }
  std::unique_ptr<Trainer> t(new Trainer(model, pool, options));
  t->train_ = std::move(train);
  t->eval_ = std::move(eval);
  t->rows_ = PackRows(t->train_, options.max_len, options.seed);
  t->eval_rows_ = PackRows(t->eval_, options.max_len, options.seed + 1);
  const size_t per_epoch = (t->rows_.size() + options.batch - 1) / options.batch;
  t->options_.adam.total_steps = options.steps > 0 ? options.steps : options.epochs * per_epoch;
  RETURN_IF_ERROR(ValidateAdamWOptions(t->options_.adam));
  if (t->options_.adam.warmup_steps >= t->options_.adam.total_steps) {
    t->options_.adam.warmup_steps = t->options_.adam.total_steps / 10;
  }
  const size_t estimate = TrainGraph::EstimateBufferBytes(model.config(), options.lora,
                                                          options.max_len, pool.num_threads()) +
                          4 * t->layout_.num_params() * sizeof(float) + model.file().size_bytes();
  if (options.max_memory_bytes > 0 && estimate > options.max_memory_bytes) {
    return ResourceExhaustedError(
        "training would need about " + std::to_string(estimate >> 20) + " MiB, above the bound of " +
        std::to_string(options.max_memory_bytes >> 20) + " MiB; lower --max-len or the LoRA rank");
  }
  t->graph_ = std::make_unique<TrainGraph>(model, t->layout_, pool, options.max_len);
  return t;
}

const std::vector<size_t>& Trainer::StreamRow(size_t g) {
  const size_t epoch = g / rows_.size();
  if (epoch != cached_epoch_) {
    std::vector<std::pair<float, size_t>> order(rows_.size());
    for (size_t r = 0; r < rows_.size(); ++r) order[r] = {HashUniform(options_.seed, 0xE90C, epoch, r), r};
    std::sort(order.begin(), order.end());
    epoch_order_.resize(rows_.size());
    for (size_t r = 0; r < rows_.size(); ++r) epoch_order_[r] = order[r].second;
    cached_epoch_ = epoch;
  }
  return rows_[epoch_order_[g % rows_.size()]];
}

StatusOr<double> Trainer::EvalLoss(const std::vector<float>& params) {
  if (eval_rows_.empty()) return -1.0;
  LossSum total;
  std::vector<const TrainSequence*> batch;
  for (const std::vector<size_t>& row : eval_rows_) {
    batch.clear();
    for (size_t idx : row) batch.push_back(&eval_[idx]);
    ASSIGN_OR_RETURN(LossSum l, graph_->Run(batch, params.data(), nullptr, 1.0f, 0));
    total.sum += l.sum;
    total.num_tokens += l.num_tokens;
  }
  return total.num_tokens == 0 ? -1.0 : total.sum / static_cast<double>(total.num_tokens);
}

Status Trainer::SaveCheckpoint(size_t next_step, const std::vector<float>& params, AdamW& adam,
                               const TrainResult& result) {
  nlohmann::json header = {
      {"fingerprint", options_.fingerprint},
      {"next_step", next_step},
      {"num_params", params.size()},
      {"first_loss", result.first_loss},
      {"final_loss", result.final_loss},
      {"initial_eval_loss", result.initial_eval_loss},
  };
  std::string bytes(kCheckpointMagic);
  bytes += header.dump();
  bytes += '\n';
  AppendFloats(&bytes, params);
  AppendFloats(&bytes, adam.m());
  AppendFloats(&bytes, adam.v());
  return WriteFileAtomically(options_.checkpoint_path, bytes);
}

StatusOr<size_t> Trainer::LoadCheckpoint(std::vector<float>* params, AdamW* adam,
                                         TrainResult* result) {
  if (options_.checkpoint_path.empty()) return size_t{0};
  auto read = ReadFileToString(options_.checkpoint_path, kMaxCheckpointBytes);
  if (!read.ok()) {
    if (read.status().code() == StatusCode::kNotFound) return size_t{0};
    return read.status();
  }
  const std::string& bytes = *read;
  const std::string where = "checkpoint '" + options_.checkpoint_path + "'";
  if (bytes.compare(0, kCheckpointMagic.size(), kCheckpointMagic) != 0) {
    return DataLossError(where + " is not a LoRA training checkpoint");
  }
  const size_t eol = bytes.find('\n', kCheckpointMagic.size());
  if (eol == std::string::npos) return DataLossError(where + " has no header");
  nlohmann::json h = nlohmann::json::parse(bytes.substr(kCheckpointMagic.size(), eol - kCheckpointMagic.size()),
                                           nullptr, false);
  if (h.is_discarded() || !h.is_object() || !h.contains("fingerprint") || !h["fingerprint"].is_string() ||
      !h.contains("next_step") || !h["next_step"].is_number_unsigned() || !h.contains("num_params") ||
      !h["num_params"].is_number_unsigned()) {
    return DataLossError(where + " has a malformed header");
  }
  if (h["fingerprint"].get<std::string>() != options_.fingerprint) {
    return FailedPreconditionError(where + " belongs to another run (other model, data or options); "
                                   "remove it or choose another checkpoint path");
  }
  const size_t n = h["num_params"].get<size_t>();
  if (n != layout_.num_params() || bytes.size() - eol - 1 != 3 * n * sizeof(float)) {
    return DataLossError(where + " has the wrong size");
  }
  const char* p = bytes.data() + eol + 1;
  for (std::vector<float>* v : {params, &adam->m(), &adam->v()}) {
    v->resize(n);
    std::memcpy(v->data(), p, n * sizeof(float));
    p += n * sizeof(float);
  }
  result->first_loss = h.value("first_loss", 0.0);
  result->final_loss = h.value("final_loss", 0.0);
  result->initial_eval_loss = h.value("initial_eval_loss", -1.0);
  const size_t next = h["next_step"].get<size_t>();
  if (next > options_.adam.total_steps) return DataLossError(where + " is past the last step");
  return next;
}

StatusOr<TrainResult> Trainer::Run(const std::function<bool(const StepReport&)>& on_step) {
  TrainResult result;
  result.estimated_bytes = graph_->buffer_bytes() + 4 * layout_.num_params() * sizeof(float) +
                           model_.file().size_bytes();
  std::vector<float> params = InitLoraParams(layout_, options_.seed);
  AdamW adam(options_.adam, params.size());
  ASSIGN_OR_RETURN(size_t start, LoadCheckpoint(&params, &adam, &result));
  result.resumed_from_step = start;
  if (start == 0) {
    ASSIGN_OR_RETURN(result.initial_eval_loss, EvalLoss(params));
  }
  std::vector<float> grads(params.size());
  std::vector<const TrainSequence*> batch;
  const size_t total = options_.adam.total_steps;
  for (size_t step = start; step < total; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    std::fill(grads.begin(), grads.end(), 0.0f);
    // The step's loss is the mean over all its target tokens, so count them first.
    size_t targets = 0, tokens = 0;
    for (size_t b = 0; b < options_.batch; ++b) {
      for (size_t idx : StreamRow(step * options_.batch + b)) {
        const TrainSequence& s = train_[idx];
        tokens += s.tokens.size();
        for (size_t i = 1; i < s.tokens.size(); ++i) targets += s.is_target[i];
      }
    }
    const float grad_scale = 1.0f / static_cast<float>(std::max<size_t>(targets, 1));
    LossSum loss;
    for (size_t b = 0; b < options_.batch; ++b) {
      const size_t g = step * options_.batch + b;
      batch.clear();
      for (size_t idx : StreamRow(g)) batch.push_back(&train_[idx]);
      ASSIGN_OR_RETURN(LossSum l, graph_->Run(batch, params.data(), grads.data(), grad_scale, g + 1));
      loss.sum += l.sum;
      loss.num_tokens += l.num_tokens;
    }
    StepReport report;
    report.step = step + 1;
    report.total_steps = total;
    report.epoch = step * options_.batch / rows_.size() + 1;
    report.loss = loss.sum / static_cast<double>(std::max<size_t>(loss.num_tokens, 1));
    report.grad_norm = ClipGradNorm(grads, options_.adam.clip_norm);
    if (!std::isfinite(report.grad_norm) || !std::isfinite(report.loss)) {
      return InternalError("training diverged at step " + std::to_string(step + 1) +
                           " (loss or gradient not finite); lower --lr");
    }
    report.lr = adam.Step(step, grads, params);
    const double secs = Seconds(t0);
    report.tokens_per_second = tokens / std::max(secs, 1e-9);
    result.tokens += tokens;
    result.seconds += secs;
    if (step == 0) result.first_loss = report.loss;
    result.final_loss = report.loss;
    if (options_.eval_every > 0 && (step + 1) % options_.eval_every == 0 && step + 1 < total) {
      ASSIGN_OR_RETURN(report.eval_loss, EvalLoss(params));
    }
    if (options_.checkpoint_every > 0 && (step + 1) % options_.checkpoint_every == 0) {
      RETURN_IF_ERROR(SaveCheckpoint(step + 1, params, adam, result));
      report.checkpointed = true;
    }
    if (options_.max_memory_bytes > 0 && PeakRssBytes() > options_.max_memory_bytes) {
      return ResourceExhaustedError("training used " + std::to_string(PeakRssBytes() >> 20) +
                                    " MiB, above the bound of " +
                                    std::to_string(options_.max_memory_bytes >> 20) + " MiB");
    }
    if (on_step && !on_step(report)) {
      if (!report.checkpointed && !options_.checkpoint_path.empty()) {
        RETURN_IF_ERROR(SaveCheckpoint(step + 1, params, adam, result));
      }
      result.steps = step + 1;
      result.params = std::move(params);
      result.peak_rss_bytes = PeakRssBytes();
      return result;
    }
  }
  ASSIGN_OR_RETURN(result.final_eval_loss, EvalLoss(params));
  result.completed = true;
  result.steps = total;
  result.params = std::move(params);
  result.peak_rss_bytes = PeakRssBytes();
  return result;
}

}  // namespace llmasos::train
