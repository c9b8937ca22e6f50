// Throughput of the CPU driver's MatMul on the shapes of SmolLM2-135M (embd 576, ffn 1536,
// vocab 49152): matrix-vector products (decode) and 512-token products (prefill). Reports
// weight bytes streamed per second (bytes of W per call / time) and, for prefill, GFLOP/s.
// Not a test: numbers go to bench/RESULTS.md, not into assertions.
//
//   kernels_bench [--benchmark_filter=...]   LLMASOS_SIMD=AVX2 caps the SIMD target (AVX3_DL,
//   AVX3, AVX2, SSE4) to compare code paths on one machine, as it does for llmasos.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "drivers/cpu/kv_type.h"
#include "drivers/cpu/ops.h"
#include "hwy/targets.h"
#include "util/fp16.h"
#include "util/logging.h"
#include "util/thread_pool.h"

namespace llmasos::cpu {
namespace {

struct Matrix {
  std::vector<uint8_t> bytes;
  MatView view;
};

Matrix RandomMatrix(TensorType type, size_t rows, size_t cols) {
  Matrix m;
  const size_t row_bytes = RowBytes(type, cols);
  m.bytes.resize(rows * row_bytes);
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> row(cols);
  if (CanQuantizeRow(type)) {
    for (size_t r = 0; r < rows; ++r) {
      for (float& v : row) v = dist(rng);
      QuantizeRow(type, row.data(), cols, m.bytes.data() + r * row_bytes);
    }
  } else {
    // The types QuantizeRow does not write (Q2_K, Q3_K, IQ4_NL, IQ4_XS): random values and
    // sub-block scales, each block's fp16 d (and dmin) small.
    std::vector<size_t> halves;  // offsets of the fp16 fields in a block
    switch (type) {
      case TensorType::kQ2_K: halves = {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)}; break;
      case TensorType::kQ3_K: halves = {offsetof(BlockQ3_K, d)}; break;
      case TensorType::kIQ4_NL: halves = {offsetof(BlockIQ4_NL, d)}; break;
      case TensorType::kIQ4_XS: halves = {offsetof(BlockIQ4_XS, d)}; break;
      default: CHECK(false) << "no random blocks for " << Traits(type).name;
    }
    for (uint8_t& byte : m.bytes) byte = static_cast<uint8_t>(rng());
    const uint16_t d = F32ToF16(0.01f);
    for (size_t b = 0; b < m.bytes.size(); b += Traits(type).block_bytes) {
      for (size_t at : halves) std::memcpy(&m.bytes[b + at], &d, 2);
    }
  }
  m.view = MatView{type, m.bytes.data(), rows, cols, row_bytes};
  return m;
}

// Args: rows, cols, tokens, threads, type id.
void BM_MatMul(benchmark::State& state) {
  const size_t rows = state.range(0), cols = state.range(1), tokens = state.range(2);
  const size_t threads = state.range(3);
  const auto type = static_cast<TensorType>(state.range(4));
  Matrix w = RandomMatrix(type, rows, cols);
  std::vector<float> x(tokens * cols);
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& v : x) v = dist(rng);
  std::vector<float> out(tokens * rows);
  ThreadPool pool(threads);
  // Repacked as a model load repacks it (PackMatrix: null where this CPU has no packed kernel
  // for the type), unless LLMASOS_REPACK=0 asks for the file's layout, as it does for a model.
  std::unique_ptr<PackedMatrix> packed;
  if (RepackEnabledByEnv()) packed = PackMatrix(w.view, &pool);
  w.view.packed = packed.get();
  for (auto _ : state) {
    MatMul(w.view, x.data(), tokens, out.data(), pool);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double weight_bytes = static_cast<double>(w.bytes.size());
  state.counters["weight_GB/s"] = benchmark::Counter(
      weight_bytes * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * rows * cols * tokens * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(Traits(type).name) + (packed != nullptr ? " packed " : " ") +
                 ChosenTarget());
}

constexpr int64_t kQ4_1 = static_cast<int64_t>(TensorType::kQ4_1);
constexpr int64_t kQ4_0 = static_cast<int64_t>(TensorType::kQ4_0);
constexpr int64_t kQ8_0 = static_cast<int64_t>(TensorType::kQ8_0);
constexpr int64_t kF16 = static_cast<int64_t>(TensorType::kF16);
constexpr int64_t kQ4_K = static_cast<int64_t>(TensorType::kQ4_K);
constexpr int64_t kQ5_K = static_cast<int64_t>(TensorType::kQ5_K);
constexpr int64_t kQ6_K = static_cast<int64_t>(TensorType::kQ6_K);
constexpr int64_t kQ2_K = static_cast<int64_t>(TensorType::kQ2_K);
constexpr int64_t kQ3_K = static_cast<int64_t>(TensorType::kQ3_K);
constexpr int64_t kIQ4_NL = static_cast<int64_t>(TensorType::kIQ4_NL);
constexpr int64_t kIQ4_XS = static_cast<int64_t>(TensorType::kIQ4_XS);

void DecodeShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "cols", "tokens", "threads", "type"});
  for (int64_t threads : {1, 2}) {
    b->Args({1536, 576, 1, threads, kQ4_1});   // ffn gate / up
    b->Args({576, 1536, 1, threads, kQ4_1});   // ffn down
    b->Args({49152, 576, 1, threads, kQ4_1});  // output (vocab)
  }
  b->Args({49152, 576, 1, 2, kQ4_0});
  b->Args({49152, 576, 1, 2, kQ8_0});
  b->Args({1536, 576, 1, 2, kF16});
  // K-quants: Qwen2.5-0.5B's ffn_down (the only matrices with 256-multiple rows there) and
  // Llama 3.2 1B's ffn_up (every matrix of a 1B Q4_K_M is a K-quant), one and 4 tokens.
  // Q4_0 beside them for reference, and the other super-block types and IQ4_NL.
  for (int64_t threads : {1, 2}) {
    for (int64_t type : {kQ4_K, kQ5_K, kQ6_K, kIQ4_XS}) b->Args({896, 4864, 1, threads, type});
    for (int64_t type : {kQ4_0, kQ4_K, kIQ4_NL, kIQ4_XS, kQ2_K, kQ3_K}) b->Args({8192, 2048, 1, threads, type});
    b->Args({8192, 2048, 4, threads, kQ4_K});
  }
}

