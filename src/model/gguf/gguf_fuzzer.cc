// libFuzzer target: parse arbitrary bytes as GGUF; when they parse, touch every metadata value
// and every tensor's first and last byte, call every getter and describe the file. ASan turns
// any out-of-bounds view the parser let through into a crash.
#include <cstddef>
#include <cstdint>

#include "model/gguf/gguf.h"
#include "model/gguf/gguf_describe.h"

namespace {

volatile uint64_t g_sink;

void Walk(const llmasos::gguf::GgufFile& f) {
  using llmasos::gguf::ValueType;
  uint64_t sum = 0;
  for (const auto& e : f.metadata()) {
    const llmasos::gguf::Value& v = e.value;
    sum += e.key.size() + (e.key.empty() ? 0 : static_cast<uint8_t>(e.key.back()));
    if (v.type == ValueType::kString && !v.str.empty()) sum += static_cast<uint8_t>(v.str.back());
    for (std::string_view s : v.array_strings) {
      if (!s.empty()) sum += static_cast<uint8_t>(s.front()) + static_cast<uint8_t>(s.back());
    }
    // Exercise every getter; errors are expected for most of them.
    sum += f.GetString(e.key).ok() + f.GetUint(e.key).ok() + f.GetInt(e.key).ok() +
           f.GetFloat(e.key).ok() + f.GetBool(e.key).ok() + f.GetStringArray(e.key).ok();
    if (auto a = f.GetFloatArray(e.key); a.ok()) sum += a->size();
    if (auto a = f.GetIntArray(e.key); a.ok()) sum += a->size();
    if (f.Find(e.key) != &e.value) __builtin_trap();
  }
  for (const auto& t : f.tensors()) {
    if (t.num_bytes > 0) sum += t.data[0] + t.data[t.num_bytes - 1];
    if (t.offset % f.alignment() != 0) __builtin_trap();
    if (f.FindTensor(t.name) != &t) __builtin_trap();
  }
  sum += llmasos::gguf::DescribeGguf(f, /*all_tensors=*/true).size();
  sum += llmasos::gguf::DescribeGguf(f, /*all_tensors=*/false).size();
  g_sink = sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = llmasos::gguf::GgufFile::Parse(std::span<const uint8_t>(data, size));
  if (file.ok()) {
    Walk(**file);
  } else if (file.status().code() != llmasos::StatusCode::kDataLoss ||
             file.status().message().empty()) {
    __builtin_trap();  // every rejection is kDataLoss with a message
  }
  return 0;
}
