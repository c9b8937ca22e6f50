"""The OpenAI and Ollama APIs of `llmasos serve`, driven by the official `openai` and `ollama`
Python clients: chat and text completions (sync, async, streamed, n = 2, include_usage),
Ollama generate and chat (streamed and not), load and unload by keep_alive; with the same seed
a streamed and a complete answer are identical and equal `llmasos run`'s; parameters the
log-probabilities travel with their tokens; embeddings come in float and base64.
"""
import asyncio
import json
import urllib.request

import ollama
import openai
import pytest

from serve_util import DEFAULT_REF, cli, default_home, serving, tiny_home

PROMPT = "Name three colours."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    home = tiny_home(tmp_path_factory.mktemp("serve_api"))
    with serving(home, "--models", "tiny", "--threads", "2", "--ctx-size", "256", "--parallel", "4") as d:
        yield d


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    home = default_home(tmp_path_factory.mktemp("serve_api_smol"))
    with serving(home, "--models", DEFAULT_REF, "--threads", "2", "--ctx-size", "512", "--parallel", "2") as d:
        yield d


def oa(d):
    return openai.OpenAI(base_url=d.url + "/v1", api_key="unused", max_retries=0)


def test_chat_completion_has_the_fields_openai_clients_read(tiny):
    r = oa(tiny).chat.completions.create(model="tiny", messages=[{"role": "user", "content": PROMPT}],
                                         max_tokens=6, temperature=0)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.created > 0
    assert r.model == "tiny" and r.system_fingerprint.startswith("fp_")
    assert len(r.choices) == 1 and r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and 1 <= r.usage.completion_tokens <= 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streamed_chat_equals_the_complete_answer_with_the_same_seed(tiny):
    args = dict(model="tiny", messages=[{"role": "user", "content": PROMPT}], max_tokens=12, seed=42,
                temperature=0.9)
    whole = oa(tiny).chat.completions.create(**args)
    chunks = list(oa(tiny).chat.completions.create(stream=True, stream_options={"include_usage": True}, **args))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_text_completion_and_n_2(tiny):
    r = oa(tiny).completions.create(model="tiny", prompt="abc", max_tokens=5, n=2, seed=3)
    assert r.object == "text_completion" and [c.index for c in r.choices] == [0, 1]
    one = oa(tiny).completions.create(model="tiny", prompt="abc", max_tokens=5, seed=3)
    assert r.choices[0].text == one.choices[0].text  # choice 0 runs with the request's seed
    streamed = list(oa(tiny).completions.create(model="tiny", prompt="abc", max_tokens=5, n=2, seed=3, stream=True))
    for i in range(2):
        assert "".join(c.choices[0].text for c in streamed if c.choices and c.choices[0].index == i) == r.choices[i].text


def test_async_client(tiny):
    async def run():
        client = openai.AsyncOpenAI(base_url=tiny.url + "/v1", api_key="unused", max_retries=0)
        results = await asyncio.gather(*[
            client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": f"q{i}"}],
                                           max_tokens=4, seed=i) for i in range(4)])
        await client.close()
        return results
    for r in asyncio.run(run()):
        assert r.choices[0].message.role == "assistant" and r.usage.completion_tokens >= 1


def test_logprobs_streamed_and_complete(tiny):
    args = dict(model="tiny", messages=[{"role": "user", "content": PROMPT}], max_tokens=6, temperature=0,
                logprobs=True, top_logprobs=3)
    r = oa(tiny).chat.completions.create(**args)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        # Greedy: the chosen token is the most likely one.
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)
        assert entry.bytes == list(entry.token.encode("utf-8", "surrogateescape")) or entry.bytes
    streamed = [e for c in oa(tiny).chat.completions.create(stream=True, **args) if c.choices and c.choices[0].logprobs
                for e in c.choices[0].logprobs.content]
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]
    c = oa(tiny).completions.create(model="tiny", prompt="abc", max_tokens=4, temperature=0, logprobs=2)
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 4
    assert lp.text_offset[0] == 0 and all(len(t) <= 2 for t in lp.top_logprobs)
    o = ollama.Client(host=tiny.url).generate(model="tiny", prompt=PROMPT, logprobs=True, top_logprobs=2,
                                              options={"num_predict": 4, "temperature": 0})
    assert len(o.logprobs) == o.eval_count and all(len(e.top_logprobs) == 2 for e in o.logprobs)


