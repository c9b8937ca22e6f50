// MatMul over weights repacked at load time (PackedMatrix; layout in matmul_internal.h).
//
// Why repack: in the file's layout a Q4 block's 16 bytes of nibbles sit between its scales, so
// a kernel unpacks 32 weights per 256-bit step and converts two fp16 scales per block. In the
// packed layout one 256-bit load, a variable shift and a mask give 64 weights (two blocks) in
// element order, filling a 512-bit vector, and a tile's 8 scales convert in one instruction.
// Per row and pair of blocks the decode kernel issues about 9 vector operations where the
// unpacked one issues about 20. Q8_0 gains the same way (and drops the sign trick: its values
// are stored with a +128 bias and the bias's product is subtracted once per token).
//
// Kernels exist for x86 AVX-512 targets (Q8_0 needs VNNI: without it pmaddubsw would saturate
// on biased values); elsewhere PackMatrix returns null and MatMul uses the file's layout.
#include <cstring>

// GCC 12's AVX-512 intrinsics (maskless forms built on _mm512_undefined_*) trip these
// warnings falsely; the values they name are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "drivers/cpu/matmul_internal.h"
#include "drivers/cpu/ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "drivers/cpu/matmul_packed.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "drivers/cpu/matmul_quant-inl.h"

HWY_BEFORE_NAMESPACE();
namespace llmasos::cpu::HWY_NAMESPACE {

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3

bool HasPackedKernelTarget(TensorType type) {
  return type == TensorType::kQ4_0 || type == TensorType::kQ4_1 ||
         (type == TensorType::kQ8_0 && HWY_TARGET == HWY_AVX3_DL);
}

HWY_INLINE __m512i Dp(__m512i acc, __m512i u8, __m512i s8) {
  return DotU8S8(hn::Vec512<uint8_t>{u8}, hn::Vec512<int8_t>{s8}, hn::Vec512<int32_t>{acc}).raw;
}

// The 64 weights of row r of a tile's pair as unsigned bytes in element order.
template <TensorType kType>
HWY_INLINE __m512i PairWeights(const uint8_t* HWY_RESTRICT pair, size_t r) {
  if constexpr (kType == TensorType::kQ8_0) {
    return _mm512_loadu_si512(pair + r * 64);
  } else {
    // The 32 bytes in both halves; the upper half shifted right by 4 (16-bit lanes 16..31),
    // then one mask: low nibbles (first block) below, high nibbles (second block) above.
    const __m512i both = _mm512_broadcast_i64x4(_mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(pair + r * 32)));
    const __m512i shift = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    return _mm512_and_si512(_mm512_srlv_epi16(both, shift), _mm512_set1_epi8(0x0F));
  }
}

#ifndef LLMASOS_PREFETCH_BYTES
#define LLMASOS_PREFETCH_BYTES 1024
#endif
inline constexpr size_t kPrefetchBytes = LLMASOS_PREFETCH_BYTES;

constexpr size_t PairValueBytes(TensorType type) {
  return kPackRows * (type == TensorType::kQ8_0 ? 64 : 32);
}

// Lanes 0..7 = v[2r], lanes 8..15 = v[2r + 1]: a row's two block scales spread over the
// int32 lanes of the two blocks.
HWY_INLINE __m512 RowScales(__m256 v, size_t r) {
  const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi32(static_cast<int>(2 * r)),
                                         _mm256_set1_epi32(static_cast<int>(2 * r + 1)), 1);
  return _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(v));
}

