"""LoRA adapters named in API model references ("base+adapter[:scale]") on the real daemon:
concurrent streamed chats with two different adapters and one without each return what they
return alone (different adapters run in the same batched step, unmerged); the prefix cache
shares blocks within one adapter only; the process table, /os/models and vLLM's
lora_requests_info gauge show the adapters; unknown adapters are 404 and adapters for another
base 400, naming them; and the Python SDK takes the reference as any model name. The adapters
are random LoRA files written with the `gguf` package in llama.cpp's layout and imported into
the registry."""
import http.client
import json
import sys
import threading
import time

import gguf
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from oracle_inputs import REPO
from serve_util import NO_END, cli, make_tiny, serving, slow_home, wait_for

sys.path.insert(0, str(REPO / "clients" / "python" / "src"))
from llmasos import Client  # noqa: E402

MESSAGES = [{"role": "user", "content": "Tell me about the weather on the coast in the early spring."}]


def write_random_lora(base, out, seed, rank=4, stems=("attn_q", "attn_v", "ffn_up", "ffn_down"), alpha=8.0):
    """A LoRA adapter for the model file `base` with random A and B."""
    reader = gguf.GGUFReader(base)
    arch = reader.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(out, arch)
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", alpha)
    rng = np.random.default_rng(seed)
    for t in reader.tensors:
        if any(t.name.endswith(f".{stem}.weight") for stem in stems):
            n_in, n_out = int(t.shape[0]), int(t.shape[1])
            w.add_tensor(t.name + ".lora_a", rng.uniform(-0.5, 0.5, (rank, n_in)).astype(np.float32))  # ne [in, rank]
            w.add_tensor(t.name + ".lora_b", rng.uniform(-0.5, 0.5, (n_out, rank)).astype(np.float32))  # ne [rank, out]
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve_lora")
    home = slow_home(tmp)  # `slow`: 4 layers of 256
    for name, seed in [("facts-lora", 1), ("style-lora", 2)]:
        cli(home, "import", write_random_lora(str(tmp / "slow.gguf"), str(tmp / f"{name}.gguf"), seed),
            "--name", name)
    other = make_tiny(str(tmp / "other.gguf"))  # another shape (64 wide)
    cli(home, "import", write_random_lora(other, str(tmp / "other-lora.gguf"), 3), "--name", "other-lora")
    with serving(home, "--models", "slow", "--threads", "2", "--ctx-size", "4096", "--parallel", "4") as d:
        yield d


def post(daemon, path, body):
    host, port = daemon.host_port
    c = http.client.HTTPConnection(host, port, timeout=300)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def chat_alone(daemon, model, max_tokens=24):
    status, data = post(daemon, "/v1/chat/completions",
                        {"model": model, "messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0,
                         "logit_bias": NO_END})
    assert status == 200, data
    return json.loads(data)["choices"][0]["message"]["content"]