def test_embeddings_in_both_apis(tiny):
    import base64
    import math
    import struct
    r = oa(tiny).embeddings.create(model="tiny", input=["first text", "second"])
    assert [d.index for d in r.data] == [0, 1] and r.usage.prompt_tokens > 0
    for d in r.data:
        assert math.isclose(math.sqrt(sum(x * x for x in d.embedding)), 1.0, rel_tol=1e-4)
    assert r.data[0].embedding != r.data[1].embedding
    b = oa(tiny).embeddings.create(model="tiny", input="first text", encoding_format="base64")
    raw = base64.b64decode(b.data[0].embedding) if isinstance(b.data[0].embedding, str) else None
    vec = list(struct.unpack(f"<{len(raw) // 4}f", raw)) if raw is not None else b.data[0].embedding
    assert vec == pytest.approx(r.data[0].embedding, rel=1e-6)
    client = ollama.Client(host=tiny.url)
    e = client.embed(model="tiny", input=["first text", "second"])
    assert e.embeddings[0] == pytest.approx(r.data[0].embedding, rel=1e-5) and len(e.embeddings) == 2
    old = client.embeddings(model="tiny", prompt="first text")
    assert list(old.embedding) == pytest.approx(r.data[0].embedding, rel=1e-5)


def test_ollama_embed_without_input_loads_the_model_and_embeds_nothing(tiny):
    client = ollama.Client(host=tiny.url)
    client.generate(model="tiny", keep_alive=0)  # unloaded
    e = client.embed(model="tiny", input=[])
    assert e.model == "tiny" and list(e.embeddings) == []
    assert [m.model for m in client.ps().models] == ["tiny:latest"]
    req = urllib.request.Request(tiny.url + "/api/embeddings", data=json.dumps({"model": "tiny"}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert json.loads(r.read()) == {"embedding": []}


def test_unknown_model_is_404_in_both_apis(tiny):
    with pytest.raises(openai.NotFoundError):
        oa(tiny).chat.completions.create(model="absent", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(ollama.ResponseError) as e:
        ollama.Client(host=tiny.url).generate(model="absent", prompt="x")
    assert e.value.status_code == 404


def test_ollama_generate_and_chat_streamed_and_not(tiny):
    client = ollama.Client(host=tiny.url)
    opts = {"num_predict": 8, "seed": 5, "temperature": 0.7}
    whole = client.generate(model="tiny", prompt=PROMPT, options=opts)
    assert whole.done and whole.done_reason in ("stop", "length") and whole.eval_count >= 1
    assert whole.prompt_eval_count > 0 and whole.total_duration > 0
    parts = list(client.generate(model="tiny", prompt=PROMPT, options=opts, stream=True))
    assert "".join(p.response for p in parts) == whole.response and parts[-1].done
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}]
    chat = client.chat(model="tiny", messages=msgs, options=opts)
    assert chat.message.role == "assistant" and chat.done
    parts = list(client.chat(model="tiny", messages=msgs, options=opts, stream=True))
    assert "".join(p.message.content for p in parts) == chat.message.content


def test_ollama_keep_alive_loads_and_unloads(tiny):
    client = ollama.Client(host=tiny.url)
    assert client.generate(model="tiny", keep_alive=0).done_reason == "unload"
    assert client.ps().models == []
    assert client.generate(model="tiny").done_reason == "load"
    assert [m.model for m in client.ps().models] == ["tiny:latest"]


def test_api_answers_equal_llmasos_run(smol):
    """Same prompt and seed: the daemon (streamed and not, both APIs) answers as the CLI does."""
    run = cli(smol.home, "run", DEFAULT_REF, "-p", PROMPT, "-n", "24", "--seed", "7", "--temp", "0.8",
              "-c", "512").stdout.rstrip("\n")
    assert run
    args = dict(model=DEFAULT_REF, messages=[{"role": "user", "content": PROMPT}], max_tokens=24, seed=7,
                temperature=0.8)
    whole = oa(smol).chat.completions.create(**args).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or ""
                       for c in oa(smol).chat.completions.create(stream=True, **args) if c.choices)
    assert whole == run and streamed == run
    o = ollama.Client(host=smol.url).chat(model=DEFAULT_REF, messages=args["messages"],
                                          options={"num_predict": 24, "seed": 7, "temperature": 0.8})
    assert o.message.content == run
