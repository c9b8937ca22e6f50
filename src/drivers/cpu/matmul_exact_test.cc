// MatMulFloatActivations against a naive double-precision loop over the weights decoded by the
// Q8_0 formula written out here (w = d * q), on 1 and 2 threads.
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "drivers/cpu/ops.h"
#include "util/fp16.h"

namespace llmasos::cpu {
namespace {

TEST(MatMulFloatActivationsTest, MatchesNaiveLoopOnQ8_0) {
  const size_t rows = 37, cols = 96, tokens = 3;
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> wf(rows * cols), x(tokens * cols);
  for (float& v : wf) v = dist(rng);
  for (float& v : x) v = dist(rng);
  std::vector<BlockQ8_0> wq(rows * cols / 32);
  for (size_t r = 0; r < rows; ++r) QuantizeRow(TensorType::kQ8_0, &wf[r * cols], cols, &wq[r * cols / 32]);
  MatView w{TensorType::kQ8_0, wq.data(), rows, cols, RowBytes(TensorType::kQ8_0, cols)};
  for (size_t threads : {1, 2}) {
    ThreadPool pool(threads);
    std::vector<float> out(tokens * rows);
    MatMulFloatActivations(w, x.data(), tokens, out.data(), pool);
    for (size_t t = 0; t < tokens; ++t) {
      for (size_t r = 0; r < rows; ++r) {
        double want = 0;
        for (size_t c = 0; c < cols; ++c) {
          const BlockQ8_0& b = wq[(r * cols + c) / 32];
          want += static_cast<double>(F16ToF32(b.d)) * b.qs[c % 32] * x[t * cols + c];
        }
        EXPECT_NEAR(out[t * rows + r], want, 1e-4 * (1 + std::fabs(want))) << t << "," << r;
      }
    }
  }
}

}  // namespace
}  // namespace llmasos::cpu
