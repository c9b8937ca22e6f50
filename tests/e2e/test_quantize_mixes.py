"""`llmasos quantize` to the K-quant mixes: the per-tensor types are llama.cpp's choices (read
back with gguf-py), the fallback for rows that are no multiple of 256 applies, and the file
runs, with logits close to the unquantized model's."""
import json
import subprocess

import gguf
import numpy as np
import pytest

from oracle_inputs import require_built

LAYERS = 8
# llama.cpp's use_more_bits for 8 layers: the first and last eighth, every third between.
MORE_BITS = {0, 3, 6, 7}


@pytest.fixture(scope="module")
def f32_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("mix")
    path = d / "f32.gguf"
    subprocess.run([str(require_built("make_tiny_model")), "--type", "f32", "--layers", str(LAYERS), "--embd", "256",
                    "--heads", "4", "--kv-heads", "2", "--ff", "512", "--out", str(path)],
                   check=True)
    return path


def quantize(src, dst, qtype):
    r = subprocess.run([str(require_built("llmasos")), "quantize", str(src), str(dst), "--type", qtype],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(dst).tensors}


def layer(name):
    return int(name.split(".")[1])


@pytest.mark.parametrize("qtype,base", [("q4_k_m", "Q4_K"), ("q5_k_m", "Q5_K")])
def test_k_mix_types_follow_llama_cpp(f32_model, tmp_path, qtype, base):
    types = quantize(f32_model, tmp_path / f"{qtype}.gguf", qtype)
    assert types["output.weight"] == "Q6_K"
    assert types["token_embd.weight"] == base
    for name, t in types.items():
        if name.endswith(("attn_v.weight", "ffn_down.weight")):
            assert t == ("Q6_K" if layer(name) in MORE_BITS else base), name
        elif name.endswith(("attn_q.weight", "attn_k.weight", "attn_output.weight",
                            "ffn_gate.weight", "ffn_up.weight")):
            assert t == base, name
        elif name.endswith("norm.weight"):
            assert t == "F32", name
    r = gguf.GGUFReader(tmp_path / f"{qtype}.gguf")
    assert r.fields["general.file_type"].contents() == {"q4_k_m": 15, "q5_k_m": 17}[qtype]


def test_q6_k_everywhere(f32_model, tmp_path):
    types = quantize(f32_model, tmp_path / "q6.gguf", "q6_k")
    assert {t for n, t in types.items() if not n.endswith("norm.weight")} == {"Q6_K"}


def test_rows_not_a_multiple_of_256_fall_back(tmp_path):
    src = tmp_path / "f32.gguf"
    subprocess.run([str(require_built("make_tiny_model")), "--type", "f32", "--layers", "2", "--embd", "96", "--ff", "256",
                    "--out", str(src)], check=True)
    for qtype, base, wide in [("q4_k_m", "Q5_0", "Q8_0"), ("q5_k_m", "Q5_1", "Q8_0")]:
        types = quantize(src, tmp_path / f"{qtype}.gguf", qtype)
        assert types["output.weight"] == wide  # Q6_K's fallback
        assert types["blk.1.attn_q.weight"] == base
        # Rows of ff = 256 stay K-quants; of 2 layers, use_more_bits picks the last.
        assert types["blk.0.ffn_down.weight"] == base.replace("Q5_0", "Q4_K").replace("Q5_1", "Q5_K")
        assert types["blk.1.ffn_down.weight"] == "Q6_K"


def logits(model, tmp_path, tag):
    out = tmp_path / f"{tag}.f32"
    r = subprocess.run([str(require_built("llmasos")), "eval", str(model), "--tokens", "5,70,71,300,12,99",
                        "--logits-out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    vocab = json.loads(r.stdout)["vocab_size"]
    return np.fromfile(out, dtype=np.float32).reshape(-1, vocab)


def test_more_bits_give_logits_closer_to_the_original(f32_model, tmp_path):
    # A random 8-layer model amplifies weight error about fivefold (Q8_0's 0.4 % gives 3 % on
    # the logits), so absolute bounds say little; the order of the formats must hold.
    ref = logits(f32_model, tmp_path, "ref")
    err = {}
    for qtype in ["q4_0", "q4_k_m", "q5_k_m", "q6_k", "q8_0"]:
        quantize(f32_model, tmp_path / f"{qtype}.gguf", qtype)
        got = logits(tmp_path / f"{qtype}.gguf", tmp_path, qtype)
        assert np.isfinite(got).all()
        err[qtype] = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    assert err["q8_0"] < err["q6_k"] < err["q5_k_m"] < err["q4_k_m"] < err["q4_0"], err
    assert err["q6_k"] < 0.15, err