// Every matrix of Llama 3.2 1B in Q4_K_M (bench/make-model writes one): Q4_K attn_q and
// attn_output [2048, 2048], attn_k and attn_v [512, 2048], ffn_gate and ffn_up [8192, 2048],
// ffn_down [2048, 8192]; Q6_K for the tied output [128256, 2048] and for the attn_v and
// ffn_down of the layers that get more bits. Q8_0 beside the FFN shape for reference. Each
// call streams more than the L2, so these decode from L3 or memory as the model does.
void Llama1BDecodeShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "cols", "tokens", "threads", "type"});
  for (int64_t threads : {1, 2}) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{2048, 2048}, {512, 2048}, {8192, 2048},
                              {2048, 8192}}) {
      b->Args({rows, cols, 1, threads, kQ4_K});
    }
    b->Args({512, 2048, 1, threads, kQ6_K});
    b->Args({2048, 8192, 1, threads, kQ6_K});
    b->Args({128256, 2048, 1, threads, kQ6_K});
    b->Args({8192, 2048, 1, threads, kQ8_0});
  }
}

// The matrices that carry the decode of issue 13's two real Q4_K_M files, whose hidden sizes
// (896, 640) are not multiples of 256, so most matrices fall back to Q5_0 and Q8_0:
// Qwen2.5-Coder-0.5B's ffn_gate/ffn_up [4864, 896] and attn_q/attn_output [896, 896] in Q5_0, its
// ffn_down [896, 4864] in Q4_K/Q6_K and its output [151936, 896] in Q8_0 (37% of the bytes a
// token reads); Gemma 3 270M's ffn_gate/ffn_up [2048, 640] and attn_q [1024, 640] in Q5_0, and
// its tied output [262144, 640] in Q8_0 (73% of the bytes a token reads). The small matrices
// stay in the cache between calls, as they do not in the model (a token reads 370 MiB of
// Qwen's weights); [116736, 896] Q5_0 is Qwen's 24 ffn_gate stacked (72 MB), read from memory.
void RealDecodeShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "cols", "tokens", "threads", "type"});
  constexpr int64_t kQ5_0 = static_cast<int64_t>(TensorType::kQ5_0);
  for (int64_t threads : {1, 2}) {
    b->Args({4864, 896, 1, threads, kQ5_0});
    b->Args({896, 896, 1, threads, kQ5_0});
    b->Args({116736, 896, 1, threads, kQ5_0});
    b->Args({896, 4864, 1, threads, kQ4_K});
    b->Args({896, 4864, 1, threads, kQ6_K});
    b->Args({151936, 896, 1, threads, kQ8_0});
    b->Args({2048, 640, 1, threads, kQ5_0});
    b->Args({1024, 640, 1, threads, kQ5_0});
    b->Args({262144, 640, 1, threads, kQ8_0});
  }
}

void PrefillShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "cols", "tokens", "threads", "type"});
  for (int64_t threads : {1, 2}) {
    b->Args({1536, 576, 512, threads, kQ4_1});
    b->Args({576, 1536, 512, threads, kQ4_1});
  }
  b->Args({1536, 576, 512, 2, kQ8_0});
  b->Args({1536, 576, 512, 2, kQ4_0});
  b->Args({1536, 576, 512, 2, kF16});
  b->Args({896, 4864, 512, 2, kQ4_K});
  b->Args({896, 4864, 512, 2, kQ6_K});
  // Llama 3.2 1B's prefill at bench/peer's pp128: ffn_up/gate Q4_K, ffn_down Q4_K and Q6_K,
  // attn_q Q4_K, and the same FFN shape in Q8_0 (the 1B Q8_0 file).
  for (int64_t threads : {1, 2}) {
    b->Args({8192, 2048, 128, threads, kQ4_K});
    b->Args({2048, 8192, 128, threads, kQ4_K});
    b->Args({2048, 8192, 128, threads, kQ6_K});
    b->Args({2048, 2048, 128, threads, kQ4_K});
    b->Args({8192, 2048, 128, threads, kQ8_0});
  }
  // The 32-element 4-bit types on the same shape (IQ4_NL runs in Q4_0's kernels without VNNI).
  b->Args({8192, 2048, 128, 1, kQ4_0});
  b->Args({8192, 2048, 128, 1, kIQ4_NL});
}

