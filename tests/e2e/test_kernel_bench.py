"""llmasos kernel-bench: a smoke run at tiny sizes (the benchmark itself is bench/kernel). The
JSON names every result and its target, and the prefix part shows the shared system prompt
coming from the prefix cache; a bad --only is refused before the model loads."""
import json
import os
import subprocess


from oracle_inputs import default_model, require

BUILD = os.environ.get("LLMASOS_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
LLMASOS = os.path.join(BUILD, "llmasos")
MODEL = str(default_model())  # where scripts/setup installs it


def test_kernel_bench_reports_each_target_as_json():
    require(MODEL, "the default model")
    proc = subprocess.run([LLMASOS, "kernel-bench", MODEL, "-t", "2", "--only", "kv,prefix", "--json",
                           "--mixed-requests", "2", "--mixed-parallel", "2", "--system-tokens", "64",
                           "--prefix-repeats", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr  # 1: a target missed, which timing may do
    out = json.loads(proc.stdout)
    assert out["threads"] == 2
    kv, prefix = out["results"]
    assert kv["target"] == "mean >= 90 %" and isinstance(kv["pass"], bool)
    assert 0 < kv["detail"]["min"] <= kv["detail"]["mean"] <= 1
    assert kv["detail"]["steps"] > 0
    # 64 system tokens = 4 full 16-token blocks, all found in the cache by the second request.
    assert prefix["detail"]["cached_tokens"] == 64
    assert len(prefix["detail"]["cold_s"]) == 1 and len(prefix["detail"]["cached_s"]) == 1


def test_kernel_bench_refuses_an_unknown_part():
    proc = subprocess.run([LLMASOS, "kernel-bench", "--only", "kv,speed"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "--only" in proc.stderr and "speed" in proc.stderr
