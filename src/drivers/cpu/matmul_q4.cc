// MatMul for Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL weights, compiled once per SIMD target.
#include "drivers/cpu/matmul_internal.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "drivers/cpu/matmul_q4.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "drivers/cpu/matmul_quant-inl.h"

HWY_BEFORE_NAMESPACE();
namespace llmasos::cpu::HWY_NAMESPACE {

void MatMulQ4Target(const MatView& w, const QuantizedActivations& x, float* out,
                    ThreadPool& pool) {
  switch (w.type) {
    case TensorType::kQ4_0: return QuantMatMul<TensorType::kQ4_0>(w, x, out, pool);
    case TensorType::kQ4_1: return QuantMatMul<TensorType::kQ4_1>(w, x, out, pool);
    case TensorType::kQ5_0: return QuantMatMul<TensorType::kQ5_0>(w, x, out, pool);
    case TensorType::kQ5_1: return QuantMatMul<TensorType::kQ5_1>(w, x, out, pool);
    case TensorType::kIQ4_NL: return QuantMatMul<TensorType::kIQ4_NL>(w, x, out, pool);
    default: CHECK(false) << "MatMulQ4: not a type of IsQ4KernelType";
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace llmasos::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace llmasos::cpu {

HWY_EXPORT(MatMulQ4Target);

void MatMulQ4(const MatView& w, const QuantizedActivations& x, float* out, ThreadPool& pool) {
  CHECK(IsQ4KernelType(w.type));
  HWY_DYNAMIC_DISPATCH(MatMulQ4Target)(w, x, out, pool);
}

}  // namespace llmasos::cpu
#endif  // HWY_ONCE
