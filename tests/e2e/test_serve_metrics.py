"""`llmasos serve`'s GET /metrics, parsed with prometheus_client's text parser: every family
is well formed, request counts by route and status, tokens and latency histograms move by
what the requests did (the tokens by exactly the usage the API reported), and the gauges that
cluster routers read carry vLLM's names, labels and ranges."""
import http.client
import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serve_util import serving, tiny_home

MODEL = "tiny@1.0.0"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    home = tiny_home(tmp_path_factory.mktemp("serve_metrics"))
    with serving(home, "--models", "tiny", "--threads", "1", "--ctx-size", "128", "--parallel", "2") as d:
        yield d


def request(daemon, method, path, body=None):
    host, port = daemon.host_port
    c = http.client.HTTPConnection(host, port, timeout=60)
    c.request(method, path, body=json.dumps(body) if body is not None else None)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Content-Type"), data


def scrape(daemon):
    """{family name: family} and {(sample name, frozenset(labels)): value}."""
    status, ctype, data = request(daemon, "GET", "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(data.decode())}
    samples = {}
    for f in families.values():
        for s in f.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = s.value
    return families, samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def complete(daemon, max_tokens=6, stream=False):
    status, _, data = request(daemon, "POST", "/v1/completions",
                              {"model": "tiny", "prompt": "one two three", "max_tokens": max_tokens,
                               "temperature": 0, "stream": stream,
                               "stream_options": {"include_usage": True} if stream else None})
    assert status == 200, data
    if not stream:
        return json.loads(data)["usage"]
    events = [json.loads(line[len(b"data: "):]) for line in data.split(b"\n")
              if line.startswith(b"data: {")]
    return [e for e in events if e.get("usage")][-1]["usage"]


def test_exposition_parses_and_has_every_family(daemon):
    families, _ = scrape(daemon)
    # A sample whose name matches no TYPE line would make a family of type "unknown".
    assert [f.name for f in families.values() if f.type == "unknown"] == []
    for name in ["llmasos_http_requests", "llmasos_prompt_tokens", "llmasos_generation_tokens",
                 "llmasos_time_to_first_token_seconds", "llmasos_inter_token_latency_seconds",
                 "llmasos_e2e_request_latency_seconds", "llmasos_queue_time_seconds", "llmasos_processes",
                 "llmasos_kv_cache_usage_ratio", "llmasos_prefix_cache_hit_rate", "llmasos_preemptions",
                 "llmasos_model_loads", "llmasos_model_unloads", "vllm:num_requests_waiting",
                 "vllm:num_requests_running", "vllm:kv_cache_usage_perc", "vllm:cache_config_info",
                 "vllm:lora_requests_info"]:
        assert name in families, name
    assert families["llmasos_time_to_first_token_seconds"].type == "histogram"
    assert families["llmasos_http_requests"].type == "counter"
    assert families["vllm:kv_cache_usage_perc"].type == "gauge"


def test_requests_tokens_and_histograms_move_by_what_the_requests_did(daemon):
    _, before = scrape(daemon)
    usage = [complete(daemon, 6), complete(daemon, 5, stream=True)]
    assert request(daemon, "GET", "/v1/nothing")[0] == 404
    assert request(daemon, "BREW", "/v1/nothing")[0] == 404
    _, after = scrape(daemon)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    ok = dict(route="/v1/completions", method="POST", status="200", model=MODEL, tenant="default")
    assert delta("llmasos_http_requests_total", **ok) == 2
    assert delta("llmasos_http_requests_total", route="none", method="GET", status="404", model="",
                 tenant="default") == 1
    # Methods outside HTTP's own fold into one label value.
    assert delta("llmasos_http_requests_total", route="none", method="other", status="404", model="",
                 tenant="default") == 1
    who = dict(model=MODEL, tenant="default")
    assert delta("llmasos_prompt_tokens_total", **who) == sum(u["prompt_tokens"] for u in usage)
    assert delta("llmasos_generation_tokens_total", **who) == sum(u["completion_tokens"] for u in usage)
    assert delta("llmasos_time_to_first_token_seconds_count", **who) == 2
    assert delta("llmasos_queue_time_seconds_count", **who) == 2
    assert delta("llmasos_e2e_request_latency_seconds_count", **who) == 2
    assert delta("llmasos_e2e_request_latency_seconds_sum", **who) > 0
    gaps = sum(max(u["completion_tokens"] - 1, 0) for u in usage)
    assert delta("llmasos_inter_token_latency_seconds_count", **who) == gaps
    # Buckets are cumulative: +Inf holds every observation.
    assert value(after, "llmasos_time_to_first_token_seconds_bucket", le="+Inf", **who) == \
        value(after, "llmasos_time_to_first_token_seconds_count", **who)
    ended = sum(delta("llmasos_processes_ended_total", reason=r, **who) for r in ("length", "end_of_generation"))
    assert ended == 2


def test_scrape_itself_is_counted(daemon):
    _, before = scrape(daemon)
    _, after = scrape(daemon)
    labels = dict(route="/metrics", method="GET", status="200", model="", tenant="default")
    assert value(after, "llmasos_http_requests_total", **labels) == \
        value(before, "llmasos_http_requests_total", **labels) + 1


def test_router_gauges_have_vllm_names_labels_and_ranges(daemon):
    complete(daemon)
    families, samples = scrape(daemon)
    (info,) = families["vllm:cache_config_info"].samples
    assert info.value == 1 and info.labels["model_name"] == MODEL
    # LoRA: no adapter running or waiting; the value is the time of the update.
    assert families["vllm:lora_requests_info"].type == "gauge"
    (lora,) = families["vllm:lora_requests_info"].samples
    assert lora.labels == {"running_lora_adapters": "", "waiting_lora_adapters": "", "max_lora": "8",
                           "model_name": MODEL}
    assert abs(lora.value - time.time()) < 60
    assert int(info.labels["block_size"]) == 16
    num_blocks = int(info.labels["num_gpu_blocks"])
    assert num_blocks > 0
    usage = value(samples, "vllm:kv_cache_usage_perc", model_name=MODEL)
    assert 0 <= usage <= 1
    # Idle now: nothing running or waiting, and the used blocks agree with the pool's gauges.
    assert value(samples, "vllm:num_requests_running", model_name=MODEL) == 0
    assert value(samples, "vllm:num_requests_waiting", model_name=MODEL) == 0
    used = value(samples, "llmasos_kv_blocks", model=MODEL, state="used")
    assert usage == pytest.approx(used / num_blocks)
    total = sum(value(samples, "llmasos_kv_blocks", model=MODEL, state=s) for s in ("used", "cached", "free"))
    assert total == num_blocks
    assert value(samples, "llmasos_model_loads_total", model=MODEL) == 1
    assert value(samples, "llmasos_model_loaded", model=MODEL) == 1
    assert 0 <= value(samples, "llmasos_prefix_cache_hit_rate", model=MODEL) <= 1
