// MatMulFloatActivations: the exact-math matrix multiply (see ops.h). Rows are split across
// the pool; each thread dequantizes one weight row at a time into its own buffer and takes
// the dot product with every token's activations.
#include <vector>

#include "drivers/cpu/ops.h"

namespace llmasos::cpu {

void MatMulFloatActivations(const MatView& w, const float* x, size_t num_tokens, float* out,
                            ThreadPool& pool) {
  std::vector<std::vector<float>> rows(pool.num_threads(), std::vector<float>(w.cols));
  pool.ParallelFor(w.rows, 16, [&](size_t begin, size_t end, size_t thread) {
    float* row = rows[thread].data();
    for (size_t r = begin; r < end; ++r) {
      DequantizeRow(w, r, row);
      for (size_t t = 0; t < num_tokens; ++t) out[t * w.rows + r] = Dot(row, x + t * w.cols, w.cols);
    }
  });
}

}  // namespace llmasos::cpu
