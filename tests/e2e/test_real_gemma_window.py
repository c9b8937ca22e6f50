"""Gemma 3 270M (18 layers, every 6th global, window 512) served by the daemon: the paged KV
memory splits its layers into one global group and five sliding groups (docs/kv-memory.md),
and the sliding groups give their pages back as positions leave the window. Shown on a run
that decodes well past 512 positions:

* while it decodes, the process holds the global group's pages for every position plus at
  most one window (and a chunk) in each sliding group, fewer than every layer at every
  position would take (/os/processes);
* /os/memory counts the pages given back: five sliding groups, each every block wholly
  before the last 512 positions of the last step;
* the text equals the greedy continuation of `llmasos eval`, which runs the same prompt
  through the single-sequence Context that keeps every position of every layer.
"""
import base64
import json
import re
import subprocess
import threading
import time

import pytest

from oracle_inputs import real_model, require_built
from serve_util import cli, serving
from test_real_tokenizers import gguf_vocab
from test_serve_os import call
from test_tokenizer_oracle import run_tool

GEMMA = "gemma-3-270m-q4_k_m"
WINDOW = 512
BLOCK = 16
SLIDING_GROUPS = 5
MAX_TOKENS = 150
EOG = {1, 106}  # <eos>, <end_of_turn>


def decode(pieces, ids):
    """SentencePiece's decoding of a continuation: byte tokens are bytes, U+2581 a space."""
    out = b""
    for i in ids:
        m = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", pieces[i])
        out += bytes([int(m.group(1), 16)]) if m else pieces[i].replace("\u2581", " ").encode()
    return out.decode("utf-8", errors="replace")


@pytest.fixture(scope="module")
def gemma():
    return real_model(GEMMA)


def test_sliding_groups_hold_their_window_and_decode_as_the_unbounded_context(gemma, tmp_path):
    text = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(28))
    [answer] = run_tool(gemma, [{"text_b64": base64.b64encode(text.encode()).decode(),
                                 "parse_special": False, "add_special": True}])
    ids = answer["ids"]
    assert 400 < len(ids) < WINDOW, len(ids)  # the prompt fits the window; decoding leaves it

    # The oracle: every position of every layer kept (arch::Context).
    r = subprocess.run(
        [str(require_built("llmasos")), "eval", str(gemma), "-t", "2", "--tokens", ",".join(map(str, ids)),
         "--greedy", str(MAX_TOKENS)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    greedy = json.loads(r.stdout)["greedy"]
    for n, t in enumerate(greedy):
        if t in EOG:
            greedy = greedy[:n]
            break
    assert len(ids) + len(greedy) > WINDOW + 4 * BLOCK, "the oracle ended before leaving the window"
    want = decode(gguf_vocab(gemma)["tokens"], greedy)

    home = str(tmp_path / "home")
    cli(home, "import", str(gemma), "--name", "gemma")
    with serving(home, "--models", "gemma", "--threads", "2", "--ctx-size", "1024") as d:
        result = {}

        def complete():
            result["r"] = call(d, "POST", "/v1/completions",
                               {"model": "gemma", "prompt": text, "max_tokens": MAX_TOKENS, "temperature": 0})

        worker = threading.Thread(target=complete)
        worker.start()
        samples = []  # (positions, resident pages) of the running process
        while worker.is_alive():
            status, body, _ = call(d, "GET", "/os/processes")
            assert status == 200, body
            for row in body["processes"]:
                samples.append((row["prompt_tokens"] + row["generated_tokens"], row["kv_blocks"]["resident"]))
            time.sleep(0.05)
        worker.join()
        status, body, _ = result["r"]
        assert status == 200, body
        assert body["usage"]["prompt_tokens"] == len(ids), body["usage"]
        generated = body["usage"]["completion_tokens"]
        assert body["choices"][0]["text"] == want

        # Pages of one group for n positions; a sliding group holds at most the window plus
        # one prefill chunk (the prompt, here) of them.
        def pages(n):
            return (n + BLOCK - 1) // BLOCK
        past_window = [(n, held) for n, held in samples if n > WINDOW + 4 * BLOCK]
        assert past_window, f"no sample of the process past {WINDOW + 4 * BLOCK} positions: {samples[-5:]}"
        for n, held in samples:
            assert held <= pages(n) + SLIDING_GROUPS * (pages(WINDOW - 1 + len(ids)) + 1), (n, held)
        for n, held in past_window:
            assert held < (1 + SLIDING_GROUPS) * pages(n), (n, held)

        [inst] = call(d, "GET", "/os/memory")[1]["instances"]
        # The last step wrote positions up to len(ids) + generated - 2, so the next one is
        # last_next: each sliding group gave back every block wholly before last_next + 1 - WINDOW.
        last_next = len(ids) + generated - 1
        assert inst["kv"]["window_dropped_blocks"] == SLIDING_GROUPS * ((last_next + 1 - WINDOW) // BLOCK), inst
        assert inst["kv"]["used_blocks"] == 0, inst
