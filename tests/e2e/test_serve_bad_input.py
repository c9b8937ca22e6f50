"""Bad input to `llmasos serve`: every case answers a 4xx whose body names the problem, in the
OpenAI shape on /v1 and the Ollama shape on /api, never with a filesystem path, and the daemon
stays up (checked after every case)."""
import http.client
import json

import pytest

from serve_util import serving, tiny_home

CTX = 128


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    home = tiny_home(tmp_path_factory.mktemp("serve_bad"))
    with serving(home, "--models", "tiny", "--threads", "1", "--ctx-size", str(CTX), "--parallel", "2") as d:
        yield d


def post(daemon, path, body):
    host, port = daemon.host_port
    c = http.client.HTTPConnection(host, port, timeout=60)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    c.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, out


def expect_error(daemon, path, body, *words, status=400):
    got, out = post(daemon, path, body)
    assert got == status, (body if not isinstance(body, bytes) else body[:80], got, out[:300])
    err = json.loads(out)["error"]
    message = err if path.startswith("/api/") else err["message"]
    assert isinstance(message, str) and message
    if not path.startswith("/api/"):
        assert err["type"] == "invalid_request_error"
    for w in words:
        assert w in message, (w, message)
    assert daemon.home not in out.decode("utf-8", "replace")
    assert daemon.get("/health") == {"status": "ok"}
    return message, err


MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/api/generate", "/api/chat"])
def test_malformed_json(daemon, path):
    expect_error(daemon, path, b'{"model": "tiny", "messages": [', "JSON")
    expect_error(daemon, path, b"", "JSON")
    expect_error(daemon, path, b"[1, 2]", "object")


def test_wrong_types(daemon):
    expect_error(daemon, "/v1/chat/completions", {"model": "tiny", "messages": "hi"}, "messages")
    expect_error(daemon, "/v1/chat/completions", {"model": 5, "messages": MSG}, "model")
    expect_error(daemon, "/v1/chat/completions", {"model": "tiny", "messages": MSG, "max_tokens": "10"}, "max_tokens")
    expect_error(daemon, "/v1/chat/completions", {"model": "tiny", "messages": MSG, "stream": "yes"}, "stream")
    expect_error(daemon, "/api/generate", {"model": "tiny", "prompt": 1}, "prompt")
    expect_error(daemon, "/api/chat", {"model": "tiny", "messages": MSG, "options": {"top_k": "x"}}, "top_k")


def test_empty_or_missing_messages_and_unknown_roles(daemon):
    expect_error(daemon, "/v1/chat/completions", {"model": "tiny", "messages": []}, "messages")
    expect_error(daemon, "/v1/chat/completions", {"model": "tiny"}, "messages")
    expect_error(daemon, "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]},
                 "role")
    expect_error(daemon, "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user"}]}, "content")
    expect_error(daemon, "/v1/completions", {"model": "tiny"}, "prompt")


@pytest.mark.parametrize("field,value", [
    ("temperature", -1), ("temperature", 1e308), ("top_p", 2), ("max_tokens", -5), ("max_tokens", 0),
    ("seed", 1.5), ("presence_penalty", 1e9), ("priority", 1e308), ("n", 1000000000), ("n", 0)])
def test_out_of_range_numbers_name_the_field(daemon, field, value):
    _, err = expect_error(daemon, "/v1/chat/completions", {"model": "tiny", "messages": MSG, field: value}, field)
    assert err["param"] == field


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_and_infinite_numbers(daemon, literal):
    body = b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": ' + literal + b"}"
    expect_error(daemon, "/v1/chat/completions", body)


def test_ollama_options_out_of_range(daemon):
    expect_error(daemon, "/api/generate", {"model": "tiny", "prompt": "x", "options": {"top_k": 1e20}}, "top_k")
    expect_error(daemon, "/api/chat", {"model": "tiny", "messages": MSG, "options": {"temperature": -3}},
                 "temperature")


def test_max_tokens_beyond_the_context(daemon):
    msg, err = expect_error(daemon, "/v1/chat/completions", {"model": "tiny", "messages": MSG, "max_tokens": 100000},
                            "max_tokens", str(CTX))
    assert err["param"] == "max_tokens"
    expect_error(daemon, "/api/generate", {"model": "tiny", "prompt": "x", "options": {"num_predict": 100000}},
                 "num_predict")


def test_a_prompt_longer_than_the_context_names_both_numbers(daemon):
    long = " ".join(["word"] * 400)
    msg, err = expect_error(daemon, "/v1/completions", {"model": "tiny", "prompt": long}, str(CTX))
    n = [int(t) for t in msg.replace(",", " ").replace(";", " ").split() if t.isdigit()]
    assert any(x > CTX for x in n), msg  # the prompt's own length is in the message too
    assert err["code"] == "context_length_exceeded"
    expect_error(daemon, "/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": long}]}, str(CTX))


def test_invalid_utf8_and_lone_surrogates(daemon):
    body = b'{"model": "tiny", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
    expect_error(daemon, "/v1/chat/completions", body, "UTF-8")
    body = b'{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800"}]}'
    expect_error(daemon, "/v1/chat/completions", body, "surrogate")


def test_json_nested_ten_thousand_deep(daemon):
    deep = b'{"model": "tiny", "messages": ' + b"[" * 10000 + b"]" * 10000 + b"}"
    expect_error(daemon, "/v1/chat/completions", deep, "deep")
    expect_error(daemon, "/api/show", b'{"model": ' + b"[" * 10000 + b"]" * 10000 + b"}", "deep")


@pytest.mark.parametrize("name", ["../tiny", "../../etc/passwd", "tiny/../../x", "/etc/passwd", "a b"])
def test_path_like_model_names_are_refused(daemon, name):
    expect_error(daemon, "/v1/chat/completions", {"model": name, "messages": MSG}, "model")
    expect_error(daemon, "/api/generate", {"model": name, "prompt": "x"})


def test_embedding_input_longer_than_the_context(daemon):
    long = " ".join(["word"] * 400)
    msg, err = expect_error(daemon, "/v1/embeddings", {"model": "tiny", "input": [long]}, "input")
    assert err["param"] == "input"
    expect_error(daemon, "/v1/embeddings", {"model": "tiny", "input": []}, "input")
    # Ollama's /api/embed cuts it to fit unless told not to.
    expect_error(daemon, "/api/embed", {"model": "tiny", "input": long, "truncate": False}, "input")
    status, out = post(daemon, "/api/embed", {"model": "tiny", "input": long})
    assert status == 200 and len(json.loads(out)["embeddings"]) == 1
