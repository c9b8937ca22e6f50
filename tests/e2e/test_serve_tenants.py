"""Several tenants through HTTP (loopback, the tiny model, bounded): 64 streaming clients of 3
tenants (each with a key of its own) at mixed priorities, a fifth of them disconnecting
mid-stream, leave an empty process table and the KV pool as it was before; and under
saturation, two tenants with fair-share weights 1:3 receive generated tokens within 10% of
1:3 while both are backlogged. The ratio is counted in tokens from the process table, not
timed; the timing half of the load test (high-priority time to first token under load) is a
benchmark: bench/serve --tenants."""
import http.client
import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from serve_util import NO_END, cli, make_tiny, serving, wait_for

TENANTS = ["acme", "beta", "gamma"]


def create_key(home, tenant, *args):
    out = cli(home, "keys", "create", "--json", "--tenant", tenant, *args).stdout
    return json.loads(out)["key"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve_tenants")
    home = str(tmp / "home")
    # A long context, so that no process of the fair-share test can finish while it counts.
    cli(home, "import", make_tiny(str(tmp / "tiny.gguf"), context=4096), "--name", "tiny")
    keys = {
        "admin": create_key(home, "ops", "--scopes", "infer,admin"),
        "acme": create_key(home, "acme", "--priority", "0", "--max-priority", "5"),
        "beta": create_key(home, "beta", "--priority", "1", "--max-priority", "3"),
        "gamma": create_key(home, "gamma", "--priority", "-2", "--max-priority", "0"),
    }
    with serving(home, "--models", "tiny", "--threads", "1", "--ctx-size", "4096", "--parallel", "4",
                 "--max-queue", "128") as d:
        yield d, keys


def call(d, key, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(d.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + key})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def processes(d, keys):
    status, body = call(d, keys["admin"], "GET", "/os/processes")
    assert status == 200, body
    return body["processes"]


def kv_used(d, keys):
    status, body = call(d, keys["admin"], "GET", "/os/memory")
    assert status == 200, body
    return sum(i["kv"]["used_blocks"] for i in body["instances"])


class Stream:
    """One streamed /v1/completions on a connection of its own, read on a thread; with
    `vanish`, the client closes the connection after its first event. .tokens: the server's
    count of generated tokens, from the usage chunk at the end."""

    def __init__(self, d, key, body, vanish=False):
        host, port = d.host_port
        self.conn = http.client.HTTPConnection(host, port, timeout=120)
        self.body = dict(body, model="tiny", stream=True, stream_options={"include_usage": True})
        self.key, self.vanish = key, vanish
        self.events, self.tokens, self.finish_reason, self.error = 0, None, None, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.conn.request("POST", "/v1/completions", json.dumps(self.body),
                              {"Content-Type": "application/json", "Authorization": "Bearer " + self.key})
            r = self.conn.getresponse()
            if r.status != 200:
                self.error = f"{r.status}: {r.read()[:200]!r}"
                return
            for line in r:
                line = line.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[len("data: "):])
                if "error" in event:
                    self.error = event["error"]
                    return
                if event.get("usage"):
                    self.tokens = event["usage"]["completion_tokens"]
                if not event["choices"]:
                    continue
                self.events += 1
                self.finish_reason = event["choices"][0].get("finish_reason") or self.finish_reason
                if self.vanish:
                    return
        except Exception as e:  # reported by the test, with the stream
            self.error = repr(e)
        finally:
            self.conn.close()

    def join(self, timeout=120):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "a stream did not end"


