// The packed weight layout (matmul_internal.h) written and read in portable code: PackMatrix's
// tiles, their sizes, and a packed row back in float32. The kernels that multiply the layout
// are in matmul_packed.cc; the layout does not depend on the CPU (a derived blob written on one
// machine is read on another), so nothing here is per SIMD target.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "drivers/cpu/matmul_internal.h"
#include "drivers/cpu/ops.h"
#include "drivers/cpu/quant_unpack.h"
#include "util/fp16.h"
#include "util/logging.h"

namespace llmasos::cpu {
namespace {

uint32_t LoadWord(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
void StoreWord(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// kSpread[n]: bit i of n moved to bit 0 of byte i.
constexpr uint32_t kSpread[16] = {
    0x00000000, 0x00000001, 0x00000100, 0x00000101, 0x00010000, 0x00010001, 0x00010100, 0x00010101,
    0x01000000, 0x01000001, 0x01000100, 0x01000101, 0x01010000, 0x01010001, 0x01010100, 0x01010101};

// Q5_0/Q5_1's fifth bits (bit e of qh: element e) as the packed word of one row: bit g of byte
// i is element 4 g + i's.
uint32_t FifthBitsWord(const uint8_t* qh) {
  const uint32_t bits = LoadWord(qh);
  uint32_t word = 0;
  for (size_t g = 0; g < 8; ++g) word |= kSpread[(bits >> (4 * g)) & 0x0F] << g;
  return word;
}

// Four elements at a time, one per byte of a 32-bit word; writes every byte of the tile once.
// Q4, Q5, IQ4_NL: a block's byte j holds element j in its low nibble and j + 16 in its high one, so the
// packed vector j (groups j and j + 4) is the block's bytes 4j .. 4j + 3 as they are.
template <class Block>
void PackTile(const MatView& w, size_t row0, uint8_t* dst) {
  const size_t num_blocks = w.cols / kQuantBlockElems;
  const size_t block_bytes = PackedBlockBytes(w.type);
  constexpr bool kQ8 = std::is_same_v<Block, BlockQ8_0>;
  constexpr bool kQ5 = std::is_same_v<Block, BlockQ5_0> || std::is_same_v<Block, BlockQ5_1>;
  const size_t value_bytes = PackValueBytes(w.type);
  for (size_t b = 0; b < num_blocks; ++b) {
    uint8_t* out = dst + b * block_bytes;
    auto* d = reinterpret_cast<uint16_t*>(out + value_bytes);
    for (size_t r = 0; r < kPackRows; ++r) {
      const Block& blk = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(w.data) +
                                                       (row0 + r) * w.row_bytes)[b];
      const auto* qs = reinterpret_cast<const uint8_t*>(blk.qs);
      for (size_t g = 0; g < (kQ8 ? 8 : 4); ++g) {
        const uint32_t word = LoadWord(qs + 4 * g);
        StoreWord(out + g * 64 + r * 4, kQ8 ? word ^ 0x80808080u : word);  // Q8_0: q + 128
      }
      if constexpr (kQ5) StoreWord(out + kKPackHigh + r * 4, FifthBitsWord(blk.qh));
      std::memcpy(&d[r], &blk.d, 2);
      if constexpr (std::is_same_v<Block, BlockQ4_1> || std::is_same_v<Block, BlockQ5_1>) {
        std::memcpy(&d[kPackRows + r], &blk.m, 2);
      }
    }
  }
}

// The file's block of a super-block type.
template <TensorType kType>
struct SuperBlockOf;
template <> struct SuperBlockOf<TensorType::kQ2_K> { using type = BlockQ2_K; };
template <> struct SuperBlockOf<TensorType::kQ3_K> { using type = BlockQ3_K; };
template <> struct SuperBlockOf<TensorType::kQ4_K> { using type = BlockQ4_K; };
template <> struct SuperBlockOf<TensorType::kQ5_K> { using type = BlockQ5_K; };
template <> struct SuperBlockOf<TensorType::kQ6_K> { using type = BlockQ6_K; };
template <> struct SuperBlockOf<TensorType::kIQ4_XS> { using type = BlockIQ4_XS; };

// The packed word of a one-bit-per-group vector (bit g of byte i: element 4 g + i) from the
// file's bit planes: element e's bit is bit `shift` of bits[e].
uint32_t BitWord(const uint8_t* bits, size_t shift) {
  uint32_t word = 0;
  for (size_t g = 0; g < 8; ++g) word |= ((LoadWord(bits + 4 * g) >> shift) & 0x01010101u) << g;
  return word;
}

// The packed word of vector v (0, 1) of the 2-bit layout (groups v + 2 s at bits 2 s) from
// crumbs(e): the 2-bit fields of elements e .. e + 3, one per byte.
template <class Crumbs>
uint32_t CrumbWord(size_t v, const Crumbs& crumbs) {
  uint32_t word = 0;
  for (size_t s = 0; s < 4; ++s) word |= crumbs(4 * (v + 2 * s)) << (2 * s);
  return word;
}

// Q2_K .. Q6_K, IQ4_XS: the tile's super-blocks as matmul_internal.h lays them out. Writes
// every byte of the tile.
template <TensorType kType>
void PackKTile(const MatView& w, size_t row0, uint8_t* dst) {
  using Block = typename SuperBlockOf<kType>::type;
  const size_t block_bytes = PackedBlockBytes(kType);
  constexpr size_t unit_bytes = KPackUnitBytes(kType);
  for (size_t sb = 0; sb < w.cols / kSuperBlockElems; ++sb) {
    uint8_t* out = dst + sb * block_bytes;
    for (size_t r = 0; r < kPackRows; ++r) {
      const Block& b = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(w.data) +
                                                     (row0 + r) * w.row_bytes)[sb];
      // Four elements at a time, one per byte of a 32-bit word; each value byte is written once.
      for (size_t u = 0; u < 8; ++u) {
        uint8_t* unit = out + unit_bytes * u;
        const size_t h = u / 4, k = u % 4;  // Q2_K, Q3_K, Q6_K: unit u is elements 128 h + 32 k ..
        if constexpr (kType == TensorType::kQ2_K || kType == TensorType::kQ3_K) {
          auto low2 = [&](size_t e) { return (LoadWord(b.qs + 32 * h + e) >> (2 * k)) & 0x03030303u; };
          for (size_t v = 0; v < 2; ++v) StoreWord(unit + 64 * v + 4 * r, CrumbWord(v, low2));
          if constexpr (kType == TensorType::kQ3_K) StoreWord(unit + 128 + 4 * r, BitWord(b.hmask, 4 * h + k));
          continue;
        }
        // The low 4 bits of q (Q6_K: of q + 32) of the unit's elements e .. e + 3.
        auto low4 = [&](size_t e) {
          if constexpr (kType == TensorType::kIQ4_XS) {  // byte j: elements j and j + 16
            return (LoadWord(b.qs + 16 * u + e % 16) >> (e < 16 ? 0 : 4)) & 0x0F0F0F0Fu;
          } else if constexpr (kType != TensorType::kQ6_K) {
            return (LoadWord(b.qs + 32 * (u / 2) + e) >> (4 * (u % 2))) & 0x0F0F0F0Fu;
          } else {
            return (LoadWord(b.ql + 64 * h + 32 * (k % 2) + e) >> (k < 2 ? 0 : 4)) & 0x0F0F0F0Fu;
          }
        };
        for (size_t j = 0; j < 4; ++j) StoreWord(unit + 64 * j + 4 * r, low4(4 * j) | low4(16 + 4 * j) << 4);
        if constexpr (kType == TensorType::kQ5_K) {  // bit 4 of q: bit u of qh
          StoreWord(unit + kKPackHigh + 4 * r, BitWord(b.qh, u));
        } else if constexpr (kType == TensorType::kQ6_K) {
          auto high2 = [&](size_t e) { return (LoadWord(b.qh + 32 * h + e) >> (2 * k)) & 0x03030303u; };
          for (size_t v = 0; v < 2; ++v) StoreWord(unit + kKPackHigh + 64 * v + 4 * r, CrumbWord(v, high2));
        }
      }
      if constexpr (kType == TensorType::kIQ4_XS) {
        for (size_t u = 0; u < 8; ++u) {
          out[KPackScales(kType) + 2 * kPackRows * (u / 2) + 2 * r + u % 2] =
              static_cast<uint8_t>(unpack_internal::ScaleIQ4XS(b, u));
        }
        std::memcpy(out + KPackD(kType) + 2 * r, &b.d, 2);
      } else if constexpr (HasHalfUnitScales(kType)) {  // sub-block s: unit s / 2, byte s % 2
        for (size_t s = 0; s < 16; ++s) {
          uint8_t* at = out + unit_bytes * (s / 2) + KPackUnitScales(kType) + 2 * r + s % 2;
          if constexpr (kType == TensorType::kQ3_K) {
            *at = static_cast<uint8_t>(unpack_internal::ScaleQ3K(b.scales, s) - 32);
          } else {
            *at = static_cast<uint8_t>(b.scales[s]);  // Q6_K's signed scale; Q2_K's sc | m << 4
          }
        }
        std::memcpy(out + KPackD(kType) + 2 * r, &b.d, 2);
        if constexpr (kType == TensorType::kQ2_K) std::memcpy(out + KPackD(kType) + 2 * kPackRows + 2 * r, &b.dmin, 2);
      } else {
        for (size_t u = 0; u < 8; ++u) {
          int sc, m;
          unpack_internal::ScaleMinK4(b.scales, u, sc, m);
          out[KPackScales(kType) + kPackRows * u + r] = static_cast<uint8_t>(sc);
          out[KPackMins(kType) + 2 * kPackRows * (u / 2) + 2 * r + u % 2] = static_cast<uint8_t>(m);
        }
        std::memcpy(out + KPackD(kType) + 2 * r, &b.d, 2);
        std::memcpy(out + KPackD(kType) + 2 * kPackRows + 2 * r, &b.dmin, 2);
      }
    }
  }
}

// Row `lane` of a super-block tile, as quant_unpack.h's DequantizeQuantRow computes it.
void DequantizePackedKRow(TensorType type, const uint8_t* tile, size_t lane, size_t cols,
                          float* out) {
  const bool low2 = type == TensorType::kQ2_K || type == TensorType::kQ3_K;
  const size_t block_bytes = PackedBlockBytes(type);
  for (size_t sb = 0; sb < cols / kSuperBlockElems; ++sb) {
    const uint8_t* blk = tile + sb * block_bytes;
    uint16_t d_bits, dmin_bits = 0;
    std::memcpy(&d_bits, blk + KPackD(type) + 2 * lane, 2);
    if (KPackHasDmin(type)) std::memcpy(&dmin_bits, blk + KPackD(type) + 2 * kPackRows + 2 * lane, 2);
    const float d = F16ToF32(d_bits), dmin = F16ToF32(dmin_bits);
    for (size_t u = 0; u < 8; ++u) {
      const uint8_t* unit = blk + KPackUnitBytes(type) * u;
      for (size_t e = 0; e < 32; ++e) {
        const size_t g = e / 4, at = 4 * lane + e % 4;  // group, and byte within a vector
        int q;
        if (low2) {
          q = (unit[64 * (g % 2) + at] >> (2 * (g / 2))) & 3;
          if (type == TensorType::kQ3_K) q += (((unit[128 + at] >> g) & 1) << 2) - 4;
        } else {
          q = (unit[(g % 4) * 64 + at] >> (g < 4 ? 0 : 4)) & 0x0F;
          if (type == TensorType::kQ5_K) q |= ((unit[kKPackHigh + at] >> g) & 1) << 4;
          if (type == TensorType::kQ6_K) q = (q | ((unit[kKPackHigh + 64 * (g % 2) + at] >> (2 * (g / 2))) & 3) << 4) - 32;
          if (type == TensorType::kIQ4_XS) q = kIq4NlValues[q];
        }
        float scale, min = 0.0f;
        if (HasHalfUnitScales(type)) {
          const uint8_t sc = unit[KPackUnitScales(type) + 2 * lane + e / 16];
          if (type == TensorType::kQ2_K) {
            scale = d * static_cast<float>(sc & 0x0F);
            min = -(dmin * static_cast<float>(sc >> 4));
          } else {
            scale = d * static_cast<float>(static_cast<int8_t>(sc));
          }
        } else if (type == TensorType::kIQ4_XS) {
          const auto sc = static_cast<int8_t>(blk[KPackScales(type) + 2 * kPackRows * (u / 2) + 2 * lane + u % 2]);
          scale = d * static_cast<float>(sc);
        } else {
          scale = d * static_cast<float>(blk[KPackScales(type) + kPackRows * u + lane]);
          const uint8_t m = blk[KPackMins(type) + 2 * kPackRows * (u / 2) + 2 * lane + u % 2];
          min = -(dmin * static_cast<float>(m));
        }
        out[sb * kSuperBlockElems + 32 * u + e] = scale * static_cast<float>(q) + min;
      }
    }
  }
}

// Maps fresh pages for [p, p + n) in one call (MADV_POPULATE_WRITE), rather than one page
// fault per 4 KiB as the packing first writes them: the 1B shape in Q8_0 (1.3 GB packed),
// `llmasos run FILE -n 1 -t 2`, median of 8: 0.96 -> 0.88 s. Advisory: where the kernel
// refuses (before Linux 5.14, or short of memory), the writes fault the pages in as before.
void PopulateForWrite(uint8_t* p, size_t n) {
#ifdef MADV_POPULATE_WRITE
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (begin < end) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
#else
  (void)p;
  (void)n;
#endif
}

// F16: element k of row r at [k][r].
void PackF16Tile(const MatView& w, size_t row0, uint8_t* dst) {
  auto* out = reinterpret_cast<uint16_t*>(dst);
  for (size_t r = 0; r < kPackRows; ++r) {
    const auto* row = reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(w.data) +
                                                        (row0 + r) * w.row_bytes);
    for (size_t k = 0; k < w.cols; ++k) std::memcpy(&out[k * kPackRows + r], &row[k], 2);
  }
}

}  // namespace

