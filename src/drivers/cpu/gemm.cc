// GemmAccumulate (gemm.h), compiled once per SIMD target; the public function dispatches once
// per call.
#include "drivers/cpu/gemm.h"

#include <algorithm>

#include "drivers/cpu/scalar_ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "drivers/cpu/gemm.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "drivers/cpu/simd_util-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace llmasos::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR

void GemmAccumulateTarget(const float* a, size_t a_stride, size_t m, const float* b, size_t b_stride, size_t k,
                          size_t n, float* c, size_t c_stride) {
  scalar::GemmAccumulate(a, a_stride, m, b, b_stride, k, n, c, c_stride);
}

size_t PanelColumnsTarget() { return 2; }

void GemmAccumulatePackedTarget(const float* a, size_t a_stride, size_t m, const float* packed, size_t k,
                                size_t n, float* c, size_t c_stride) {
  for (size_t j = 0; j < n; j += 2) {
    scalar::GemmAccumulate(a, a_stride, m, packed + j * k, 2, k, std::min<size_t>(2, n - j), c + j, c_stride);
  }
}

#else  // HWY_TARGET != HWY_SCALAR

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Rows of a per register block, and the depth of one pass: a b panel of kDepth rows by two
// vectors is 16 KiB on AVX2 (32 KiB on AVX-512), so it stays in L1 while each block of rows of
// a walks over it.
constexpr size_t kBlockRows = 6;
constexpr size_t kDepth = 256;
// Rows of c the narrow remainder (below) copies at a time.
constexpr size_t kRemainderRows = 64;

// c[R rows, V vectors] += a[R rows, k] x b[k, V vectors]: R x V accumulators in registers,
// per step of l one load of each b vector and one broadcast of each row's a element.
template <size_t R, size_t V>
HWY_INLINE void Block(const float* HWY_RESTRICT a, size_t a_stride, const float* HWY_RESTRICT b, size_t b_stride,
                      size_t k, float* HWY_RESTRICT c, size_t c_stride) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  VF acc[R][V];
  LLMASOS_UNROLL
  for (size_t r = 0; r < R; ++r) {
    LLMASOS_UNROLL
    for (size_t v = 0; v < V; ++v) acc[r][v] = hn::LoadU(df, c + r * c_stride + v * lanes);
  }
  for (size_t l = 0; l < k; ++l) {
    VF bv[V];
    LLMASOS_UNROLL
    for (size_t v = 0; v < V; ++v) bv[v] = hn::LoadU(df, b + l * b_stride + v * lanes);
    LLMASOS_UNROLL
    for (size_t r = 0; r < R; ++r) {
      const VF ar = hn::Set(df, a[r * a_stride + l]);
      LLMASOS_UNROLL
      for (size_t v = 0; v < V; ++v) acc[r][v] = hn::MulAdd(ar, bv[v], acc[r][v]);
    }
  }
  LLMASOS_UNROLL
  for (size_t r = 0; r < R; ++r) {
    LLMASOS_UNROLL
    for (size_t v = 0; v < V; ++v) hn::StoreU(acc[r][v], df, c + r * c_stride + v * lanes);
  }
}

// Every row of a over one panel of V vectors of columns, k deep.
template <size_t V>
void Panel(const float* HWY_RESTRICT a, size_t a_stride, size_t m, const float* HWY_RESTRICT b, size_t b_stride,
           size_t k, float* HWY_RESTRICT c, size_t c_stride) {
  size_t i = 0;
  for (; i + kBlockRows <= m; i += kBlockRows) {
    Block<kBlockRows, V>(a + i * a_stride, a_stride, b, b_stride, k, c + i * c_stride, c_stride);
  }
  a += i * a_stride;
  c += i * c_stride;
  switch (m - i) {
    case 5: return Block<5, V>(a, a_stride, b, b_stride, k, c, c_stride);
    case 4: return Block<4, V>(a, a_stride, b, b_stride, k, c, c_stride);
    case 3: return Block<3, V>(a, a_stride, b, b_stride, k, c, c_stride);
    case 2: return Block<2, V>(a, a_stride, b, b_stride, k, c, c_stride);
    case 1: return Block<1, V>(a, a_stride, b, b_stride, k, c, c_stride);
    default: return;
  }
}

