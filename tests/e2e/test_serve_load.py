"""`llmasos serve` under load: 64 concurrent streaming clients all finish with the answer each
gets alone (same prompt and seed); 16 clients that vanish mid-stream, and 16 that vanish during
their prompt's prefill, leave no process and no KV block in use behind."""
import json
import socket
import threading

import openai
import pytest

from serve_util import EventLog, serving, tiny_home


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    home = tiny_home(tmp_path_factory.mktemp("serve_load"))
    with serving(home, "--models", "tiny", "--threads", "2", "--ctx-size", "256", "--parallel", "64") as d:
        yield d


def client(d):
    return openai.OpenAI(base_url=d.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def request_args(i):
    return dict(model="tiny", messages=[{"role": "user", "content": f"question number {i % 8}"}],
                max_tokens=24, seed=100 + i % 8, temperature=0.8)


def test_64_concurrent_streams_get_the_answers_they_get_alone(daemon):
    alone = {k: client(daemon).chat.completions.create(**request_args(k)).choices[0].message.content
             for k in range(8)}
    results, errors = {}, []

    def stream(i):
        try:
            chunks = client(daemon).chat.completions.create(stream=True, **request_args(i))
            results[i] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        except Exception as e:  # reported below, with the client's index
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 64
    for i, text in results.items():
        assert text == alone[i % 8], i
    engines = daemon.wait_idle()
    assert engines[0]["num_live"] == 0 and engines[0]["kv_used_blocks"] == 0


def start_stream(daemon, content, max_tokens):
    host, port = daemon.host_port
    s = socket.create_connection((host, port), timeout=60)
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": content}], "stream": True,
                       "max_tokens": max_tokens, "temperature": 0.8, "seed": 1}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return s


def test_clients_that_vanish_leave_no_process_and_no_block(daemon):
    log = EventLog(daemon, "?kinds=admitted,finished,killed")
    # 16 vanish mid-decode: each reads the start of its stream, then closes.
    sockets = [start_stream(daemon, f"vanish {i}", 200) for i in range(16)]
    for s in sockets:
        got = b""
        while b"data: " not in got:
            chunk = s.recv(4096)
            assert chunk, got
            got += chunk
    for s in sockets:
        s.close()
    # 16 vanish before their long prompt is through prefill.
    for i in range(16):
        start_stream(daemon, " ".join(["word"] * 150) + str(i), 50).close()
    engines = daemon.wait_idle()
    e = engines[0]
    assert e["num_live"] == 0 and e["kv_used_blocks"] == 0, e
    # The kernel log: every process admitted has ended, and the mid-decode ones certainly ran.
    admitted = lambda: {x["id"] for x in log.events if x["kind"] == "admitted"}
    ended = lambda: {x["id"] for x in log.events if x["kind"] in ("finished", "killed")}
    log.wait_for(lambda _: admitted() <= ended(), "an end for every admitted process")
    assert len(admitted()) >= 16, log.events
    assert not [x for x in log.events if x["kind"] == "lost"]
    log.close()
    # And it still serves.
    r = client(daemon).chat.completions.create(**request_args(0))
    assert r.choices[0].message.content


def test_several_models_serve_at_once(tmp_path):
    home = tiny_home(tmp_path, "one", seed=1)
    from serve_util import cli, make_tiny
    cli(home, "import", make_tiny(str(tmp_path / "two.gguf"), seed=2), "--name", "two")
    with serving(home, "--models", "one,two", "--max-models", "2", "--threads", "2", "--ctx-size", "128") as d:
        results, errors = {}, []

        def ask(model, i):
            try:
                r = client(d).chat.completions.create(model=model, messages=[{"role": "user", "content": f"q{i}"}],
                                                      max_tokens=8, seed=i)
                results[(model, i)] = r.choices[0].message.content
            except Exception as e:
                errors.append(repr(e))

        threads = [threading.Thread(target=ask, args=(m, i)) for m in ("one", "two") for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and len(results) == 8
        engines = {e["model"]: e for e in d.engines()}
        assert set(engines) == {"one@1.0.0", "two@1.0.0"}
        generated = d.generated_tokens()  # each of the 4 requests per model generated at least 1
        assert generated["one@1.0.0"] >= 4 and generated["two@1.0.0"] >= 4, generated
        # Different weights, same request: different answers.
        assert any(results[("one", i)] != results[("two", i)] for i in range(4))
        ps = d.get("/api/ps")["models"]
        assert sorted(m["model"] for m in ps) == ["one:latest", "two:latest"]