size_t PackedBlockBytes(TensorType type) {
  switch (type) {
    case TensorType::kQ4_0: return kPackRows * sizeof(BlockQ4_0);
    case TensorType::kQ4_1: return kPackRows * sizeof(BlockQ4_1);
    case TensorType::kQ5_0: return kPackRows * sizeof(BlockQ5_0);
    case TensorType::kQ5_1: return kPackRows * sizeof(BlockQ5_1);
    case TensorType::kQ8_0: return kPackRows * sizeof(BlockQ8_0);
    case TensorType::kIQ4_NL: return kPackRows * sizeof(BlockIQ4_NL);
    case TensorType::kF16: return kPackRows * kQuantBlockElems * sizeof(uint16_t);
    case TensorType::kQ2_K:
    case TensorType::kQ3_K:
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
    case TensorType::kQ6_K:
    case TensorType::kIQ4_XS: return KPackD(type) + (KPackHasDmin(type) ? 2 : 1) * 2 * kPackRows;
    default: CHECK(false) << "no packed layout for " << Traits(type).name; return 0;
  }
}

size_t PackedTileBytes(TensorType type, size_t cols) {
  const bool k_quant = IsPackedSuperBlock(type);
  return cols / (k_quant ? kSuperBlockElems : kQuantBlockElems) * PackedBlockBytes(type);
}