// The last nr < lanes columns: copied into one vector-wide panel padded with zeros, so each
// of them gets the same chain of fused multiply-adds as a column of a full panel. The result
// of a column then does not depend on where the caller's split of the columns puts it.
void NarrowPanel(const float* HWY_RESTRICT a, size_t a_stride, size_t m, const float* HWY_RESTRICT b,
                 size_t b_stride, size_t k, size_t nr, float* HWY_RESTRICT c, size_t c_stride) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  HWY_ALIGN float bp[kDepth * HWY_LANES(float)];
  HWY_ALIGN float cp[kRemainderRows * HWY_LANES(float)];
  for (size_t l0 = 0; l0 < k; l0 += kDepth) {
    const size_t depth = std::min(kDepth, k - l0);
    for (size_t l = 0; l < depth; ++l) {
      for (size_t j = 0; j < lanes; ++j) bp[l * lanes + j] = j < nr ? b[(l0 + l) * b_stride + j] : 0.0f;
    }
    for (size_t i0 = 0; i0 < m; i0 += kRemainderRows) {
      const size_t rows = std::min(kRemainderRows, m - i0);
      for (size_t i = 0; i < rows; ++i) {
        for (size_t j = 0; j < lanes; ++j) cp[i * lanes + j] = j < nr ? c[(i0 + i) * c_stride + j] : 0.0f;
      }
      Panel<1>(a + i0 * a_stride + l0, a_stride, rows, bp, lanes, depth, cp, lanes);
      for (size_t i = 0; i < rows; ++i) {
        for (size_t j = 0; j < nr; ++j) c[(i0 + i) * c_stride + j] = cp[i * lanes + j];
      }
    }
  }
}

void GemmAccumulateTarget(const float* HWY_RESTRICT a, size_t a_stride, size_t m, const float* HWY_RESTRICT b,
                          size_t b_stride, size_t k, size_t n, float* HWY_RESTRICT c, size_t c_stride) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  // A panel of b is copied into contiguous memory before several blocks of rows walk it: its
  // rows, b_stride apart, would otherwise share few L1 sets whenever b_stride is a multiple of
  // a large power of two (256 tokens: 1 KiB apart, 4 sets of 8 ways for 256 rows).
  HWY_ALIGN float packed[kDepth * 2 * HWY_LANES(float)];
  const bool pack = m >= 2 * kBlockRows;
  size_t j = 0;
  for (; j + 2 * lanes <= n; j += 2 * lanes) {
    for (size_t l0 = 0; l0 < k; l0 += kDepth) {
      const size_t depth = std::min(kDepth, k - l0);
      const float* panel = b + l0 * b_stride + j;
      size_t panel_stride = b_stride;
      if (pack) {
        for (size_t l = 0; l < depth; ++l) {
          hn::Store(hn::LoadU(df, panel + l * b_stride), df, packed + 2 * l * lanes);
          hn::Store(hn::LoadU(df, panel + l * b_stride + lanes), df, packed + (2 * l + 1) * lanes);
        }
        panel = packed;
        panel_stride = 2 * lanes;
      }
      Panel<2>(a + l0, a_stride, m, panel, panel_stride, depth, c + j, c_stride);
    }
  }
  for (; j + lanes <= n; j += lanes) {
    for (size_t l0 = 0; l0 < k; l0 += kDepth) {
      Panel<1>(a + l0, a_stride, m, b + l0 * b_stride + j, b_stride, std::min(kDepth, k - l0), c + j, c_stride);
    }
  }
  if (j < n) NarrowPanel(a, a_stride, m, b + j, b_stride, k, n - j, c + j, c_stride);
}

size_t PanelColumnsTarget() { return 2 * hn::Lanes(DF()); }