// out[t * out_stride + r] = row r of the tile times token t, r < kPackRows, t < kT.
//   xq, xd: the first token's quantized activations and block scales (cols and num_blocks
//   apart); xs: its block sums, xs[b * xs_stride + t].
template <TensorType kType, size_t kT>
HWY_NOINLINE void PackedTile(const uint8_t* HWY_RESTRICT tile, size_t num_pairs,
                             const int8_t* HWY_RESTRICT xq, const float* HWY_RESTRICT xd,
                             const float* HWY_RESTRICT xs, size_t xs_stride, size_t cols,
                             float* HWY_RESTRICT out, size_t out_stride) {
  constexpr bool kHasMin = kType != TensorType::kQ8_0;
  constexpr size_t kValueBytes = PairValueBytes(kType);
  const size_t pair_bytes = PackedPairBytes(kType);
  const size_t num_blocks = cols / kQuantBlockElems;
  __m512 acc[kPackRows][kT];
  __m256 min_acc[kT];  // lanes 2r, 2r + 1: row r's minimum terms for the two blocks
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) {
    min_acc[t] = _mm256_setzero_ps();
    LLMASOS_UNROLL
    for (size_t r = 0; r < kPackRows; ++r) acc[r][t] = _mm512_setzero_ps();
  }
  for (size_t p = 0; p < num_pairs; ++p) {
    const uint8_t* pair = tile + p * pair_bytes;
    // Weights stream once per call: fetch ahead, past this tile into the next (a prefetch
    // beyond the matrix is harmless).
    for (size_t line = 0; line < pair_bytes; line += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(pair + kPrefetchBytes + line), _MM_HINT_T0);
    }
    const size_t b = 2 * p;
    // The tile's 8 block scales: [r0 b0, r0 b1, r1 b0, ...].
    const __m256 dw8 = _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(pair + kValueBytes)));
    __m512 dx[kT];
    __m512i init[kT];
    LLMASOS_UNROLL
    for (size_t t = 0; t < kT; ++t) {
      const float* d = xd + t * num_blocks + b;
      dx[t] = _mm512_insertf32x8(_mm512_set1_ps(d[0]), _mm256_set1_ps(d[1]), 1);
      init[t] = _mm512_setzero_si512();
      if constexpr (kType == TensorType::kQ8_0) {
        // (q + 128) . x - 128 * sum(x) per int32 lane of 4 bytes.
        const __m512i x = _mm512_loadu_si512(xq + t * cols + p * kPackElems);
        const __m512i sum = Dp(_mm512_setzero_si512(), _mm512_set1_epi8(1), x);
        init[t] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7));
      }
    }
    if constexpr (kHasMin) {
      __m256 m8;
      if constexpr (kType == TensorType::kQ4_1) {
        m8 = _mm256_cvtph_ps(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(pair + kValueBytes + 16)));
      } else {
        m8 = _mm256_mul_ps(dw8, _mm256_set1_ps(-8.0f));  // Q4_0: w = d q - 8 d
      }
      LLMASOS_UNROLL
      for (size_t t = 0; t < kT; ++t) {
        const __m128 s01 = _mm_unpacklo_ps(_mm_set_ss(xs[b * xs_stride + t]),
                                           _mm_set_ss(xs[(b + 1) * xs_stride + t]));
        const __m256 s = _mm256_castpd_ps(_mm256_broadcastsd_pd(_mm_castps_pd(s01)));
        min_acc[t] = _mm256_fmadd_ps(m8, s, min_acc[t]);
      }
    }
    LLMASOS_UNROLL
    for (size_t r = 0; r < kPackRows; ++r) {
      const __m512i w = PairWeights<kType>(pair, r);
      const __m512 dw = RowScales(dw8, r);
      LLMASOS_UNROLL
      for (size_t t = 0; t < kT; ++t) {
        const __m512i x = _mm512_loadu_si512(xq + t * cols + p * kPackElems);
        const __m512 prod = _mm512_cvtepi32_ps(Dp(init[t], w, x));
        acc[r][t] = _mm512_fmadd_ps(prod, _mm512_mul_ps(dw, dx[t]), acc[r][t]);
      }
    }
  }
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) {
    alignas(32) float mins[8];
    _mm256_store_ps(mins, min_acc[t]);
    LLMASOS_UNROLL
    for (size_t r = 0; r < kPackRows; ++r) {
      out[t * out_stride + r] = _mm512_reduce_add_ps(acc[r][t]) + (mins[2 * r] + mins[2 * r + 1]);
    }
  }
}

