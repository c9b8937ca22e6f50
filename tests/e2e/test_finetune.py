"""llmasos finetune through the CLI: the adapter file is in llama.cpp's LoRA layout (read back
with the independent `gguf` package), the registry records the new version with its lineage
(base version and digest, data digest, every hyper-parameter, final losses), bad data lines
are named, the memory bound is enforced, and a run killed with SIGKILL resumes from its last
checkpoint and writes exactly the adapter an uninterrupted run writes.

Every test gets its own LLMASOS_HOME. Models are tiny ones made by make_tiny_model.
"""
import hashlib
import json
import os
import signal
import subprocess
import time

import gguf
import numpy as np

BUILD = os.environ.get("LLMASOS_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
LLMASOS = os.path.join(BUILD, "llmasos")
MAKE_TINY = os.path.join(BUILD, "make_tiny_model")


def env_for(home):
    return dict(os.environ, LLMASOS_HOME=home)


def cli(home, *args, check=True, cwd=None):
    proc = subprocess.run([LLMASOS, *args], capture_output=True, text=True, timeout=300,
                          env=env_for(home), cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"llmasos {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def tiny(tmp_path, name="tiny.gguf", *extra):
    path = str(tmp_path / name)
    subprocess.run([MAKE_TINY, "--out", path, "--seed", "3", *extra], check=True, capture_output=True)
    return path


def sha256(path):
    return "sha256:" + hashlib.sha256(open(path, "rb").read()).hexdigest()


def write_data(path, n=24):
    with open(path, "w") as f:
        for i in range(n):
            if i % 2:
                f.write(json.dumps({"prompt": f"code of item {i}?", "completion": f"code {i * 7 % 100}"}) + "\n")
            else:
                f.write(json.dumps({"messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": f"colour of {i}?"},
                    {"role": "assistant", "content": ["red", "blue", "green"][i % 3]}]}) + "\n")
    return str(path)


def test_finetune_writes_a_llama_cpp_adapter_and_registers_it_with_lineage(tmp_path):
    home = str(tmp_path / "home")
    model = tiny(tmp_path)
    cli(home, "import", model, "--name", "base", "--version", "2.1.0")
    data = write_data(tmp_path / "data.jsonl")
    out = str(tmp_path / "a.gguf")
    proc = cli(home, "finetune", "base@2.1.0", "--data", data, "--out", out, "--name", "base-tuned",
               "--rank", "4", "--alpha", "8", "--targets", "q,v,down", "--steps", "5", "--batch", "2",
               "--max-len", "96", "--lr", "5e-3", "--seed", "7", "-t", "2")
    assert "step 5/5" in proc.stderr
    assert "registered   base-tuned@1.0.0" in proc.stdout

    r = gguf.GGUFReader(out)
    field = lambda k: r.fields[k].contents()
    assert field("general.type") == "adapter"
    assert field("adapter.type") == "lora"
    assert field("general.architecture") == "llama"
    assert abs(field("adapter.lora.alpha") - 8.0) < 1e-6
    tensors = {t.name: t for t in r.tensors}
    base = {t.name: t for t in gguf.GGUFReader(model).tensors}
    assert len(tensors) == 2 * 3 * 2  # layers x targets x (a, b)
    for name, t in tensors.items():
        w = base[name.rsplit(".", 1)[0]]
        if name.endswith("lora_a"):   # ne = [in, rank]
            assert list(t.shape) == [w.shape[0], 4], name
        else:                         # ne = [rank, out]
            assert list(t.shape) == [4, w.shape[1]], name
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
    # B starts at zero; training moved it.
    assert np.abs(np.asarray(tensors["blk.0.attn_q.weight.lora_b"].data)).max() > 0

    m = json.loads(cli(home, "show", "base-tuned", "--json").stdout)
    m = m.get("manifest", m)
    lin = m["lineage"]
    assert lin["command"] == "finetune"
    t = lin["training"]
    assert t["base"] == "base@2.1.0"
    assert t["base_digest"] == sha256(model)
    assert t["data_digest"] == sha256(data)
    p = t["parameters"]
    assert (p["rank"], p["alpha"], p["targets"], p["steps"], p["batch"], p["seed"]) == (4, 8.0, "q,v,down", 5, 2, 7)
    assert p["final_loss"] > 0 and p["final_eval_loss"] > 0 and p["initial_eval_loss"] > 0
    assert m["digest"] == sha256(out)
    shown = cli(home, "show", "base-tuned").stdout
    assert "base digest" in shown and sha256(data) in shown

    # --lora at inference: by file or by reference, with a scale; scale 0 is the base model.
    def logits(*lora):
        path = str(tmp_path / f"logits{len(os.listdir(tmp_path))}.bin")
        cli(home, "eval", "base@2.1.0", *lora, "--float-activations", "--tokens", "1,40,77,200",
            "--logits-out", path)
        return np.fromfile(path, dtype=np.float32)
    plain = logits()
    tuned = logits("--lora", out)
    assert np.array_equal(logits("--lora", "base-tuned:0"), plain)
    assert np.array_equal(logits("--lora", "base-tuned@1.0.0:1.0"), tuned)
    assert not np.allclose(tuned, plain, atol=1e-4)
    proc = cli(home, "eval", model, "--lora", model, "--tokens", "1", check=False)
    assert proc.returncode != 0 and "not an adapter file" in proc.stderr