def test_64_clients_of_3_tenants_leave_no_process_and_no_kv_behind(setup):
    d, keys = setup
    baseline = kv_used(d, keys)
    assert processes(d, keys) == []
    priorities = {"acme": [0, 5, 2], "beta": [1, 3, 0], "gamma": [-2, 0, -1]}  # within each key's maximum
    # The process table is read on a thread of its own from before the first request, and
    # streams 1..3 (one per tenant) run long: the tiny model ends the short ones in well under a
    # second, before a poll from the thread that starts all 64 could see them.
    seen_tenants, done = set(), threading.Event()

    def poll():
        while not done.is_set():
            seen_tenants.update(p["tenant"] for p in processes(d, keys))
            time.sleep(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    streams = []
    for i in range(64):
        tenant = TENANTS[i % 3]
        max_tokens = 160 if i in (1, 2, 3) else 24 + i % 5 * 8
        body = {"prompt": f"tenant {tenant} asks question {i}", "max_tokens": max_tokens,
                "temperature": 0.8, "seed": i, "priority": priorities[tenant][i // 3 % 3], "logit_bias": NO_END}
        streams.append(Stream(d, keys[tenant], body, vanish=i % 5 == 0))  # 13 of 64 vanish
    for s in streams:
        s.join()
    done.set()
    poller.join(30)
    assert not poller.is_alive(), "the process table poll did not end"
    vanished = [s for s in streams if s.vanish]
    stayed = [s for s in streams if not s.vanish]
    assert len(vanished) == 13
    for s in vanished:
        assert s.error is None and s.events == 1, (s.body, s.error)
    for s in stayed:
        assert s.error is None, (s.body, s.error)
        assert s.finish_reason == "length" and s.tokens == s.body["max_tokens"], (s.body, s.tokens)
    assert seen_tenants <= set(TENANTS) and len(seen_tenants) >= 2, seen_tenants  # as their keys say
    # Everything ends and gives its memory back: the table empties, the KV pool is as before.
    wait_for(lambda: processes(d, keys) == [], "an empty process table")
    wait_for(lambda: kv_used(d, keys) == baseline, "the KV pool back at its baseline")


def generated(rows, tenant):
    return {p["id"]: p["generated_tokens"] for p in rows if p["tenant"] == tenant}


def test_fair_share_weights_1_to_3_give_tokens_within_10_percent_of_1_to_3(setup):
    d, keys = setup
    status, body = call(d, keys["admin"], "PUT", "/os/scheduler",
                        {"policy": "fair", "fair": {"weights": {"acme": 1, "beta": 3}},
                         "preemption": {"min_tokens_before_preempt": 4}})
    assert status == 200, body
    # Each tenant keeps 8 processes queued against 4 slots, each far longer than the window
    # below: both tenants stay backlogged and no process ends while it counts.
    max_tokens, per_tenant = 4000, 8
    streams = [Stream(d, keys[t], {"prompt": f"{t} {i}", "max_tokens": max_tokens, "temperature": 0,
                                   "logit_bias": NO_END})
               for i in range(per_tenant) for t in ("acme", "beta")]
    try:
        # Start counting once every process is in and both tenants have run for a while.
        first = wait_for(lambda: (lambda rows: rows if len(rows) == 2 * per_tenant and all(
            sum(generated(rows, t).values()) >= 100 for t in ("acme", "beta")) else None)(processes(d, keys)),
                         "both tenants to be under way")

        def served(rows):
            # Tokens each tenant got since `first`.
            out = {}
            for t in ("acme", "beta"):
                before, now = generated(first, t), generated(rows, t)
                assert now.keys() == before.keys(), "a process ended while the test counted"
                out[t] = sum(now[pid] - n for pid, n in before.items())
            return out

        def both_backlogged(rows):
            return all(any(p["tenant"] == t and p["state"] != "running" for p in rows) for t in ("acme", "beta"))

        last = wait_for(lambda: (lambda rows: rows if sum(served(rows).values()) >= 2000 else None)(processes(d, keys)),
                        "2000 tokens")
        assert both_backlogged(last), "a tenant ran out of work: the window measures nothing"
        got = served(last)
        ratio = got["beta"] / got["acme"]
        print("fair share 1:3, tokens while both were backlogged:", got, f"ratio {ratio:.3f}")
        assert 3 * 0.9 <= ratio <= 3 * 1.1, got
    finally:
        for s in streams:
            s.conn.close()  # the engine cancels their processes
        call(d, keys["admin"], "PUT", "/os/scheduler", {"policy": "fcfs", "preemption": {"min_tokens_before_preempt": 8}})
    wait_for(lambda: processes(d, keys) == [], "an empty process table")