// Unpacks one tile into the panel scratch (PackPanel's layout) for the prefill kernel.
template <TensorType kType>
void UnpackTileToPanel(const uint8_t* HWY_RESTRICT tile, size_t num_pairs, size_t cols,
                       PanelScratch& scratch) {
  constexpr size_t kValueBytes = PairValueBytes(kType);
  const size_t pair_bytes = PackedPairBytes(kType);
  const size_t num_blocks = cols / kQuantBlockElems;
  for (size_t p = 0; p < num_pairs; ++p) {
    const uint8_t* pair = tile + p * pair_bytes;
    const __m256 dw8 = _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(pair + kValueBytes)));
    alignas(32) float m8[8];
    if constexpr (kType == TensorType::kQ4_1) {
      _mm256_store_ps(m8, _mm256_cvtph_ps(_mm_loadu_si128(
                              reinterpret_cast<const __m128i*>(pair + kValueBytes + 16))));
    } else if constexpr (kType == TensorType::kQ4_0) {
      _mm256_store_ps(m8, _mm256_mul_ps(dw8, _mm256_set1_ps(-8.0f)));
    } else {
      _mm256_store_ps(m8, _mm256_setzero_ps());
    }
    for (size_t r = 0; r < kPackRows; ++r) {
      _mm512_storeu_si512(scratch.w.data() + r * cols + p * kPackElems, PairWeights<kType>(pair, r));
      _mm512_storeu_ps(scratch.d.data() + (r * num_blocks + 2 * p) * kLanesPerBlock,
                       RowScales(dw8, r));
      scratch.m[r * num_blocks + 2 * p] = m8[2 * r];
      scratch.m[r * num_blocks + 2 * p + 1] = m8[2 * r + 1];
    }
  }
}

template <TensorType kType>
void PackedRows(const PackedMatrix& w, const QuantizedActivations& x, size_t row_begin,
                size_t row_end, float* out) {
  const size_t num_pairs = w.cols / kPackElems;
  const size_t num_blocks = w.cols / kQuantBlockElems;
  const size_t tile_bytes = num_pairs * PackedPairBytes(kType);
  if (x.num_tokens >= kPanelMinTokens) {
    PanelScratch& scratch = PanelScratchFor(kPackRows, w.cols);
    for (size_t r = row_begin; r < row_end; r += kPackRows) {
      UnpackTileToPanel<kType>(w.data.get() + (r / kPackRows) * tile_bytes, num_pairs, w.cols,
                               scratch);
      PanelAllTokens<kType, kPackRows>(scratch, num_blocks, x, r, w.rows, out);
    }
    return;
  }
  for (size_t r = row_begin; r < row_end; r += kPackRows) {
    const uint8_t* tile = w.data.get() + (r / kPackRows) * tile_bytes;
    auto run = [&](auto tokens_tag, size_t t) {
      constexpr size_t kT = decltype(tokens_tag)::value;
      PackedTile<kType, kT>(tile, num_pairs, x.qs + t * x.cols, x.d + t * num_blocks, x.s + t,
                            x.num_tokens, x.cols, out + t * w.rows + r, w.rows);
    };
    size_t t = 0;
    for (; t + 4 <= x.num_tokens; t += 4) run(std::integral_constant<size_t, 4>(), t);
    switch (x.num_tokens - t) {
      case 3: run(std::integral_constant<size_t, 3>(), t); break;
      case 2: run(std::integral_constant<size_t, 2>(), t); break;
      case 1: run(std::integral_constant<size_t, 1>(), t); break;
      default: break;
    }
  }
}

bool MatMulPackedTarget(const PackedMatrix& w, const QuantizedActivations& x, float* out,
                        ThreadPool& pool) {
  if (!HasPackedKernelTarget(w.type)) return false;
  pool.ParallelFor(w.rows, kPackRows, [&](size_t begin, size_t end, size_t /*thread_idx*/) {
    switch (w.type) {
      case TensorType::kQ4_0: return PackedRows<TensorType::kQ4_0>(w, x, begin, end, out);
      case TensorType::kQ4_1: return PackedRows<TensorType::kQ4_1>(w, x, begin, end, out);
      default: return PackedRows<TensorType::kQ8_0>(w, x, begin, end, out);
    }
  }, /*chunks_per_thread=*/4);
  return true;
}

#else  // no packed kernels for this target

bool HasPackedKernelTarget(TensorType) { return false; }
bool MatMulPackedTarget(const PackedMatrix&, const QuantizedActivations&, float*, ThreadPool&) {
  return false;
}

