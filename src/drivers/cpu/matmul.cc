// MatMul's entry point: checks the shapes, quantizes the activations once per call for
// quantized weights, and hands over to the per-type SIMD kernels (matmul_q4.cc, matmul_q8.cc,
// matmul_unpacked.cc for the other block formats, matmul_float.cc).
#include <cstring>
#include <vector>

#include "drivers/cpu/matmul_internal.h"
#include "drivers/cpu/ops.h"
#include "drivers/cpu/scalar_ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "drivers/cpu/matmul.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "util/logging.h"

HWY_BEFORE_NAMESPACE();
namespace llmasos::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// See scalar::QuantizeActivations: the same operations in the same order per element (max of
// |x| over the group, one division for the scale, one reciprocal, x * (1/d) rounded to nearest
// even), so the two agree bit for bit. isums[b] receives block b's integer sum of qs,
// half_sums[2b] and [2b + 1] those of its elements 0..15 and 16..31.
void QuantizeActivationsTarget(const float* HWY_RESTRICT x, size_t n, size_t group,
                               int8_t* HWY_RESTRICT qs, float* HWY_RESTRICT d,
                               float* HWY_RESTRICT s, size_t s_stride,
                               int32_t* HWY_RESTRICT isums, int16_t* HWY_RESTRICT half_sums) {
  constexpr size_t kHalf = kQuantBlockElems / 2;
#if HWY_TARGET == HWY_SCALAR
  scalar::QuantizeActivations(x, n, group, qs, d, s, s_stride);
  for (size_t b = 0; b < n / kQuantBlockElems; ++b) {
    int32_t half[2] = {0, 0};
    for (size_t i = 0; i < kQuantBlockElems; ++i) half[i / kHalf] += qs[b * kQuantBlockElems + i];
    half_sums[2 * b] = static_cast<int16_t>(half[0]);
    half_sums[2 * b + 1] = static_cast<int16_t>(half[1]);
    isums[b] = half[0] + half[1];
  }
#else
  // At most 16 lanes, so that each vector lies within one half of a block.
  const hn::CappedTag<float, kHalf> df;
  const hn::RebindToSigned<decltype(df)> di32;
  const hn::Rebind<int8_t, decltype(df)> di8;
  const size_t lanes = hn::Lanes(df);
  for (size_t g = 0; g < n; g += group) {
    auto vmax = hn::Zero(df);
    for (size_t i = g; i < g + group; i += lanes) {
      vmax = hn::Max(vmax, hn::Abs(hn::LoadU(df, x + i)));
    }
    const float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    const float scale = amax / 127.0f;
    const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    const auto vinv = hn::Set(df, inv);
    for (size_t b = g / kQuantBlockElems; b < (g + group) / kQuantBlockElems; ++b) {
      const float* xb = x + b * kQuantBlockElems;
      hn::Vec<decltype(di32)> isum[2] = {hn::Zero(di32), hn::Zero(di32)};
      for (size_t i = 0; i < kQuantBlockElems; i += lanes) {
        const auto q = hn::NearestInt(hn::Mul(hn::LoadU(df, xb + i), vinv));
        isum[i / kHalf] = hn::Add(isum[i / kHalf], q);
        hn::StoreU(hn::DemoteTo(di8, q), di8, qs + b * kQuantBlockElems + i);
      }
      d[b] = scale;
      const int32_t lo = hn::GetLane(hn::SumOfLanes(di32, isum[0]));
      const int32_t hi = hn::GetLane(hn::SumOfLanes(di32, isum[1]));
      half_sums[2 * b] = static_cast<int16_t>(lo);  // |sum| <= 16 * 127
      half_sums[2 * b + 1] = static_cast<int16_t>(hi);
      // Wrapping, as the lanes' sums do: a non-finite x (a broken model) makes q INT_MIN.
      isums[b] = static_cast<int32_t>(static_cast<uint32_t>(lo) + static_cast<uint32_t>(hi));
      s[b * s_stride] = scale * static_cast<float>(isums[b]);
    }
  }
#endif  // HWY_TARGET == HWY_SCALAR
}

