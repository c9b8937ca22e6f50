// MemoryModel: what the scheduler needs to know about, and do to, KV memory.
//
// The scheduler never touches blocks; it asks this interface how many it has and tells it who
// grows, who is swapped and who is dropped. Tests implement it with a counting fake; the engine
// backs it with KvMemory. All sizes are in blocks of the pool, except swap sizes in bytes.
//
// Thread safety: called only from the engine thread that owns the scheduler.
#ifndef LLMASOS_KERNEL_MEMORY_MODEL_H_
#define LLMASOS_KERNEL_MEMORY_MODEL_H_

#include <cstddef>
#include <optional>
#include <string_view>

#include "kernel/process.h"
#include "util/status.h"

namespace llmasos::kernel {

class MemoryModel {
 public:
  virtual ~MemoryModel() = default;

  virtual size_t NumTotalBlocks() const = 0;
  virtual size_t NumFreeBlocks() const = 0;
  // Blocks one process needs to hold the KV of `num_tokens` tokens on its own (no sharing).
  virtual size_t BlocksForTokens(size_t num_tokens) const = 0;
  // The most blocks one process holds at once while it runs alone to `num_tokens` tokens of
  // KV, fed at most `chunk_tokens` at a time: what the pool must have for it ever to finish.
  // BlocksForTokens(num_tokens), unless the memory releases what falls out of an attention
  // window as the process advances (KvMemoryModel with a window).
  virtual size_t PeakBlocks(size_t num_tokens, size_t chunk_tokens) const {
    (void)chunk_tokens;
    return BlocksForTokens(num_tokens);
  }
  // Free device blocks `process` needs so that the KV of its first `num_tokens` tokens is
  // resident: blocks it lacks plus, if it is swapped out, the blocks to swap back in.
  // Non-decreasing in num_tokens; 0 when it already holds them.
  virtual size_t BlocksToGrow(const Process& process, size_t num_tokens) const = 0;
  // Device blocks `process` holds now (what preempting it frees, sharing aside).
  virtual size_t NumBlocksHeld(const Process& process) const = 0;

  // Makes the KV of the first `num_tokens` tokens of `process` resident, swapping it in first
  // if it was swapped out. The first call for a process (and the first after Release) may map
  // prefix-cache hits; the result is how many leading tokens' KV was found cached (0 if none).
  // ResourceExhausted when BlocksToGrow(process, num_tokens) > NumFreeBlocks().
  virtual StatusOr<size_t> Grow(const Process& process, size_t num_tokens) = 0;
  // Frees every block of `process`, on the device and in swap. Full blocks may stay cached.
  virtual void Release(const Process& process) = 0;

  // Gives `child` (which holds nothing) the KV of `parent` (resident), shared copy-on-write:
  // what an n > 1 group's followers get from their leader. Unimplemented where the memory
  // cannot share.
  virtual Status Fork(const Process& parent, const Process& child) {
    (void)parent;
    (void)child;
    return UnimplementedError("this memory model cannot fork");
  }

  // Bytes swapping `process` out would move (its resident KV).
  virtual size_t SwapOutBytes(const Process& process) const = 0;
  virtual size_t NumFreeSwapBytes() const = 0;
  // Moves the resident blocks of `process` to swap space and frees them on the device.
  // ResourceExhausted when swap space is short.
  virtual Status SwapOut(const Process& process) = 0;
};

// How a preempted process gives back its memory.
enum class PreemptMode { kSwap, kRecompute };
std::string_view PreemptModeName(PreemptMode mode);

// Tunable costs of a context switch, in seconds. Swap moves the victim's KV out now and back
// in on resume (2 x bytes); recompute drops it and feeds its tokens again as a prefill.
struct PreemptionCosts {
  double swap_seconds_per_byte = 1.0 / 10e9;      // ~10 GB/s host copy each way
  double recompute_seconds_per_token = 1.0 / 2000;  // prefill throughput of a small CPU model
};

// Which way preemption goes: the cheaper by PreemptionCosts ("auto"), swap whenever swap space
// holds the victim ("swap"), or always recompute ("recompute").
enum class PreemptChoice { kCheaper, kSwap, kRecompute };
std::string_view PreemptChoiceName(PreemptChoice choice);
// The choice named `name` (auto, swap, recompute); nullopt for anything else.
std::optional<PreemptChoice> ParsePreemptChoice(std::string_view name);

// Recompute when nothing is resident or swap space cannot hold it (always possible), or when
// `choice` says so. Otherwise swap under kSwap, and under kCheaper when it costs less:
// 2 * swap_bytes * swap_seconds_per_byte < recompute_tokens * recompute_seconds_per_token.
PreemptMode ChoosePreemptMode(size_t swap_bytes, size_t free_swap_bytes, size_t recompute_tokens,
                              const PreemptionCosts& costs, PreemptChoice choice = PreemptChoice::kCheaper);

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_MEMORY_MODEL_H_