bool RepackEnabledByEnv() {
  const char* env = std::getenv("LLMASOS_REPACK");
  return env == nullptr || std::string_view(env) != "0";
}

void DequantizePackedRow(const PackedMatrix& w, size_t row, float* out) {
  CHECK_LT(row, w.rows) << "row index out of range";
  const size_t lane = row % kPackRows;
  const size_t num_blocks = w.cols / kQuantBlockElems;
  const size_t block_bytes = PackedBlockBytes(w.type);
  const uint8_t* tile = w.data + row / kPackRows * PackedTileBytes(w.type, w.cols);
  if (IsPackedSuperBlock(w.type)) {
    return DequantizePackedKRow(w.type, tile, lane, w.cols, out);
  }
  if (w.type == TensorType::kF16) {
    const auto* h = reinterpret_cast<const uint16_t*>(tile);
    for (size_t k = 0; k < w.cols; ++k) out[k] = F16ToF32(h[k * kPackRows + lane]);
    return;
  }
  const bool q5 = w.type == TensorType::kQ5_0 || w.type == TensorType::kQ5_1;
  const size_t value_bytes = PackValueBytes(w.type);
  for (size_t b = 0; b < num_blocks; ++b) {
    const uint8_t* block = tile + b * block_bytes;
    const auto* scales = reinterpret_cast<const uint16_t*>(block + value_bytes);
    const float d = F16ToF32(scales[lane]);
    for (size_t e = 0; e < kQuantBlockElems; ++e) {
      const size_t g = e / 4, i = e % 4;
      float v;
      if (w.type == TensorType::kQ8_0) {
        v = d * static_cast<float>(static_cast<int8_t>(block[g * 64 + lane * 4 + i] ^ 0x80));
      } else {
        const uint8_t byte = block[(g % 4) * 64 + lane * 4 + i];
        int q = g < 4 ? byte & 0x0F : byte >> 4;
        if (q5) q |= ((block[kKPackHigh + lane * 4 + i] >> g) & 1) << 4;
        const bool has_min = w.type == TensorType::kQ4_1 || w.type == TensorType::kQ5_1;
        v = has_min ? d * static_cast<float>(q) + F16ToF32(scales[kPackRows + lane])
            : w.type == TensorType::kIQ4_NL ? d * static_cast<float>(kIq4NlValues[q])
                                            : d * static_cast<float>(q - (q5 ? 16 : 8));
      }
      out[b * kQuantBlockElems + e] = v;
    }
  }
}

