#include "model/arch/llama_model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <set>
#include <span>
#include <string_view>
#include <utility>

#include "model/arch/packed_blob.h"
#include "util/checked_math.h"
#include "util/fp16.h"
#include "util/logging.h"

namespace llmasos::arch {
namespace {

// Hard limits on hyperparameters read from a file; far above any real model, low enough that
// derived buffer sizes cannot overflow.
constexpr uint64_t kMaxLayers = 1024;
constexpr uint64_t kMaxWidth = 1 << 20;
constexpr uint64_t kMaxContext = 1 << 24;

// What each architecture adds to the llama forward pass (facts from the models' reference
// implementations and the llama.cpp GGUF conventions their files follow).
struct ArchInfo {
  std::string_view name;
  RopeMode rope_mode;
  bool qk_norm = false;       // attn_q_norm / attn_k_norm, [head_dim], before RoPE
  bool gemma = false;         // embedding scale, GeGLU, post-attention and post-FFN norms
  size_t swa_pattern = 0;     // default sliding-window pattern (0: no sliding layers)
  bool gemma2_metadata = false;  // soft-caps and attention.sliding_window must be given
  bool swa_own_rope = false;  // sliding layers: base 10000 (or rope.freq_base_swa), no scaling
  size_t layers_27b = 0;      // block count of the 27B size, whose query scale is
                              // 1/sqrt(embd / heads) rather than 1/sqrt(head_dim)
  // phi3: Q/K/V fused in attn_qkv (or separate), gate and up fused in ffn_up (gate rows
  // first), LongRoPE factor tensors, and attention.sliding_window (0: none) on every layer.
  bool phi3 = false;
};

constexpr ArchInfo kArchitectures[] = {
    {"llama", RopeMode::kNormal},
    {"mistral", RopeMode::kNormal},
    {"qwen2", RopeMode::kNeox},
    {"qwen3", RopeMode::kNeox, /*qk_norm=*/true},
    // Gemma 2: every 2nd layer global (layers 1, 3, ...), soft-capped attention and logits.
    {"gemma2", RopeMode::kNeox, false, /*gemma=*/true, /*swa_pattern=*/2,
     /*gemma2_metadata=*/true, false, /*layers_27b=*/46},
    // Gemma 3: every 6th layer global (5, 11, ...), local layers with their own RoPE base.
    {"gemma3", RopeMode::kNeox, /*qk_norm=*/true, /*gemma=*/true, /*swa_pattern=*/6, false,
     /*swa_own_rope=*/true, /*layers_27b=*/62},
    // Phi-3, Phi-3.5 and Phi-4 mini (llama.cpp's PHI3 tensors and graph).
    {.name = "phi3", .rope_mode = RopeMode::kNeox, .phi3 = true},
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
constexpr std::string_view kSupported = "llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3";

const ArchInfo* FindArch(std::string_view name) {
  for (const ArchInfo& a : kArchitectures) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

// A float in (lo, hi] read from `key`, or `fallback` when the key is absent.
StatusOr<float> GetFloatInOr(const gguf::GgufFile& file, const std::string& key, double lo,
                             double hi, float fallback) {
  if (file.Find(key) == nullptr) return fallback;
  ASSIGN_OR_RETURN(double v, file.GetFloat(key));
  if (!(v > lo && v <= hi)) {
    return DataLossError("metadata '" + key + "' = " + std::to_string(v) + " is outside (" +
                         std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<float>(v);
}

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

// Rows [first, first + num_rows) of w: a view into the same storage (rows are contiguous).
cpu::MatView Rows(const cpu::MatView& w, size_t first, size_t num_rows) {
  return cpu::MatView{w.type, static_cast<const uint8_t*>(w.data) + first * w.row_bytes, num_rows,
                      w.cols, w.row_bytes};
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
    used_.insert(name);
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
    used_.insert(name);
    return out;
  }

  // A rotary frequency factor vector of `n` elements, each in (0, 1e6).
  StatusOr<std::vector<float>> FrequencyFactors(const std::string& name, size_t n) {
    ASSIGN_OR_RETURN(std::vector<float> factors, Vector(name, n));
    for (float f : factors) {
      if (!(f > 0.0f && f < 1e6f)) {
        return DataLossError("tensor '" + name + "' holds " + std::to_string(f) +
                             ": frequency factors must be in (0, 1e6)");
      }
    }
    return factors;
  }

  // Like Vector, but an absent tensor gives an empty vector.
  StatusOr<std::vector<float>> OptionalVector(const std::string& name, size_t n) {
    if (file_.FindTensor(name) == nullptr) return std::vector<float>();
    return Vector(name, n);
  }

  size_t bytes() const { return bytes_; }

  // DataLoss naming the first tensor of the file that no weight was read from: a tensor the
  // architecture does not use means the file is not what its metadata says.
  Status CheckAllUsed(const std::string& arch) const {
    for (const gguf::TensorInfo& t : file_.tensors()) {
      if (used_.count(t.name) == 0) {
        return DataLossError("tensor '" + std::string(t.name) + "' is not part of a '" + arch +
                             "' model (the file's tensors disagree with its architecture)");
      }
    }
    return OkStatus();
  }

 private:
  const gguf::GgufFile& file_;
  size_t bytes_ = 0;
  std::set<std::string, std::less<>> used_;
};

}  // namespace

StatusOr<ModelConfig> ConfigFromGguf(const gguf::GgufFile& file) {
  ModelConfig c;
  ASSIGN_OR_RETURN(std::string_view arch, file.GetString("general.architecture"));
  c.architecture = std::string(arch);
  const ArchInfo* info = FindArch(arch);
  if (info == nullptr) {
    return UnimplementedError("architecture '" + c.architecture + "' is not supported (supported: " +
                              std::string(kSupported) + ")");
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
    if (scaling == "linear") {
      if (file.Find(p + "rope.scaling.factor") == nullptr) {
        return DataLossError("rope.scaling.type is 'linear' but rope.scaling.factor is missing");
      }
      ASSIGN_OR_RETURN(c.rope_linear_factor,
                       GetFloatInOr(file, p + "rope.scaling.factor", 0.0, 1e4, 1.0f));
    } else if (scaling != "none") {
      return UnimplementedError("RoPE scaling '" + std::string(scaling) +
                                "' is not supported (supported: none, linear, and Llama 3's "
                                "rope_freqs factors)");
    }
  }
  // Llama 3.x rotary scaling has no metadata of its own: the converter writes the per-pair
  // frequency factors as the tensor rope_freqs.weight (read in Model::FromGguf).
  c.rope_freq_factors = file.FindTensor("rope_freqs.weight") != nullptr;
  ASSIGN_OR_RETURN(c.rope_attn_factor,
                   GetFloatInOr(file, p + "rope.scaling.attn_factor", 0.0, 100.0, 1.0f));
  // 4 (rank) is a reranker's head, which this forward pass does not have.
  ASSIGN_OR_RETURN(const uint64_t pooling, GetBoundedOr(file, p + "pooling_type", 0, 3, 1));
  c.pooling = pooling == 2 ? Pooling::kCls : pooling == 3 ? Pooling::kLast : Pooling::kMean;
  ASSIGN_OR_RETURN(double eps, file.GetFloat(p + "attention.layer_norm_rms_epsilon"));
  if (!(eps > 0 && eps < 1)) {
    return DataLossError("attention.layer_norm_rms_epsilon " + std::to_string(eps) +
                         " is outside (0, 1)");
  }
  c.rms_eps = static_cast<float>(eps);

  c.qk_norm = info->qk_norm;
  c.query_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  if (info->gemma) {
    c.post_norms = true;
    c.embd_scale = true;
    c.ffn_activation = FfnActivation::kGeluTanh;
    // Gemma's query_pre_attn_scalar is not in the file: it is head_dim for every size but
    // 27B, where it is embd / heads (llama.cpp identifies that size by its block count).
    if (c.num_layers == info->layers_27b) {
      c.query_scale = 1.0f / std::sqrt(static_cast<float>(c.embd) / static_cast<float>(c.num_heads));
    }
    for (auto [key, out] : {std::pair{"attn_logit_softcapping", &c.attn_softcap},
                            std::pair{"final_logit_softcapping", &c.final_softcap}}) {
      if (info->gemma2_metadata && file.Find(p + key) == nullptr) {
        return DataLossError("metadata '" + p + key + "' is missing (" + c.architecture +
                             " soft-caps its attention scores and logits)");
      }
      ASSIGN_OR_RETURN(*out, GetFloatInOr(file, p + key, 0.0, 1e4, 0.0f));
    }
  }
  if (info->phi3) {
    // Phi-3 mini 4k says 2047, the 128k and Phi-3.5 files 262144; Phi-4 mini's converter
    // writes 0 for none. A window slides on every layer (HF's Phi3; llama.cpp ignores it).
    ASSIGN_OR_RETURN(c.sliding_window,
                     GetBoundedOr(file, p + "attention.sliding_window", 0, kMaxContext, 0));
    c.swa_pattern = 0;
    c.rope_theta_swa = c.rope_theta;
    c.rope_linear_factor_swa = c.rope_linear_factor;
    // LongRoPE: the converter writes both factor tensors, or neither (the 4k models).
    const bool has_long = file.FindTensor("rope_factors_long.weight") != nullptr;
    const bool has_short = file.FindTensor("rope_factors_short.weight") != nullptr;
    if (has_long != has_short) {
      return DataLossError(std::string("model has no tensor '") +
                           (has_long ? "rope_factors_short.weight" : "rope_factors_long.weight") +
                           "' (LongRoPE needs both the short and the long factors)");
    }
    if (has_long && c.rope_freq_factors) {
      return DataLossError("model has both rope_freqs.weight and LongRoPE factors "
                           "(rope_factors_long/short.weight)");
    }
    c.longrope = has_long;
    ASSIGN_OR_RETURN(c.rope_orig_context, GetBoundedOr(file, p + "rope.scaling.original_context_length",
                                                       1, kMaxContext, c.context_length));
  } else if (info->swa_pattern > 0) {
    // Gemma 3 files converted with sliding_window_pattern 1 (no local layers) omit the key.
    if (info->gemma2_metadata && file.Find(p + "attention.sliding_window") == nullptr) {
      return DataLossError("metadata '" + p + "attention.sliding_window' is missing");
    }
    ASSIGN_OR_RETURN(c.sliding_window,
                     GetBoundedOr(file, p + "attention.sliding_window", 1, kMaxContext, 0));
    ASSIGN_OR_RETURN(c.swa_pattern, GetBoundedOr(file, p + "attention.sliding_window_pattern", 1,
                                                 kMaxLayers, info->swa_pattern));
    c.rope_theta_swa = c.rope_theta;
    c.rope_linear_factor_swa = c.rope_linear_factor;
    c.swa_own_rope = info->swa_own_rope;
    if (info->swa_own_rope) {
      c.rope_linear_factor_swa = 1.0f;
      ASSIGN_OR_RETURN(c.rope_theta_swa, GetFloatInOr(file, p + "rope.freq_base_swa", 1.0, 1e12,
                                                      10000.0f));
    }
  } else if (file.Find(p + "attention.sliding_window") != nullptr) {
    return UnimplementedError("metadata '" + p + "attention.sliding_window' is set, but a " +
                              c.architecture + " model has no sliding-window layers");
  }

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

StatusOr<std::unique_ptr<Model>> Model::FromGguf(std::unique_ptr<gguf::GgufFile> file,
                                                 const LoadOptions& options) {
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
  if (c.rope_freq_factors) {
    ASSIGN_OR_RETURN(m->rope_freq_factors_, load.FrequencyFactors("rope_freqs.weight", c.rope_dims / 2));
  }
  if (c.longrope) {
    ASSIGN_OR_RETURN(m->rope_freq_factors_,
                     load.FrequencyFactors("rope_factors_short.weight", c.rope_dims / 2));
    ASSIGN_OR_RETURN(m->rope_factors_long_,
                     load.FrequencyFactors("rope_factors_long.weight", c.rope_dims / 2));
  }
  const bool phi3 = FindArch(c.architecture)->phi3;
  m->layers_.resize(c.num_layers);
  for (size_t i = 0; i < c.num_layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    LayerWeights& l = m->layers_[i];
    ASSIGN_OR_RETURN(l.attn_norm, load.Vector(b + "attn_norm.weight", c.embd));
    if (phi3 && file->FindTensor(b + "attn_qkv.weight") != nullptr) {
      ASSIGN_OR_RETURN(const cpu::MatView qkv, load.Matrix(b + "attn_qkv.weight",
                                                           c.q_dim() + 2 * c.kv_dim(), c.embd));
      l.wq = Rows(qkv, 0, c.q_dim());
      l.wk = Rows(qkv, c.q_dim(), c.kv_dim());
      l.wv = Rows(qkv, c.q_dim() + c.kv_dim(), c.kv_dim());
    } else {
      ASSIGN_OR_RETURN(l.wq, load.Matrix(b + "attn_q.weight", c.q_dim(), c.embd));
      ASSIGN_OR_RETURN(l.wk, load.Matrix(b + "attn_k.weight", c.kv_dim(), c.embd));
      ASSIGN_OR_RETURN(l.wv, load.Matrix(b + "attn_v.weight", c.kv_dim(), c.embd));
    }
    ASSIGN_OR_RETURN(l.bq, load.OptionalVector(b + "attn_q.bias", c.q_dim()));
    ASSIGN_OR_RETURN(l.bk, load.OptionalVector(b + "attn_k.bias", c.kv_dim()));
    ASSIGN_OR_RETURN(l.bv, load.OptionalVector(b + "attn_v.bias", c.kv_dim()));
    if (c.qk_norm) {
      ASSIGN_OR_RETURN(l.q_norm, load.Vector(b + "attn_q_norm.weight", c.head_dim));
      ASSIGN_OR_RETURN(l.k_norm, load.Vector(b + "attn_k_norm.weight", c.head_dim));
    }
    ASSIGN_OR_RETURN(l.wo, load.Matrix(b + "attn_output.weight", c.embd, c.q_dim()));
    ASSIGN_OR_RETURN(l.ffn_norm, load.Vector(b + "ffn_norm.weight", c.embd));
    if (phi3) {
      ASSIGN_OR_RETURN(const cpu::MatView gate_up, load.Matrix(b + "ffn_up.weight", 2 * c.ffn, c.embd));
      l.gate = Rows(gate_up, 0, c.ffn);
      l.up = Rows(gate_up, c.ffn, c.ffn);
    } else {
      ASSIGN_OR_RETURN(l.gate, load.Matrix(b + "ffn_gate.weight", c.ffn, c.embd));
      ASSIGN_OR_RETURN(l.up, load.Matrix(b + "ffn_up.weight", c.ffn, c.embd));
    }
    ASSIGN_OR_RETURN(l.down, load.Matrix(b + "ffn_down.weight", c.embd, c.ffn));
    if (c.post_norms) {
      // Gemma's RMSNorm scales by (1 + w); the GGUF converter stores the norm weights with
      // the 1 already added (HF w + 1), so every norm here multiplies by the stored weight.
      ASSIGN_OR_RETURN(l.post_attn_norm, load.Vector(b + "post_attention_norm.weight", c.embd));
      ASSIGN_OR_RETURN(l.post_ffn_norm, load.Vector(b + "post_ffw_norm.weight", c.embd));
    }
  }
  RETURN_IF_ERROR(load.CheckAllUsed(c.architecture));
  // The embedding table is read one row per token, not whole, unless it doubles as output.
  const gguf::TensorInfo* embd = file->FindTensor("token_embd.weight");
  m->weight_bytes_ = load.bytes() - (m->output_.data == m->token_embd_.data ? 0 : embd->num_bytes);
  m->file_ = std::move(file);
  if (options.repack && cpu::RepackEnabledByEnv()) {
    if (options.pool != nullptr) {
      m->RepackMatrices(options, *options.pool);
    } else {
      ThreadPool pool(ThreadPool::DefaultNumThreads());
      m->RepackMatrices(options, pool);
    }
  }
  return m;
}

Model::~Model() { WaitForPackedBlob(); }

void Model::WaitForPackedBlob() {
  if (blob_writer_.joinable()) blob_writer_.join();
}

std::vector<const cpu::MatView*> Model::Matrices() const {
  std::vector<const cpu::MatView*> views = {&output_};
  for (const LayerWeights& l : layers_) {
    for (const cpu::MatView* v : l.Matrices()) views.push_back(v);
  }
  return views;
}

std::vector<cpu::MatView*> Model::MutableMatrices() {
  std::vector<cpu::MatView*> views;
  for (const cpu::MatView* v : std::as_const(*this).Matrices()) {
    views.push_back(const_cast<cpu::MatView*>(v));  // this Model is not const
  }
  return views;
}

void Model::ReleaseUnusedFilePages() {
  ReleaseFilePagesBut([](const cpu::MatView& v) { return v.packed == nullptr; });
}

void Model::ReleaseFilePagesBut(const std::function<bool(const cpu::MatView&)>& still_read) {
  const std::span<const uint8_t> bytes = file_->bytes();
  const uint8_t* const end = bytes.data() + bytes.size();
  std::vector<std::pair<const uint8_t*, const uint8_t*>> used;  // [begin, end) still read
  auto keep = [&](const cpu::MatView& v) {
    const auto* p = static_cast<const uint8_t*>(v.data);
    if (!still_read(v) || p < bytes.data() || p >= end) return;  // not read, or not the file's
    used.emplace_back(p, p + v.rows * v.row_bytes);
  };
  keep(token_embd_);
  for (const cpu::MatView* v : Matrices()) keep(*v);
  std::sort(used.begin(), used.end());
  const uint8_t* at = bytes.data();
  for (const auto& [b, e] : used) {
    if (b > at) file_->ReleasePages(at, static_cast<size_t>(b - at));  // whole pages only
    at = std::max(at, e);
  }
  if (at < end) file_->ReleasePages(at, static_cast<size_t>(end - at));
}

void Model::RepackMatrices(const LoadOptions& options, ThreadPool& pool) {
  std::vector<cpu::MatView*> views = MutableMatrices();
  std::vector<bool> want(views.size());
  bool any = false;
  for (size_t i = 0; i < views.size(); ++i) {
    want[i] = cpu::HasPackedLayout(*views[i]) &&
              (options.pack_without_kernel || cpu::HasPackedKernel(views[i]->type));
    any = any || want[i];
  }
  if (!any) return;  // nothing this CPU multiplies faster packed: no copy, no blob
  // The load touched the metadata and the norms and biases it copied, and the page cache maps
  // each such touch as a whole folio (1-2 MiB where the file was just written), reaching into
  // the matrices around it: Gemma 3 270M kept 56 MB of its file so. None of it is read again
  // once the matrices are packed (a repack reads its matrices back as it goes), so it goes now,
  // before a mapped blob adds its own pages: the load's peak was the blob plus these pages.
  std::set<const void*> packing;
  for (size_t i = 0; i < views.size(); ++i) {
    if (want[i]) packing.insert(views[i]->data);
  }
  ReleaseFilePagesBut([&](const cpu::MatView& v) { return v.packed == nullptr && !packing.contains(v.data); });
  const std::vector<const cpu::MatView*> const_views(views.begin(), views.end());
  const PackedBlobKey key{options.packed_blob_source, cpu::kPackedLayoutVersion,
                          options.target_for_test.empty() ? std::string(cpu::ChosenTarget())
                                                          : options.target_for_test};
  const bool use_blob = !options.packed_blob_path.empty();
  std::vector<std::unique_ptr<cpu::PackedMatrix>> packed;
  if (use_blob) {
    auto mapped = MapPackedBlob(options.packed_blob_path, key, const_views, want, pool, &packed);
    if (mapped.ok()) {
      packed_blob_ = std::move(mapped).value();
      packed_from_ = PackedFrom::kBlob;
    } else if (mapped.status().code() != StatusCode::kNotFound) {
      LOG(kWarning) << "ignoring the stored packed weights, repacking: " << mapped.status().ToString();
    }
  }
  if (packed_from_ != PackedFrom::kBlob) {
    // Each matrix's tiles are spread over the pool: matrices come in sizes from a few to
    // hundreds of tiles, so tiles balance better than whole matrices would.
    // A source matrix's pages are released band by band as it is packed (a tied output
    // matrix can be most of a small model's file), so resident memory stays about the file's
    // size during the load, not twice a matrix; then whole, for the pages at band edges.
    packed.clear();
    packed.resize(views.size());
    for (size_t i = 0; i < views.size(); ++i) {
      if (!want[i]) continue;
      const auto* rows = static_cast<const uint8_t*>(views[i]->data);
      const size_t row_bytes = views[i]->row_bytes;
      packed[i] = cpu::PackMatrixLayout(*views[i], &pool, [&](size_t begin, size_t end) {
        file_->ReleasePages(rows + begin * row_bytes, (end - begin) * row_bytes);
      });
      file_->ReleasePages(rows, views[i]->rows * row_bytes);
    }
    packed_from_ = PackedFrom::kRepacked;
  }
  for (size_t i = 0; i < views.size(); ++i) {
    if (packed[i] == nullptr) continue;
    views[i]->packed = packed[i].get();
    packed_.push_back(std::move(packed[i]));
  }
  if (use_blob && packed_from_ == PackedFrom::kRepacked) {
    // Writing a GB to disk took 0.5-1.6 s here, longer than the repack: it runs beside the
    // first tokens, at the lowest priority, on copies of the views (an adapter merged after
    // the load replaces views; the packed matrices they name live as long as the model).
    std::vector<cpu::MatView> snapshot;
    for (const cpu::MatView* v : views) snapshot.push_back(*v);
    blob_writer_ = std::thread([snapshot = std::move(snapshot), path = options.packed_blob_path, key] {
      if (!SetThisThreadNice(19)) LOG(kInfo) << "could not lower the packed blob writer's priority";
      std::vector<const cpu::MatView*> matrices;
      for (const cpu::MatView& v : snapshot) matrices.push_back(&v);
      ThreadPool pool(1);
      if (Status s = WritePackedBlob(path, key, matrices, pool); !s.ok()) {
        LOG(kWarning) << "could not store the packed weights (the next load repacks again): " << s.ToString();
      }
    });
  }
  // Tied embeddings: look tokens up in the packed copy too, or every prompt token would fault
  // pages of the released table back in (with the kernel's fault-around, most of it).
  if (token_embd_.data == output_.data) token_embd_.packed = output_.packed;
}

const std::vector<float>& Model::RopeFreqFactors(size_t context_tokens) const {
  if (config_.longrope && context_tokens > config_.rope_orig_context) return rope_factors_long_;
  return rope_freq_factors_;
}

cpu::MatView Model::KeepMatrix(std::vector<float> values, size_t rows, size_t cols) {
  kept_.push_back(std::move(values));
  return cpu::MatView{cpu::TensorType::kF32, kept_.back().data(), rows, cols, cols * sizeof(float)};
}

StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& path, const LoadOptions& options) {
  auto file = gguf::GgufFile::Open(path);
  if (!file.ok()) return file.status();
  auto model = FromGguf(std::move(file).value(), options);
  if (!model.ok()) return model.status().Annotate("loading '" + path + "'");
  return model;
}

}  // namespace llmasos::arch
