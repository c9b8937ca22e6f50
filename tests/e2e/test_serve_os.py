"""The /os/* admin surface of `llmasos serve`: the process table (columns, filters, one
process by id), renice of a running process and kill (the client's stream ends with an error
that says it was killed, and its KV blocks are freed); bad ids, filters and bodies are 400s;
memory per instance, the scheduling policy switched at run time, models pinned and unpinned;
the shell's ps, kill, renice and sched against the daemon.

A process must stay alive while the test looks at it: the default model generates up to 4000
tokens with its end-of-generation tokens banned (logit_bias), which takes far longer than the
test needs; the test kills it."""
import json
import os
import re
import subprocess
import urllib.error
import urllib.request

import pytest

from serve_util import DEFAULT_REF, LLMASOS, NO_END, LongStream, cli, default_home, serving, wait_for

MODEL_NAME = DEFAULT_REF.split(":")[0]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    home = default_home(tmp_path_factory.mktemp("serve_os"))
    with serving(home, "--models", DEFAULT_REF, "--threads", "1", "--ctx-size", "4096", "--parallel", "2") as d:
        yield d


def call(d, method, path, body=None):
    """(status, parsed JSON body, headers) of one request."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(d.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read()), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


def table(d, query=""):
    status, body, _ = call(d, "GET", "/os/processes" + query)
    assert status == 200, body
    return body["processes"]


def test_the_table_is_empty_when_idle_and_bad_requests_are_400(daemon):
    daemon.wait_idle()
    assert table(daemon) == []
    for query, param in [("?state=finished", "state"), ("?state=running&state=queued", "state"),
                         ("?colour=red", "colour"), ("?tenant=%zz", "")]:
        status, body, _ = call(daemon, "GET", "/os/processes" + query)
        assert status == 400, query
        assert body["error"]["param"] == (param or None), body
    for bad in ["abc", "1", "0-1", "1-x"]:
        status, body, _ = call(daemon, "GET", "/os/processes/" + bad)
        assert status == 400 and "INSTANCE-PID" in body["error"]["message"], body
    status, body, _ = call(daemon, "GET", "/os/processes/1-999999")
    assert status == 404 and "no live process 1-999999" in body["error"]["message"]
    status, body, _ = call(daemon, "DELETE", "/os/processes/999-1")
    assert status == 404
    status, body, headers = call(daemon, "PUT", "/os/processes/1-1", {})
    assert status == 405 and headers["Allow"] == "DELETE, GET, PATCH"


def test_a_running_process_is_listed_filtered_reniced_and_killed(daemon):
    stream = LongStream(daemon, "Once upon a time")
    rows = wait_for(lambda: [r for r in table(daemon) if r["state"] == "running" and r["generated_tokens"] > 0],
                    "the process to run")
    assert len(rows) == 1
    row = rows[0]
    assert re.fullmatch(r"\d+-\d+", row["id"]) and row["id"] == f'{row["instance"]}-{row["pid"]}'
    assert row["model"] == MODEL_NAME and row["version"]
    assert row["tenant"] == "default" and row["priority"] == 0 and row["policy"] == "fcfs"
    assert row["kind"] == "generate" and row["max_tokens"] == 4000
    assert row["prompt_tokens"] > 0 and row["kv_blocks"]["resident"] > 0 and row["kv_blocks"]["swapped"] == 0
    assert row["preemptions"] == 0 and row["age_seconds"] >= row["running_seconds"] > 0
    assert row["adapter"] is None  # the base model (test_serve_lora: with adapters)
    pid = row["id"]

    # Filters.
    ids = lambda q: [r["id"] for r in table(daemon, q)]
    assert pid in ids("?state=running") and pid in ids("?tenant=default") and pid in ids("?model=" + MODEL_NAME)
    assert pid in ids(f'?model={MODEL_NAME}@{row["version"]}&state=running&tenant=default')
    assert ids("?state=queued") == [] and ids("?tenant=nobody") == [] and ids("?model=other") == []
    assert ids(f"?model={MODEL_NAME}@0.0.0-none") == []

    status, one, _ = call(daemon, "GET", "/os/processes/" + pid)
    assert status == 200 and one["id"] == pid and one["state"] == "running"

    # Renice, while it runs: bad bodies first.
    for body, param in [({"priority": 5000}, "priority"), ({}, "priority"), ({"priority": 1, "x": 1}, "x"),
                        (b"{", None)]:
        status, err, _ = call(daemon, "PATCH", "/os/processes/" + pid, body)
        assert status == 400 and err["error"]["param"] == param, err
    status, reniced, _ = call(daemon, "PATCH", "/os/processes/" + pid, {"priority": 7})
    assert status == 200 and reniced["priority"] == 7 and reniced["id"] == pid
    wait_for(lambda: call(daemon, "GET", "/os/processes/" + pid)[1].get("priority") == 7, "the renice")
    status, one, _ = call(daemon, "GET", "/os/processes/" + pid)
    assert one["state"] == "running" and one["generated_tokens"] < 4000

    # Kill: the stream ends with an error that says so; the process and its blocks are gone.
    status, killed, _ = call(daemon, "DELETE", "/os/processes/" + pid)
    assert status == 200 and killed == {"id": pid, "killed": True}
    events = stream.finish()
    assert "error" in events[-1], events[-1]
    assert "killed" in events[-1]["error"]["message"], events[-1]
    assert sum(len(e["choices"][0]["text"]) for e in events[:-1] if e.get("choices")) > 0
    engines = daemon.wait_idle()
    assert all(e["num_live"] == 0 and e["kv_used_blocks"] == 0 for e in engines), engines
    assert call(daemon, "GET", "/os/processes/" + pid)[0] == 404
    assert call(daemon, "DELETE", "/os/processes/" + pid)[0] == 404
    assert table(daemon) == []


def test_memory_lists_each_instance_against_the_budget(daemon):
    status, mem, _ = call(daemon, "GET", "/os/memory")
    assert status == 200
    assert mem["used_bytes"] > 0 and "budget_bytes" in mem
    [inst] = [i for i in mem["instances"] if i["model"] == MODEL_NAME]
    assert inst["resident_bytes"] > inst["kv_pool_bytes"] > 0
    assert inst["kv"]["total_blocks"] > 0 and 0 <= inst["kv"]["used_blocks"] <= inst["kv"]["total_blocks"]
    # The pool is the budget in blocks of the default F16 cache's real size: SmolLM2 has 30
    # layers, kv_dim 192, so a 16-token block is 30 x 16 x 2 x 192 x 2 bytes.
    kv = inst["kv"]
    assert (kv["cache_type_k"], kv["cache_type_v"]) == ("f16", "f16"), kv
    assert kv["block_bytes"] == 30 * kv["block_tokens"] * 2 * 192 * 2, kv
    assert kv["total_blocks"] == inst["kv_pool_bytes"] // kv["block_bytes"], (kv, inst["kv_pool_bytes"])
    assert set(inst["prefix_cache"]) == {"entries", "lookups", "hits", "hit_rate", "evicted_blocks"}
    assert set(inst["swap"]) == {"used_blocks", "capacity_blocks"}


def test_the_scheduling_policy_changes_at_run_time(daemon):
    status, sched, _ = call(daemon, "GET", "/os/scheduler")
    assert status == 200
    [inst] = sched["instances"]
    assert inst["policy"] == "fcfs" and inst["model"] == MODEL_NAME
    for body, param in [({"policy": "lottery"}, "policy"), ({}, "policy"), ({"policy": "rr", "x": 1}, "x")]:
        status, err, _ = call(daemon, "PUT", "/os/scheduler", body)
        assert status == 400 and err["error"]["param"] == param, err
    status, err, _ = call(daemon, "PUT", "/os/scheduler", {"policy": "rr", "instance": 999})
    assert status == 404
    status, changed, _ = call(daemon, "PUT", "/os/scheduler", {"policy": "priority", "instance": inst["instance"]})
    assert status == 200 and changed["instances"][0]["policy"] == "priority"
    # The engine switches before its next step; with no work it wakes for the change alone.
    wait_for(lambda: call(daemon, "GET", "/os/scheduler")[1]["instances"][0]["policy"] == "priority", "the switch")
    assert call(daemon, "PUT", "/os/scheduler", {"policy": "fcfs"})[0] == 200
    wait_for(lambda: call(daemon, "GET", "/os/scheduler")[1]["instances"][0]["policy"] == "fcfs", "the switch back")


def test_models_are_listed_pinned_and_unpinned(daemon):
    status, models, _ = call(daemon, "GET", "/os/models")
    assert status == 200
    [m] = [m for m in models["models"] if m["name"] == MODEL_NAME]
    assert m["loaded"] and not m["pinned"] and DEFAULT_REF.split(":")[1] in m["tags"]
    status, pinned, _ = call(daemon, "POST", "/os/models/pin", {"model": DEFAULT_REF})
    assert status == 200 and pinned["pinned"] == f'{MODEL_NAME}@{m["version"]}', pinned
    assert [x for x in call(daemon, "GET", "/os/models")[1]["models"] if x["name"] == MODEL_NAME][0]["pinned"]
    status, body, _ = call(daemon, "POST", "/os/models/unload", {"model": DEFAULT_REF})
    assert status == 409, body  # pinned: refused unless unpin is asked for
    assert call(daemon, "POST", "/os/models/unpin", {"model": DEFAULT_REF})[0] == 200
    assert not [x for x in call(daemon, "GET", "/os/models")[1]["models"] if x["name"] == MODEL_NAME][0]["pinned"]
    status, body, _ = call(daemon, "POST", "/os/models/load", {"model": "nope"})
    assert status == 404, body
    status, body, _ = call(daemon, "POST", "/os/models/load", {"model": DEFAULT_REF, "unpin": True})
    assert status == 400 and body["error"]["param"] == "unpin"
    status, loaded, _ = call(daemon, "POST", "/os/models/load", {"model": DEFAULT_REF, "keep_alive": -1})
    assert status == 200 and loaded["loaded"] == f'{MODEL_NAME}@{m["version"]}'


def test_the_shell_talks_to_the_daemon(daemon):
    host, port = daemon.host_port
    at = ["--host", host, "--port", str(port)]
    stream = LongStream(daemon, "In a land far away")
    row = wait_for(lambda: [r for r in table(daemon) if r["generated_tokens"] > 0], "the process to run")[0]
    ps = cli(daemon.home, "ps", *at).stdout
    assert ps.splitlines()[0].split()[:4] == ["ID", "MODEL", "TENANT", "STATE"]
    assert any(line.split()[0] == row["id"] for line in ps.splitlines()[1:]), ps
    assert f'{row["id"]} priority 3' in cli(daemon.home, "renice", row["id"], "3", *at).stdout
    assert MODEL_NAME in cli(daemon.home, "sched", *at).stdout
    assert "killed " + row["id"] in cli(daemon.home, "kill", row["id"], *at).stdout
    assert "killed" in stream.finish()[-1]["error"]["message"]
    gone = cli(daemon.home, "kill", row["id"], *at, check=False)
    assert gone.returncode == 1 and "no live process" in gone.stderr
    # LLMASOS_HOST finds the daemon too; an address where nothing listens is a clear error.
    env_ps = subprocess.run([LLMASOS, "ps"], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, LLMASOS_HOST=f"{host}:{port}"))
    assert env_ps.returncode == 0 and env_ps.stdout.startswith("ID"), env_ps.stderr
    down = cli(daemon.home, "ps", "--host", "127.0.0.1", "--port", "1", check=False)
    assert down.returncode == 1 and "cannot reach the daemon at http://127.0.0.1:1" in down.stderr


def test_a_model_whose_every_layer_slides_gives_blocks_back_as_they_leave_the_window(tmp_path):
    # make_tiny_model's phi3 slides on every layer (window 5): a 60-token run in 16-token blocks
    # releases its early blocks as it goes, and /os/memory and /metrics count them.
    home = str(tmp_path / "home")
    path = str(tmp_path / "phi3.gguf")
    subprocess.run([os.path.join(os.path.dirname(LLMASOS), "make_tiny_model"), "--arch", "phi3", "--out", path,
                    "--context", "512"], check=True, capture_output=True)
    cli(home, "import", path, "--name", "slides")
    with serving(home, "--models", "slides", "--threads", "1", "--ctx-size", "512") as d:
        status, body, _ = call(d, "POST", "/v1/completions",
                               {"model": "slides", "prompt": "sliding " * 8, "max_tokens": 40,
                                "logit_bias": NO_END})
        assert status == 200, body
        assert body["usage"]["completion_tokens"] == 40, body
        [inst] = call(d, "GET", "/os/memory")[1]["instances"]
        assert inst["kv"]["window_dropped_blocks"] >= 2, inst
        assert inst["kv"]["used_blocks"] == 0, inst
        with urllib.request.urlopen(d.url + "/metrics", timeout=30) as r:
            metrics = r.read().decode()
        [line] = [x for x in metrics.splitlines() if x.startswith("llmasos_kv_window_dropped_blocks_total{")]
        assert float(line.split()[-1]) == inst["kv"]["window_dropped_blocks"], line