// Quantizes tokens [token_begin, token_end) of x (rows of `cols`) into QuantizedActivations'
// layout for num_tokens tokens.
void QuantizeTokensTarget(const float* HWY_RESTRICT x, size_t token_begin, size_t token_end,
                          size_t num_tokens, size_t cols, size_t group, int8_t* HWY_RESTRICT qs,
                          float* HWY_RESTRICT d, float* HWY_RESTRICT s,
                          int32_t* HWY_RESTRICT isums, int16_t* HWY_RESTRICT half_sums) {
  const size_t num_blocks = cols / kQuantBlockElems;
  for (size_t t = token_begin; t < token_end; ++t) {
    QuantizeActivationsTarget(x + t * cols, cols, group, qs + t * cols, d + t * num_blocks,
                              s + t, num_tokens, isums + t * num_blocks,
                              half_sums + 2 * t * num_blocks);
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace llmasos::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace llmasos::cpu {
namespace {

// Scratch for one call's quantized activations, reused across calls on a thread so the
// forward pass does not allocate per matrix multiply.
struct ActivationScratch {
  std::vector<int8_t> qs;
  std::vector<float> d;
  std::vector<float> s;
  std::vector<int32_t> isums;
  std::vector<int16_t> half_sums;
};

}  // namespace

HWY_EXPORT(QuantizeActivationsTarget);
HWY_EXPORT(QuantizeTokensTarget);

void QuantizeActivationsSimd(const float* x, size_t n, size_t group, int8_t* qs, float* d,
                             float* s, size_t s_stride, int32_t* isums, int16_t* half_sums) {
  CHECK(group == kQuantBlockElems || group == kSuperBlockElems) << "activation group " << group;
  CHECK_EQ(n % group, 0u);
  HWY_DYNAMIC_DISPATCH(QuantizeActivationsTarget)(x, n, group, qs, d, s, s_stride, isums, half_sums);
}

void MatMul(const MatView& w, const float* x, size_t num_tokens, float* out, ThreadPool& pool) {
  CHECK(w.data != nullptr || w.rows == 0);
  CHECK_EQ(w.row_bytes, RowBytes(w.type, w.cols)) << "MatView row_bytes does not match its type";
  if (num_tokens == 0 || w.rows == 0) return;
  CHECK(static_cast<const void*>(out) != static_cast<const void*>(x)) << "MatMul output aliases its input";
  if (w.packed != nullptr) {
    CHECK(w.packed->type == w.type && w.packed->rows == w.rows && w.packed->cols == w.cols)
        << "MatView's packed matrix does not match it";
  }
  if (!IsBlockQuantized(w.type)) {
    if (w.packed == nullptr || !MatMulPackedFloat(*w.packed, x, num_tokens, out, pool)) {
      MatMulFloat(w, x, num_tokens, out, pool);
    }
    return;
  }
  CHECK_EQ(w.cols % kQuantBlockElems, 0u);
  const size_t num_blocks = w.cols / kQuantBlockElems;
  // The calling thread's scratch; workers see it through these pointers, not their own.
  thread_local ActivationScratch scratch;
  if (scratch.qs.size() < num_tokens * w.cols) scratch.qs.resize(num_tokens * w.cols);
  if (scratch.d.size() < num_tokens * num_blocks) {
    scratch.d.resize(num_tokens * num_blocks);
    scratch.s.resize(num_tokens * num_blocks);
    scratch.isums.resize(num_tokens * num_blocks);
    scratch.half_sums.resize(2 * num_tokens * num_blocks);
  }
  int8_t* qs = scratch.qs.data();
  float* d = scratch.d.data();
  float* s = scratch.s.data();
  int32_t* isums = scratch.isums.data();
  int16_t* half_sums = scratch.half_sums.data();
  const size_t cols = w.cols;
  const size_t group = ActivationGroupElems(w.type);
  CHECK_EQ(cols % group, 0u);
  auto quantize = HWY_DYNAMIC_DISPATCH(QuantizeTokensTarget);
  auto quantize_range = [&](size_t begin, size_t end, size_t /*thread_idx*/) {
    quantize(x, begin, end, num_tokens, cols, group, qs, d, s, isums, half_sums);
  };
  // Worth the pool's hand-off only when there are many tokens (prefill).
  if (num_tokens >= 16) {
    pool.ParallelFor(num_tokens, 4, quantize_range);
  } else {
    quantize_range(0, num_tokens, 0);
  }
  const QuantizedActivations acts{qs, d, s, isums, half_sums, num_tokens, cols, group};
  if (w.packed != nullptr && MatMulPacked(*w.packed, acts, out, pool)) return;
  if (w.type == TensorType::kQ8_0) {
    MatMulQ8(w, acts, out, pool);
  } else if (IsQ4KernelType(w.type)) {
    MatMulQ4(w, acts, out, pool);
  } else {
    MatMulUnpacked(w, acts, out, pool);
  }
}

}  // namespace llmasos::cpu
#endif  // HWY_ONCE
