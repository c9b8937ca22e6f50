"""GET /os/events of `llmasos serve`: the kernel log as server-sent events. A subscriber sees a
request's process admitted and finished (with its end reason), then a second process admitted
and killed by DELETE /os/processes/{id}, in that order, each with its global id, model and
tenant; a `?kinds=` subscriber sees only what it asked for; unloading and loading the model
are logged too; bad filters are 400s. /metrics' llmasos_engine_generated_tokens_total (what the
console's throughput chart and `llmasos top` read) grows while a process generates, before it
ends.

The process that is killed generates from the slower tiny model with its end-of-sequence token
banned, so it runs until it is killed."""
import http.client
import json
import socket
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serve_util import EOS, Daemon, slow_home

MODEL = "slow@1.0.0"


class Subscriber:
    """GET /os/events read on a thread of its own; .events: the parsed events so far."""

    def __init__(self, d, query=""):
        host, port = d.host_port
        self.conn = http.client.HTTPConnection(host, port, timeout=300)
        self.conn.request("GET", "/os/events" + query)
        self.response = self.conn.getresponse()  # subscribed once the headers are here
        assert self.response.status == 200, self.response.read()
        assert self.response.headers["Content-Type"].startswith("text/event-stream")
        self.events = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for line in self.response:
                line = line.decode().rstrip("\n")
                if line.startswith("data: "):
                    self.events.append(json.loads(line[len("data: "):]))
        except (OSError, ValueError):
            pass  # closed by the test

    def wait_for(self, pred, what, timeout=120):
        deadline = time.time() + timeout
        while True:
            found = [e for e in list(self.events) if pred(e)]
            if found:
                return found[0]
            assert time.time() < deadline, f"no {what} event in {self.events}"
            time.sleep(0.02)

    def close(self):
        # Shut the socket first: that wakes the reader blocked in recv (closing alone would wait
        # for it) and tells the daemon the client went away.
        self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(30)
        assert not self.thread.is_alive()
        self.conn.close()


def call(d, method, path, payload=None):
    host, port = d.host_port
    c = http.client.HTTPConnection(host, port, timeout=120)
    c.request(method, path, body=None if payload is None else json.dumps(payload),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data) if data else None


def completion(max_tokens, stream=False):
    return dict(model="slow", prompt="count with me", max_tokens=max_tokens, temperature=0.8, seed=1,
                logit_bias={str(EOS): -100}, stream=stream)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    home = slow_home(tmp_path_factory.mktemp("serve_events"))
    d = Daemon(home, "--models", "slow", "--threads", "1", "--ctx-size", "4096", "--parallel", "2")
    yield d
    assert d.stop() == 0, "".join(d.log)


def test_a_subscriber_sees_admitted_finished_and_killed_in_order(daemon):
    log = Subscriber(daemon)
    only_killed = Subscriber(daemon, "?kinds=killed,loaded")
    try:
        status, done = call(daemon, "POST", "/v1/completions", completion(4))
        assert status == 200 and done["usage"]["completion_tokens"] == 4
        finished = log.wait_for(lambda e: e["kind"] == "finished", "finished")
        assert finished["reason"] == "length" and finished["model"] == MODEL and finished["tenant"] == "default"
        first = finished["id"]
        assert first == f'{finished["instance"]}-{finished["pid"]}'

        # A long process, killed by an operator once the log says it was admitted.
        host, port = daemon.host_port
        stream = http.client.HTTPConnection(host, port, timeout=300)
        stream.request("POST", "/v1/completions", json.dumps(completion(3500, stream=True)),
                       {"Content-Type": "application/json"})
        admitted = log.wait_for(lambda e: e["kind"] == "admitted" and e["id"] != first, "second admitted")
        second = admitted["id"]
        status, killed = call(daemon, "DELETE", "/os/processes/" + second)
        assert status == 200 and killed == {"id": second, "killed": True}
        killed_event = log.wait_for(lambda e: e["kind"] == "killed", "killed")
        assert killed_event["id"] == second and killed_event["reason"] == "killed"
        stream.close()

        # In order: admitted, finished (the first), admitted, killed (the second).
        seen = [(e["kind"], e["id"]) for e in log.events
                if e["kind"] in ("admitted", "finished", "killed")]
        assert seen == [("admitted", first), ("finished", first), ("admitted", second), ("killed", second)], seen
        seqs = [e["seq"] for e in log.events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert all(e["time"] > 1.6e9 for e in log.events)
        assert not [e for e in log.events if e["kind"] == "lost"]

        # The filtered subscriber got only the kill.
        only_killed.wait_for(lambda e: e["kind"] == "killed", "filtered killed")
        assert [e["kind"] for e in only_killed.events] == ["killed"], only_killed.events

        # Unloading and loading the model are logged too.
        status, _ = call(daemon, "POST", "/os/models/unload", {"model": "slow"})
        assert status == 200
        unloaded = log.wait_for(lambda e: e["kind"] == "unloaded", "unloaded")
        assert unloaded["model"] == MODEL and unloaded["instance"] == killed_event["instance"]
        status, _ = call(daemon, "POST", "/os/models/load", {"model": "slow"})
        assert status == 200
        loaded = only_killed.wait_for(lambda e: e["kind"] == "loaded", "loaded")
        assert loaded["model"] == MODEL and loaded["instance"] > unloaded["instance"]
    finally:
        log.close()
        only_killed.close()


def test_bad_filters_are_400s(daemon):
    for query, param in [("?kinds=admitted,exploded", "kinds"), ("?kinds=", "kinds"),
                         ("?kinds=killed&kinds=loaded", "kinds"), ("?colour=red", "colour")]:
        status, body = call(daemon, "GET", "/os/events" + query)
        assert status == 400, query
        assert body["error"]["param"] == param, body


def generated_tokens(d):
    """(tokens the engine generated so far, tokens of ended processes) for the slow model."""
    with urllib.request.urlopen(d.url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    engine = ended = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "llmasos_engine_generated_tokens_total" and s.labels.get("model") == MODEL:
                engine += s.value
            if s.name == "llmasos_generation_tokens_total" and s.labels.get("model") == MODEL:
                ended += s.value
    return engine, ended


def test_the_engine_counts_generated_tokens_while_a_process_runs(daemon):
    engine_before, _ = generated_tokens(daemon)
    host, port = daemon.host_port
    stream = http.client.HTTPConnection(host, port, timeout=300)
    stream.request("POST", "/v1/completions", json.dumps(completion(3500, stream=True)),
                   {"Content-Type": "application/json"})
    response = stream.getresponse()
    assert response.status == 200

    def grown_past(floor):
        deadline = time.time() + 120
        while True:
            engine, ended = generated_tokens(daemon)
            if engine >= floor + 8:
                return engine, ended
            assert time.time() < deadline, "the engine's counter did not move"
            time.sleep(0.05)

    engine_a, ended_a = grown_past(engine_before)
    engine_b, ended_b = grown_past(engine_a)
    assert ended_b == ended_a  # the process is still running: the per-end counter has not moved
    status, table = call(daemon, "GET", "/os/processes")
    assert status == 200 and len(table["processes"]) == 1
    assert call(daemon, "DELETE", "/os/processes/" + table["processes"][0]["id"])[0] == 200
    response.read()
    stream.close()
