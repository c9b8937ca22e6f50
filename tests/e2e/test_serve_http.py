"""`llmasos serve` as an HTTP server, with a tiny generated model: the daemon's own routes,
the model-management routes through the official `ollama` and `openai` clients, and the
protocol limits (413 before the body is read, 431, a client that never finishes its request,
malformed HTTP, unknown routes and methods), after each of which the daemon still answers.
"""
import http.client
import json
import socket

import ollama
import openai
import pytest

from serve_util import file_server, make_tiny, serving, tiny_home


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve_http")
    home = tiny_home(tmp)
    with serving(home, "--models", "tiny", "--threads", "1", "--ctx-size", "128", "--parallel", "2",
                 "--max-body-mib", "1", "--request-timeout", "1", "--allow-private-pull") as d:
        d.tmp = tmp
        yield d


def raw(daemon, data, timeout=20):
    """Sends raw bytes, returns everything the server sends until it closes (or the timeout)."""
    host, port = daemon.host_port
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
        return out


def status_and_body(response):
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head.decode(), body


def request(daemon, method, path, body=None, headers=None):
    host, port = daemon.host_port
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def test_health_ready_and_version(daemon):
    assert daemon.get("/health") == {"status": "ok"}
    assert daemon.get("/ready") == {"status": "ready"}
    assert daemon.get("/api/version")["version"]


def test_keep_alive_serves_several_requests_on_one_connection(daemon):
    host, port = daemon.host_port
    c = http.client.HTTPConnection(host, port, timeout=30)
    for _ in range(3):
        c.request("GET", "/health")
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
    c.close()


def test_unknown_route_is_404_and_wrong_method_405_in_each_api_shape(daemon):
    status, _, body = request(daemon, "GET", "/v1/nothing")
    assert status == 404
    err = json.loads(body)["error"]
    assert "/v1/nothing" in err["message"] and err["type"] == "invalid_request_error"
    status, _, body = request(daemon, "GET", "/api/nothing")
    assert status == 404 and "/api/nothing" in json.loads(body)["error"]
    status, headers, body = request(daemon, "GET", "/v1/chat/completions")
    assert status == 405 and headers["Allow"] == "POST" and "GET" in json.loads(body)["error"]["message"]
    status, headers, body = request(daemon, "POST", "/api/tags")
    assert status == 405 and isinstance(json.loads(body)["error"], str)


def test_models_through_the_openai_client(daemon):
    client = openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused")
    ids = [m.id for m in client.models.list()]
    assert "tiny:latest" in ids and "tiny@1.0.0" in ids


def test_tags_ps_and_show_through_the_ollama_client(daemon):
    client = ollama.Client(host=daemon.url)
    names = [m.model for m in client.list().models]
    assert "tiny:latest" in names
    running = client.ps().models
    assert [m.model for m in running] == ["tiny:latest"] and running[0].size > 0
    shown = client.show("tiny")
    assert shown.details.family == "llama" and shown.details.quantization_level == "Q8_0"
    assert shown.modelinfo["general.architecture"] == "llama"
    with pytest.raises(ollama.ResponseError) as e:
        client.show("absent-model")
    assert e.value.status_code == 404


def test_copy_and_delete_through_the_ollama_client(daemon):
    client = ollama.Client(host=daemon.url)
    assert client.copy("tiny", "tiny-copy").status == "success"
    assert "tiny-copy:latest" in [m.model for m in client.list().models]
    assert client.delete("tiny-copy").status == "success"
    assert "tiny-copy:latest" not in [m.model for m in client.list().models]
    # The original, which the copy shared its blob with, is still served.
    assert client.show("tiny").details.family == "llama"
    status, _, body = request(daemon, "DELETE", "/api/delete", json.dumps({"model": "tiny-copy"}))
    assert status == 404 and "tiny-copy" in json.loads(body)["error"]


def test_pull_from_a_local_server_streams_progress(daemon):
    served = daemon.tmp / "served"
    served.mkdir()
    make_tiny(str(served / "pulled.gguf"), seed=9)
    with file_server(served) as base:
        url = f"{base}/pulled.gguf"
        client = ollama.Client(host=daemon.url)
        statuses = [p.status for p in client.pull(url, stream=True)]
        assert statuses[-1] == "success" and "downloading" in statuses or "verifying sha256 digest" in statuses
        assert "pulled:latest" in [m.model for m in client.list().models]
        # A non-streamed pull of a name with the URL beside it.
        status, _, body = request(daemon, "POST", "/api/pull",
                                  json.dumps({"model": "pulled2", "url": url, "stream": False}))
        assert status == 200 and json.loads(body) == {"status": "success"}
        # A URL that does not answer: the error comes in the stream, without a path.
        with pytest.raises(ollama.ResponseError) as e:
            list(client.pull(f"{base}/missing.gguf", stream=True))
        assert "404" in str(e.value) or "not found" in str(e.value).lower()

def test_model_names_are_validated_before_any_lookup(daemon):
    for body in ({"model": "../../etc/passwd"}, {"model": "a/../b"}, {"model": ""}, {"model": 7}, {}):
        status, _, data = request(daemon, "POST", "/api/show", json.dumps(body))
        assert status == 400, (body, status)
        assert json.loads(data)["error"]
        assert daemon.home not in data.decode()


def test_a_body_over_the_limit_is_413_before_it_is_sent(daemon):
    # Content-Length says 100 MB; nothing of the body is sent, yet the answer comes.
    out = raw(daemon, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100000000\r\n\r\n")
    status, _, body = status_and_body(out)
    assert status == 413 and "100000000" in json.loads(body)["error"]["message"]
    assert daemon.alive()


def test_a_chunked_body_over_the_limit_is_413(daemon):
    chunk = b"x" * 65536
    data = b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    data += (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 20  # 1.25 MiB against a 1 MiB limit
    data += b"0\r\n\r\n"
    status, _, body = status_and_body(raw(daemon, data))
    assert status == 413 and isinstance(json.loads(body)["error"], str)
    assert daemon.get("/health") == {"status": "ok"}


def test_too_many_or_too_large_headers_are_431(daemon):
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(500))
    status, _, _ = status_and_body(raw(daemon, b"GET /health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"))
    assert status == 431
    big = b"X-Big: " + b"a" * 65536 + b"\r\n"
    status, _, _ = status_and_body(raw(daemon, b"GET /health HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n"))
    assert status == 431
    assert daemon.get("/health") == {"status": "ok"}


def test_a_client_that_never_finishes_its_request_is_closed(daemon):
    # --request-timeout 1: half a request head, then silence; the server closes the connection.
    host, port = daemon.host_port
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"mo")
        assert s.recv(1024) == b""  # closed by the server, not by our 30 s timeout
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(b"GET /hea")
        assert s.recv(1024) == b""
    assert daemon.get("/health") == {"status": "ok"}


def test_malformed_http_is_400(daemon):
    status, _, body = status_and_body(raw(daemon, b"NOT HTTP AT ALL\r\n\r\n"))
    assert status == 400 and "error" in json.loads(body)
    assert daemon.alive()
