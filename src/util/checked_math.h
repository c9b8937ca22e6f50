// Overflow-checked unsigned arithmetic for sizes read from untrusted input.
#ifndef LLMASOS_UTIL_CHECKED_MATH_H_
#define LLMASOS_UTIL_CHECKED_MATH_H_

#include <cstdint>
#include <optional>

namespace llmasos {

inline std::optional<uint64_t> CheckedAdd(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<uint64_t> CheckedMul(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// Rounds `value` up to a multiple of `alignment` (> 0), or nullopt on overflow.
inline std::optional<uint64_t> CheckedAlignUp(uint64_t value, uint64_t alignment) {
  uint64_t rem = value % alignment;
  if (rem == 0) return value;
  return CheckedAdd(value, alignment - rem);
}

}  // namespace llmasos

#endif  // LLMASOS_UTIL_CHECKED_MATH_H_