// One decode token's attention over a long context, per KV head, as BatchForward runs it: the
// scores of a group of 3 query heads (SmolLM2's 9 heads over 3 KV heads, head_dim 64) against
// every 16-token block of keys, then the weighted sum of the values, in each KV cache type.
// Reports the K/V bytes read per second: the cache types must read fewer bytes at no lower
// rate per byte. Args: context tokens, KvType.
void BM_DecodeAttention(benchmark::State& state) {
  constexpr size_t kHeadDim = 64, kGroup = 3, kBlock = 16;
  const size_t context = state.range(0);
  const auto type = static_cast<KvType>(state.range(1));
  const size_t num_blocks = context / kBlock;
  const size_t row_bytes = KvRowBytes(type, kHeadDim);
  const size_t plane_bytes = kBlock * row_bytes;
  std::vector<float> values(num_blocks * kBlock * kHeadDim);
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& v : values) v = dist(rng);
  // [block][K plane, V plane], K transposed for F32/F16 (the pool's layout, one head).
  std::vector<uint8_t> pool(num_blocks * 2 * plane_bytes);
  for (size_t b = 0; b < num_blocks; ++b) {
    uint8_t* k = pool.data() + b * 2 * plane_bytes;
    uint8_t* v = k + plane_bytes;
    const float* src = &values[b * kBlock * kHeadDim];
    for (size_t j = 0; j < kBlock; ++j) {
      QuantizeRow(KvTensorType(type), src + j * kHeadDim, kHeadDim, v + j * row_bytes);
      if (type == KvType::kQ8_0) {
        QuantizeRow(TensorType::kQ8_0, src + j * kHeadDim, kHeadDim, k + j * row_bytes);
        continue;
      }
      for (size_t d = 0; d < kHeadDim; ++d) {  // element d of key j at [d * kBlock + j]
        uint8_t* dst = k + (d * kBlock + j) * (type == KvType::kF32 ? 4 : 2);
        if (type == KvType::kF32) {
          std::memcpy(dst, &src[j * kHeadDim + d], 4);
        } else {
          F32ToF16Row(&src[j * kHeadDim + d], 1, reinterpret_cast<uint16_t*>(dst));
        }
      }
    }
  }
  std::vector<float> q(kGroup * kHeadDim), scores(kGroup * context), out(kGroup * kHeadDim);
  for (float& v : q) v = dist(rng);
  for (auto _ : state) {
    for (size_t b = 0; b < num_blocks; ++b) {
      const uint8_t* k = pool.data() + b * 2 * plane_bytes;
      float* sc = scores.data() + b * kBlock;
      switch (type) {
        case KvType::kF32:
          AttentionScores(q.data(), kHeadDim, kGroup, reinterpret_cast<const float*>(k), kBlock, kBlock,
                          kHeadDim, 0.125f, sc, context);
          break;
        case KvType::kF16:
          AttentionScoresF16(q.data(), kHeadDim, kGroup, reinterpret_cast<const uint16_t*>(k), kBlock,
                             kBlock, kHeadDim, 0.125f, sc, context);
          break;
        case KvType::kQ8_0:
          AttentionScoresQ8(q.data(), kHeadDim, kGroup, reinterpret_cast<const BlockQ8_0*>(k),
                            kHeadDim / 32, kBlock, kHeadDim, 0.125f, sc, context);
          break;
      }
    }
    for (size_t g = 0; g < kGroup; ++g) Softmax(scores.data() + g * context, context);
    std::fill(out.begin(), out.end(), 0.0f);
    for (size_t b = 0; b < num_blocks; ++b) {
      const uint8_t* v = pool.data() + b * 2 * plane_bytes + plane_bytes;
      const float* p = scores.data() + b * kBlock;
      switch (type) {
        case KvType::kF32:
          AttentionValues(p, context, kGroup, reinterpret_cast<const float*>(v), kHeadDim, kBlock,
                          kHeadDim, out.data(), kHeadDim);
          break;
        case KvType::kF16:
          AttentionValuesF16(p, context, kGroup, reinterpret_cast<const uint16_t*>(v), kHeadDim,
                             kBlock, kHeadDim, out.data(), kHeadDim);
          break;
        case KvType::kQ8_0:
          AttentionValuesQ8(p, context, kGroup, reinterpret_cast<const BlockQ8_0*>(v), kHeadDim / 32,
                            kBlock, kHeadDim, out.data(), kHeadDim);
          break;
      }
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.counters["kv_GB/s"] = benchmark::Counter(
      static_cast<double>(pool.size()) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["kv_bytes"] = static_cast<double>(pool.size());
  state.SetLabel(std::string(KvTypeName(type)) + " " + ChosenTarget());
}

// The thread pool's hand-off: Run of two tiny tasks per thread, back to back (workers spinning)
// and after 2 ms idle (workers asleep on the futex).
void BM_PoolRun(benchmark::State& state) {
  ThreadPool pool(state.range(0));
  const bool after_idle = state.range(1) != 0;
  std::atomic<size_t> sink{0};
  for (auto _ : state) {
    if (after_idle) {
      state.PauseTiming();
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      state.ResumeTiming();
    }
    pool.Run(2 * pool.num_threads(), [&](size_t task_idx, size_t) {
      sink.fetch_add(task_idx, std::memory_order_relaxed);
    });
  }
  benchmark::DoNotOptimize(sink.load());
}
BENCHMARK(BM_PoolRun)->Name("PoolRun")->ArgNames({"threads", "after_idle"})
    ->Args({2, 0})->UseRealTime();
BENCHMARK(BM_PoolRun)->Name("PoolRun")->ArgNames({"threads", "after_idle"})
    ->Args({2, 1})->Iterations(300)->UseRealTime();

BENCHMARK(BM_DecodeAttention)->Name("DecodeAttention")->ArgNames({"context", "kv_type"})
    ->Args({4096, static_cast<int64_t>(KvType::kF32)})
    ->Args({4096, static_cast<int64_t>(KvType::kF16)})
    ->Args({4096, static_cast<int64_t>(KvType::kQ8_0)});
BENCHMARK(BM_MatMul)->Name("MatVec")->Apply(DecodeShapes)->UseRealTime();
BENCHMARK(BM_MatMul)->Name("MatVec1B")->Apply(Llama1BDecodeShapes)->UseRealTime();
BENCHMARK(BM_MatMul)->Name("MatVecReal")->Apply(RealDecodeShapes)->UseRealTime();
BENCHMARK(BM_MatMul)->Name("MatMulPrefill")->Apply(PrefillShapes)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace llmasos::cpu

int main(int argc, char** argv) {
  if (const llmasos::Status simd = llmasos::cpu::SelectSimdTargetFromEnv(); !simd.ok()) {
    std::fprintf(stderr, "kernels_bench: %s\n", simd.message().c_str());
    return 2;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
