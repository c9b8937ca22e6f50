"""The training pass against JAX: for tiny GGUF models written by the independent Python
writer (tests/reference/tiny_gguf.py), the engine's loss and LoRA gradients (lora_oracle_tool)
match jax.grad of the reference forward (tests/reference/lora_jax.py, float64) to 1e-4
relative, and three AdamW steps (clipping, warm-up + cosine) match too.

Run: LLMASOS_BUILD_DIR=build .venv/bin/python -m pytest -q tests/e2e/test_train_oracle.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", "cpu")
import jax.numpy as jnp  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "reference"))
from llama_ref import LlamaWeights  # noqa: E402
from lora_jax import adamw_steps, make_value_and_grad, weights_to_jax  # noqa: E402
from tiny_gguf import TinySpec, write_tiny_model  # noqa: E402

BUILD = Path(os.environ.get("LLMASOS_BUILD_DIR", REPO / "build"))
TOOL = BUILD / "lora_oracle_tool"

CASES = [
    # (spec, targets, rank, alpha)
    (TinySpec(arch="llama", wtype="q8_0", embd=64, heads=4, kv_heads=2, ffn=128), "all", 4, 8.0),
    (TinySpec(arch="qwen2", wtype="f16", embd=64, heads=4, kv_heads=1, ffn=96), "q,v,down", 3, 6.0),
    (TinySpec(arch="llama", wtype="q4_1", embd=64, heads=2, kv_heads=2, ffn=64, tied=True), "o,gate,up,k", 2, 2.0),
]

SEQUENCES = [
    ([1, 40, 77, 200, 5, 9, 13, 64, 65, 66, 120, 7], [0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1]),
    ([100, 101, 102, 103, 104, 105], [0, 1, 1, 1, 1, 1]),
]


def run_tool(model: str, targets: str, rank: int, alpha: float, steps: int) -> dict:
    if not TOOL.exists():
        pytest.fail(f"{TOOL} is not built (cmake --build build --target lora_oracle_tool)")
    req = {"model": model, "rank": rank, "alpha": alpha, "targets": targets, "seed": 5,
           "b_init_std": 0.05, "sequences": [{"tokens": t, "is_target": m} for t, m in SEQUENCES],
           "steps": steps, "lr": 2e-3, "warmup": 2, "clip": 0.5, "weight_decay": 0.01, "threads": 2}
    out = subprocess.run([str(TOOL)], input=json.dumps(req), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def as_jax(tensors: dict, rank: int, shapes: dict) -> dict:
    return {k: jnp.asarray(np.asarray(v, dtype=np.float64).reshape(shapes[k])) for k, v in tensors.items()}


def shapes_for(w: LlamaWeights, names, rank: int) -> dict:
    stems = {"attn_q": w.layers[0].wq, "attn_k": w.layers[0].wk, "attn_v": w.layers[0].wv,
             "attn_output": w.layers[0].wo, "ffn_gate": w.layers[0].gate, "ffn_up": w.layers[0].up,
             "ffn_down": w.layers[0].down}
    out = {}
    for name in names:
        stem = name.split(".")[2]
        rows, cols = stems[stem].w.shape
        out[name] = (rank, cols) if name.endswith("lora_a") else (rows, rank)
    return out


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("spec,targets,rank,alpha", CASES, ids=[c[0].name() + "-" + c[1] for c in CASES])
def test_loss_gradients_and_adamw_steps_match_jax(tmp_path, spec, targets, rank, alpha):
    model = write_tiny_model(str(tmp_path / "tiny.gguf"), spec)
    steps = 3
    got = run_tool(model, targets, rank, alpha, steps)
    w = LlamaWeights(model)
    base = weights_to_jax(w)
    shapes = shapes_for(w, got["params0"].keys(), rank)
    lora0 = as_jax(got["params0"], rank, shapes)

    value_and_grad = make_value_and_grad(w.config, SEQUENCES, alpha, rank)
    loss, grads = value_and_grad(lora0, base)
    assert got["num_targets"] == sum(sum(m[1:]) for _, m in SEQUENCES)
    assert abs(got["loss0"] - float(loss)) <= 1e-4 * abs(float(loss))
    for name, g in grads.items():
        engine = np.asarray(got["grads0"][name]).reshape(shapes[name])
        assert np.linalg.norm(np.asarray(g)) > 0, name
        assert rel_err(engine, g) <= 1e-4, f"{name}: relative error {rel_err(engine, g):.2e}"

    history, lora_final = adamw_steps(value_and_grad, base, lora0, steps, lr=2e-3, warmup=2,
                                      clip=0.5, weight_decay=0.01)
    for i, (ref, eng) in enumerate(zip(history, got["steps"])):
        assert abs(eng["loss"] - ref[0]) <= 1e-4 * abs(ref[0]), f"step {i + 1} loss"
        assert abs(eng["grad_norm"] - ref[1]) <= 1e-4 * ref[1], f"step {i + 1} gradient norm"
        assert abs(eng["lr"] - ref[2]) <= 1e-6 * ref[2], f"step {i + 1} learning rate"
    for name, p in lora_final.items():
        engine = np.asarray(got["params_final"][name]).reshape(shapes[name])
        moved = np.asarray(p) - np.asarray(lora0[name])
        engine_moved = engine - np.asarray(lora0[name])
        # The parameters moved by the same amounts (the updates, not the parameters, compared).
        assert rel_err(engine_moved, moved) <= 1e-3, f"{name}: update differs {rel_err(engine_moved, moved):.2e}"
