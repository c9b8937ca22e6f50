"""An independent numpy reference of the llama-family forward pass (llama, mistral, qwen2,
qwen3, gemma2, gemma3, phi3).

It is a test oracle for the C++ engine, so it is written for clarity, not speed, and shares
no code with it: GGUF files are read with the `gguf` package (GGUFReader) and every weight is
dequantized with gguf.quants.dequantize into float64 once per process.

What the reference assumes about the file (the llama.cpp conventions):
  * A 2-D tensor with GGUF dims [ne0, ne1] is a matrix of ne1 rows (output features) by ne0
    columns (input features); y = W @ x.
  * RoPE pairing follows the architecture. llama and mistral: adjacent pairs (x[2i], x[2i+1])
    ("normal" mode). HF llama checkpoints rotate pairs (x[i], x[i + d/2]) instead, and the
    HF->GGUF converter permutes the rows of attn_q/attn_k inside each head so that the normal
    pairing on the permuted weights computes the same attention scores. The reference applies
    normal pairing to the weights exactly as stored and never undoes the permutation (see
    test_llama_ref.py::test_converter_permutation_makes_normal_rope_equal_hf_rope).
    qwen2: pairs (x[i], x[i + rope_dims/2]) ("neox" mode); its weights are not permuted.
  * RoPE angle for position p and pair i: p * theta^(-2i / rope_dims); dims >= rope_dims of a
    head are left unrotated.
  * Grouped-query attention: query head h reads KV head h // (num_heads / num_kv_heads).
  * attn_{q,k,v}.bias are added when present (qwen2). output.weight absent: tied embeddings.
  * Attention scale 1/sqrt(head_dim); SwiGLU MLP down(silu(gate x) * up x); RMSNorm
    x / sqrt(mean(x^2) + eps) * w.
  * RoPE scaling: rope.scaling.type "linear" divides positions by rope.scaling.factor; a
    rope_freqs.weight tensor (Llama 3.x) divides pair i's frequency by its factor f_i.
  * qwen3: attn_q_norm / attn_k_norm, an RMSNorm over each head of Q and K before RoPE;
    attention.key_length may differ from embd / heads (attn_q is [heads * key_length, embd]).
  * gemma2 / gemma3 (HF's Gemma2/Gemma3 modelling, in llama.cpp's GGUF layout):
    embeddings times sqrt(embd); GeGLU down(gelu_tanh(gate x) * up x); the attention and
    FFN outputs pass through post_attention_norm / post_ffw_norm before the residual add;
    RMSNorm weights are used as stored, because the converter already stored HF's (1 + w);
    NeoX RoPE. gemma2: scores soft-capped cap * tanh(s / cap) by attn_logit_softcapping and
    the logits by final_logit_softcapping; layer i is a sliding-window layer when i % 2 == 0.
    gemma3: Q/K norm as qwen3, layer i slides when i % 6 < 5, sliding layers rotate with base
    10000 and no scaling, global ones with rope.freq_base. A sliding layer's query at
    position p sees positions p - window + 1 .. p. Query scale 1/sqrt(head_dim), or
    1/sqrt(embd / heads) for the 27B sizes (46 gemma2 / 62 gemma3 layers).
  * phi3 (HF's Phi3 modelling, in llama.cpp's GGUF layout): NeoX RoPE; attn_qkv holds the
    rows of Q, then K, then V (or separate attn_q/k/v); ffn_up holds the gate's rows, then
    up's ([2 ffn, embd]), and there is no ffn_gate. LongRoPE: rope_factors_short.weight and
    rope_factors_long.weight divide pair i's frequency, the short ones for a context of at
    most rope.scaling.original_context_length tokens and the long ones beyond (the context is
    the reference's n_ctx, the engine's context size). rope.scaling.attn_factor multiplies
    cos and sin (the rotated dims of Q and K). attention.sliding_window > 0 makes every layer
    a sliding one.

Activation modes:
  activations="float": the exact maths in float64.
  activations="q8":    before every matrix product with a quantized weight (Q4_0, Q4_1, Q8_0),
                       the input activations are rounded to 8-bit blocks of 32, as the engine
                       does: d = max|x| / 127 in float32, q = round-half-even(x * (1/d)),
                       value = d * q. The engine (and llama.cpp) multiply quantized weights
                       against such 8-bit activations with exact integer block dot products,
                       so this mode reproduces their arithmetic up to float rounding; an
                       activation within float32 noise of an 8-bit rounding boundary can still
                       round the other way (see tests/e2e/test_forward_oracle.py for how much
                       that moves a 30-layer model).
  activations="q8_ggml": the same with llama.cpp's reference rounding (ggml's
                       quantize_row_q8_0: q = roundf, halves away from zero, and the scale
                       stored as fp16, so value = fp16(d) * q).
  Float weights (F32, F16, BF16) are multiplied against float activations in every mode.

Command line (for numbers to put in reports):
  python tests/reference/llama_ref.py perplexity MODEL.gguf TEXTFILE --tokenizer tokenizer.json
  python tests/reference/llama_ref.py greedy MODEL.gguf --tokens 1,2,3 -n 32
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import sys
from typing import Sequence

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT

# Weight types the reference reads (gguf.quants dequantizes them). The 8-bit activation modes
# emulate the engine's rounding for QUANTIZED_TYPES only; a model with other quantized types
# (the K-quants, Q5_0, Q5_1 of real Q4_K_M files) runs with activations="float" only.
SUPPORTED_TYPES = {QT.F32, QT.F16, QT.BF16, QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1,
                   QT.Q2_K, QT.Q3_K, QT.Q4_K, QT.Q5_K, QT.Q6_K}
QUANTIZED_TYPES = {QT.Q8_0, QT.Q4_0, QT.Q4_1}
FLOAT_TYPES = {QT.F32, QT.F16, QT.BF16}
ROPE_MODES = {"llama": "normal", "mistral": "normal", "qwen2": "neox", "qwen3": "neox",
              "gemma2": "neox", "gemma3": "neox", "phi3": "neox"}
GEMMA = {"gemma2", "gemma3"}
QK_NORM = {"qwen3", "gemma3"}
SWA_PATTERN = {"gemma2": 2, "gemma3": 6, "phi3": 0}  # 0: every layer slides
LAYERS_27B = {"gemma2": 46, "gemma3": 62}
Q8_BLOCK = 32


class ModelFormatError(ValueError):
    """The GGUF file is not a llama-family model this reference understands."""


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    arch: str
    num_layers: int
    embd: int
    ffn: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_dims: int
    rope_theta: float
    rms_eps: float
    context_length: int
    vocab_size: int
    rope_mode: str  # "normal" or "neox"
    rope_linear_factor: float = 1.0
    query_scale: float = 0.0
    attn_softcap: float = 0.0
    final_softcap: float = 0.0
    sliding_window: int = 0
    swa_pattern: int = 0
    rope_theta_swa: float = 10000.0
    rope_orig_context: int = 0     # LongRoPE: contexts above it use the long factors
    rope_attn_factor: float = 1.0  # multiplies cos and sin

    @property
    def group(self) -> int:
        return self.num_heads // self.num_kv_heads

    @property
    def gemma(self) -> bool:
        return self.arch in GEMMA

    def sliding(self, layer: int) -> bool:
        p = self.swa_pattern
        return self.sliding_window > 0 and (p == 0 or layer % p < p - 1)


def _field(reader: gguf.GGUFReader, key: str, default=None, required: bool = True):
    f = reader.fields.get(key)
    if f is None:
        if required and default is None:
            raise ModelFormatError(f"metadata key '{key}' is missing")
        return default
    return f.contents()


def read_config(reader: gguf.GGUFReader) -> LlamaConfig:
    arch = _field(reader, "general.architecture")
    if arch not in ROPE_MODES:
        raise ModelFormatError(f"architecture '{arch}' is not one of {sorted(ROPE_MODES)}")
    p = arch + "."
    num_layers = int(_field(reader, p + "block_count"))
    embd = int(_field(reader, p + "embedding_length"))
    ffn = int(_field(reader, p + "feed_forward_length"))
    num_heads = int(_field(reader, p + "attention.head_count"))
    num_kv_heads = int(_field(reader, p + "attention.head_count_kv", num_heads))
    if num_heads <= 0 or num_kv_heads <= 0 or num_heads % num_kv_heads:
        raise ModelFormatError(f"head_count {num_heads} is not a multiple of head_count_kv {num_kv_heads}")
    head_dim = int(_field(reader, p + "attention.key_length", embd // num_heads))
    value_dim = int(_field(reader, p + "attention.value_length", head_dim))
    if value_dim != head_dim:
        raise ModelFormatError(f"value_length {value_dim} != key_length {head_dim}")
    rope_dims = int(_field(reader, p + "rope.dimension_count", head_dim))
    if rope_dims % 2 or rope_dims > head_dim:
        raise ModelFormatError(f"rope.dimension_count {rope_dims} must be even and <= {head_dim}")
    scaling = _field(reader, p + "rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        raise ModelFormatError(f"RoPE scaling '{scaling}' is not modelled by the reference")
    linear = float(_field(reader, p + "rope.scaling.factor")) if scaling == "linear" else 1.0
    theta = float(_field(reader, p + "rope.freq_base", 10000.0))
    window = int(_field(reader, p + "attention.sliding_window", 0)) if arch in SWA_PATTERN else 0
    scale_dim = embd / num_heads if num_layers == LAYERS_27B.get(arch) else head_dim
    context_length = int(_field(reader, p + "context_length"))
    emb = _tensor(reader, "token_embd.weight")
    if len(emb.shape) != 2 or int(emb.shape[0]) != embd:
        raise ModelFormatError(f"token_embd.weight has dims {list(emb.shape)}, expected [{embd}, vocab]")
    return LlamaConfig(
        arch=arch,
        num_layers=num_layers,
        embd=embd,
        ffn=ffn,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        rope_dims=rope_dims,
        rope_theta=theta,
        rms_eps=float(_field(reader, p + "attention.layer_norm_rms_epsilon")),
        context_length=context_length,
        vocab_size=int(emb.shape[1]),
        rope_mode=ROPE_MODES[arch],
        rope_linear_factor=linear,
        query_scale=1.0 / math.sqrt(scale_dim),
        attn_softcap=float(_field(reader, p + "attn_logit_softcapping", 0.0, required=False) or 0.0),
        final_softcap=float(_field(reader, p + "final_logit_softcapping", 0.0, required=False) or 0.0),
        sliding_window=window,
        swa_pattern=int(_field(reader, p + "attention.sliding_window_pattern", SWA_PATTERN.get(arch, 0),
                               required=False)),
        rope_theta_swa=10000.0 if arch == "gemma3" else theta,
        rope_orig_context=int(_field(reader, p + "rope.scaling.original_context_length", context_length)),
        rope_attn_factor=float(_field(reader, p + "rope.scaling.attn_factor", 1.0)),
    )


def _tensor(reader: gguf.GGUFReader, name: str):
    for t in reader.tensors:
        if t.name == name:
            return t
    return None


def dequantize(t) -> np.ndarray:
    """A GGUF tensor as float64, numpy shape = reversed GGUF dims ([rows, cols] for matrices)."""
    if t.tensor_type not in SUPPORTED_TYPES:
        raise ModelFormatError(f"tensor '{t.name}' has type {t.tensor_type.name}, not one of "
                               f"{sorted(x.name for x in SUPPORTED_TYPES)}")
    values = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
    shape = tuple(int(d) for d in reversed(t.shape))
    return np.asarray(values, dtype=np.float64).reshape(shape)


def f32_to_f16_to_f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float64)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """C roundf: halves round away from zero (numpy's rint rounds them to even)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_activations_q8_0(x: np.ndarray, scale_f16: bool = False, half_even: bool = True) -> np.ndarray:
    """x [..., n] (n % 32 == 0) rounded through 8-bit blocks of 32, returned as float64 values.

    Per block: d = max|x| / 127 in float32, q = round(x * (1/d)) with halves to even
    (half_even) or away from zero, value = d * q, or fp16(d) * q when scale_f16 (ggml's Q8_0).
    """
    x32 = np.asarray(x, dtype=np.float32)
    n = x32.shape[-1]
    if n % Q8_BLOCK:
        raise ValueError(f"activation width {n} is not a multiple of {Q8_BLOCK}")
    blocks = x32.reshape(-1, n // Q8_BLOCK, Q8_BLOCK)
    d = np.abs(blocks).max(axis=-1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    scaled = (blocks * inv).astype(np.float32).astype(np.float64)
    q = np.rint(scaled) if half_even else round_half_away(scaled)
    scale = f32_to_f16_to_f64(d) if scale_f16 else d.astype(np.float64)
    return (scale * q).reshape(x32.shape)


@dataclasses.dataclass
class Matrix:
    w: np.ndarray  # [rows, cols] float64
    qtype: QT

    @property
    def quantized(self) -> bool:
        return self.qtype in QUANTIZED_TYPES


@dataclasses.dataclass
class Layer:
    attn_norm: np.ndarray
    wq: Matrix
    wk: Matrix
    wv: Matrix
    bq: np.ndarray | None
    bk: np.ndarray | None
    bv: np.ndarray | None
    wo: Matrix
    ffn_norm: np.ndarray
    gate: Matrix
    up: Matrix
    down: Matrix
    q_norm: np.ndarray | None = None
    k_norm: np.ndarray | None = None
    post_attn_norm: np.ndarray | None = None
    post_ffn_norm: np.ndarray | None = None


class LlamaWeights:
    """Config plus every weight dequantized to float64. Immutable after construction."""

    def __init__(self, path: str):
        if not os.path.exists(path):
            raise FileNotFoundError(f"model file '{path}' does not exist")
        reader = gguf.GGUFReader(path)
        self.path = path
        self.config = c = read_config(reader)
        self.metadata = {k: f for k, f in reader.fields.items()}
        by_name = {t.name: t for t in reader.tensors}

        def get(name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, QT]:
            t = by_name.get(name)
            if t is None:
                raise ModelFormatError(f"tensor '{name}' is missing")
            a = dequantize(t)
            if a.shape != shape:
                raise ModelFormatError(f"tensor '{name}' has shape {a.shape}, expected {shape}")
            return a, t.tensor_type

        def matrix(name: str, rows: int, cols: int) -> Matrix:
            return Matrix(*get(name, (rows, cols)))

        def vector(name: str, n: int, optional: bool = False) -> np.ndarray | None:
            if optional and name not in by_name:
                return None
            return get(name, (n,))[0]

        q_dim, kv_dim = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim

        def rows(m: Matrix, first: int, n: int) -> Matrix:
            return Matrix(m.w[first:first + n], m.qtype)
        self.token_embd = matrix("token_embd.weight", c.vocab_size, c.embd)
        self.tied = "output.weight" not in by_name
        self.output = self.token_embd if self.tied else matrix("output.weight", c.vocab_size, c.embd)
        self.output_norm = vector("output_norm.weight", c.embd)
        self.rope_freqs = vector("rope_freqs.weight", c.rope_dims // 2, optional=True)
        # LongRoPE (phi3): both or neither.
        self.rope_short = vector("rope_factors_short.weight", c.rope_dims // 2, optional=True)
        self.rope_long = vector("rope_factors_long.weight", c.rope_dims // 2, optional=True)
        if (self.rope_short is None) != (self.rope_long is None):
            raise ModelFormatError("LongRoPE needs both rope_factors_short and rope_factors_long")
        self.layers = []
        for i in range(c.num_layers):
            b = f"blk.{i}."
            if c.arch == "phi3" and b + "attn_qkv.weight" in by_name:
                qkv = matrix(b + "attn_qkv.weight", q_dim + 2 * kv_dim, c.embd)
                wq, wk, wv = rows(qkv, 0, q_dim), rows(qkv, q_dim, kv_dim), rows(qkv, q_dim + kv_dim, kv_dim)
            else:
                wq = matrix(b + "attn_q.weight", q_dim, c.embd)
                wk = matrix(b + "attn_k.weight", kv_dim, c.embd)
                wv = matrix(b + "attn_v.weight", kv_dim, c.embd)
            if c.arch == "phi3":
                gate_up = matrix(b + "ffn_up.weight", 2 * c.ffn, c.embd)
                gate, up = rows(gate_up, 0, c.ffn), rows(gate_up, c.ffn, c.ffn)
            else:
                gate = matrix(b + "ffn_gate.weight", c.ffn, c.embd)
                up = matrix(b + "ffn_up.weight", c.ffn, c.embd)
            self.layers.append(Layer(
                attn_norm=vector(b + "attn_norm.weight", c.embd),
                wq=wq,
                wk=wk,
                wv=wv,
                bq=vector(b + "attn_q.bias", q_dim, optional=True),
                bk=vector(b + "attn_k.bias", kv_dim, optional=True),
                bv=vector(b + "attn_v.bias", kv_dim, optional=True),
                wo=matrix(b + "attn_output.weight", c.embd, q_dim),
                ffn_norm=vector(b + "ffn_norm.weight", c.embd),
                gate=gate,
                up=up,
                down=matrix(b + "ffn_down.weight", c.embd, c.ffn),
                q_norm=vector(b + "attn_q_norm.weight", c.head_dim) if c.arch in QK_NORM else None,
                k_norm=vector(b + "attn_k_norm.weight", c.head_dim) if c.arch in QK_NORM else None,
                post_attn_norm=vector(b + "post_attention_norm.weight", c.embd) if c.gemma else None,
                post_ffn_norm=vector(b + "post_ffw_norm.weight", c.embd) if c.gemma else None,
            ))

    def metadata_value(self, key: str, default=None):
        f = self.metadata.get(key)
        return default if f is None else f.contents()


@functools.lru_cache(maxsize=4)
def load_weights(path: str) -> LlamaWeights:
    """Per-process cache: the 135M default model takes ~1 GB as float64 and seconds to load."""
    return LlamaWeights(os.path.abspath(path))


class KvCache:
    """Keys (after RoPE) and values of every layer: lists of [num_tokens, kv_heads, head_dim]."""

    def __init__(self, num_layers: int):
        self.k: list[np.ndarray | None] = [None] * num_layers
        self.v: list[np.ndarray | None] = [None] * num_layers
        self.num_tokens = 0

    def append(self, layer_idx: int, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.k[layer_idx] is None:
            self.k[layer_idx], self.v[layer_idx] = k, v
        else:
            self.k[layer_idx] = np.concatenate([self.k[layer_idx], k])
            self.v[layer_idx] = np.concatenate([self.v[layer_idx], v])
        return self.k[layer_idx], self.v[layer_idx]


def rope_inv_freq(rope_dims: int, theta: float, linear: float = 1.0,
                  factors: np.ndarray | None = None) -> np.ndarray:
    f = theta ** (-2.0 * np.arange(rope_dims // 2, dtype=np.float64) / rope_dims) / linear
    return f if factors is None else f / factors


def apply_rope(x: np.ndarray, positions: np.ndarray, rope_dims: int, theta: float, mode: str,
               linear: float = 1.0, factors: np.ndarray | None = None,
               mscale: float = 1.0) -> np.ndarray:
    """x [n, heads, head_dim] rotated by position (and the rotated dims scaled by mscale);
    returns a new array."""
    half = rope_dims // 2
    inv_freq = rope_inv_freq(rope_dims, theta, linear, factors)
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]
    cos, sin = mscale * np.cos(angles)[:, None, :], mscale * np.sin(angles)[:, None, :]  # [n, 1, half]
    out = x.astype(np.float64, copy=True)
    if mode == "normal":
        a, b = x[..., 0:rope_dims:2], x[..., 1:rope_dims:2]
        out[..., 0:rope_dims:2] = a * cos - b * sin
        out[..., 1:rope_dims:2] = a * sin + b * cos
    elif mode == "neox":
        a, b = x[..., :half], x[..., half:rope_dims]
        out[..., :half] = a * cos - b * sin
        out[..., half:rope_dims] = a * sin + b * cos
    else:
        raise ValueError(f"unknown rope mode '{mode}'")
    return out


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def causal_gqa_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, pos0: int, group: int,
                         scale: float | None = None, softcap: float = 0.0,
                         window: int = 0) -> np.ndarray:
    """q [n, H, D] at positions pos0..pos0+n-1; k, v [T, KV, D] at positions 0..T-1, T = pos0+n.

    Query head h attends with KV head h // group to positions <= its own (and, with a
    window, > its own - window). Scores are scaled by `scale` (default 1/sqrt(D)) and, with
    softcap, soft-capped before masking. Returns [n, H, D].
    """
    n, num_heads, head_dim = q.shape
    total = k.shape[0]
    kv_of_head = np.arange(num_heads) // group
    kh = k[:, kv_of_head, :]  # [T, H, D]
    vh = v[:, kv_of_head, :]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    scores = np.einsum("nhd,thd->hnt", q, kh) * scale  # [H, n, T]
    if softcap:
        scores = softcap * np.tanh(scores / softcap)
    query_pos = pos0 + np.arange(n)[:, None]
    key_pos = np.arange(total)[None, :]
    visible = key_pos <= query_pos
    if window:
        visible &= key_pos > query_pos - window
    scores = np.where(visible, scores, -np.inf)
    probs = softmax(scores, axis=-1)
    return np.einsum("hnt,thd->nhd", probs, vh)


KV_CACHE_TYPES = ("f32", "f16", "q8_0")


def round_kv(x: np.ndarray, cache_type: str) -> np.ndarray:
    """Keys or values [n, kv_heads, head_dim] as a KV cache of `cache_type` stores them (the
    engine's --cache-type-k / --cache-type-v): f32 as float32, f16 through IEEE half precision,
    q8_0 through GGUF Q8_0 blocks of 32 along each token's row (llama.cpp's reference rounding:
    d = max|x| / 127, q = roundf(x / d), halves away from zero, d stored as fp16)."""
    if cache_type == "f32":
        return np.asarray(x, dtype=np.float32).astype(np.float64)
    if cache_type == "f16":
        return f32_to_f16_to_f64(x)
    if cache_type == "q8_0":
        rows = np.asarray(x).reshape(x.shape[0], -1)
        return quantize_activations_q8_0(rows, scale_f16=True, half_even=False).reshape(x.shape)
    raise ValueError(f"KV cache type must be one of {KV_CACHE_TYPES}, not '{cache_type}'")


class LlamaRef:
    """Forward pass over a GGUF llama-family model. activations: "float", "q8" or "q8_ggml"
    (see the module doc). n_ctx: the context size the model runs with (default: its trained
    context), which picks LongRoPE's short or long factors. cache: the (key, value) element
    types of the KV cache (round_kv); None keeps keys and values in float64, unrounded."""

    def __init__(self, model: str | LlamaWeights, activations: str = "float", n_ctx: int | None = None,
                 cache: tuple[str, str] | None = None):
        if activations not in ("float", "q8", "q8_ggml"):
            raise ValueError(f"activations must be 'float', 'q8' or 'q8_ggml', not '{activations}'")
        if cache is not None and any(t not in KV_CACHE_TYPES for t in cache):
            raise ValueError(f"KV cache types must be among {KV_CACHE_TYPES}, not {cache}")
        self.weights = load_weights(model) if isinstance(model, str) else model
        self.config = self.weights.config
        self.activations = activations
        n_ctx = self.config.context_length if n_ctx is None else n_ctx
        w = self.weights
        if w.rope_long is not None:
            self.rope_factors = w.rope_long if n_ctx > self.config.rope_orig_context else w.rope_short
        else:
            self.rope_factors = w.rope_freqs
        self.cache = cache

    def matmul(self, m: Matrix, x: np.ndarray) -> np.ndarray:
        """x [n, cols] -> [n, rows]."""
        if self.activations != "float" and not m.quantized and m.qtype not in FLOAT_TYPES:
            raise ModelFormatError(f"activations='{self.activations}' emulates 8-bit rounding for "
                                   f"{sorted(t.name for t in QUANTIZED_TYPES)} only, not {m.qtype.name}")
        if self.activations != "float" and m.quantized:
            ggml = self.activations == "q8_ggml"
            x = quantize_activations_q8_0(x, scale_f16=ggml, half_even=not ggml)
        return x @ m.w.T

    def new_cache(self) -> KvCache:
        return KvCache(self.config.num_layers)

    def forward(self, tokens: Sequence[int], cache: KvCache | None = None) -> np.ndarray:
        """Logits [len(tokens), vocab] (float64) of tokens appended after cache's positions."""
        logits = self.matmul(self.weights.output, self.hidden(tokens, cache))
        if self.config.final_softcap:
            logits = self.config.final_softcap * np.tanh(logits / self.config.final_softcap)
        return logits

    def embed(self, tokens: Sequence[int], pooling: str = "mean") -> np.ndarray:
        """The embedding of tokens: final hidden states pooled ("mean", "cls": the first
        token's, "last") and L2-normalised."""
        h = self.hidden(tokens)
        v = {"mean": lambda: h.mean(axis=0), "cls": lambda: h[0], "last": lambda: h[-1]}[pooling]()
        return v / np.linalg.norm(v)

    def hidden(self, tokens: Sequence[int], cache: KvCache | None = None) -> np.ndarray:
        """Final hidden states [len(tokens), embd] (after the output norm) of tokens appended
        after cache's positions."""
        c, w = self.config, self.weights
        ids = np.asarray(tokens, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError("tokens must be a non-empty list of ids")
        if ids.min() < 0 or ids.max() >= c.vocab_size:
            raise ValueError(f"token id outside the vocabulary of {c.vocab_size}")
        cache = cache if cache is not None else self.new_cache()
        n, pos0 = ids.size, cache.num_tokens
        positions = np.arange(pos0, pos0 + n)
        x = w.token_embd.w[ids].copy()  # [n, embd] residual stream
        if c.gemma:
            x = x * math.sqrt(c.embd)
        act = gelu_tanh if c.gemma else silu
        for layer_idx, l in enumerate(w.layers):
            sliding = c.sliding(layer_idx)
            if sliding and c.arch == "gemma3":  # gemma3's sliding layers rotate on their own
                rope = dict(theta=c.rope_theta_swa, linear=1.0, mscale=c.rope_attn_factor)
            else:
                rope = dict(theta=c.rope_theta, linear=c.rope_linear_factor, factors=self.rope_factors,
                            mscale=c.rope_attn_factor)
            h = rms_norm(x, l.attn_norm, c.rms_eps)
            q, k, v = self.matmul(l.wq, h), self.matmul(l.wk, h), self.matmul(l.wv, h)
            if l.bq is not None:
                q = q + l.bq
            if l.bk is not None:
                k = k + l.bk
            if l.bv is not None:
                v = v + l.bv
            q = q.reshape(n, c.num_heads, c.head_dim)
            k = k.reshape(n, c.num_kv_heads, c.head_dim)
            if l.q_norm is not None:
                q, k = rms_norm(q, l.q_norm, c.rms_eps), rms_norm(k, l.k_norm, c.rms_eps)
            q = apply_rope(q, positions, c.rope_dims, mode=c.rope_mode, **rope)
            k = apply_rope(k, positions, c.rope_dims, mode=c.rope_mode, **rope)
            v = v.reshape(n, c.num_kv_heads, c.head_dim)
            if self.cache is not None:  # rounded once, as stored (keys after RoPE)
                k, v = round_kv(k, self.cache[0]), round_kv(v, self.cache[1])
            k_all, v_all = cache.append(layer_idx, k, v)
            att = causal_gqa_attention(q, k_all, v_all, pos0, c.group, c.query_scale, c.attn_softcap,
                                       c.sliding_window if sliding else 0)
            out = self.matmul(l.wo, att.reshape(n, c.num_heads * c.head_dim))
            if l.post_attn_norm is not None:
                out = rms_norm(out, l.post_attn_norm, c.rms_eps)
            x = x + out
            h = rms_norm(x, l.ffn_norm, c.rms_eps)
            out = self.matmul(l.down, act(self.matmul(l.gate, h)) * self.matmul(l.up, h))
            if l.post_ffn_norm is not None:
                out = rms_norm(out, l.post_ffn_norm, c.rms_eps)
            x = x + out
        cache.num_tokens += n
        return rms_norm(x, w.output_norm, c.rms_eps)

    def greedy(self, tokens: Sequence[int], num_new: int) -> tuple[list[int], list[np.ndarray]]:
        """Greedy continuation (ties to the lowest id, as argmax does) and each step's logits."""
        cache = self.new_cache()
        last = self.forward(tokens, cache)[-1]
        out, steps = [], []
        for i in range(num_new):
            steps.append(last)
            best = int(np.argmax(last))
            out.append(best)
            if i + 1 < num_new:
                last = self.forward([best], cache)[-1]
        return out, steps

    def perplexity(self, tokens: Sequence[int], window: int = 512, bos: int | None = None) -> tuple[float, int]:
        """llama.cpp's method: consecutive windows of `window` tokens, each scored on its second
        half (the prediction of tokens window/2+1 .. window-1 given everything before in the
        window). bos, if given, replaces each window's first token. Returns (ppl, num_scored)."""
        if len(tokens) < window:
            raise ValueError(f"need at least {window} tokens, got {len(tokens)}")
        nll, count = 0.0, 0
        for start in range(0, len(tokens) - window + 1, window):
            chunk = list(tokens[start:start + window])
            if bos is not None:
                chunk[0] = bos
            logits = self.forward(chunk)
            logp = logits - np.max(logits, axis=-1, keepdims=True)
            logp = logp - np.log(np.sum(np.exp(logp), axis=-1, keepdims=True))
            for j in range(window // 2, window - 1):
                nll -= logp[j, chunk[j + 1]]
                count += 1
        return math.exp(nll / count), count


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("perplexity")
    p.add_argument("model")
    p.add_argument("text")
    p.add_argument("--tokenizer", required=True, help="HF tokenizer.json")
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--max-tokens", type=int, default=1024)
    p.add_argument("--activations", default="float")
    g = sub.add_parser("greedy")
    g.add_argument("model")
    g.add_argument("--tokens", required=True)
    g.add_argument("-n", type=int, default=32)
    g.add_argument("--activations", default="float")
    g.add_argument("--tokenizer", help="HF tokenizer.json, to print the text")
    args = ap.parse_args(argv)
    ref = LlamaRef(args.model, activations=args.activations)
    if args.cmd == "perplexity":
        from tokenizers import Tokenizer
        with open(args.text, encoding="utf-8") as f:
            ids = Tokenizer.from_file(args.tokenizer).encode(f.read()).ids[:args.max_tokens]
        add_bos = ref.weights.metadata_value("tokenizer.ggml.add_bos_token", False)
        bos = ref.weights.metadata_value("tokenizer.ggml.bos_token_id") if add_bos else None
        ppl, count = ref.perplexity(ids, args.window, bos)
        print(f"perplexity {ppl:.4f} over {count} scored tokens ({len(ids)} tokens, window {args.window})")
    else:
        ids = [int(s) for s in args.tokens.split(",")]
        out, _ = ref.greedy(ids, args.n)
        print(",".join(map(str, out)))
        if args.tokenizer:
            from tokenizers import Tokenizer
            print(repr(Tokenizer.from_file(args.tokenizer).decode(out, skip_special_tokens=False)))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