void GemmAccumulatePackedTarget(const float* HWY_RESTRICT a, size_t a_stride, size_t m,
                                const float* HWY_RESTRICT packed, size_t k, size_t n, float* HWY_RESTRICT c,
                                size_t c_stride) {
  const size_t width = 2 * hn::Lanes(DF());
  size_t j = 0;
  for (; j + width <= n; j += width) {
    const float* panel = packed + j * k;
    for (size_t l0 = 0; l0 < k; l0 += kDepth) {
      Panel<2>(a + l0, a_stride, m, panel + l0 * width, width, std::min(kDepth, k - l0), c + j, c_stride);
    }
  }
  if (j == n) return;
  // The last, partial panel: its columns of c go through a zero-padded copy, kRemainderRows
  // rows at a time, so each gets the chain of fused multiply-adds of a full panel.
  const size_t nr = n - j;
  const float* panel = packed + j * k;
  HWY_ALIGN float cp[kRemainderRows * 2 * HWY_LANES(float)];
  for (size_t i0 = 0; i0 < m; i0 += kRemainderRows) {
    const size_t rows = std::min(kRemainderRows, m - i0);
    for (size_t i = 0; i < rows; ++i) {
      for (size_t jj = 0; jj < width; ++jj) cp[i * width + jj] = jj < nr ? c[(i0 + i) * c_stride + j + jj] : 0.0f;
    }
    for (size_t l0 = 0; l0 < k; l0 += kDepth) {
      Panel<2>(a + i0 * a_stride + l0, a_stride, rows, panel + l0 * width, width, std::min(kDepth, k - l0), cp,
               width);
    }
    for (size_t i = 0; i < rows; ++i) {
      for (size_t jj = 0; jj < nr; ++jj) c[(i0 + i) * c_stride + j + jj] = cp[i * width + jj];
    }
  }
}

#endif  // HWY_TARGET == HWY_SCALAR

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace llmasos::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace llmasos::cpu {

HWY_EXPORT(GemmAccumulateTarget);
HWY_EXPORT(GemmAccumulatePackedTarget);
HWY_EXPORT(PanelColumnsTarget);

void GemmAccumulate(const float* a, size_t a_stride, size_t m, const float* b, size_t b_stride, size_t k, size_t n,
                    float* c, size_t c_stride) {
  HWY_DYNAMIC_DISPATCH(GemmAccumulateTarget)(a, a_stride, m, b, b_stride, k, n, c, c_stride);
}

size_t GemmPanelColumns() { return HWY_DYNAMIC_DISPATCH(PanelColumnsTarget)(); }

size_t GemmPackedFloats(size_t k, size_t n) {
  const size_t width = GemmPanelColumns();
  return k * ((n + width - 1) / width * width);
}

void GemmPackTransposed(const float* bt, size_t bt_stride, size_t n, size_t k, float* packed) {
  // Panel p holds b's columns [p * width, (p + 1) * width), that is rows of bt: element
  // (l, jj) of the panel is bt[(p * width + jj) * bt_stride + l]. Depth is walked in pieces of
  // 64 rows so a piece of the panel (4 KiB on AVX2) stays in L1 while its columns fill in.
  constexpr size_t kPiece = 64;
  const size_t width = GemmPanelColumns();
  for (size_t j0 = 0; j0 < n; j0 += width) {
    float* panel = packed + j0 * k;
    const size_t cols = std::min(width, n - j0);
    for (size_t l0 = 0; l0 < k; l0 += kPiece) {
      const size_t l1 = std::min(k, l0 + kPiece);
      for (size_t jj = 0; jj < width; ++jj) {
        if (jj < cols) {
          const float* src = bt + (j0 + jj) * bt_stride;
          for (size_t l = l0; l < l1; ++l) panel[l * width + jj] = src[l];
        } else {
          for (size_t l = l0; l < l1; ++l) panel[l * width + jj] = 0.0f;
        }
      }
    }
  }
}

void GemmAccumulatePacked(const float* a, size_t a_stride, size_t m, const float* packed, size_t k, size_t n,
                          float* c, size_t c_stride) {
  HWY_DYNAMIC_DISPATCH(GemmAccumulatePackedTarget)(a, a_stride, m, packed, k, n, c, c_stride);
}

}  // namespace llmasos::cpu
#endif  // HWY_ONCE
