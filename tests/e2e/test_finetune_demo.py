"""A real fine-tune of the default model (issue 14): LoRA on a small data set made here that
teaches a fixed answer format, `ANSWER: <word>`, for requests to repeat a word. The
held-out loss must fall by at least half, and greedy answers to held-out requests (words never
seen in training) must follow the taught format, which the base model does not.

Every step runs through the CLI on the model scripts/setup installs (an oracle input: missing
is a failure, see oracle_inputs.py).
"""
import json
import re
import subprocess

from oracle_inputs import default_model, require, require_built

TRAIN_WORDS = ["apple", "river", "candle", "mountain", "pencil", "garden", "window", "bridge", "button",
               "forest", "silver", "rocket", "marble", "ladder", "pepper", "castle", "jacket", "meadow",
               "tunnel", "violin", "basket", "carpet", "dragon", "harbor"]
HELD_OUT = ["lantern", "orange", "blanket", "thunder"]
REQUEST = "Repeat the word {w}."


def answer(word):
    return "ANSWER: " + word


def run(*args, timeout=900):
    proc = subprocess.run([str(require_built("llmasos")), *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"llmasos {' '.join(args[:2])} exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc


def greedy_reply(model, word, *lora):
    return run("run", model, *lora, "-p", REQUEST.format(w=word), "-n", "16", "--temp", "0", "-t", "2").stdout.strip()


def test_a_lora_fine_tune_teaches_the_default_model_an_answer_format(tmp_path):
    model = str(require(default_model(), "the default model"))
    data = tmp_path / "format.jsonl"
    with open(data, "w") as f:
        for w in TRAIN_WORDS:
            f.write(json.dumps({"prompt": REQUEST.format(w=w), "completion": answer(w)}) + "\n")

    taught = re.compile(r"^ANSWER: ([a-z]+)")
    before = {w: greedy_reply(model, w) for w in HELD_OUT}
    assert not any(taught.match(r) for r in before.values()), before  # the base model does not know it

    adapter = str(tmp_path / "format.gguf")
    proc = run("finetune", model, "--data", str(data), "--out", adapter, "--no-register", "--rank", "8",
               "--targets", "q,k,v,o", "--steps", "24", "--batch", "2", "--max-len", "48", "--lr", "4e-3",
               "--warmup", "3", "--eval-split", "0.2", "--seed", "5", "-t", "2")
    m = re.search(r"eval loss\s+([0-9.]+) -> ([0-9.]+)", proc.stdout)
    assert m, proc.stdout
    first, last = float(m.group(1)), float(m.group(2))
    assert last <= 0.5 * first, (first, last)

    after = {w: greedy_reply(model, w, "--lora", adapter) for w in HELD_OUT}
    print(f"held-out loss {first} -> {last}; before {before}; after {after}")
    assert all(taught.match(r) for r in after.values()), after  # the format, on every held-out word
    exact = [w for w, r in after.items() if taught.match(r).group(1) == w]
    assert len(exact) >= 3, after  # and, nearly always, the word itself
