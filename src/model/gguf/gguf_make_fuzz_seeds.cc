// Writes the gguf_fuzzer seed corpus: a few tiny valid GGUF files covering every value type,
// every tensor type, both versions and several alignments. Run by hand when the format code
// changes:  build/src/model/gguf/gguf_make_fuzz_seeds src/model/gguf/fuzz_seeds
// The corpus also holds a whole tiny model of an architecture with fused tensors, so mutations
// start from that layout: phi3_tiny_v3.gguf (attn_qkv, ffn_up holding gate and up, LongRoPE
// factor tensors and metadata, a sliding window), made with
//   build/make_tiny_model --arch phi3 --type q4_0 --embd 32 --heads 2 --kv-heads 1 --ff 32
//                         --vocab 264 --layers 2 --context 64 --out .../phi3_tiny_v3.gguf
#include <cstdio>
#include <string>
#include <vector>

#include "drivers/cpu/ops.h"
#include "model/gguf/gguf_writer.h"

namespace llmasos::gguf {
namespace {

Status WriteSeeds(const std::string& dir) {
  using cpu::TensorType;
  std::vector<float> ramp(64);
  for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = static_cast<float>(i) * 0.25f - 8.0f;

  {  // Every metadata value type, no tensors.
    GgufWriter w;
    w.SetUint8("u8", 1);
    w.SetInt8("i8", -1);
    w.SetUint16("u16", 2);
    w.SetInt16("i16", -2);
    w.SetUint32("u32", 3);
    w.SetInt32("i32", -3);
    w.SetUint64("u64", 4);
    w.SetInt64("i64", -4);
    w.SetFloat32("f32", 0.5f);
    w.SetFloat64("f64", 0.25);
    w.SetBool("bool", true);
    w.SetString("str", "text");
    w.SetStringArray("strs", {"a", "bc", ""});
    w.SetFloat32Array("floats", std::span(ramp).first(3));
    const int32_t ints[] = {1, -2, 3};
    w.SetInt32Array("ints", ints);
    RETURN_IF_ERROR(w.WriteFile(dir + "/metadata_v3.gguf", 3));
  }
  {  // A tiny llama-like header with one tensor of every type, version 2.
    GgufWriter w;
    w.SetString("general.architecture", "llama");
    w.SetUint32("llama.block_count", 1);
    w.SetStringArray("tokenizer.ggml.tokens", {"<s>", "a", "b"});
    for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kBF16,
                            TensorType::kQ4_0, TensorType::kQ4_1, TensorType::kQ8_0}) {
      RETURN_IF_ERROR(w.AddTensorFromFloats(std::string(cpu::Traits(type).name), type, {32, 2}, ramp));
    }
    RETURN_IF_ERROR(w.WriteFile(dir + "/tensors_v2.gguf", 2));
  }
  {  // One tensor of every 256-element and 5-bit block format (two rows each), version 3:
     // quantized from a ramp where a quantizer exists, a byte pattern otherwise.
    GgufWriter w;
    w.SetString("general.architecture", "llama");
    std::vector<float> ramp512(512);
    for (size_t i = 0; i < ramp512.size(); ++i) ramp512[i] = static_cast<float>(i % 97) * 0.1f - 4.0f;
    for (TensorType type : {TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kQ2_K,
                            TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K,
                            TensorType::kQ6_K, TensorType::kQ8_K, TensorType::kIQ4_NL,
                            TensorType::kIQ4_XS}) {
      const std::string name(cpu::Traits(type).name);
      if (cpu::CanQuantizeRow(type)) {
        RETURN_IF_ERROR(w.AddTensorFromFloats(name, type, {256, 2}, ramp512));
      } else {
        std::vector<uint8_t> bytes(cpu::RowBytes(type, 256) * 2);
        for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 37 + 11);
        RETURN_IF_ERROR(w.AddTensor(name, type, {256, 2}, bytes));
      }
    }
    RETURN_IF_ERROR(w.WriteFile(dir + "/block_formats_v3.gguf", 3));
  }
  for (uint32_t alignment : {1u, 64u}) {  // Non-default alignments.
    GgufWriter w;
    w.SetAlignment(alignment);
    RETURN_IF_ERROR(w.AddTensorFromFloats("a", TensorType::kF32, {3}, std::span(ramp).first(3)));
    RETURN_IF_ERROR(w.AddTensorFromFloats("b", TensorType::kF16, {2, 1, 1}, std::span(ramp).first(2)));
    RETURN_IF_ERROR(
        w.WriteFile(dir + "/align" + std::to_string(alignment) + "_v3.gguf", 3));
  }
  return OkStatus();
}

}  // namespace
}  // namespace llmasos::gguf

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  llmasos::Status s = llmasos::gguf::WriteSeeds(argv[1]);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