def test_bad_data_lines_are_named(tmp_path):
    home = str(tmp_path / "home")
    model = tiny(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n" +
                   json.dumps({"messages": [{"role": "user"}]}) + "\n")
    proc = cli(home, "finetune", model, "--data", str(bad), "--no-register", check=False)
    assert proc.returncode != 0
    assert "data line 2: missing field 'messages[0].content'" in proc.stderr
    bad.write_text("{not json\n")
    proc = cli(home, "finetune", model, "--data", str(bad), "--no-register", check=False)
    assert "data line 1: not valid JSON" in proc.stderr
    proc = cli(home, "finetune", model, "--data", str(tmp_path / "missing.jsonl"), "--no-register", check=False)
    assert proc.returncode != 0 and "missing.jsonl" in proc.stderr


def test_the_memory_bound_is_enforced(tmp_path):
    home = str(tmp_path / "home")
    proc = cli(home, "finetune", tiny(tmp_path), "--data", write_data(tmp_path / "d.jsonl"),
               "--no-register", "--max-memory", "1", "--max-len", "200", check=False)
    assert proc.returncode != 0
    assert "above the bound of 1 MiB" in proc.stderr


def test_a_run_killed_with_sigkill_resumes_and_ends_with_the_same_adapter(tmp_path):
    home = str(tmp_path / "home")
    # Big enough that a step takes a visible time, small enough for CI.
    model = tiny(tmp_path, "m.gguf", "--embd", "256", "--ff", "512", "--layers", "4", "--heads", "4",
                 "--kv-heads", "2")
    data = write_data(tmp_path / "d.jsonl", 48)
    args = ["finetune", model, "--data", data, "--steps", "12", "--batch", "2", "--max-len", "128",
            "--targets", "all", "--dropout", "0.1", "--checkpoint-every", "2", "--seed", "5",
            "--no-register", "-t", "2"]
    whole = str(tmp_path / "whole.gguf")
    cli(home, *args, "--out", whole)

    resumed = str(tmp_path / "resumed.gguf")
    proc = subprocess.Popen([LLMASOS, *args, "--out", resumed], env=env_for(home),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    killed_after = None
    deadline = time.time() + 240
    for line in proc.stderr:
        if "(checkpoint)" in line and not line.startswith("step 12/"):
            killed_after = int(line.split()[1].split("/")[0])
            os.kill(proc.pid, signal.SIGKILL)
            break
        assert time.time() < deadline
    proc.wait(timeout=60)
    assert killed_after is not None, "the run ended before a checkpoint could be interrupted"
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(resumed)
    assert os.path.exists(resumed + ".ckpt")

    again = cli(home, *args, "--out", resumed)
    # It resumed from the last checkpoint (the kill may land after a later one was written).
    line = [l for l in again.stderr.splitlines() if "resumed from the checkpoint" in l]
    assert line and int(line[0].split()[-1]) >= killed_after
    assert "step 1/12" not in again.stderr
    assert open(resumed, "rb").read() == open(whole, "rb").read()
    assert not os.path.exists(resumed + ".ckpt")  # removed once the adapter is written


def test_merge_folds_the_adapter_into_a_new_registered_version(tmp_path):
    home = str(tmp_path / "home")
    model = tiny(tmp_path)
    cli(home, "import", model, "--name", "base", "--version", "1.0.0")
    data = write_data(tmp_path / "data.jsonl")
    adapter = str(tmp_path / "a.gguf")
    cli(home, "finetune", "base", "--data", data, "--out", adapter, "--name", "tuned", "--rank", "4",
        "--targets", "q,o,up", "--steps", "4", "--batch", "2", "--max-len", "96", "--lr", "1e-2", "-t", "2")

    def logits(ref, *extra):
        path = str(tmp_path / f"logits{len(os.listdir(tmp_path))}.bin")
        cli(home, "eval", ref, *extra, "--float-activations", "--tokens", "1,40,77,200", "--logits-out", path)
        return np.fromfile(path, dtype=np.float32)

    # Merged in float32, the new model computes what --lora computes at load.
    exact = str(tmp_path / "exact.gguf")
    proc = cli(home, "merge", "base", "tuned:0.5", "--type", "f32", "--out", exact, "--name", "base-exact")
    assert "merged       6 matrices (6 F32)" in proc.stdout
    assert "registered   base-exact@1.0.0" in proc.stdout
    with_lora = logits("base", "--lora", "tuned:0.5")
    assert not np.allclose(with_lora, logits("base"), atol=1e-4)
    np.testing.assert_allclose(logits("base-exact"), with_lora, rtol=0, atol=1e-5)

    # Every other tensor and the metadata are the base's, byte for byte.
    merged, plain = gguf.GGUFReader(exact), gguf.GGUFReader(model)
    adapted = {f"blk.{l}.{t}.weight" for l in range(2) for t in ("attn_q", "attn_output", "ffn_up")}
    base_tensors = {t.name: t for t in plain.tensors}
    assert {t.name for t in merged.tensors} == set(base_tensors)
    for t in merged.tensors:
        if t.name not in adapted:
            assert t.tensor_type == base_tensors[t.name].tensor_type, t.name
            assert np.array_equal(np.asarray(t.data), np.asarray(base_tensors[t.name].data)), t.name
    assert merged.fields["general.architecture"].contents() == "llama"

    # By default a merged matrix keeps its base tensor's type; lineage names base and adapter.
    proc = cli(home, "merge", "base", "tuned:0.5", "--out", str(tmp_path / "q.gguf"))
    assert "registered   tuned-merged@1.0.0" in proc.stdout
    q = {t.name: t.tensor_type for t in gguf.GGUFReader(str(tmp_path / "q.gguf")).tensors}
    assert all(q[n] == base_tensors[n].tensor_type for n in adapted)
    m = json.loads(cli(home, "show", "tuned-merged", "--json").stdout)
    lin = m.get("manifest", m)["lineage"]
    assert lin["command"] == "merge"
    assert lin["training"]["base"] == "base@1.0.0" and lin["training"]["base_digest"] == sha256(model)
    p = lin["training"]["parameters"]
    assert p["adapter"] == "tuned@1.0.0" and p["adapter_digest"] == sha256(adapter) and p["scale"] == 0.5

    # Bad input: an adapter for another shape, a model as the adapter, an unknown type.
    other = tiny(tmp_path, "other.gguf", "--embd", "64", "--ff", "96")
    proc = cli(home, "merge", other, "tuned", "--no-register", "--out", str(tmp_path / "x.gguf"), check=False)
    assert proc.returncode != 0 and "another base model" in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "x.gguf")
    proc = cli(home, "merge", "base", model, "--no-register", check=False)
    assert proc.returncode != 0 and "not an adapter file" in proc.stderr
    proc = cli(home, "merge", "base", "tuned", "--type", "q9", check=False)
    assert proc.returncode != 0 and "--type: tensor type 'q9'" in proc.stderr
