// Human-readable summary of a parsed GGUF file, for `llmasos inspect` and debugging.
#ifndef LLMASOS_MODEL_GGUF_GGUF_DESCRIBE_H_
#define LLMASOS_MODEL_GGUF_GGUF_DESCRIBE_H_

#include <string>

#include "model/gguf/gguf.h"

namespace llmasos::gguf {

// Returns the header facts, every metadata key with its type and value, and a tensor table
// (index, name, type, dims, offset, bytes). Long strings and arrays are abbreviated: a string
// shows its first bytes and its length, an array its length and first few elements. Only the
// first kDescribeTensorLimit tensors are listed unless `all_tensors`. Control characters and
// invalid UTF-8 in names and values are escaped, so the text is safe to print to a terminal.
inline constexpr size_t kDescribeTensorLimit = 20;
std::string DescribeGguf(const GgufFile& file, bool all_tensors);

}  // namespace llmasos::gguf

#endif  // LLMASOS_MODEL_GGUF_GGUF_DESCRIBE_H_
