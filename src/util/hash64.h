// XXH64, the 64-bit xxHash (its published specification, written here because no xxHash
// library is among the project's dependencies): a fast non-cryptographic checksum, several
// GB/s per core, for detecting corruption of large files the project derives itself (the
// repacked weights, model/arch/packed_blob.h). Not a defence against deliberate tampering:
// content addresses use SHA-256.
//
// Thread safety: a pure function.
#ifndef LLMASOS_UTIL_HASH64_H_
#define LLMASOS_UTIL_HASH64_H_

#include <cstdint>
#include <span>

namespace llmasos {

uint64_t Hash64(std::span<const uint8_t> bytes, uint64_t seed = 0);

}  // namespace llmasos

#endif  // LLMASOS_UTIL_HASH64_H_
