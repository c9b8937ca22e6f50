"""A request for a model that is still loading gets 503 with an integer `Retry-After` and an
error body in its route's shape (OpenAI's on /v1, Ollama's on /api); once the load is done the
same request succeeds.

Deterministic, not timed: the test-only LLMASOS_TEST_LOAD_GATE holds every model load while the
gate file exists, and `--load-wait 0` makes a request that finds a load running answer at once
instead of waiting for it.
"""
import http.client
import json
import re
import threading
import time

from serve_util import Daemon, cli, serving, tiny_home

MESSAGES = [{"role": "user", "content": "hello"}]
REQUESTS = [
    ("/v1/chat/completions", {"model": "tiny", "messages": MESSAGES, "max_tokens": 4, "temperature": 0}),
    ("/v1/completions", {"model": "tiny", "prompt": "hello", "max_tokens": 4, "temperature": 0}),
    ("/v1/embeddings", {"model": "tiny", "input": "hello"}),
    ("/api/chat", {"model": "tiny", "messages": MESSAGES, "stream": False, "options": {"num_predict": 4}}),
    ("/api/generate", {"model": "tiny", "prompt": "hello", "stream": False, "options": {"num_predict": 4}}),
    ("/api/embed", {"model": "tiny", "input": "hello"}),
]


def post(d, path, body, timeout=120):
    host, port = d.host_port
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(data)


def loading_models(d):
    return [m["name"] for m in d.get("/api/ps")["models"] if m["loading"]]


def test_a_model_still_loading_answers_503_with_retry_after_then_serves(tmp_path):
    home = tiny_home(tmp_path)
    gate = tmp_path / "load-gate"
    gate.write_text("held by the test\n")
    d = Daemon(home, "--load-wait", "0", "--threads", "1", "--ctx-size", "128",
               env={"LLMASOS_TEST_LOAD_GATE": str(gate)})
    try:
        assert any("LLMASOS_TEST_LOAD_GATE" in line for line in d.log), "".join(d.log)
        # The first request starts the load and waits for it (whatever --load-wait says).
        first = {}
        loader = threading.Thread(target=lambda: first.update(r=post(d, "/api/generate", {"model": "tiny"})))
        loader.start()
        deadline = time.time() + 60
        while not loading_models(d):
            assert loader.is_alive() and time.time() < deadline, (first, "".join(d.log))
            time.sleep(0.05)

        for path, body in REQUESTS:
            status, headers, error = post(d, path, body)
            assert status == 503, (path, status, error)
            assert re.fullmatch(r"[1-9][0-9]*", headers.get("retry-after", "")), (path, headers)
            if path.startswith("/v1/"):
                assert set(error) == {"error"}, (path, error)
                message = error["error"]["message"]
                assert error["error"]["type"] == "server_error", (path, error)
            else:
                assert set(error) == {"error"} and isinstance(error["error"], str), (path, error)
                message = error["error"]
            m = re.search(r"model (\S+) is loading, retry after (\d+) s", message)
            assert m and m.group(1).startswith("tiny@"), (path, message)
            assert m.group(2) == headers["retry-after"], (path, message, headers)
            assert "/" not in message, (path, message)  # no filesystem path leaks
        assert loader.is_alive()  # still held: every answer above came during the load

        gate.unlink()
        loader.join(timeout=120)
        assert not loader.is_alive()
        status, _, body = first["r"]
        assert status == 200 and body["done_reason"] == "load", (status, body)
        assert loading_models(d) == []

        for path, body in REQUESTS:
            status, headers, reply = post(d, path, body)
            assert status == 200, (path, status, reply)
            assert "retry-after" not in headers
        assert d.alive()
    finally:
        if gate.exists():
            gate.unlink()  # let a held load finish so the daemon can stop
        assert d.stop() == 0, "".join(d.log)


def test_the_load_gate_is_off_unless_set(tmp_path):
    """Without LLMASOS_TEST_LOAD_GATE nothing holds a load: the first request loads and serves,
    and the daemon does not announce a gate."""
    home = tiny_home(tmp_path)
    (tmp_path / "load-gate").write_text("present but not named\n")
    with serving(home, "--load-wait", "0", "--threads", "1", "--ctx-size", "128") as d:
        status, _, body = post(d, "/api/generate", {"model": "tiny"})
        assert status == 200 and body["done_reason"] == "load", body
        assert not any("LLMASOS_TEST_LOAD_GATE" in line for line in d.log), "".join(d.log)


def test_load_wait_is_range_checked(tmp_path):
    home = tiny_home(tmp_path)
    for bad in ("-1", "nan", "100000"):
        proc = cli(home, "serve", "--port", "0", "--load-wait", bad, check=False, timeout=60)
        assert proc.returncode != 0 and "--load-wait" in proc.stderr, (bad, proc.stderr)
