// MatMul for Q4_0 and Q4_1 weights, compiled once per SIMD target.
#include "drivers/cpu/matmul_internal.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "drivers/cpu/matmul_q4.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "drivers/cpu/matmul_quant-inl.h"

HWY_BEFORE_NAMESPACE();
namespace llmasos::cpu::HWY_NAMESPACE {

void MatMulQ4Target(const MatView& w, const QuantizedActivations& x, float* out,
                    ThreadPool& pool) {
  if (w.type == TensorType::kQ4_0) {
    QuantMatMul<TensorType::kQ4_0>(w, x, out, pool);
  } else {
    QuantMatMul<TensorType::kQ4_1>(w, x, out, pool);
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace llmasos::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace llmasos::cpu {

HWY_EXPORT(MatMulQ4Target);

void MatMulQ4(const MatView& w, const QuantizedActivations& x, float* out, ThreadPool& pool) {
  CHECK(w.type == TensorType::kQ4_0 || w.type == TensorType::kQ4_1);
  HWY_DYNAMIC_DISPATCH(MatMulQ4Target)(w, x, out, pool);
}

}  // namespace llmasos::cpu
#endif  // HWY_ONCE