def chat_streamed(daemon, model, out, max_tokens=24):
    host, port = daemon.host_port
    c = http.client.HTTPConnection(host, port, timeout=300)
    c.request("POST", "/v1/chat/completions",
              json.dumps({"model": model, "messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0,
                          "stream": True, "logit_bias": NO_END}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, r.read()
    text = ""
    for line in r:
        line = line.decode().strip()
        if line.startswith("data: {"):
            delta = json.loads(line[len("data: "):])["choices"][0]["delta"]
            text += delta.get("content") or ""
    c.close()
    out[model] = text


MODELS = ["slow", "slow+facts-lora", "slow+style-lora:0.5"]


def test_concurrent_streams_with_different_adapters_equal_each_alone(daemon):
    alone = {m: chat_alone(daemon, m) for m in MODELS}
    assert len(set(alone.values())) == 3, alone  # each adapter changes the model
    together = {}
    threads = [threading.Thread(target=chat_streamed, args=(daemon, m, together)) for m in MODELS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert together == alone


def metric(daemon, name):
    host, port = daemon.host_port
    c = http.client.HTTPConnection(host, port, timeout=60)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def cached_tokens(daemon, model):
    return sum(s.value for s in metric(daemon, "llmasos_prefix_cached_prompt_tokens_total")
               if s.labels["model"] == model)


def test_the_prefix_cache_is_shared_within_one_adapter_only(daemon):
    messages = [{"role": "user", "content": " ".join(f"word{i}" for i in range(40))}]

    def run(model):
        status, data = post(daemon, "/v1/chat/completions",
                            {"model": model, "messages": messages, "max_tokens": 2, "temperature": 0})
        assert status == 200, data

    facts, style = "slow@1.0.0+facts-lora@1.0.0", "slow@1.0.0+style-lora@1.0.0"
    base_facts, base_style = cached_tokens(daemon, facts), cached_tokens(daemon, style)
    run("slow+facts-lora")
    run("slow+style-lora")  # the same prompt under another adapter: no hit
    run("slow+facts-lora")  # the same adapter: its blocks (two full 16-token blocks at least)
    wait_for(lambda: cached_tokens(daemon, facts) >= base_facts + 32, "facts-lora's prefix-cache hits")
    assert cached_tokens(daemon, style) == base_style


def test_the_process_table_models_and_metrics_show_running_adapters(daemon):
    host, port = daemon.host_port
    c = http.client.HTTPConnection(host, port, timeout=300)
    c.request("POST", "/v1/chat/completions",
              json.dumps({"model": "slow+facts-lora", "messages": MESSAGES, "max_tokens": 3000, "stream": True,
                          "logit_bias": NO_END}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200
    r.readline()  # the first event: it is running
    try:
        rows = wait_for(lambda: [p for p in daemon.get("/os/processes")["processes"] if p["adapter"]],
                        "a process with an adapter")
        assert rows[0]["adapter"] == "facts-lora@1.0.0" and rows[0]["model"] == "slow"
        info = wait_for(lambda: [s for s in metric(daemon, "vllm:lora_requests_info")
                                 if "facts-lora@1.0.0" in s.labels["running_lora_adapters"].split(",")],
                        "facts-lora among the running adapters")
        assert info[0].labels["max_lora"] == "8"
        assert abs(info[0].value - time.time()) < 60  # the time of the update
        ps = cli(daemon.home, "ps", "--host", host, "--port", str(port)).stdout
        assert "slow@1.0.0+facts-lora@1.0.0" in ps, ps
    finally:
        c.close()  # the client goes away: the process is cancelled
    daemon.wait_idle()
    models = {(m["name"], m["version"]): m for m in daemon.get("/os/models")["models"]}
    names = [a["name"] for a in models[("slow", "1.0.0")]["adapters"]]
    assert names[0] == "facts-lora@1.0.0", names  # the most recently used first
    assert models[("slow", "1.0.0")]["max_adapters"] == 8


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", {"messages": MESSAGES}),
    ("/api/chat", {"messages": MESSAGES, "stream": False}),
    ("/v1/completions", {"prompt": "hello"}),
])
def test_unknown_adapters_are_404_and_foreign_ones_400_naming_them(daemon, path, body):
    status, data = post(daemon, path, dict(body, model="slow+no-such-lora", max_tokens=2))
    assert status == 404 and b"no-such-lora" in data, data
    status, data = post(daemon, path, dict(body, model="slow+other-lora", max_tokens=2))
    assert status == 400 and b"other-lora" in data and b"slow@1.0.0" in data, data
    status, data = post(daemon, path, dict(body, model="slow+slow", max_tokens=2))  # not an adapter
    assert status == 400 and b"not an adapter" in data, data


def test_ollama_and_the_sdk_take_base_plus_adapter(daemon):
    want = chat_alone(daemon, "slow+facts-lora", max_tokens=8)
    status, data = post(daemon, "/api/chat", {"model": "slow+facts-lora", "messages": MESSAGES, "stream": False,
                                              "options": {"num_predict": 8, "temperature": 0}})
    assert status == 200, data
    assert json.loads(data)["model"] == "slow+facts-lora"
    with Client(daemon.url) as client:
        reply = client.chat(MESSAGES, model="slow+facts-lora", max_tokens=8, temperature=0,
                            logit_bias=NO_END)
    assert reply.text == want
