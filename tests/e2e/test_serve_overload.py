"""Overload and shutdown of `llmasos serve`: the bounded admission queue (503 with Retry-After
past --parallel + --max-queue), per-request deadlines (the `timeout` field and the
X-Request-Timeout header end the process with a clear 504 or stream error), the drain on
SIGTERM (/ready 503, new requests 503, streams in flight finish, exit 0; a second signal
stops at once; --drain-timeout cuts the rest), and the request log (one JSON line per request,
no prompt text unless --log-prompts).

The processes that must stay alive while the test acts generate from a slower tiny model with
the end-of-sequence token banned (logit_bias), so they run until cancelled or max_tokens."""
import http.client
import json
import signal
import socket
import time

import pytest

from serve_util import NO_END, Daemon, serving, slow_home

MODEL = "slow@1.0.0"


def body(max_tokens, stream=False, **extra):
    return dict(model="slow", prompt="count with me", max_tokens=max_tokens, temperature=0.8, seed=1,
                logit_bias=NO_END, stream=stream, **extra)


def post(daemon, path, payload, headers=None):
    host, port = daemon.host_port
    c = http.client.HTTPConnection(host, port, timeout=120)
    c.request("POST", path, body=json.dumps(payload), headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def get(daemon, path):
    host, port = daemon.host_port
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


class Stream:
    """A streamed completion on a raw socket, read chunk by chunk."""

    def __init__(self, daemon, payload, headers=b""):
        host, port = daemon.host_port
        self.sock = socket.create_connection((host, port), timeout=120)
        data = json.dumps(payload).encode()
        self.sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
                          headers + b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.got = b""

    def read_until(self, marker):
        while marker not in self.got:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.got += chunk
        return True

    def read_all(self):
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            self.got += chunk
            if self.got.endswith(b"0\r\n\r\n"):
                break
        return self.got

    def close(self):
        self.sock.close()


def num_live(daemon):
    return daemon.engines()[0]["num_live"]


@pytest.fixture(scope="module")
def queued(tmp_path_factory):
    home = slow_home(tmp_path_factory.mktemp("serve_overload"))
    with serving(home, "--models", "slow", "--threads", "1", "--ctx-size", "4096", "--parallel", "1",
                 "--max-queue", "1") as d:
        yield d


def test_admission_queue_full_is_503_with_retry_after(queued):
    running = Stream(queued, body(3500, stream=True))
    assert running.read_until(b"data: ")
    waiting = Stream(queued, body(3500, stream=True))
    # Until the second is submitted (queued behind the first); the first runs for many seconds.
    give_up = time.time() + 60
    while num_live(queued) < 2:
        assert time.time() < give_up, "the second stream was never submitted"
        time.sleep(0.01)
    status, headers, data = post(queued, "/v1/completions", body(4))
    assert status == 503, data
    assert int(headers["Retry-After"]) >= 1
    assert "queue is full" in json.loads(data)["error"]["message"]
    status, headers, data = post(queued, "/api/generate", dict(model="slow", prompt="x", stream=False))
    assert status == 503 and "queue is full" in json.loads(data)["error"]
    running.close()
    waiting.close()
    queued.wait_idle()
    status, _, data = post(queued, "/v1/completions", body(4))
    assert status == 200, data


def test_timeout_field_ends_the_process_with_a_clear_504(queued):
    status, _, data = post(queued, "/v1/completions", body(3500, timeout=0.2))
    assert status == 504, data
    err = json.loads(data)["error"]
    assert "deadline" in err["message"] and "timeout" in err["message"] and err["code"] == "timeout"
    status, _, data = post(queued, "/api/generate", dict(model="slow", prompt="x", stream=False, timeout=0.2,
                                                         options={"num_predict": 3500}))
    # Ollama's random tiny model may end on its own first; if it ran long, the deadline ends it.
    assert status in (200, 504), data
    if status == 504:
        assert "deadline" in json.loads(data)["error"]
    _, _, metrics = get(queued, "/metrics")
    assert 'llmasos_processes_ended_total{model="slow@1.0.0",tenant="default",reason="deadline"}' in metrics.decode()


def test_timeout_header_ends_a_stream_with_an_error_event(queued):
    s = Stream(queued, body(3500, stream=True), headers=b"X-Request-Timeout: 0.2\r\n")
    out = s.read_all().decode(errors="replace")
    s.close()
    assert "HTTP/1.1 200" in out and "deadline" in out and "data: [DONE]" in out


def test_bad_timeouts_are_400_naming_them(queued):
    status, _, data = post(queued, "/v1/completions", body(4), headers={"X-Request-Timeout": "soon"})
    assert status == 400 and "X-Request-Timeout" in json.loads(data)["error"]["message"]
    status, _, data = post(queued, "/v1/completions", body(4, timeout=-1))
    assert status == 400 and "timeout" in json.loads(data)["error"]["message"]
    status, _, data = post(queued, "/v1/completions", body(4, timeout="1"))
    assert status == 400 and "timeout" in json.loads(data)["error"]["message"]


def start(tmp_path, *args):
    return Daemon(slow_home(tmp_path), "--models", "slow", "--threads", "1", "--ctx-size", "4096", *args)


def test_sigterm_drains_streams_in_flight_then_exits_0(tmp_path):
    d = start(tmp_path, "--drain-timeout", "120")
    s = Stream(d, body(1500, stream=True))
    assert s.read_until(b"data: ")
    d.proc.send_signal(signal.SIGTERM)
    while True:  # the signal is handled asynchronously: until /ready says so
        status, _, data = get(d, "/ready")
        if status == 503:
            break
        time.sleep(0.01)
    assert json.loads(data) == {"status": "draining"}
    assert get(d, "/health")[0] == 200
    status, headers, data = post(d, "/v1/completions", body(4))
    assert status == 503 and int(headers["Retry-After"]) >= 1
    assert "shutting down" in json.loads(data)["error"]["message"]
    out = s.read_all()
    s.close()
    assert b"data: [DONE]" in out and b'"finish_reason":"length"' in out
    assert d.proc.wait(timeout=60) == 0
    assert any("draining" in line for line in d.log)


def test_second_signal_stops_at_once(tmp_path):
    d = start(tmp_path, "--drain-timeout", "600")
    s = Stream(d, body(3900, stream=True))
    assert s.read_until(b"data: ")
    d.proc.send_signal(signal.SIGTERM)
    while get(d, "/ready")[0] != 503:
        time.sleep(0.01)
    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(timeout=60) == 1
    out = s.read_all()
    s.close()
    assert b"data: [DONE]" not in out or b"shutdown" in out


def test_drain_timeout_cancels_what_is_left_and_exits_0(tmp_path):
    d = start(tmp_path, "--drain-timeout", "0.2")
    s = Stream(d, body(3900, stream=True))
    assert s.read_until(b"data: ")
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=60) == 0
    out = s.read_all()
    s.close()
    assert b'"finish_reason":"length"' not in out
    assert any("drain timeout" in line for line in d.log)