bool HasPackedLayout(const MatView& w) {
  return IsPackedType(w.type) && w.rows != 0 && w.rows % kPackRows == 0 && w.cols % kQuantBlockElems == 0 &&
         w.cols % Traits(w.type).block_elems == 0;
}

size_t PackedBytes(const MatView& w) {
  CHECK(HasPackedLayout(w)) << "no packed layout for a " << w.rows << " x " << w.cols << " "
                            << Traits(w.type).name << " matrix";
  return w.rows / kPackRows * PackedTileBytes(w.type, w.cols);
}

std::unique_ptr<PackedMatrix> PackMatrixLayout(
    const MatView& w, ThreadPool* pool,
    const std::function<void(size_t row_begin, size_t row_end)>& band_done, size_t band_bytes) {
  CHECK_EQ(w.row_bytes, RowBytes(w.type, w.cols));
  auto packed = std::make_unique<PackedMatrix>();
  packed->type = w.type;
  packed->rows = w.rows;
  packed->cols = w.cols;
  packed->bytes = PackedBytes(w);
  const size_t tile_bytes = packed->bytes / (w.rows / kPackRows);
  packed->storage = hwy::AllocateAligned<uint8_t>(packed->bytes);
  CHECK(packed->storage != nullptr) << "out of memory packing a " << w.rows << " x " << w.cols
                                    << " matrix";
  packed->data = packed->storage.get();
  // Each tile is written whole by one call, so any split of the tiles over threads writes the
  // same bytes; the first touch of the pages is spread too.
  auto pack_tiles = [&](size_t tile_begin, size_t tile_end) {
    PopulateForWrite(packed->storage.get() + tile_begin * tile_bytes, (tile_end - tile_begin) * tile_bytes);
    for (size_t tile = tile_begin; tile < tile_end; ++tile) {
      uint8_t* dst = packed->storage.get() + tile * tile_bytes;
      switch (w.type) {
        case TensorType::kQ4_0: PackTile<BlockQ4_0>(w, tile * kPackRows, dst); break;
        case TensorType::kQ4_1: PackTile<BlockQ4_1>(w, tile * kPackRows, dst); break;
        case TensorType::kQ5_0: PackTile<BlockQ5_0>(w, tile * kPackRows, dst); break;
        case TensorType::kQ5_1: PackTile<BlockQ5_1>(w, tile * kPackRows, dst); break;
        case TensorType::kF16: PackF16Tile(w, tile * kPackRows, dst); break;
        case TensorType::kQ4_K: PackKTile<TensorType::kQ4_K>(w, tile * kPackRows, dst); break;
        case TensorType::kQ5_K: PackKTile<TensorType::kQ5_K>(w, tile * kPackRows, dst); break;
        case TensorType::kQ6_K: PackKTile<TensorType::kQ6_K>(w, tile * kPackRows, dst); break;
        case TensorType::kIQ4_NL: PackTile<BlockIQ4_NL>(w, tile * kPackRows, dst); break;
        case TensorType::kIQ4_XS: PackKTile<TensorType::kIQ4_XS>(w, tile * kPackRows, dst); break;
        case TensorType::kQ2_K: PackKTile<TensorType::kQ2_K>(w, tile * kPackRows, dst); break;
        case TensorType::kQ3_K: PackKTile<TensorType::kQ3_K>(w, tile * kPackRows, dst); break;
        default: PackTile<BlockQ8_0>(w, tile * kPackRows, dst); break;
      }
    }
  };
  const size_t num_tiles = w.rows / kPackRows;
  const size_t band_tiles = std::max<size_t>(1, band_bytes / (kPackRows * w.row_bytes));
  for (size_t band = 0; band < num_tiles; band += band_tiles) {
    const size_t band_end = std::min(num_tiles, band + band_tiles);
    if (pool == nullptr || pool->num_threads() == 1) {
      pack_tiles(band, band_end);
    } else {
      pool->ParallelFor(band_end - band, 1, [&](size_t begin, size_t end, size_t /*thread_idx*/) {
        pack_tiles(band + begin, band + end);
      }, /*chunks_per_thread=*/4);
    }
    if (band_done) band_done(band * kPackRows, band_end * kPackRows);
  }
  return packed;
}

}  // namespace llmasos::cpu
