// The training loop: LoRA fine-tuning of a llama-family model on packed token sequences, with
// gradient accumulation, AdamW, clipping, a warm-up + cosine schedule, a held-out evaluation,
// atomic checkpoints and resumption.
//
// Steps are a pure function of (model, data, options, step number): rows are packed once, each
// epoch visits them in an order drawn from the seed, step s accumulates rows s*batch ..
// s*batch + batch - 1 of that stream, and dropout masks are keyed by the row's place in it.
// So a run resumed from a checkpoint (parameters, Adam moments, next step) continues exactly
// as the uninterrupted run would have, bit for bit, on the same thread count or any other.
//
// Thread safety: a Trainer is used by one thread; it runs its parallel loops on the pool.
#ifndef LLMASOS_MODEL_TRAIN_TRAINER_H_
#define LLMASOS_MODEL_TRAIN_TRAINER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/arch/llama_model.h"
#include "model/train/lora.h"
#include "model/train/optimizer.h"
#include "model/train/train_graph.h"
#include "util/status.h"
#include "util/thread_pool.h"

namespace llmasos::train {

struct TrainOptions {
  LoraConfig lora;
  AdamWOptions adam;        // total_steps is set by the trainer
  size_t epochs = 1;        // used when steps == 0
  size_t steps = 0;         // optimiser steps; 0: as many as `epochs` passes over the data take
  size_t batch = 1;         // packed rows accumulated per optimiser step
  size_t max_len = 512;     // tokens per packed row (and per example)
  size_t eval_every = 0;    // held-out loss every N steps (0: only before and after)
  size_t checkpoint_every = 0;  // write the checkpoint every N steps (0: never)
  std::string checkpoint_path;  // "" disables checkpoints and resumption
  uint64_t seed = 0;
  size_t max_memory_bytes = 0;  // 0: no bound; else refuse to start above it, stop if exceeded
  // Identifies the model, the data and the options; a checkpoint written under another
  // fingerprint is refused rather than resumed.
  std::string fingerprint;
};

// InvalidArgument naming the bad option.
Status ValidateTrainOptions(const TrainOptions& o, const arch::ModelConfig& model);

struct StepReport {
  size_t step = 0;          // 1-based, of total_steps
  size_t total_steps = 0;
  size_t epoch = 0;         // 1-based
  double loss = 0.0;        // mean over this step's target tokens
  float lr = 0.0f;
  double grad_norm = 0.0;   // before clipping
  double tokens_per_second = 0.0;  // this step's tokens (all, not only targets) over its time
  double eval_loss = -1.0;  // when evaluated at this step, else -1
  bool checkpointed = false;
};

struct TrainResult {
  std::vector<float> params;       // [layout.num_params()]
  size_t steps = 0;
  size_t resumed_from_step = 0;    // 0: started fresh
  bool completed = false;          // false: stopped by on_step before the last step
  double first_loss = 0.0;         // training loss of step 1
  double final_loss = 0.0;         // training loss of the last step
  double initial_eval_loss = -1.0; // held-out loss before training (-1: no held-out data)
  double final_eval_loss = -1.0;
  size_t tokens = 0;               // tokens run forward and backward in this process
  double seconds = 0.0;            // wall time of those steps
  size_t peak_rss_bytes = 0;
  size_t estimated_bytes = 0;      // buffers + parameters + optimiser state + model file
};

class Trainer {
 public:
  // REQUIRES: model and pool outlive the trainer. InvalidArgument for empty training data or
  // bad options; ResourceExhausted when the estimated memory exceeds max_memory_bytes.
  static StatusOr<std::unique_ptr<Trainer>> Create(const arch::Model& model, ThreadPool& pool,
                                                   std::vector<TrainSequence> train,
                                                   std::vector<TrainSequence> eval,
                                                   const TrainOptions& options);

  // Trains to the last step (resuming from the checkpoint if there is one), calling
  // on_step after every step; when it returns false the run stops there (writing the
  // checkpoint, if there is a path) and the result says completed = false: how a job pauses.
  // DataLoss for an unreadable checkpoint, FailedPrecondition for one written under another
  // fingerprint.
  StatusOr<TrainResult> Run(const std::function<bool(const StepReport&)>& on_step);

  const LoraLayout& layout() const { return layout_; }
  size_t total_steps() const { return options_.adam.total_steps; }
  size_t rows_per_epoch() const { return rows_.size(); }
  // Mean held-out loss with the given parameters (-1 when there is no held-out data).
  StatusOr<double> EvalLoss(const std::vector<float>& params);

 private:
  Trainer(const arch::Model& model, ThreadPool& pool, const TrainOptions& options);
  // The sequences of row `g` of the endless stream of epochs.
  const std::vector<size_t>& StreamRow(size_t g);
  Status SaveCheckpoint(size_t next_step, const std::vector<float>& params, AdamW& adam,
                        const TrainResult& result);
  // Returns the next step to run (0 when there is no checkpoint).
  StatusOr<size_t> LoadCheckpoint(std::vector<float>* params, AdamW* adam, TrainResult* result);

  const arch::Model& model_;
  ThreadPool& pool_;
  TrainOptions options_;
  LoraLayout layout_;
  std::vector<TrainSequence> train_, eval_;
  std::vector<std::vector<size_t>> rows_, eval_rows_;
  std::unique_ptr<TrainGraph> graph_;
  size_t cached_epoch_ = SIZE_MAX;
  std::vector<size_t> epoch_order_;  // row indices in this epoch's order
};

// The process's peak resident memory so far (getrusage), in bytes.
size_t PeakRssBytes();

}  // namespace llmasos::train

#endif  // LLMASOS_MODEL_TRAIN_TRAINER_H_
