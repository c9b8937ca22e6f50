"""Oracle test for the byte-level BPE tokenizer: LLMasOS's tokenize_tool against the
`tokenizers` package on SmolLM2's tokenizer.json, over tests/e2e/data/tokenizer_corpus.txt.

What is compared, for every record x of the corpus (raw bytes; some are not valid UTF-8):
  * ids: ours(x) == HF(s) where s = x.decode("utf-8", errors="replace"). HF takes str, so it
    sees s; our tokenizer replaces each maximal ill-formed subpart with U+FFFD exactly as
    Python does, so feeding it the raw bytes must give the same ids. Both with special tokens
    parsed (HF default) and with them as plain text (HF encode_special_tokens = True).
  * round trip: Decode(Encode(x)) == s.encode() minus the bytes SmolLM2 has no token for
    (0x04 0x06 0x13 0x14 0x16 0x1D 0xC0 0xC1 0xF1 0xF2 0xF5..0xFF: the reference drops them,
    having no unk token). For valid UTF-8 without such bytes that is exactly x.
  * Decode read as UTF-8 (with replacement) equals both the incremental decoder's output and
    HF's decode.

The vocab comes from the default model's GGUF ($LLMASOS_HOME/models, installed by
scripts/setup) and, independently, from tokenizer.json itself (tests/data). A missing one fails
the test (see oracle_inputs.py).
"""
import base64
import json
import subprocess

import pytest
import tokenizers

from oracle_inputs import REPO, TOKENIZER_JSON, default_model, require, require_built

CORPUS = REPO / "tests" / "e2e" / "data" / "tokenizer_corpus.txt"
MODEL = default_model()


def tool_path():
    return require_built("tokenize_tool")


def corpus_records():
    lines = CORPUS.read_bytes().split(b"\n")
    records = list(lines)
    # Multi-line records: newline runs, indentation after newlines, and the whole file.
    for start in range(0, len(lines), 3):
        records.append(b"\n".join(lines[start:start + 5]))
    records.append(CORPUS.read_bytes())
    return records


@pytest.fixture(scope="module")
def hf():
    return tokenizers.Tokenizer.from_file(str(require(TOKENIZER_JSON, "reference tokenizer.json")))


def run_tool(model, requests):
    lines = "".join(json.dumps(r) + "\n" for r in requests)
    proc = subprocess.run([str(tool_path()), str(model)], input=lines.encode(),
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    answers = [json.loads(l) for l in proc.stdout.decode().splitlines()]
    assert len(answers) == len(requests)
    for a in answers:
        assert "error" not in a, a
    return answers


def model_sources():
    return ["gguf", "json"]


@pytest.fixture(scope="module", params=model_sources())
def model(request):
    if request.param == "gguf":
        return require(MODEL, "the default model")
    return require(TOKENIZER_JSON, "reference tokenizer.json")


def missing_bytes(hf_tok):
    """Bytes whose GPT-2 byte-map character is not a token of the vocab."""
    printable = (list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100)))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    vocab = hf_tok.get_vocab()
    return {b for b, ch in mapping.items() if ch not in vocab}


def b64(data):
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text)


@pytest.mark.parametrize("parse_special", [True, False])
def test_ids_match_reference_and_decode_round_trips(hf, model, parse_special):
    records = corpus_records()
    answers = run_tool(model, [{"text_b64": b64(x), "parse_special": parse_special}
                               for x in records])
    hf.encode_special_tokens = not parse_special
    dropped = missing_bytes(hf)
    assert dropped, "expected SmolLM2 to lack some byte tokens; the test premise changed"
    mismatches = []
    for x, ours in zip(records, answers):
        s = x.decode("utf-8", errors="replace")
        ref = hf.encode(s, add_special_tokens=False).ids
        if ours["ids"] != ref:
            mismatches.append((x[:80], ours["ids"][:20], ref[:20]))
            continue
        decoded = unb64(ours["decoded_b64"])
        expected = bytes(b for b in s.encode("utf-8") if b not in dropped)
        assert decoded == expected, (x[:80], decoded[:80])
        valid = s.encode("utf-8") == x
        if valid and not any(b in dropped for b in x):
            assert decoded == x
        # The incremental decoder emits text: Decode's bytes with invalid runs replaced.
        as_text = decoded.decode("utf-8", errors="replace")
        assert unb64(ours["incremental_b64"]) == as_text.encode("utf-8")
        assert as_text == hf.decode(ref, skip_special_tokens=False)
    assert not mismatches, f"{len(mismatches)} of {len(records)} differ: {mismatches[:5]}"


def test_corpus_covers_what_it_claims():
    data = CORPUS.read_bytes()
    text = data.decode("utf-8", errors="replace")
    assert "\ufffd" in text                          # invalid UTF-8
    assert any(0x4E00 <= ord(c) <= 0x9FFF for c in text)  # CJK
    assert any(ord(c) >= 0x1F300 for c in text)      # emoji
    assert "\t" in text and "   " in text and "\n\n" in data.decode(errors="replace")
    assert any(c.isdigit() for c in text) and "é" in text


def test_gguf_vocab_metadata(hf):
    require(MODEL, "the default model")
    proc = subprocess.run([str(tool_path()), str(MODEL), "--vocab-info"], capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    info = json.loads(proc.stdout)
    assert info["model"] == "gpt2" and info["pre"] == "smollm"
    assert info["num_tokens"] == hf.get_vocab_size()
    assert info["bos"] == hf.token_to_id("<|im_start|>")
    assert info["eos"] == hf.token_to_id("<|im_end|>")
    assert sorted(info["eog"]) == sorted([hf.token_to_id("<|im_end|>"),
                                          hf.token_to_id("<|endoftext|>")])
    assert info["has_chat_template"]
    assert info["add_bos"] is False and info["add_space_prefix"] is False


# The published pre-tokenizer configurations, built from the `tokenizers` package's own
# components: our PCRE2 pre-tokenizers must cut every corpus record into the same pieces.
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def reference_pre_tokenizer(name):
    pt = tokenizers.pre_tokenizers
    byte_level = pt.ByteLevel(add_prefix_space=False, use_regex=True)
    if name == "gpt2":
        return byte_level
    if name == "smollm":
        return pt.Sequence([pt.Digits(individual_digits=True), byte_level])
    regex = LLAMA3_REGEX if name == "llama3" else QWEN2_REGEX
    return pt.Split(tokenizers.Regex(regex), behavior="isolated")


@pytest.mark.parametrize("name", ["gpt2", "smollm", "llama3", "qwen2"])
def test_pre_tokenizer_pieces_match_reference(name):
    require(TOKENIZER_JSON, "reference tokenizer.json")
    records = corpus_records()
    answers = run_tool(TOKENIZER_JSON, [{"text_b64": b64(x), "pre_tokenizer": name}
                                        for x in records])
    ref_pre = reference_pre_tokenizer(name)
    mismatches = []
    for x, ours in zip(records, answers):
        s = x.decode("utf-8", errors="replace")
        # Offsets are in characters of s; slicing s gives the raw (unmapped) pieces.
        ref = [s[a:b] for _, (a, b) in ref_pre.pre_tokenize_str(s)]
        got = [unb64(p).decode("utf-8") for p in ours["pieces_b64"]]
        if got != ref:
            mismatches.append((s[:60], got[:12], ref[:12]))
    assert not mismatches, f"{len(mismatches)} of {len(records)} differ: {mismatches[:3]}"
