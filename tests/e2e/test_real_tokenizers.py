"""Tokenizer oracles on the real vocabularies of the real files (scripts/fetch-test-models),
over the tokenizer corpus (tests/e2e/data) and the strings below: LLMasOS's tokenize_tool on
the GGUF against an independent tokenizer built from the same GGUF's vocabulary.

* Gemma 3 270M: SentencePiece BPE (262,144 tokens, byte fallback, no dummy prefix: the file's
  add_space_prefix is false). Oracle: the `sentencepiece` package with a ModelProto made from
  the GGUF's tokens, scores and types. llama.cpp's converter stores Gemma's user-defined pieces
  with literal spaces (the SentencePiece model's "▁▁▁▁" is "    " in the GGUF); the proto gets
  them back as "▁", so that sentencepiece matches them where Gemma's own tokenizer does.
  SentencePiece never matches control tokens in text, so with special tokens parsed the
  reference splits the text at them first.
* Qwen2.5-Coder 0.5B: byte-level BPE with the "qwen2" pre-tokenizer. Oracle: the `tokenizers`
  package with a BPE model of the GGUF's tokens and merges, Qwen2's pre-tokenizer regex and
  the byte-level mapping, its control tokens as special added tokens and its user-defined
  ones (<tool_call>) as plain added tokens. Like llama.cpp, no NFC normaliser (the GGUF does
  not carry Qwen2's).

For every string: the ids (with and without special tokens parsed), the decoded text (the
exact input, invalid UTF-8 replaced, since both vocabularies can spell every byte), the
incremental decoder's text, and the reference's decode of the same ids.
"""
import base64
import re

import gguf
import pytest

from oracle_inputs import real_model
from test_tokenizer_oracle import QWEN2_REGEX, corpus_records, run_tool

GEMMA = "gemma-3-270m-q4_k_m"
QWEN = "qwen2.5-coder-0.5b-instruct-q4_k_m"

CONTROL, USER_DEFINED = 3, 4
SPACE = "\u2581"

EXTRA = [
    b"",
    b" ",
    b"  ",
    b"\n",
    b"     five spaces, then" + b" " * 40 + b"forty, then a tab run\t\t\t\t\tend",
    b"\t\t\ttabs\t\t and\n\n\n\nnewlines\r\n\r\nCRLF \n \n  \n",
    b"def f(x):\n    if x:\n        return [i  for i in range(x)]\n\n\n    return None\n",
    b"<code>x = 1</code> <b>bold</b> <start_of_turn>user\nhi<end_of_turn>\n<start_of_image>",
    b"<bos><eos><pad><unk><mask> <unused0><unused6241>",
    b"<|im_start|>system\nYou are Qwen.<|im_end|>\n<tool_call>{\"name\": \"f\"}</tool_call>"
    b"<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|><|endoftext|>",
    "private use \ue000\uf8ff, rare \U00020000\U0002A6A5, controls \x01\x02\x7f, "
    "zero width a\u200bb\u200d, BOM \ufeff".encode(),
    "emoji \U0001F9D1\u200D\U0001F91D\u200D\U0001F9D1 \U0001F468\u200D\U0001F469\u200D\U0001F467 "
    "\U0001F3F3\uFE0F\u200D\U0001F308 \U0001FAE0\U0001FABF".encode(),
    b"numbers 3.14159265358979 1e-10 -0 +42 1_000_000 0b1010 0xDEADBEEF 2024-12-06 99.9%",
    "digits \u0661\u0662\u0663 \u0967\u0968 \uff11\uff12 12345678901234567890".encode(),
    b"SELECT name, COUNT(*) FROM orders WHERE total > 100 GROUP BY name;",
    b"\xff\xfe invalid \xc3\x28 utf-8 \xe2\x82 cut \xf0\x9f\x98",
    "  mixed\u3000ideographic\u00a0nbsp\u2009thin  ".encode(),
]


def strings():
    return corpus_records() + EXTRA


def gguf_vocab(path):
    fields = gguf.GGUFReader(path).fields

    def strs(key):
        f = fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def nums(key, kind):
        f = fields[key]
        return [kind(f.parts[i][0]) for i in f.data]

    vocab = {"tokens": strs("tokenizer.ggml.tokens"),
             "types": nums("tokenizer.ggml.token_type", int)}
    if "tokenizer.ggml.scores" in fields:
        vocab["scores"] = nums("tokenizer.ggml.scores", float)
    if "tokenizer.ggml.merges" in fields:
        vocab["merges"] = strs("tokenizer.ggml.merges")
    vocab["add_space_prefix"] = bool(fields["tokenizer.ggml.add_space_prefix"].contents()) \
        if "tokenizer.ggml.add_space_prefix" in fields else None
    return vocab


def ours(path, texts, parse_special, add_special=False):
    return run_tool(path, [{"text_b64": base64.b64encode(x).decode(), "parse_special": parse_special,
                            "add_special": add_special} for x in texts])


def control_splitter(vocab):
    """Splits text at control tokens, longest first, as the tokenizers under test do."""
    texts = sorted({t for t, ty in zip(vocab["tokens"], vocab["types"]) if ty == CONTROL and t},
                   key=len, reverse=True)
    index = {}
    for i, (t, ty) in enumerate(zip(vocab["tokens"], vocab["types"])):
        if ty == CONTROL:
            index.setdefault(t, i)
    pattern = re.compile("|".join(re.escape(t) for t in texts))

    def split(s):
        at = 0
        for m in pattern.finditer(s):
            yield s[at:m.start()], None
            yield None, index[m.group()]
            at = m.end()
        yield s[at:], None
    return split


