"""llmasos batch: a JSONL file of prompts through the kernel at once. Results equal what the
same prompts give alone (greedy), every prompt gets exactly one result line, an interrupted
run resumes where it stopped, and bad input is refused with the line it is on."""
import json
import os
import subprocess

import pytest

from oracle_inputs import default_model, require

BUILD = os.environ.get("LLMASOS_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
LLMASOS = os.path.join(BUILD, "llmasos")
MODEL = str(default_model())  # where scripts/setup installs it

@pytest.fixture(autouse=True)
def default_model_present():
    require(MODEL, "the default model")  # missing: a failure (see oracle_inputs.py)

PROMPTS = [
    {"id": "fr", "prompt": "The capital of France is", "raw": True, "max_tokens": 8},
    {"id": "de", "prompt": "The capital of Germany is", "raw": True, "max_tokens": 8},
    {"id": "count", "prompt": "1, 2, 3, 4,", "raw": True, "max_tokens": 12, "stop": [" 7"]},
    {"id": "chat", "prompt": "Name a colour.", "max_tokens": 10},
    {"id": "long", "prompt": "Write a long story about a dragon. " * 20, "max_tokens": 6},
]


def run(*args, check=True):
    proc = subprocess.run([LLMASOS, *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"llmasos {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def write_prompts(path, prompts):
    path.write_text("".join(json.dumps(p) + "\n" for p in prompts))


def results(path):
    return {r["id"]: r for r in (json.loads(line) for line in path.read_text().splitlines())}


def test_batch_results_equal_single_runs(tmp_path):
    prompts, out = tmp_path / "p.jsonl", tmp_path / "out.jsonl"
    write_prompts(prompts, PROMPTS)
    # An F32 KV cache: the batched and single runs compute K/V in different batch shapes, equal
    # up to float summation order; a rounded cache type could turn that into a rounding step
    # apart, and a near-tie into another token.
    exact = ("--float-activations", "--cache-type-k", "f32", "--cache-type-v", "f32")
    run("batch", MODEL, "-f", str(prompts), "-o", str(out), "--temp", "0", "--parallel", "3", *exact)
    got = results(out)
    assert set(got) == {p["id"] for p in PROMPTS}
    for p in PROMPTS:
        args = ["run", MODEL, "-p", p["prompt"], "--temp", "0", "-n", str(p["max_tokens"]), *exact]
        if p.get("raw"):
            args.append("--raw")
        for s in p.get("stop", []):
            args += ["--stop", s]
        alone = run(*args).stdout
        assert alone.endswith("\n")
        alone = alone[:-1]  # `run` ends its output with a newline of its own
        assert got[p["id"]]["text"] == alone, p["id"]
        assert got[p["id"]]["completion_tokens"] <= p["max_tokens"]
    assert got["count"]["finish_reason"] == "stop" and got["count"]["text"] == " 5, 6,"
    assert got["fr"]["finish_reason"] in ("length", "stop")


def test_batch_resumes_after_an_interruption(tmp_path):
    prompts, out = tmp_path / "p.jsonl", tmp_path / "out.jsonl"
    write_prompts(prompts, PROMPTS)
    run("batch", MODEL, "-f", str(prompts), "-o", str(out), "--temp", "0")
    full = results(out)
    # As if killed while writing: two results lost, the last line cut short.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][:10])
    proc = run("batch", MODEL, "-f", str(prompts), "-o", str(out), "--temp", "0")
    assert "2 already done" in proc.stderr
    again = out.read_text().splitlines()
    assert len(again) == len(PROMPTS)  # the cut line was dropped, nothing doubled
    assert results(out) == full
    proc = run("batch", MODEL, "-f", str(prompts), "-o", str(out), "--temp", "0")
    assert "0 prompts to run" in proc.stderr


@pytest.mark.parametrize("line, message", [
    ("not json", "not a JSON object"),
    ('{"id": "x"}', "prompt"),
    ('{"prompt": "hi", "max_tokens": 0}', "max_tokens"),
    ('{"prompt": "hi", "temperature": "hot"}', "temperature"),
    ('{"messages": []}', "messages"),
    # Numbers are range-checked before any conversion (these were undefined behaviour once).
    ('{"prompt": "hi", "priority": 1e308}', "priority: must be an integer in -1000..1000"),
    ('{"prompt": "hi", "top_k": 1e20}', "top_k: must be an integer in 0..1000000"),
    ('{"prompt": "hi", "max_tokens": 2.5}', "max_tokens"),
    ('{"prompt": "\\ud800"}', "lone UTF-16 surrogate \\ud800"),
    ('{"prompt": "hi", "stop": ["a", ""]}', "stop[1]: must not be empty"),
    ('{"prompt": "hi", "max_tokens": 100000}', "max_tokens: asks for 100000 tokens"),
])
def test_batch_refuses_bad_lines(tmp_path, line, message):
    prompts, out = tmp_path / "p.jsonl", tmp_path / "out.jsonl"
    prompts.write_text('{"id": "ok", "prompt": "hi"}\n' + line + "\n")
    proc = run("batch", MODEL, "-f", str(prompts), "-o", str(out), check=False)
    assert proc.returncode != 0
    assert f"{prompts}:2" in proc.stderr and message in proc.stderr, proc.stderr
    assert not out.exists() or out.read_text() == ""


def test_batch_names_the_fields_it_ignores(tmp_path):
    prompts, out = tmp_path / "p.jsonl", tmp_path / "out.jsonl"
    prompts.write_text('{"id": "a", "prompt": "hi", "raw": true, "max_tokens": 1, "category": "x"}\n')
    proc = run("batch", MODEL, "-f", str(prompts), "-o", str(out))
    assert "ignored fields (not part of the line format): category" in proc.stderr
    assert set(results(out)) == {"a"}