#endif

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace llmasos::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace llmasos::cpu {

HWY_EXPORT(HasPackedKernelTarget);
HWY_EXPORT(MatMulPackedTarget);

namespace {

// Element j of a Q4 block (j < 32): low nibbles hold 0..15, high nibbles 16..31.
uint8_t Nibble(const uint8_t* qs, size_t j) {
  return j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4;
}

template <class Block>
void PackTile(const MatView& w, size_t row0, uint8_t* dst) {
  const size_t num_pairs = w.cols / kPackElems;
  const size_t pair_bytes = PackedPairBytes(w.type);
  const bool q8 = w.type == TensorType::kQ8_0;
  const size_t value_bytes = kPackRows * (q8 ? 64 : 32);
  for (size_t p = 0; p < num_pairs; ++p) {
    uint8_t* pair = dst + p * pair_bytes;
    auto* d = reinterpret_cast<uint16_t*>(pair + value_bytes);
    for (size_t r = 0; r < kPackRows; ++r) {
      const auto* blocks = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(w.data) +
                                                          (row0 + r) * w.row_bytes);
      const Block& b0 = blocks[2 * p];
      const Block& b1 = blocks[2 * p + 1];
      if constexpr (std::is_same_v<Block, BlockQ8_0>) {
        for (size_t j = 0; j < 32; ++j) {
          pair[r * 64 + j] = static_cast<uint8_t>(b0.qs[j]) ^ 0x80;
          pair[r * 64 + 32 + j] = static_cast<uint8_t>(b1.qs[j]) ^ 0x80;
        }
      } else {
        for (size_t j = 0; j < 32; ++j) {
          pair[r * 32 + j] = static_cast<uint8_t>(Nibble(b0.qs, j) | (Nibble(b1.qs, j) << 4));
        }
      }
      std::memcpy(&d[2 * r], &b0.d, 2);
      std::memcpy(&d[2 * r + 1], &b1.d, 2);
      if constexpr (std::is_same_v<Block, BlockQ4_1>) {
        std::memcpy(&d[8 + 2 * r], &b0.m, 2);
        std::memcpy(&d[8 + 2 * r + 1], &b1.m, 2);
      }
    }
  }
}

}  // namespace

size_t PackedPairBytes(TensorType type) {
  switch (type) {
    case TensorType::kQ4_0: return kPackRows * (32 + 2 * 2);
    case TensorType::kQ4_1: return kPackRows * (32 + 2 * 4);
    case TensorType::kQ8_0: return kPackRows * (64 + 2 * 2);
    default: CHECK(false) << "no packed layout for " << Traits(type).name; return 0;
  }
}

bool HasPackedKernel(TensorType type) { return HWY_DYNAMIC_DISPATCH(HasPackedKernelTarget)(type); }

bool MatMulPacked(const PackedMatrix& w, const QuantizedActivations& x, float* out,
                  ThreadPool& pool) {
  CHECK_EQ(x.cols, w.cols);
  return HWY_DYNAMIC_DISPATCH(MatMulPackedTarget)(w, x, out, pool);
}

std::unique_ptr<PackedMatrix> PackMatrix(const MatView& w) {
  if (!HasPackedKernel(w.type) || w.rows == 0 || w.rows % kPackRows != 0 ||
      w.cols % kPackElems != 0) {
    return nullptr;
  }
  CHECK_EQ(w.row_bytes, RowBytes(w.type, w.cols));
  auto packed = std::make_unique<PackedMatrix>();
  packed->type = w.type;
  packed->rows = w.rows;
  packed->cols = w.cols;
  const size_t tile_bytes = w.cols / kPackElems * PackedPairBytes(w.type);
  packed->bytes = w.rows / kPackRows * tile_bytes;
  packed->data = hwy::AllocateAligned<uint8_t>(packed->bytes);
  CHECK(packed->data != nullptr) << "out of memory packing a " << w.rows << " x " << w.cols
                                 << " matrix";
  for (size_t tile = 0; tile < w.rows / kPackRows; ++tile) {
    uint8_t* dst = packed->data.get() + tile * tile_bytes;
    switch (w.type) {
      case TensorType::kQ4_0: PackTile<BlockQ4_0>(w, tile * kPackRows, dst); break;
      case TensorType::kQ4_1: PackTile<BlockQ4_1>(w, tile * kPackRows, dst); break;
      default: PackTile<BlockQ8_0>(w, tile * kPackRows, dst); break;
    }
  }
  return packed;
}

}  // namespace llmasos::cpu
#endif  // HWY_ONCE