def assert_ids_match(texts, answers, reference_ids):
    mismatches = []
    for x, a in zip(texts, answers):
        s = x.decode("utf-8", errors="replace")
        ref = reference_ids(s)
        if a["ids"] != ref:
            mismatches.append((s[:60], a["ids"][:16], ref[:16]))
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ: {mismatches[:4]}"


def check_round_trip(texts, answers, reference_decode):
    for x, a in zip(texts, answers):
        s = x.decode("utf-8", errors="replace")
        decoded = base64.b64decode(a["decoded_b64"])
        assert decoded == s.encode("utf-8"), (x[:60], decoded[:60])
        assert base64.b64decode(a["incremental_b64"]) == decoded
        assert reference_decode(a["ids"]) == s, (x[:60], a["ids"][:20])


# --- Gemma 3: sentencepiece ---------------------------------------------------------------

@pytest.fixture(scope="module")
def gemma():
    path = real_model(GEMMA)
    vocab = gguf_vocab(path)
    return path, vocab, sentencepiece_from(vocab)


def sentencepiece_from(vocab):
    import sentencepiece as spm  # scripts/requirements-test.txt; a missing oracle fails, never skips
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.vocab_size = len(vocab["tokens"])
    # Gemma's own: no dummy prefix (the file says add_space_prefix false), whitespace kept.
    assert vocab["add_space_prefix"] is False
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = False
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    for i, (text, kind, score) in enumerate(zip(vocab["tokens"], vocab["types"], vocab["scores"])):
        p = m.pieces.add()
        p.piece = text.replace(" ", SPACE) if kind == USER_DEFINED else text
        p.score = score
        p.type = kind
        if kind == 2:
            m.trainer_spec.unk_id = i
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(m.SerializeToString())
    return sp


def test_gemma_vocabulary_is_what_the_oracle_assumes(gemma):
    _, vocab, sp = gemma
    assert len(vocab["tokens"]) == sp.get_piece_size() == 262144
    assert "merges" not in vocab
    # Runs of spaces, tabs and newlines are user-defined pieces, spelled with literal spaces.
    kinds = dict(zip(vocab["tokens"], vocab["types"]))
    assert kinds["    "] == kinds["\n\n"] == kinds["\t\t"] == USER_DEFINED
    assert sum(t == 6 for t in vocab["types"]) == 256  # a byte token for every byte


@pytest.mark.parametrize("parse_special", [False, True])
def test_gemma_ids_match_sentencepiece(gemma, parse_special):
    path, vocab, sp = gemma
    texts = strings()
    answers = ours(path, texts, parse_special)
    split = control_splitter(vocab)

    def reference(s):
        if not parse_special:
            return sp.encode(s)
        ref = []
        for raw, special in split(s):
            ref += [special] if special is not None else sp.encode(raw)
        return ref
    assert_ids_match(texts, answers, reference)
    if not parse_special:
        check_round_trip(texts, answers, sp.decode)


def test_gemma_adds_bos_and_no_space_prefix(gemma):
    path, _, sp = gemma
    texts = [b"Hello world", b" leading space", b"\n\nnewlines"]
    for x, a in zip(texts, ours(path, texts, parse_special=False, add_special=True)):
        assert a["ids"] == [2] + sp.encode(x.decode()), x


# --- Qwen2.5: tokenizers -----------------------------------------------------------------

@pytest.fixture(scope="module")
def qwen():
    path = real_model(QWEN)
    vocab = gguf_vocab(path)
    return path, vocab, hf_tokenizer_from(vocab)


def hf_tokenizer_from(vocab):
    import tokenizers
    from tokenizers import AddedToken, decoders, models, pre_tokenizers
    ids = {}
    for i, t in enumerate(vocab["tokens"]):
        ids.setdefault(t, i)
    merges = [tuple(m.split(" ", 1)) for m in vocab["merges"]]
    tok = tokenizers.Tokenizer(models.BPE(vocab=ids, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(QWEN2_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    kinds = list(zip(vocab["tokens"], vocab["types"]))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, k in kinds if k == CONTROL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, k in kinds if k == USER_DEFINED])
    return tok


@pytest.mark.parametrize("parse_special", [False, True])
def test_qwen_ids_match_tokenizers(qwen, parse_special):
    path, vocab, hf = qwen
    texts = strings()
    answers = ours(path, texts, parse_special)
    hf.encode_special_tokens = not parse_special
    assert_ids_match(texts, answers, lambda s: hf.encode(s, add_special_tokens=False).ids)
    check_round_trip(texts, answers, lambda ids: hf.decode(ids, skip_special_tokens=False))


def test_qwen_keeps_tool_call_whole_without_special_parsing(qwen):
    path, vocab, _ = qwen
    (a,) = ours(path, [b"<tool_call>"], parse_special=False)
    assert a["ids"] == [vocab["tokens"].index("<tool_call>")]
    (a,) = ours(path, [b"<|im_start|>"], parse_special=False)
    assert vocab["tokens"].index("<|im_start|>") not in a["ids"]
