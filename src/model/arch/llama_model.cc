#include "model/arch/llama_model.h"

#include <cstdlib>
#include <string_view>

#include "util/checked_math.h"
#include "util/fp16.h"

namespace llmasos::arch {
namespace {

// Hard limits on hyperparameters read from a file; far above any real model, low enough that
// derived buffer sizes cannot overflow.
constexpr uint64_t kMaxLayers = 1024;
constexpr uint64_t kMaxWidth = 1 << 20;
constexpr uint64_t kMaxContext = 1 << 24;

struct ArchInfo {
  std::string_view name;
  RopeMode rope_mode;
};

constexpr ArchInfo kArchitectures[] = {
    {"llama", RopeMode::kNormal},
    {"mistral", RopeMode::kNormal},
    {"qwen2", RopeMode::kNeox},
};

}  // namespace

std::string_view PoolingName(Pooling pooling) {
  switch (pooling) {
    case Pooling::kMean: return "mean";
    case Pooling::kCls: return "cls";
    case Pooling::kLast: return "last";
  }
  return "unknown";
}

namespace {

StatusOr<uint64_t> GetBounded(const gguf::GgufFile& file, const std::string& key, uint64_t lo,
                              uint64_t hi) {
  ASSIGN_OR_RETURN(uint64_t v, file.GetUint(key));
  if (v < lo || v > hi) {
    return DataLossError("metadata '" + key + "' = " + std::to_string(v) + " is outside [" +
                         std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return v;
}

StatusOr<uint64_t> GetBoundedOr(const gguf::GgufFile& file, const std::string& key, uint64_t lo,
                                uint64_t hi, uint64_t fallback) {
  if (file.Find(key) == nullptr) return fallback;
  return GetBounded(file, key, lo, hi);
}

std::string Shape(const std::vector<uint64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// Every type the GGUF reader accepts has a MatMul (ops.h).
bool IsMatrixType(cpu::TensorType t) {
  return cpu::GetTensorTypeTraits(static_cast<uint32_t>(t)).has_value();
}

class WeightLoader {
 public:
  explicit WeightLoader(const gguf::GgufFile& file) : file_(file) {}

  // A 2-D weight with `cols` inputs (ne0) and `rows` outputs (ne1).
  StatusOr<cpu::MatView> Matrix(const std::string& name, size_t rows, size_t cols) {
    const gguf::TensorInfo* t = file_.FindTensor(name);
    if (t == nullptr) return NotFoundError("model has no tensor '" + name + "'");
    if (t->dims.size() != 2 || t->dims[0] != cols || t->dims[1] != rows) {
      return DataLossError("tensor '" + std::string(name) + "' has shape " + Shape(t->dims) +
                           ", expected [" + std::to_string(cols) + ", " + std::to_string(rows) + "]");
    }
    if (!IsMatrixType(t->type)) {
      return UnimplementedError("tensor '" + name + "' has a type matrix multiply does not support");
    }
    cpu::MatView view{t->type, t->data, rows, cols, cpu::RowBytes(t->type, cols)};
    bytes_ += t->num_bytes;
    return view;
  }

  // A 1-D float vector of `n` elements, converted to float32.
  StatusOr<std::vector<float>> Vector(const std::string& name, size_t n) {
    const gguf::TensorInfo* t = file_.FindTensor(name);
    if (t == nullptr) return NotFoundError("model has no tensor '" + name + "'");
    if (t->dims.size() != 1 || t->dims[0] != n) {
      return DataLossError("tensor '" + name + "' has shape " + Shape(t->dims) + ", expected [" +
                           std::to_string(n) + "]");
    }
    std::vector<float> out(n);
    cpu::MatView view{t->type, t->data, 1, n, cpu::RowBytes(t->type, n)};
    cpu::DequantizeRow(view, 0, out.data());
    bytes_ += t->num_bytes;
    return out;
  }

  // Like Vector, but an absent tensor gives an empty vector.
  StatusOr<std::vector<float>> OptionalVector(const std::string& name, size_t n) {
    if (file_.FindTensor(name) == nullptr) return std::vector<float>();
    return Vector(name, n);
  }

  size_t bytes() const { return bytes_; }

 private:
  const gguf::GgufFile& file_;
  size_t bytes_ = 0;
};

}  // namespace

StatusOr<ModelConfig> ConfigFromGguf(const gguf::GgufFile& file) {
  ModelConfig c;
  ASSIGN_OR_RETURN(std::string_view arch, file.GetString("general.architecture"));
  c.architecture = std::string(arch);
  const ArchInfo* info = nullptr;
  for (const ArchInfo& a : kArchitectures) {
    if (a.name == arch) info = &a;
  }
  if (info == nullptr) {
    return UnimplementedError("architecture '" + c.architecture +
                              "' is not supported (supported: llama, mistral, qwen2)");
  }
  c.rope_mode = info->rope_mode;
  const std::string p = c.architecture + ".";
  ASSIGN_OR_RETURN(c.num_layers, GetBounded(file, p + "block_count", 1, kMaxLayers));
  ASSIGN_OR_RETURN(c.embd, GetBounded(file, p + "embedding_length", 1, kMaxWidth));
  ASSIGN_OR_RETURN(c.ffn, GetBounded(file, p + "feed_forward_length", 1, kMaxWidth));
  ASSIGN_OR_RETURN(c.num_heads, GetBounded(file, p + "attention.head_count", 1, kMaxWidth));
  ASSIGN_OR_RETURN(c.num_kv_heads,
                   GetBoundedOr(file, p + "attention.head_count_kv", 1, kMaxWidth, c.num_heads));
  ASSIGN_OR_RETURN(c.context_length, GetBounded(file, p + "context_length", 1, kMaxContext));
  if (c.num_heads % c.num_kv_heads != 0) {
    return DataLossError("attention.head_count " + std::to_string(c.num_heads) +
                         " is not a multiple of head_count_kv " + std::to_string(c.num_kv_heads));
  }
  uint64_t default_head_dim = c.embd % c.num_heads == 0 ? c.embd / c.num_heads : 0;
  ASSIGN_OR_RETURN(c.head_dim, GetBoundedOr(file, p + "attention.key_length", 1, kMaxWidth,
                                            default_head_dim));
  if (c.head_dim == 0) {
    return DataLossError("embedding_length " + std::to_string(c.embd) +
                         " is not a multiple of head_count " + std::to_string(c.num_heads));
  }
  ASSIGN_OR_RETURN(uint64_t value_dim, GetBoundedOr(file, p + "attention.value_length", 1,
                                                    kMaxWidth, c.head_dim));
  if (value_dim != c.head_dim) {
    return UnimplementedError("attention.value_length " + std::to_string(value_dim) +
                              " differs from key_length " + std::to_string(c.head_dim));
  }
  if (c.head_dim % 2 != 0 || c.q_dim() > kMaxWidth) {
    return DataLossError("head dimension " + std::to_string(c.head_dim) + " must be even and " +
                         "heads x head_dim at most " + std::to_string(kMaxWidth));
  }
  ASSIGN_OR_RETURN(c.rope_dims, GetBoundedOr(file, p + "rope.dimension_count", 2, c.head_dim,
                                             c.head_dim));
  if (c.rope_dims % 2 != 0) {
    return DataLossError("rope.dimension_count " + std::to_string(c.rope_dims) + " is odd");
  }
  if (file.Find(p + "rope.freq_base") != nullptr) {
    ASSIGN_OR_RETURN(double theta, file.GetFloat(p + "rope.freq_base"));
    if (!(theta > 1.0 && theta < 1e12)) {
      return DataLossError("rope.freq_base " + std::to_string(theta) + " is outside (1, 1e12)");
    }
    c.rope_theta = static_cast<float>(theta);
  }
  if (file.Find(p + "rope.scaling.type") != nullptr) {
    ASSIGN_OR_RETURN(std::string_view scaling, file.GetString(p + "rope.scaling.type"));
    if (scaling != "none") {
      return UnimplementedError("RoPE scaling '" + std::string(scaling) + "' is not supported yet");
    }
  }
  // 4 (rank) is a reranker's head, which this forward pass does not have.
  ASSIGN_OR_RETURN(const uint64_t pooling, GetBoundedOr(file, p + "pooling_type", 0, 3, 1));
  c.pooling = pooling == 2 ? Pooling::kCls : pooling == 3 ? Pooling::kLast : Pooling::kMean;
  ASSIGN_OR_RETURN(double eps, file.GetFloat(p + "attention.layer_norm_rms_epsilon"));
  if (!(eps > 0 && eps < 1)) {
    return DataLossError("attention.layer_norm_rms_epsilon " + std::to_string(eps) +
                         " is outside (0, 1)");
  }
  c.rms_eps = static_cast<float>(eps);

  const gguf::TensorInfo* embd = file.FindTensor("token_embd.weight");
  if (embd == nullptr) return NotFoundError("model has no tensor 'token_embd.weight'");
  if (embd->dims.size() != 2 || embd->dims[0] != c.embd || embd->dims[1] == 0 ||
      embd->dims[1] > (1u << 24)) {
    return DataLossError("tensor 'token_embd.weight' has shape " + Shape(embd->dims) +
                         ", expected [" + std::to_string(c.embd) + ", vocab]");
  }
  c.vocab_size = embd->dims[1];
  return c;
}

StatusOr<std::unique_ptr<Model>> Model::FromGguf(std::unique_ptr<gguf::GgufFile> file) {
  std::unique_ptr<Model> m(new Model());
  ASSIGN_OR_RETURN(m->config_, ConfigFromGguf(*file));
  const ModelConfig& c = m->config_;
  WeightLoader load(*file);
  ASSIGN_OR_RETURN(m->token_embd_, load.Matrix("token_embd.weight", c.vocab_size, c.embd));
  if (file->FindTensor("output.weight") != nullptr) {
    ASSIGN_OR_RETURN(m->output_, load.Matrix("output.weight", c.vocab_size, c.embd));
  } else {
    m->output_ = m->token_embd_;  // tied embeddings
  }
  ASSIGN_OR_RETURN(m->output_norm_, load.Vector("output_norm.weight", c.embd));
  m->layers_.resize(c.num_layers);
  for (size_t i = 0; i < c.num_layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    LayerWeights& l = m->layers_[i];
    ASSIGN_OR_RETURN(l.attn_norm, load.Vector(b + "attn_norm.weight", c.embd));
    ASSIGN_OR_RETURN(l.wq, load.Matrix(b + "attn_q.weight", c.q_dim(), c.embd));
    ASSIGN_OR_RETURN(l.wk, load.Matrix(b + "attn_k.weight", c.kv_dim(), c.embd));
    ASSIGN_OR_RETURN(l.wv, load.Matrix(b + "attn_v.weight", c.kv_dim(), c.embd));
    ASSIGN_OR_RETURN(l.bq, load.OptionalVector(b + "attn_q.bias", c.q_dim()));
    ASSIGN_OR_RETURN(l.bk, load.OptionalVector(b + "attn_k.bias", c.kv_dim()));
    ASSIGN_OR_RETURN(l.bv, load.OptionalVector(b + "attn_v.bias", c.kv_dim()));
    ASSIGN_OR_RETURN(l.wo, load.Matrix(b + "attn_output.weight", c.embd, c.q_dim()));
    ASSIGN_OR_RETURN(l.ffn_norm, load.Vector(b + "ffn_norm.weight", c.embd));
    ASSIGN_OR_RETURN(l.gate, load.Matrix(b + "ffn_gate.weight", c.ffn, c.embd));
    ASSIGN_OR_RETURN(l.up, load.Matrix(b + "ffn_up.weight", c.ffn, c.embd));
    ASSIGN_OR_RETURN(l.down, load.Matrix(b + "ffn_down.weight", c.embd, c.ffn));
  }
  // The embedding table is read one row per token, not whole, unless it doubles as output.
  const gguf::TensorInfo* embd = file->FindTensor("token_embd.weight");
  m->weight_bytes_ = load.bytes() - (m->output_.data == m->token_embd_.data ? 0 : embd->num_bytes);
  m->file_ = std::move(file);
  m->RepackMatrices();
  return m;
}

void Model::RepackMatrices() {
  const char* env = std::getenv("LLMASOS_REPACK");
  if (env != nullptr && std::string_view(env) == "0") return;
  std::vector<cpu::MatView*> views = {&output_};
  for (LayerWeights& l : layers_) {
    for (cpu::MatView* v : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down}) views.push_back(v);
  }
  for (cpu::MatView* v : views) {
    std::unique_ptr<cpu::PackedMatrix> packed = cpu::PackMatrix(*v);
    if (packed == nullptr) continue;
    v->packed = packed.get();
    file_->ReleasePages(v->data, v->rows * v->row_bytes);
    packed_.push_back(std::move(packed));
  }
  // Tied embeddings: look tokens up in the packed copy too, or every prompt token would fault
  // pages of the released table back in (with the kernel's fault-around, most of it).
  if (token_embd_.data == output_.data) token_embd_.packed = output_.packed;
}

cpu::MatView Model::KeepMatrix(std::vector<float> values, size_t rows, size_t cols) {
  kept_.push_back(std::move(values));
  return cpu::MatView{cpu::TensorType::kF32, kept_.back().data(), rows, cols, cols * sizeof(float)};
}

StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& path) {
  auto file = gguf::GgufFile::Open(path);
  if (!file.ok()) return file.status();
  auto model = FromGguf(std::move(file).value());
  if (!model.ok()) return model.status().Annotate("loading '" + path + "'");
  return model;
}

}  // namespace llmasos::arch
