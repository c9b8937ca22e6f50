"""Self-tests of the numpy reference (llama_ref.py): its building blocks against formulas
worked by hand, and whole forward passes of tiny GGUF models against a second, deliberately
naive implementation (pure Python loops, its own block decoders, one token at a time).

Run: .venv/bin/python -m pytest -q tests/reference/test_llama_ref.py
"""

from __future__ import annotations

import math
import os
import struct
import sys

import numpy as np
import pytest
import gguf
from gguf import GGMLQuantizationType as QT

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402
from llama_ref import LlamaRef, ModelFormatError  # noqa: E402
from tiny_gguf import TinySpec, write_tiny_model  # noqa: E402


def f16_bytes(v: float) -> bytes:
    return struct.pack("<e", v)


def write_raw_tensor(path: str, name: str, qtype: QT, raw: bytes, rows: int, cols: int) -> None:
    w = gguf.GGUFWriter(path, "llama")
    row_bytes = len(raw) // rows
    w.add_tensor(name, np.frombuffer(raw, dtype=np.uint8).reshape(rows, row_bytes), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_back(path: str, name: str) -> np.ndarray:
    (t,) = [t for t in gguf.GGUFReader(path).tensors if t.name == name]
    return llama_ref.dequantize(t)


# ---------------------------------------------------------------- dequantization of blocks

def test_q8_0_block_is_scale_times_signed_bytes(tmp_path):
    qs = list(range(-127, 128, 8))  # 32 values
    assert len(qs) == 32
    raw = f16_bytes(0.25) + struct.pack("<32b", *qs)
    p = str(tmp_path / "q8.gguf")
    write_raw_tensor(p, "t", QT.Q8_0, raw, 1, 32)
    got = read_back(p, "t")
    assert got.shape == (1, 32)
    np.testing.assert_array_equal(got[0], [0.25 * q for q in qs])


def test_q4_0_low_nibbles_are_first_half_high_nibbles_second_half(tmp_path):
    lo = [j % 16 for j in range(16)]          # elements 0..15
    hi = [(15 - j) % 16 for j in range(16)]   # elements 16..31
    packed = bytes(l | (h << 4) for l, h in zip(lo, hi))
    raw = f16_bytes(0.5) + packed + f16_bytes(-2.0) + bytes([0x8F] * 16)  # two rows of one block
    p = str(tmp_path / "q40.gguf")
    write_raw_tensor(p, "t", QT.Q4_0, raw, 2, 32)
    got = read_back(p, "t")
    expect0 = [0.5 * (q - 8) for q in lo + hi]
    expect1 = [-2.0 * (0xF - 8)] * 16 + [-2.0 * (0x8 - 8)] * 16
    np.testing.assert_array_equal(got[0], expect0)
    np.testing.assert_array_equal(got[1], expect1)


def test_q4_1_block_is_scale_times_nibble_plus_min(tmp_path):
    lo = [(3 * j) % 16 for j in range(16)]
    hi = [(5 * j + 1) % 16 for j in range(16)]
    packed = bytes(l | (h << 4) for l, h in zip(lo, hi))
    raw = f16_bytes(0.125) + f16_bytes(-1.5) + packed
    p = str(tmp_path / "q41.gguf")
    write_raw_tensor(p, "t", QT.Q4_1, raw, 1, 32)
    got = read_back(p, "t")
    np.testing.assert_array_equal(got[0], [0.125 * q - 1.5 for q in lo + hi])


def test_f16_and_bf16_decode_their_bit_patterns(tmp_path):
    vals = [1.0, -2.5, 65504.0, 2.0 ** -24]
    p = str(tmp_path / "f16.gguf")
    write_raw_tensor(p, "t", QT.F16, b"".join(f16_bytes(v) for v in vals), 1, 4)
    np.testing.assert_array_equal(read_back(p, "t")[0], vals)
    # bf16 is the high half of a float32: 0x3FC0 -> 1.5, 0xC2F7 -> -123.5, 0x0001 -> tiny.
    bits = [0x3FC0, 0xC2F7, 0x0001, 0x7F7F]
    expect = [struct.unpack("<f", struct.pack("<I", b << 16))[0] for b in bits]
    p = str(tmp_path / "bf16.gguf")
    write_raw_tensor(p, "t", QT.BF16, struct.pack("<4H", *bits), 1, 4)
    np.testing.assert_array_equal(read_back(p, "t")[0], expect)
    assert expect[:2] == [1.5, -123.5]


def test_unsupported_tensor_type_is_refused(tmp_path):
    p = str(tmp_path / "q8_1.gguf")
    write_raw_tensor(p, "t", QT.Q8_1, bytes(40), 1, 32)
    with pytest.raises(ModelFormatError, match="Q8_1"):
        read_back(p, "t")


# ---------------------------------------------------------------- activation quantization

def test_q8_activation_rounding_engine_and_ggml_rules():
    x = np.zeros((2, 32))
    x[0, 0] = 127.0            # d = 1 exactly
    x[0, 1:6] = [2.5, -2.5, 3.5, 0.49, -126.6]
    x[1, :] = np.linspace(-1.0, 0.3, 32)   # d = 1/127, not exact in fp16
    engine = llama_ref.quantize_activations_q8_0(x)
    ggml = llama_ref.quantize_activations_q8_0(x, scale_f16=True, half_even=False)
    np.testing.assert_array_equal(engine[0, :6], [127, 2, -2, 4, 0, -127])  # halves to even
    np.testing.assert_array_equal(ggml[0, :6], [127, 3, -3, 4, 0, -127])    # halves away
    assert np.all(engine[0, 6:] == 0) and np.all(ggml[0, 6:] == 0)
    d32 = np.float32(1.0) / np.float32(127)
    q = np.rint((x[1].astype(np.float32) * (np.float32(1) / d32)).astype(np.float64))
    np.testing.assert_array_equal(engine[1], float(d32) * q)
    np.testing.assert_array_equal(ggml[1], float(np.float16(d32)) * q)  # no halves in this row
    assert engine[1, 0] == pytest.approx(-1.0, rel=1e-6) and abs(ggml[1, 0] + 1.0) > 1e-5


def test_q8_ggml_rounding_equals_gguf_q8_0_round_trip():
    # gguf.quants' Q8_0 quantizer is written to be bit-exact with ggml's reference one.
    x = (np.random.default_rng(0).standard_normal((50, 256)) * 3).astype(np.float32)
    x[3, :32] = 0.0
    x[4, 32:64] *= 1e-30
    x[5, :32] = np.arange(32) - 15.5  # d = 16.5/127: x * (1/d) lands near halves
    round_trip = gguf.quants.dequantize(gguf.quants.quantize(x, QT.Q8_0), QT.Q8_0)
    got = llama_ref.quantize_activations_q8_0(x, scale_f16=True, half_even=False)
    np.testing.assert_array_equal(got, round_trip)


def test_q8_activation_of_zero_block_is_zero_and_width_must_be_blocks():
    assert np.all(llama_ref.quantize_activations_q8_0(np.zeros((3, 64))) == 0)
    with pytest.raises(ValueError, match="multiple of 32"):
        llama_ref.quantize_activations_q8_0(np.ones((1, 48)))


# ---------------------------------------------------------------- RoPE, attention

def test_normal_rope_rotates_adjacent_pairs():
    theta, p = 100.0, 3
    x = np.array([[[1.0, 0.0, 0.0, 2.0, 5.0, 7.0]]])  # one token, one head, head_dim 6
    got = llama_ref.apply_rope(x, np.array([p]), rope_dims=4, theta=theta, mode="normal")[0, 0]
    a1 = p * theta ** (-2 / 4)  # pair 1's angle; pair 0's is p
    np.testing.assert_allclose(got[:2], [math.cos(p), math.sin(p)], atol=1e-15)
    np.testing.assert_allclose(got[2:4], [-2 * math.sin(a1), 2 * math.cos(a1)], atol=1e-15)
    np.testing.assert_array_equal(got[4:], [5.0, 7.0])  # beyond rope_dims: untouched


def test_neox_rope_rotates_halves():
    theta, p = 100.0, 3
    x = np.array([[[1.0, 0.0, 0.0, 2.0, 5.0, 7.0]]])
    got = llama_ref.apply_rope(x, np.array([p]), rope_dims=4, theta=theta, mode="neox")[0, 0]
    a1 = p * theta ** (-2 / 4)
    # pairs (0, 2) with angle p and (1, 3) with angle a1
    np.testing.assert_allclose(got[[0, 2]], [math.cos(p), math.sin(p)], atol=1e-15)
    np.testing.assert_allclose(got[[1, 3]], [-2 * math.sin(a1), 2 * math.cos(a1)], atol=1e-15)
    np.testing.assert_array_equal(got[4:], [5.0, 7.0])


def test_rope_at_position_zero_is_identity_and_preserves_norm():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3, 8))
    for mode in ("normal", "neox"):
        y = llama_ref.apply_rope(x, np.arange(5), 8, 10000.0, mode)
        np.testing.assert_array_equal(y[0], x[0])
        np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-13)
        assert not np.allclose(y[1:], x[1:])


def test_converter_permutation_makes_normal_rope_equal_hf_rope():
    """HF llama rotates (x[i], x[i+d/2]) on unpermuted weights; the GGUF converter permutes
    the rows of W_q/W_k within each head (rows [2, d/2] -> [d/2, 2] transposed) so that the
    normal pairing gives the same q.k. This is why the reference uses normal mode for llama."""
    rng = np.random.default_rng(2)
    heads, hd, embd, n = 3, 8, 24, 6
    wq, wk = rng.standard_normal((heads * hd, embd)), rng.standard_normal((heads * hd, embd))

    def permute(w):
        return w.reshape(heads, 2, hd // 2, embd).swapaxes(1, 2).reshape(heads * hd, embd)

    x = rng.standard_normal((n, embd))
    pos = np.arange(n) + 5

    def scores(wq_, wk_, mode):
        q = llama_ref.apply_rope((x @ wq_.T).reshape(n, heads, hd), pos, hd, 10000.0, mode)
        k = llama_ref.apply_rope((x @ wk_.T).reshape(n, heads, hd), pos, hd, 10000.0, mode)
        return np.einsum("ihd,jhd->hij", q, k)

    hf = scores(wq, wk, "neox")
    np.testing.assert_allclose(scores(permute(wq), permute(wk), "normal"), hf, rtol=1e-11, atol=1e-11)
    assert not np.allclose(scores(wq, wk, "normal"), hf)  # the permutation matters


def test_attention_is_causal():
    rng = np.random.default_rng(3)
    q, k, v = rng.standard_normal((4, 2, 8)), rng.standard_normal((4, 2, 8)), rng.standard_normal((4, 2, 8))
    out = llama_ref.causal_gqa_attention(q, k, v, pos0=0, group=1)
    np.testing.assert_allclose(out[0], v[0], rtol=1e-14)  # the first token sees only itself
    k2, v2 = k.copy(), v.copy()
    k2[3], v2[3] = 100.0, -100.0  # changing the last position changes only the last query
    out2 = llama_ref.causal_gqa_attention(q, k2, v2, pos0=0, group=1)
    np.testing.assert_array_equal(out2[:3], out[:3])
    assert not np.allclose(out2[3], out[3])
    # With a cache: one query at position 3 sees all four keys.
    one = llama_ref.causal_gqa_attention(q[3:], k, v, pos0=3, group=1)
    np.testing.assert_allclose(one, out[3:], rtol=1e-13)


def test_gqa_query_heads_share_kv_heads_in_consecutive_groups():
    rng = np.random.default_rng(4)
    heads, kv_heads, hd, n = 6, 2, 4, 5
    q = rng.standard_normal((n, heads, hd))
    k, v = rng.standard_normal((n, kv_heads, hd)), rng.standard_normal((n, kv_heads, hd))
    out = llama_ref.causal_gqa_attention(q, k, v, pos0=0, group=3)
    for h in range(heads):
        kvh = h // 3  # heads 0,1,2 -> kv 0; 3,4,5 -> kv 1
        single = llama_ref.causal_gqa_attention(q[:, h:h + 1], k[:, kvh:kvh + 1], v[:, kvh:kvh + 1], 0, 1)
        np.testing.assert_allclose(out[:, h], single[:, 0], rtol=1e-13)
    v2 = v.copy()
    v2[:, 1] += 10.0
    out2 = llama_ref.causal_gqa_attention(q, k, v2, pos0=0, group=3)
    np.testing.assert_array_equal(out2[:, :3], out[:, :3])
    np.testing.assert_allclose(out2[:, 3:], out[:, 3:] + 10.0, rtol=1e-12)


# ---------------------------------------------------------------- naive second implementation

def _f16(b: bytes) -> float:
    return struct.unpack("<e", b)[0]


def naive_decode_row(qtype: QT, raw: bytes, cols: int) -> list[float]:
    """One row from its bytes, straight from the block formulas."""
    out: list[float] = []
    if qtype == QT.F32:
        return list(struct.unpack(f"<{cols}f", raw))
    if qtype == QT.F16:
        return [_f16(raw[2 * i:2 * i + 2]) for i in range(cols)]
    if qtype == QT.BF16:
        return [struct.unpack("<f", struct.pack("<I", b << 16))[0] for b in struct.unpack(f"<{cols}H", raw)]
    size = {QT.Q8_0: 34, QT.Q4_0: 18, QT.Q4_1: 20}[qtype]
    for blk in range(cols // 32):
        b = raw[blk * size:(blk + 1) * size]
        d = _f16(b[0:2])
        if qtype == QT.Q8_0:
            out += [d * q for q in struct.unpack("<32b", b[2:])]
        elif qtype == QT.Q4_0:
            qs = b[2:]
            out += [d * ((qs[j] & 15) - 8) for j in range(16)] + [d * ((qs[j] >> 4) - 8) for j in range(16)]
        else:
            m, qs = _f16(b[2:4]), b[4:]
            out += [d * (qs[j] & 15) + m for j in range(16)] + [d * (qs[j] >> 4) + m for j in range(16)]
    return out


def naive_forward(path: str, tokens: list[int]) -> list[list[float]]:
    reader = gguf.GGUFReader(path)
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.")}
    arch = meta["general.architecture"]
    L, E = meta[f"{arch}.block_count"], meta[f"{arch}.embedding_length"]
    H, KV = meta[f"{arch}.attention.head_count"], meta[f"{arch}.attention.head_count_kv"]
    D = E // H
    R = meta[f"{arch}.rope.dimension_count"]
    theta, eps = meta[f"{arch}.rope.freq_base"], meta[f"{arch}.attention.layer_norm_rms_epsilon"]
    T: dict[str, list[list[float]]] = {}
    for t in reader.tensors:
        dims = [int(x) for x in t.shape]
        cols, rows = dims[0], (dims[1] if len(dims) > 1 else 1)
        raw = np.asarray(t.data).tobytes()
        rb = len(raw) // rows
        T[t.name] = [naive_decode_row(t.tensor_type, raw[r * rb:(r + 1) * rb], cols) for r in range(rows)]

    def vec(name):
        return T[name][0]

    def matvec(name, x):
        return [sum(w * xi for w, xi in zip(row, x)) for row in T[name]]

    def rmsnorm(x, w):
        s = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
        return [v * s * wi for v, wi in zip(x, w)]

    def rope(x, pos):
        x = list(x)
        for i in range(R // 2):
            ang = pos * theta ** (-2.0 * i / R)
            c, s = math.cos(ang), math.sin(ang)
            a, b = (2 * i, 2 * i + 1) if arch != "qwen2" else (i, i + R // 2)
            x[a], x[b] = x[a] * c - x[b] * s, x[a] * s + x[b] * c
        return x

    out_name = "output.weight" if "output.weight" in T else "token_embd.weight"
    kcache = [[] for _ in range(L)]
    vcache = [[] for _ in range(L)]
    logits = []
    for pos, tok in enumerate(tokens):
        x = list(T["token_embd.weight"][tok])
        for l in range(L):
            b = f"blk.{l}."
            h = rmsnorm(x, vec(b + "attn_norm.weight"))
            q, k, v = matvec(b + "attn_q.weight", h), matvec(b + "attn_k.weight", h), matvec(b + "attn_v.weight", h)
            if b + "attn_q.bias" in T:
                q = [a + c for a, c in zip(q, vec(b + "attn_q.bias"))]
                k = [a + c for a, c in zip(k, vec(b + "attn_k.bias"))]
                v = [a + c for a, c in zip(v, vec(b + "attn_v.bias"))]
            q = sum((rope(q[hh * D:(hh + 1) * D], pos) for hh in range(H)), [])
            k = sum((rope(k[hh * D:(hh + 1) * D], pos) for hh in range(KV)), [])
            kcache[l].append(k)
            vcache[l].append(v)
            att = []
            for hh in range(H):
                g = hh * KV // H  # the KV head this query head reads
                qh = q[hh * D:(hh + 1) * D]
                sc = [sum(a * c for a, c in zip(qh, kk[g * D:(g + 1) * D])) / math.sqrt(D) for kk in kcache[l]]
                mx = max(sc)
                e = [math.exp(s - mx) for s in sc]
                z = sum(e)
                att += [sum(e[j] / z * vcache[l][j][g * D + d] for j in range(len(e))) for d in range(D)]
            x = [a + c for a, c in zip(x, matvec(b + "attn_output.weight", att))]
            h = rmsnorm(x, vec(b + "ffn_norm.weight"))
            gt, up = matvec(b + "ffn_gate.weight", h), matvec(b + "ffn_up.weight", h)
            act = [gv / (1.0 + math.exp(-gv)) * u for gv, u in zip(gt, up)]
            x = [a + c for a, c in zip(x, matvec(b + "ffn_down.weight", act))]
        logits.append(matvec(out_name, rmsnorm(x, vec("output_norm.weight"))))
    return logits


NAIVE_SPECS = [
    TinySpec(arch="llama", wtype="f32", heads=4, kv_heads=2),
    TinySpec(arch="llama", wtype="q8_0", heads=4, kv_heads=1, tied=True),
    TinySpec(arch="qwen2", wtype="q4_0", heads=4, kv_heads=2),
    TinySpec(arch="qwen2", wtype="q4_1", heads=2, kv_heads=2, rope_dims=16, seed=3),
    TinySpec(arch="llama", wtype="bf16", heads=8, kv_heads=4, rope_dims=4, tied=True, seed=5),
    TinySpec(arch="mistral", wtype="f16", heads=4, kv_heads=4, seed=7),
]


@pytest.mark.parametrize("spec", NAIVE_SPECS, ids=lambda s: s.name())
def test_forward_matches_naive_loops(spec, tmp_path):
    small = TinySpec(**{**spec.__dict__, "vocab": 270, "context": 64})
    path = write_tiny_model(str(tmp_path / "m.gguf"), small)
    tokens = [5, 261, 100, 7, 7, 265, 42]
    ref = LlamaRef(llama_ref.LlamaWeights(path)).forward(tokens)
    naive = np.array(naive_forward(path, tokens))
    assert ref.shape == naive.shape == (len(tokens), 270)
    # Both are float64; the reference's float32 dequantization (gguf.quants) of Q4_1's d*q+m is
    # the only rounding the naive path does not share.
    np.testing.assert_allclose(ref, naive, rtol=1e-6, atol=1e-6 * naive.std())
    assert naive.std() > 0.1  # not a degenerate model


# ---------------------------------------------------------------- whole-model properties

@pytest.fixture(scope="module")
def tiny_q4(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("m") / "q4.gguf")
    return llama_ref.LlamaWeights(write_tiny_model(path, TinySpec(wtype="q4_1", kv_heads=1)))


def test_incremental_forward_with_cache_equals_one_pass(tiny_q4):
    tokens = list(range(10, 30))
    for mode in ("float", "q8"):
        ref = LlamaRef(tiny_q4, mode)
        full = ref.forward(tokens)
        cache = ref.new_cache()
        parts = [ref.forward(tokens[:7], cache), ref.forward(tokens[7:8], cache), ref.forward(tokens[8:], cache)]
        np.testing.assert_allclose(np.concatenate(parts), full, rtol=1e-12, atol=1e-12)
        assert cache.num_tokens == len(tokens)


def test_q8_mode_is_close_to_float_but_not_equal_on_quantized_weights(tiny_q4):
    tokens = list(range(40, 60))
    f = LlamaRef(tiny_q4, "float").forward(tokens)
    q = LlamaRef(tiny_q4, "q8").forward(tokens)
    # 8-bit activations carry ~0.7% rms error into each product; random tiny models amplify
    # it a few times over two layers.
    rms_rel = np.sqrt(np.mean((f - q) ** 2)) / f.std()
    assert 0 < rms_rel < 0.1, rms_rel


def test_q8_modes_leave_float_weights_alone(tmp_path):
    w = llama_ref.LlamaWeights(write_tiny_model(str(tmp_path / "f.gguf"), TinySpec(wtype="f16")))
    tokens = [3, 1, 4, 1, 5, 9, 2, 6]
    exact = LlamaRef(w, "float").forward(tokens)
    np.testing.assert_array_equal(LlamaRef(w, "q8").forward(tokens), exact)
    np.testing.assert_array_equal(LlamaRef(w, "q8_ggml").forward(tokens), exact)


def test_q8_and_q8_ggml_modes_differ_only_slightly(tiny_q4):
    tokens = list(range(40, 60))
    a = LlamaRef(tiny_q4, "q8").forward(tokens)
    b = LlamaRef(tiny_q4, "q8_ggml").forward(tokens)
    # fp16 scales move every activation by up to 2^-11 relative; random two-layer models
    # amplify that to about 1.5% rms of the logits (q8 vs float: about 2.5%).
    rms_rel = np.sqrt(np.mean((a - b) ** 2)) / a.std()
    assert 0 < rms_rel < 0.05, rms_rel


def test_greedy_follows_argmax_of_one_pass(tiny_q4):
    ref = LlamaRef(tiny_q4, "q8")
    prompt = [260, 1, 2, 3]
    out, steps = ref.greedy(prompt, 6)
    logits = ref.forward(prompt + out)
    assert out == [int(i) for i in np.argmax(logits[len(prompt) - 1:-1], axis=-1)]
    np.testing.assert_allclose(steps[-1], logits[-2], rtol=1e-10, atol=1e-10)


def test_perplexity_scores_second_half_of_each_window(tiny_q4):
    ref = LlamaRef(tiny_q4)
    tokens = [int(t) for t in np.random.default_rng(5).integers(0, 300, 40)]
    ppl, count = ref.perplexity(tokens, window=16)
    assert count == 2 * 7  # windows [0,16) and [16,32); positions 8..14 predict 9..15
    nll = []
    for start in (0, 16):
        lg = ref.forward(tokens[start:start + 16])
        for j in range(8, 15):
            row = lg[j] - lg[j].max()
            nll.append(-(row[tokens[start + j + 1]] - math.log(np.exp(row).sum())))
    assert ppl == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-12)


def test_bad_inputs_are_refused(tmp_path, tiny_q4):
    ref = LlamaRef(tiny_q4)
    with pytest.raises(ValueError, match="vocabulary"):
        ref.forward([300])
    with pytest.raises(ValueError, match="non-empty"):
        ref.forward([])
    with pytest.raises(ValueError, match="activations"):
        LlamaRef(tiny_q4, "int4")
    p = str(tmp_path / "gpt2.gguf")
    w = gguf.GGUFWriter(p, "gpt2")
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFormatError, match="gpt2"):
        llama_ref.LlamaWeights(p)
    with pytest.raises(FileNotFoundError):
        llama_ref.LlamaWeights(str(tmp_path / "absent.gguf"))
