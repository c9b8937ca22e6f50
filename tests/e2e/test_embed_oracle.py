"""Embeddings oracle: `llmasos embed` (an embedding process on the kernel's engine) against the
numpy reference in tests/reference/llama_ref.py, on tiny float models: the final hidden state
after the output norm, pooled as the model's GGUF metadata says (mean by default, cls, last),
L2-normalised. A small batch size splits the prompt into several prefill chunks, so the pooling
across chunks is checked too.

Run: LLMASOS_BUILD_DIR=build .venv/bin/python -m pytest -q tests/e2e/test_embed_oracle.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "reference"))
from llama_ref import LlamaRef  # noqa: E402
from tiny_gguf import TinySpec, write_tiny_model  # noqa: E402

BUILD = Path(os.environ.get("LLMASOS_BUILD_DIR", REPO / "build"))
LLMASOS = BUILD / "llmasos"

# Float weights and float activations: engine and reference differ only in float32 vs
# float64 rounding (~1e-6 of a unit vector's components).
MAX_ABS_DIFF = 1e-4


def embed(model: Path, tokens: list[int], out: Path, *extra: str) -> dict:
    proc = subprocess.run([str(LLMASOS), "embed", str(model), "--tokens", ",".join(map(str, tokens)),
                           "--out", str(out), "--float-activations",
                           # the float reference keeps K/V unrounded: so does an F32 cache
                           "--cache-type-k", "f32", "--cache-type-v", "f32", *extra],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    info["vector"] = np.fromfile(out, dtype=np.float32)
    return info


@pytest.mark.parametrize("pooling,name", [(None, "mean"), (1, "mean"), (2, "cls"), (3, "last")],
                         ids=["default", "mean", "cls", "last"])
def test_embedding_matches_reference(tmp_path, pooling, name):
    spec = TinySpec(arch="qwen2", wtype="f32", heads=4, kv_heads=2, seed=21, pooling=pooling)
    model = Path(write_tiny_model(str(tmp_path / "tiny.gguf"), spec))
    tokens = [int(t) for t in np.random.default_rng(5).integers(0, spec.vocab, 37)]
    want = LlamaRef(str(model), "float").embed(tokens, name)
    for batch in ("512", "8"):  # one chunk, then five
        got = embed(model, tokens, tmp_path / "v.f32", "-b", batch)
        assert got["pooling"] == name
        assert got["dimensions"] == spec.embd == got["vector"].size
        assert abs(np.linalg.norm(got["vector"]) - 1) < 1e-5
        diff = np.abs(got["vector"] - want).max()
        assert diff < MAX_ABS_DIFF, (batch, diff)


def test_embedding_refuses_bad_input(tmp_path):
    spec = TinySpec(arch="llama", wtype="f32", seed=22)
    model = Path(write_tiny_model(str(tmp_path / "tiny.gguf"), spec))
    proc = subprocess.run([str(LLMASOS), "embed", str(model), "--tokens", "1,99999"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "vocabulary" in proc.stderr, proc.stderr
    proc = subprocess.run([str(LLMASOS), "embed", str(model)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "-p" in proc.stderr, proc.stderr
