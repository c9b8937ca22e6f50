"""Tiny llama-family GGUF models with random weights, written with the `gguf` package's
GGUFWriter (independent of the project's own C++ writer), for the reference's self-tests and
the forward-pass oracle.

The vocabulary is byte-level BPE (GPT-2 style): the 256 byte tokens, a few merges, the ChatML
control tokens, then unused filler tokens up to `vocab`, so the engine's tokenizer accepts the
file; the oracle feeds token ids directly and never tokenizes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT

TYPE_NAMES = {"f32": QT.F32, "f16": QT.F16, "bf16": QT.BF16, "q8_0": QT.Q8_0, "q4_0": QT.Q4_0,
              "q4_1": QT.Q4_1, "q5_0": QT.Q5_0, "q5_1": QT.Q5_1}


ARCHS = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3")


@dataclasses.dataclass(frozen=True)
class TinySpec:
    arch: str = "llama"      # one of ARCHS; qwen2 gets QKV biases, qwen3/gemma3 Q/K norms,
                             # gemma2/gemma3 post-norms (and gemma2 soft-caps by default),
                             # phi3 a fused ffn_up [2 ffn, embd] (gate rows, then up's)
    wtype: str = "q8_0"      # type of every 2-D weight: one of TYPE_NAMES
    layers: int = 2
    embd: int = 64
    heads: int = 4
    kv_heads: int = 2
    ffn: int = 128
    vocab: int = 300
    context: int = 1024
    tied: bool = False
    rope_dims: int | None = None  # None: the whole head
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    qkv_bias: bool | None = None  # None: only for qwen2
    seed: int = 0
    pooling: int | None = None  # "<arch>.pooling_type" (1 mean, 2 cls, 3 last); None: not written
    key_length: int | None = None  # per-head width; None: embd / heads (written when set)
    rope_freqs: bool = False       # write a Llama 3 style rope_freqs.weight factor tensor
    rope_linear: float | None = None  # rope.scaling.type linear with this factor
    sliding_window: int | None = None  # gemma, phi3: attention.sliding_window (gemma2 default 16;
                                       # phi3 writes 0 too, as Phi-4 mini's converter does)
    swa_pattern: int | None = None     # gemma: attention.sliding_window_pattern (None: unset)
    attn_softcap: float | None = None  # gemma2 default 50
    final_softcap: float | None = None  # gemma2 default 30
    extra_tensor: str | None = None     # a stray [embd] tensor of this name (bad-file tests)
    drop: tuple[str, ...] = ()          # tensors left out (bad-file tests)
    extra_kv: tuple[tuple[str, int | str], ...] = ()  # more metadata, uint32 or string
    add_bos: bool = False               # tokenizer.ggml.add_bos_token
    fused_qkv: bool = True              # phi3: attn_qkv rather than attn_q/k/v
    pre: str | None = None              # tokenizer.ggml.pre; None: qwen2 for qwen2, else gpt2
    # Control tokens put in place of the first unused ones: llama.cpp's phi3 vocabulary looks
    # up "</s>", "<unk>" and "<s>" and refuses a file without them.
    extra_control: tuple[str, ...] = ()
    # phi3 LongRoPE: rope_factors_short/long.weight, rope.scaling.original_context_length
    # (this value) and the attention factor sqrt(1 + ln(context / orig) / ln(orig)).
    longrope_orig: int | None = None
    wrong_rows: tuple[tuple[str, int], ...] = ()  # tensors written with this many rows / elements

    @property
    def head_dim(self) -> int:
        return self.key_length or self.embd // self.heads

    def name(self) -> str:
        parts = [self.arch, self.wtype, f"h{self.heads}kv{self.kv_heads}"]
        if self.tied:
            parts.append("tied")
        if self.rope_dims is not None:
            parts.append(f"rope{self.rope_dims}")
        if self.key_length:
            parts.append(f"kl{self.key_length}")
        if self.rope_freqs:
            parts.append("ropefreqs")
        if self.rope_linear:
            parts.append(f"linear{self.rope_linear:g}")
        if self.sliding_window:
            parts.append(f"swa{self.sliding_window}")
        if self.longrope_orig:
            parts.append(f"longrope{self.longrope_orig}")
        if self.arch == "phi3" and not self.fused_qkv:
            parts.append("unfused")
        return "-".join(parts)


def bytes_to_unicode() -> list[str]:
    """GPT-2's byte -> printable character table: printable Latin-1 bytes map to themselves,
    the other bytes to U+0100 upwards in byte order."""
    printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or b >= 0xAE]
    out, extra = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def vocabulary(vocab: int, extra_control: tuple[str, ...] = ()) -> tuple[list[str], list[int], list[str]]:
    alphabet = bytes_to_unicode()
    space = alphabet[ord(" ")]
    merges = [f"{space} t", "h e", f"{space}t he", "i n", f"{space} a"]
    tokens = list(alphabet) + [m.replace(" ", "") for m in merges]
    types = [gguf.TokenType.NORMAL] * len(tokens)
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *extra_control):
        tokens.append(special)
        types.append(gguf.TokenType.CONTROL)
    if vocab < len(tokens):
        raise ValueError(f"vocab must be at least {len(tokens)}")
    for i in range(len(tokens), vocab):
        tokens.append(f"<unused{i}>")
        types.append(gguf.TokenType.UNUSED)
    return tokens, [int(t) for t in types], merges


def _encode(values: np.ndarray, qtype: QT) -> np.ndarray:
    """float32 [rows, cols] -> the array GGUFWriter.add_tensor stores as `qtype`."""
    if qtype == QT.F32:
        return values.astype(np.float32)
    if qtype == QT.F16:
        return values.astype(np.float16)
    return gguf.quants.quantize(values.astype(np.float32), qtype)  # uint8 bytes [rows, row_bytes]


def write_tiny_model(path: str, spec: TinySpec) -> str:
    s = spec
    if s.arch not in ARCHS:
        raise ValueError(f"unknown arch {s.arch}")
    if (s.key_length is None and s.embd % s.heads) or s.heads % s.kv_heads or s.head_dim % 2:
        raise ValueError("embd must split into heads of even size, heads into kv heads")
    qtype = TYPE_NAMES[s.wtype]
    if qtype in (QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1) and (s.embd % 32 or s.ffn % 32 or (s.heads * s.head_dim) % 32):
        raise ValueError("quantized weights need embd, ffn and heads * head_dim to be multiples of 32")
    rng = np.random.default_rng(s.seed)
    kv_dim = s.kv_heads * s.head_dim
    q_dim = s.heads * s.head_dim
    qkv_bias = s.qkv_bias if s.qkv_bias is not None else s.arch == "qwen2"
    gemma = s.arch in ("gemma2", "gemma3")
    qk_norm = s.arch in ("qwen3", "gemma3")
    phi3 = s.arch == "phi3"
    wrong_rows = dict(s.wrong_rows)

    w = gguf.GGUFWriter(path, s.arch)
    a = s.arch
    w.add_string("general.name", "tiny-" + s.name())
    w.add_uint32(f"{a}.block_count", s.layers)
    w.add_uint32(f"{a}.context_length", s.context)
    w.add_uint32(f"{a}.embedding_length", s.embd)
    w.add_uint32(f"{a}.feed_forward_length", s.ffn)
    w.add_uint32(f"{a}.attention.head_count", s.heads)
    w.add_uint32(f"{a}.attention.head_count_kv", s.kv_heads)
    w.add_float32(f"{a}.rope.freq_base", s.rope_theta)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", s.rms_eps)
    w.add_uint32(f"{a}.rope.dimension_count", s.rope_dims or s.head_dim)
    if s.pooling is not None:
        w.add_uint32(f"{a}.pooling_type", s.pooling)
    if s.key_length:
        w.add_uint32(f"{a}.attention.key_length", s.key_length)
        w.add_uint32(f"{a}.attention.value_length", s.key_length)
    if s.rope_linear:
        w.add_string(f"{a}.rope.scaling.type", "linear")
        w.add_float32(f"{a}.rope.scaling.factor", s.rope_linear)
    window = s.sliding_window if s.sliding_window is not None else (16 if a == "gemma2" else None)
    if window or (phi3 and window is not None):
        w.add_uint32(f"{a}.attention.sliding_window", window)
    if s.longrope_orig:
        w.add_uint32(f"{a}.rope.scaling.original_context_length", s.longrope_orig)
        scale = s.context / s.longrope_orig
        w.add_float32(f"{a}.rope.scaling.attn_factor",
                      float(np.sqrt(1 + np.log(scale) / np.log(s.longrope_orig))) if scale > 1 else 1.0)
    if s.swa_pattern is not None:
        w.add_uint32(f"{a}.attention.sliding_window_pattern", s.swa_pattern)
    for key, value, default in (("attn_logit_softcapping", s.attn_softcap, 50.0),
                                ("final_logit_softcapping", s.final_softcap, 30.0)):
        value = value if value is not None else (default if a == "gemma2" else None)
        if value:
            w.add_float32(f"{a}.{key}", value)
    for key, value in s.extra_kv:
        if isinstance(value, str):
            w.add_string(key, value)
        else:
            w.add_uint32(key, value)
    tokens, types, merges = vocabulary(s.vocab, s.extra_control)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", s.pre or ("qwen2" if a == "qwen2" else "gpt2"))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_uint32("tokenizer.ggml.bos_token_id", tokens.index("<|im_start|>"))
    w.add_uint32("tokenizer.ggml.eos_token_id", tokens.index("<|im_end|>"))
    w.add_bool("tokenizer.ggml.add_bos_token", s.add_bos)

    def matrix(name: str, rows: int, cols: int, scale: float = 1.0) -> None:
        # 1/sqrt(cols) keeps activations O(1) through the layers.
        rows = wrong_rows.get(name, rows)
        v = rng.standard_normal((rows, cols)).astype(np.float32) * np.float32(scale / np.sqrt(cols))
        if name in s.drop:
            return
        w.add_tensor(name, _encode(v, qtype), raw_dtype=None if qtype in (QT.F32, QT.F16) else qtype)

    def vector(name: str, n: int, scale: float, offset: float) -> None:
        if name in s.drop:
            return
        w.add_tensor(name, (offset + scale * rng.standard_normal(n)).astype(np.float32))

    # Gemma scales embeddings by sqrt(embd): keep the stream O(1) with smaller embeddings.
    embd_scale = 1.0 / np.sqrt(s.embd) if gemma else 1.0
    matrix("token_embd.weight", s.vocab, s.embd, embd_scale)
    vector("output_norm.weight", s.embd, 0.1, 1.0)
    if not s.tied:
        matrix("output.weight", s.vocab, s.embd)
    if s.rope_freqs:
        # Llama 3's shape of factors: 1 for the fast pairs, up to 8 for the slow ones.
        half = (s.rope_dims or s.head_dim) // 2
        w.add_tensor("rope_freqs.weight", np.linspace(1.0, 8.0, half).astype(np.float32))
    if s.longrope_orig:
        # Phi-3's shapes of factors: near 1 (short), 1 to tens for the slow pairs (long).
        half = (s.rope_dims or s.head_dim) // 2
        for name, top in (("rope_factors_short.weight", 1.5), ("rope_factors_long.weight", 40.0)):
            if name not in s.drop:
                w.add_tensor(name, np.linspace(1.0, top, wrong_rows.get(name, half)).astype(np.float32))
    if s.extra_tensor:
        vector(s.extra_tensor, s.embd, 0.1, 1.0)
    for i in range(s.layers):
        b = f"blk.{i}."
        vector(b + "attn_norm.weight", s.embd, 0.1, 1.0)
        if phi3 and s.fused_qkv:
            matrix(b + "attn_qkv.weight", q_dim + 2 * kv_dim, s.embd)
        else:
            matrix(b + "attn_q.weight", q_dim, s.embd)
            matrix(b + "attn_k.weight", kv_dim, s.embd)
            matrix(b + "attn_v.weight", kv_dim, s.embd)
        if qkv_bias:
            vector(b + "attn_q.bias", q_dim, 0.1, 0.0)
            vector(b + "attn_k.bias", kv_dim, 0.1, 0.0)
            vector(b + "attn_v.bias", kv_dim, 0.1, 0.0)
        if qk_norm:
            vector(b + "attn_q_norm.weight", s.head_dim, 0.1, 1.0)
            vector(b + "attn_k_norm.weight", s.head_dim, 0.1, 1.0)
        matrix(b + "attn_output.weight", s.embd, q_dim)
        if gemma:
            vector(b + "post_attention_norm.weight", s.embd, 0.1, 1.0)
        vector(b + "ffn_norm.weight", s.embd, 0.1, 1.0)
        if phi3:
            matrix(b + "ffn_up.weight", 2 * s.ffn, s.embd)
        else:
            matrix(b + "ffn_gate.weight", s.ffn, s.embd)
            matrix(b + "ffn_up.weight", s.ffn, s.embd)
        matrix(b + "ffn_down.weight", s.embd, s.ffn)
        if gemma:
            vector(b + "post_ffw_norm.weight", s.embd, 0.1, 1.0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def derive_model(src: str, dst: str, num_layers: int, float_layers: bool) -> str:
    """A copy of the llama-architecture GGUF `src` keeping its first num_layers blocks (all
    metadata, including the tokenizer, carried over). float_layers: the blocks' quantized
    matrices are dequantized and stored as F16, so the engine multiplies them against float
    activations and no 8-bit activation rounding happens inside the blocks."""
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = num_layers if key == f"{arch}.block_count" else field.contents()
        vtype = field.types[0]
        w.add_key_value(key, value, vtype, field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None)
    for t in reader.tensors:
        if t.name.startswith("blk.") and int(t.name.split(".")[1]) >= num_layers:
            continue
        if float_layers and t.name.startswith("blk.") and t.tensor_type in (QT.Q8_0, QT.Q4_0, QT.Q4_1):
            values = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
            w.add_tensor(t.name, values.reshape([int(d) for d in reversed(t.shape)]).astype(np.float16))
        else:
            w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst
