// Throughput of the CPU driver's MatMul on the shapes of SmolLM2-135M (embd 576, ffn 1536,
// vocab 49152): matrix-vector products (decode) and 512-token products (prefill). Reports
// weight bytes streamed per second (bytes of W per call / time) and, for prefill, GFLOP/s.
// Not a test: numbers go to bench/RESULTS.md, not into assertions.
//
//   kernels_bench [--benchmark_filter=...]   LLMASOS_BENCH_TARGET=AVX2 restricts the SIMD
//   target (AVX3_DL, AVX3, AVX2, SSE4) to compare code paths on one machine.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "drivers/cpu/ops.h"
#include "hwy/targets.h"
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
  for (size_t r = 0; r < rows; ++r) {
    for (float& v : row) v = dist(rng);
    QuantizeRow(type, row.data(), cols, m.bytes.data() + r * row_bytes);
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
  state.SetLabel(std::string(Traits(type).name) + " " + ChosenTarget());
}

constexpr int64_t kQ4_1 = static_cast<int64_t>(TensorType::kQ4_1);
constexpr int64_t kQ4_0 = static_cast<int64_t>(TensorType::kQ4_0);
constexpr int64_t kQ8_0 = static_cast<int64_t>(TensorType::kQ8_0);
constexpr int64_t kF16 = static_cast<int64_t>(TensorType::kF16);
constexpr int64_t kQ4_K = static_cast<int64_t>(TensorType::kQ4_K);
constexpr int64_t kQ5_K = static_cast<int64_t>(TensorType::kQ5_K);
constexpr int64_t kQ6_K = static_cast<int64_t>(TensorType::kQ6_K);

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
  // Q4_0 beside them for reference.
  for (int64_t threads : {1, 2}) {
    for (int64_t type : {kQ4_K, kQ5_K, kQ6_K}) b->Args({896, 4864, 1, threads, type});
    for (int64_t type : {kQ4_0, kQ4_K}) b->Args({8192, 2048, 1, threads, type});
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

BENCHMARK(BM_MatMul)->Name("MatVec")->Apply(DecodeShapes)->UseRealTime();
BENCHMARK(BM_MatMul)->Name("MatVec1B")->Apply(Llama1BDecodeShapes)->UseRealTime();
BENCHMARK(BM_MatMul)->Name("MatMulPrefill")->Apply(PrefillShapes)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace llmasos::cpu

int main(int argc, char** argv) {
  if (const char* name = std::getenv("LLMASOS_BENCH_TARGET")) {
    for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
      if (std::strcmp(hwy::TargetName(target), name) == 0) hwy::SetSupportedTargetsForTest(target);
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