def test_request_log_has_one_line_per_request_and_no_prompt(tmp_path):
    log = tmp_path / "requests.log"
    d = start(tmp_path, "--log-file", str(log))
    status, _, data = post(d, "/v1/completions", body(3) | {"prompt": "my secret prompt"})
    assert status == 200, data
    usage = json.loads(data)["usage"]
    assert get(d, "/v1/nothing")[0] == 404
    assert d.stop() == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert "my secret prompt" not in log.read_text()
    (gen,) = [x for x in lines if x["route"] == "/v1/completions"]
    assert gen["method"] == "POST" and gen["status"] == 200 and gen["model"] == MODEL
    assert gen["tenant"] == "default" and gen["stream"] is False and gen["client_gone"] is False
    assert gen["prompt_tokens"] == usage["prompt_tokens"] and gen["generated_tokens"] == usage["completion_tokens"]
    assert gen["end_reasons"] == ["length"] and gen["ttft_seconds"] is not None and gen["seconds"] > 0
    assert "prompt" not in gen
    (miss,) = [x for x in lines if x["path"] == "/v1/nothing"]
    assert miss["status"] == 404 and miss["route"] == "" and miss["model"] == ""


def test_log_prompts_writes_the_prompt(tmp_path):
    log = tmp_path / "requests.log"
    d = start(tmp_path, "--log-file", str(log), "--log-prompts")
    assert post(d, "/v1/completions", body(2) | {"prompt": "my secret prompt"})[0] == 200
    assert d.stop() == 0
    (gen,) = [json.loads(line) for line in log.read_text().splitlines()
              if json.loads(line)["route"] == "/v1/completions"]
    assert gen["prompt"] == {"prompt": "my secret prompt"}
