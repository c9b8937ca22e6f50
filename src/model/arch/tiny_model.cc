#include "model/arch/tiny_model.h"

#include <cmath>
#include <random>

#include "model/gguf/gguf_writer.h"

namespace llmasos::arch {
namespace {

// GPT-2's byte-to-unicode table: printable Latin-1 bytes map to themselves, the rest to
// U+0100 upwards in byte order, so every byte has a visible, unambiguous character.
std::vector<std::string> ByteLevelAlphabet() {
  std::vector<std::string> out(256);
  auto utf8 = [](uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  };
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    out[b] = utf8(printable ? b : next++);
  }
  return out;
}

}  // namespace

StatusOr<std::vector<uint8_t>> MakeTinyModel(const TinyModelSpec& s) {
  if (s.arch != "llama" && s.arch != "qwen2" && s.arch != "qwen3" && s.arch != "gemma3" &&
      s.arch != "phi3") {
    return InvalidArgumentError("unknown arch '" + s.arch + "' (llama, qwen2, qwen3, gemma3, phi3)");
  }
  const bool qk_norm = s.arch == "qwen3" || s.arch == "gemma3";
  const bool gemma = s.arch == "gemma3";
  const bool phi3 = s.arch == "phi3";
  if (s.heads == 0 || s.kv_heads == 0 || s.embd % s.heads != 0 || s.heads % s.kv_heads != 0 ||
      (s.embd / s.heads) % 2 != 0) {
    return InvalidArgumentError("embd must split into heads of even size, and heads into kv heads");
  }
  const cpu::TensorType type = s.type;
  const uint32_t head_dim = s.embd / s.heads;
  const uint32_t kv_dim = head_dim * s.kv_heads;
  const size_t block = cpu::Traits(type).block_elems;
  if (s.embd % block != 0 || s.ff % block != 0) {
    return InvalidArgumentError(std::string(cpu::Traits(type).name) + " needs embd and ff to be multiples of " +
                                std::to_string(block));
  }

  // Vocabulary: the 256 byte tokens, a few merges, the ChatML control tokens, then filler.
  std::vector<std::string> alphabet = ByteLevelAlphabet();
  std::vector<std::string> tokens = alphabet;
  std::vector<int32_t> types(256, 1);
  const std::string space = alphabet[' '];
  std::vector<std::string> merges = {space + " t", "h e", space + "t he", "i n", space + " a"};
  for (const std::string& m : merges) {
    size_t sp = m.find(' ');
    std::string joined = m.substr(0, sp) + m.substr(sp + 1);
    tokens.push_back(joined);
    types.push_back(1);
  }
  const int32_t first_special = static_cast<int32_t>(tokens.size());
  for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    tokens.push_back(special);
    types.push_back(3);
  }
  if (s.vocab < tokens.size()) {
    return InvalidArgumentError("vocab must be at least " + std::to_string(tokens.size()));
  }
  for (size_t i = tokens.size(); i < s.vocab; ++i) {
    tokens.push_back("<unused" + std::to_string(i) + ">");
    types.push_back(5);
  }

  gguf::GgufWriter w;
  const std::string a = s.arch;
  w.SetString("general.architecture", a);
  w.SetString("general.name", "tiny-" + a + "-" + std::string(cpu::Traits(s.type).name));
  w.SetUint32(a + ".block_count", s.layers);
  w.SetUint32(a + ".context_length", s.context);
  w.SetUint32(a + ".embedding_length", s.embd);
  w.SetUint32(a + ".feed_forward_length", s.ff);
  w.SetUint32(a + ".attention.head_count", s.heads);
  w.SetUint32(a + ".attention.head_count_kv", s.kv_heads);
  w.SetFloat32(a + ".rope.freq_base", 10000.0f);
  w.SetFloat32(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
  w.SetUint32(a + ".rope.dimension_count", head_dim);
  if (gemma) {
    w.SetUint32(a + ".attention.sliding_window", s.sliding_window);
    w.SetUint32(a + ".attention.sliding_window_pattern", s.swa_pattern);
  }
  const bool longrope = phi3 && s.longrope_orig > 0;
  if (phi3) {
    w.SetUint32(a + ".attention.sliding_window", s.sliding_window);
    if (longrope) {
      // The attention factor Phi-3's converter writes: sqrt(1 + ln(scale) / ln(orig)).
      const double scale = static_cast<double>(s.context) / s.longrope_orig;
      w.SetUint32(a + ".rope.scaling.original_context_length", s.longrope_orig);
      w.SetFloat32(a + ".rope.scaling.attn_factor",
                   scale > 1 ? static_cast<float>(std::sqrt(1 + std::log(scale) / std::log(s.longrope_orig)))
                             : 1.0f);
    }
  }
  w.SetString("tokenizer.ggml.model", "gpt2");
  w.SetString("tokenizer.ggml.pre", a == "qwen2" ? "qwen2" : "gpt2");
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  w.SetInt32Array("tokenizer.ggml.token_type", types);
  w.SetStringArray("tokenizer.ggml.merges", merges);
  w.SetUint32("tokenizer.ggml.bos_token_id", first_special + 1);
  w.SetUint32("tokenizer.ggml.eos_token_id", first_special + 2);
  w.SetBool("tokenizer.ggml.add_bos_token", false);
  w.SetString("tokenizer.chat_template",
              "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
              "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
              "{{ '<|im_start|>assistant\n' }}{% endif %}");

  std::mt19937_64 rng(s.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto random = [&](size_t n, float scale, float offset) {
    std::vector<float> v(n);
    for (float& x : v) x = offset + scale * normal(rng);
    return v;
  };
  Status st;
  auto matrix = [&](const std::string& name, uint32_t rows, uint32_t cols) {
    if (!st.ok()) return;
    // 1/sqrt(cols) keeps activations O(1) through the layers.
    std::vector<float> v = random(size_t{rows} * cols, 1.0f / std::sqrt(static_cast<float>(cols)), 0.0f);
    st = w.AddTensorFromFloats(name, type, {cols, rows}, v);
  };
  auto vector = [&](const std::string& name, uint32_t n, float scale, float offset) {
    if (!st.ok()) return;
    std::vector<float> v = random(n, scale, offset);
    st = w.AddTensorFromFloats(name, cpu::TensorType::kF32, {n}, v);
  };
  matrix("token_embd.weight", s.vocab, s.embd);
  vector("output_norm.weight", s.embd, 0.1f, 1.0f);
  if (!s.tied) matrix("output.weight", s.vocab, s.embd);
  if (longrope) {
    // Phi-3's shapes of factors: near 1 (short), 1 to tens for the slow pairs (long).
    for (auto [name, top] : {std::pair{"rope_factors_short.weight", 1.5f},
                             std::pair{"rope_factors_long.weight", 40.0f}}) {
      std::vector<float> f(head_dim / 2);
      for (size_t i = 0; i < f.size(); ++i) f[i] = 1.0f + (top - 1.0f) * i / (f.size() - 1);
      if (st.ok()) st = w.AddTensorFromFloats(name, cpu::TensorType::kF32, {head_dim / 2}, f);
    }
  }
  for (uint32_t i = 0; i < s.layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    vector(b + "attn_norm.weight", s.embd, 0.1f, 1.0f);
    if (phi3) {
      matrix(b + "attn_qkv.weight", s.embd + 2 * kv_dim, s.embd);
    } else {
      matrix(b + "attn_q.weight", s.embd, s.embd);
      matrix(b + "attn_k.weight", kv_dim, s.embd);
      matrix(b + "attn_v.weight", kv_dim, s.embd);
    }
    if (a == "qwen2") {
      vector(b + "attn_q.bias", s.embd, 0.1f, 0.0f);
      vector(b + "attn_k.bias", kv_dim, 0.1f, 0.0f);
      vector(b + "attn_v.bias", kv_dim, 0.1f, 0.0f);
    }
    if (qk_norm) {
      vector(b + "attn_q_norm.weight", head_dim, 0.1f, 1.0f);
      vector(b + "attn_k_norm.weight", head_dim, 0.1f, 1.0f);
    }
    matrix(b + "attn_output.weight", s.embd, s.embd);
    if (gemma) vector(b + "post_attention_norm.weight", s.embd, 0.1f, 1.0f);
    vector(b + "ffn_norm.weight", s.embd, 0.1f, 1.0f);
    if (phi3) {
      matrix(b + "ffn_up.weight", 2 * s.ff, s.embd);  // gate rows, then up's
    } else {
      matrix(b + "ffn_gate.weight", s.ff, s.embd);
      matrix(b + "ffn_up.weight", s.ff, s.embd);
    }
    matrix(b + "ffn_down.weight", s.embd, s.ff);
    if (gemma) vector(b + "post_ffw_norm.weight", s.embd, 0.1f, 1.0f);
  }
  RETURN_IF_ERROR(st);
  return w.Serialize();
}

StatusOr<LoadedTinyModel> LoadTinyModel(const TinyModelSpec& spec) {
  LoadedTinyModel l;
  ASSIGN_OR_RETURN(l.bytes, MakeTinyModel(spec));
  ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> file, gguf::GgufFile::Parse(l.bytes));
  ASSIGN_OR_RETURN(l.model, Model::FromGguf(std::move(file)));
  return l;
}

}  // namespace llmasos::arch
