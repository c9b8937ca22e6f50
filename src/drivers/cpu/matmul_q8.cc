// MatMul for Q8_0 weights, compiled once per SIMD target.
#include "drivers/cpu/matmul_internal.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "drivers/cpu/matmul_q8.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "drivers/cpu/matmul_quant-inl.h"

HWY_BEFORE_NAMESPACE();
namespace llmasos::cpu::HWY_NAMESPACE {

void MatMulQ8Target(const MatView& w, const QuantizedActivations& x, float* out,
                    ThreadPool& pool) {
  QuantMatMul<TensorType::kQ8_0>(w, x, out, pool);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace llmasos::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace llmasos::cpu {

HWY_EXPORT(MatMulQ8Target);

void MatMulQ8(const MatView& w, const QuantizedActivations& x, float* out, ThreadPool& pool) {
  CHECK(w.type == TensorType::kQ8_0);
  HWY_DYNAMIC_DISPATCH(MatMulQ8Target)(w, x, out, pool);
}

}  // namespace llmasos::cpu
#endif  // HWY_ONCE
