"""GET /os/events of `llmasos serve`: the kernel log as server-sent events. A subscriber sees a
request's process admitted and finished (with its end reason), then a second process admitted
and killed by DELETE /os/processes/{id}, in that order, each with its global id, model and
tenant; a `?kinds=` subscriber sees only what it asked for; unloading and loading the model
are logged too; bad filters are 400s. /metrics' llmasos_engine_generated_tokens_total (what the
console's throughput chart and `llmasos top` read) grows while a process generates, before it
ends. `llmasos top` prints one snapshot (its columns, the running process, a throughput) when
stdout is not a terminal, and on a pseudo-terminal redraws and quits on q or SIGINT with the
terminal's mode given back.

The process that is killed generates from the slower tiny model with its end-of-sequence token
banned and a budget of LONG tokens (several seconds even alone on an idle machine), so it runs
until it is killed, also when a loaded machine delays the test between two requests."""
import http.client
import json
import os
import pty
import re
import select
import signal
import subprocess
import termios
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serve_util import LLMASOS, NO_END, EventLog, serving, slow_home

MODEL = "slow@1.0.0"
LONG = 15000  # tokens: a process that outlives any step of a test on a busy machine


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
                logit_bias=NO_END, stream=stream)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    home = slow_home(tmp_path_factory.mktemp("serve_events"))
    with serving(home, "--models", "slow", "--threads", "1", "--ctx-size", "16384", "--parallel", "2") as d:
        yield d


def kill_all(d):
    """Ends every process, so a failed test does not leave one running into the next."""
    for row in call(d, "GET", "/os/processes")[1]["processes"]:
        call(d, "DELETE", "/os/processes/" + row["id"])


def test_a_subscriber_sees_admitted_finished_and_killed_in_order(daemon):
    log = EventLog(daemon)
    only_killed = EventLog(daemon, "?kinds=killed,loaded")
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
        stream.request("POST", "/v1/completions", json.dumps(completion(LONG, stream=True)),
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
        kill_all(daemon)
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
    stream.request("POST", "/v1/completions", json.dumps(completion(LONG, stream=True)),
                   {"Content-Type": "application/json"})
    response = stream.getresponse()
    assert response.status == 200
    try:
        check_the_engine_counter_grows(daemon, engine_before)
        response.read()
    finally:
        kill_all(daemon)
        stream.close()


def check_the_engine_counter_grows(daemon, engine_before):
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


def test_top_prints_one_snapshot_when_stdout_is_not_a_terminal(daemon):
    host, port = daemon.host_port
    at = ["--host", host, "--port", str(port), "--interval", "0.5"]
    stream = http.client.HTTPConnection(host, port, timeout=300)
    stream.request("POST", "/v1/completions", json.dumps(completion(LONG, stream=True)),
                   {"Content-Type": "application/json"})
    response = stream.getresponse()
    assert response.status == 200
    try:
        deadline = time.time() + 120
        while True:
            rows = call(daemon, "GET", "/os/processes")[1]["processes"]
            if rows and rows[0]["generated_tokens"] > 0:
                break
            assert time.time() < deadline, "the process never ran"
            time.sleep(0.05)
        top = subprocess.run([LLMASOS, "top", *at], capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, LLMASOS_HOME=daemon.home))
        assert top.returncode == 0, top.stderr
        lines = top.stdout.splitlines()
        assert lines[0].startswith(f"llmasos top  http://{host}:{port}")
        assert "processes: 1 (1 running" in lines[1], lines[1]
        rate = re.search(r"throughput: (\d+) tokens/s", lines[1])
        assert rate and int(rate.group(1)) > 0, lines[1]  # it generated throughout the interval
        assert "\x1b" not in top.stdout  # no terminal codes in a snapshot
        header = [i for i, line in enumerate(lines) if line.split()[:2] == ["INST", "MODEL"]]
        assert header and lines[header[0] + 1].split()[1] == MODEL
        ps = [i for i, line in enumerate(lines) if line.split()[:4] == ["ID", "MODEL", "TENANT", "STATE"]]
        assert ps, top.stdout
        row = lines[ps[0] + 1].split()
        assert row[0] == rows[0]["id"] and row[1] == MODEL and row[3] == "running"
    finally:
        kill_all(daemon)
        stream.close()


def test_top_on_a_terminal_redraws_and_quits_on_q_or_sigint(daemon):
    host, port = daemon.host_port
    for stop in ("q", "sigint"):
        pid, fd = pty.fork()
        if pid == 0:  # the child: llmasos top on the pseudo-terminal
            os.execv(LLMASOS, [LLMASOS, "top", "--host", host, "--port", str(port), "--interval", "0.2"])
        out = b""
        deadline = time.time() + 60
        while out.count(b"\x1b[H\x1b[2J") < 2:  # two full redraws
            assert time.time() < deadline, out
            if select.select([fd], [], [], 1)[0]:
                out += os.read(fd, 65536)
        assert b"\x1b[?1049h" in out and b"INST" in out and b"ID" in out
        if stop == "q":
            os.write(fd, b"q")
        else:
            os.kill(pid, signal.SIGINT)
        _, status = os.waitpid(pid, 0)
        try:
            while select.select([fd], [], [], 0.5)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                out += chunk
        except OSError:
            pass  # the child's side closed
        lflag = termios.tcgetattr(fd)[3]  # the pseudo-terminal's mode, as the child left it
        os.close(fd)
        assert lflag & termios.ICANON and lflag & termios.ECHO, (stop, lflag)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (stop, status)
        # The terminal is given back: cursor shown, alternate screen left.
        assert out.rstrip().endswith(b"\x1b[?25h\x1b[?1049l"), (stop, out[-80:])
