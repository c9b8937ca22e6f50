"""API keys of `llmasos serve`, through the official clients: no keys means loopback only
(a wider address is refused at start); with keys, the openai and ollama clients get in with
theirs and get 401 without, a revoked key is refused by the running daemon, scopes give 403,
per-key limits give 429 with Retry-After, and usage is on disk when a response ends, so it
survives `kill -9` of the daemon; the shell's /os commands send --api-key or LLMASOS_API_KEY
and name a 401 or 403.
"""
import json
import os
import signal
import subprocess
import urllib.error
import urllib.request

import ollama
import openai
import pytest

from serve_util import LLMASOS, Daemon, cli, serving, tiny_home

PROMPT = "Name three colours."
SERVE_ARGS = ("--models", "tiny", "--threads", "2", "--ctx-size", "256", "--parallel", "2")


def create_key(home, *args):
    out = cli(home, "keys", "create", "--json", *args).stdout
    return json.loads(out)


def list_keys(home):
    return {k["id"]: k for k in json.loads(cli(home, "keys", "list", "--json").stdout)}


def http(url, method="GET", body=None, headers=None):
    """(status, headers, parsed body) without raising on 4xx/5xx."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read() or b"null")


def oa(d, key):
    return openai.OpenAI(base_url=d.url + "/v1", api_key=key, max_retries=0)


def chat(d, key, **kw):
    return oa(d, key).chat.completions.create(model="tiny", messages=[{"role": "user", "content": PROMPT}],
                                              max_tokens=kw.pop("max_tokens", 5), temperature=0, **kw)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    home = tiny_home(tmp_path_factory.mktemp("serve_keys"))
    keys = {
        "all": create_key(home, "--tenant", "acme", "--scopes", "infer,models,admin"),
        "infer": create_key(home, "--tenant", "beta", "--scopes", "infer"),
        "revoke": create_key(home, "--scopes", "infer"),
        "rpm": create_key(home, "--scopes", "infer", "--rpm", "2"),
        "tpm": create_key(home, "--scopes", "infer", "--tpm", "1"),
        "budget": create_key(home, "--scopes", "infer", "--token-budget", "1"),
    }
    with serving(home, *SERVE_ARGS) as d:
        yield d, keys


def test_without_keys_the_daemon_serves_loopback_only(tmp_path):
    home = tiny_home(tmp_path)
    refused = cli(home, "serve", "--host", "0.0.0.0", "--port", "0", check=False, timeout=60)
    assert refused.returncode != 0
    assert "llmasos keys create" in refused.stderr and "127.0.0.1" in refused.stderr
    with serving(home, *SERVE_ARGS) as d:
        # Any key (or none) is accepted while no key exists: clients always send one.
        assert chat(d, "unused").choices[0].message.content is not None
        status, _, body = http(d.url + "/api/tags")
        assert status == 200 and any(m["name"].startswith("tiny") for m in body["models"])


def test_official_clients_get_in_with_a_key_and_get_401_without(keyed):
    d, keys = keyed
    good = keys["all"]["key"]
    r = chat(d, good)
    assert r.usage.completion_tokens >= 1
    with pytest.raises(openai.AuthenticationError) as e:
        chat(d, good[:-1] + ("A" if good[-1] != "A" else "B"))
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"

    client = ollama.Client(host=d.url, headers={"Authorization": "Bearer " + good})
    assert client.generate(model="tiny", prompt=PROMPT, options={"num_predict": 3}).done
    with pytest.raises(ollama.ResponseError) as e:
        ollama.Client(host=d.url).generate(model="tiny", prompt=PROMPT, options={"num_predict": 3})
    assert e.value.status_code == 401

    # x-api-key works too; public routes need nothing.
    status, _, _ = http(d.url + "/v1/models", headers={"x-api-key": good})
    assert status == 200
    status, headers, body = http(d.url + "/v1/models")
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    assert body["error"]["code"] == "invalid_api_key"
    assert http(d.url + "/health")[0] == 200 and http(d.url + "/ready")[0] == 200


def test_a_revoked_key_is_refused_by_the_running_daemon_like_an_unknown_one(keyed):
    d, keys = keyed
    key = keys["revoke"]
    assert chat(d, key["key"]).usage.completion_tokens >= 1
    cli(d.home, "keys", "revoke", key["id"])
    status, _, revoked = http(d.url + "/v1/models", headers={"Authorization": "Bearer " + key["key"]})
    assert status == 401
    status, _, unknown = http(d.url + "/v1/models", headers={"Authorization": "Bearer llmasos-nothing"})
    assert status == 401 and revoked == unknown
    assert list_keys(d.home)[key["id"]]["state"] == "revoked"


def test_a_key_without_the_routes_scope_gets_403(keyed):
    d, keys = keyed
    infer = {"Authorization": "Bearer " + keys["infer"]["key"]}
    status, _, body = http(d.url + "/api/copy", "POST", {"source": "tiny", "destination": "copy"}, infer)
    assert status == 403 and "'models'" in body["error"]
    status, _, body = http(d.url + "/os/memory", headers=infer)
    assert status == 403 and "'admin'" in body["error"]["message"]
    status, _, body = http(d.url + "/os/memory", headers={"Authorization": "Bearer " + keys["all"]["key"]})
    assert status == 200 and body["instances"]


def test_the_shell_sends_its_api_key_and_names_a_refusal(keyed):
    d, keys = keyed
    host, port = d.host_port
    at = ["--host", host, "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k != "LLMASOS_API_KEY"}
    env["LLMASOS_HOME"] = d.home

    def shell(*args, key_env=None):
        e = dict(env, **({"LLMASOS_API_KEY": key_env} if key_env is not None else {}))
        return subprocess.run([LLMASOS, *args, *at], capture_output=True, text=True, timeout=60, env=e)

    none = shell("ps")
    assert none.returncode == 1 and "401" in none.stderr and "without an API key" in none.stderr, none.stderr
    assert "--api-key" in none.stderr and "LLMASOS_API_KEY" in none.stderr
    bad = shell("ps", "--api-key", "llmasos-nothing")
    assert bad.returncode == 1 and "refused the API key (401" in bad.stderr, bad.stderr
    infer = shell("sched", "--api-key", keys["infer"]["key"])
    assert infer.returncode == 1 and "403" in infer.stderr and "admin scope" in infer.stderr, infer.stderr
    by_flag = shell("ps", "--api-key", keys["all"]["key"])
    assert by_flag.returncode == 0 and by_flag.stdout.startswith("ID"), by_flag.stderr
    by_env = shell("sched", key_env=keys["all"]["key"])
    assert by_env.returncode == 0 and "tiny" in by_env.stdout, by_env.stderr
    # The flag wins over the environment.
    assert shell("ps", "--api-key", keys["all"]["key"], key_env="llmasos-nothing").returncode == 0


def test_per_key_limits_answer_429_with_retry_after(keyed):
    d, keys = keyed
    rpm = keys["rpm"]["key"]
    chat(d, rpm)
    chat(d, rpm)
    with pytest.raises(openai.RateLimitError) as e:
        chat(d, rpm)
    assert e.value.code == "rate_limit_exceeded"
    assert 1 <= int(e.value.response.headers["Retry-After"]) <= 60

    tpm = keys["tpm"]["key"]
    chat(d, tpm)  # admitted: its tokens count once it ends
    status, headers, body = http(d.url + "/api/generate", "POST", {"model": "tiny", "prompt": PROMPT},
                                 {"x-api-key": tpm})
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60 and "tokens per minute" in body["error"]

    budget = keys["budget"]["key"]
    chat(d, budget)
    with pytest.raises(openai.RateLimitError) as e:
        chat(d, budget)
    assert e.value.code == "insufficient_quota" and "Retry-After" not in e.value.response.headers


def test_usage_is_on_disk_when_the_response_ends_and_survives_kill_9(tmp_path):
    home = tiny_home(tmp_path)
    key = create_key(home, "--tenant", "acme")
    d = Daemon(home, *SERVE_ARGS)
    prompt = generated = 0
    try:
        r = chat(d, key["key"], max_tokens=7)
        prompt += r.usage.prompt_tokens
        generated += r.usage.completion_tokens
        chunks = list(chat(d, key["key"], max_tokens=4, stream=True, stream_options={"include_usage": True}))
        usage = [c.usage for c in chunks if c.usage][-1]
        prompt += usage.prompt_tokens
        generated += usage.completion_tokens
        o = ollama.Client(host=d.url, headers={"x-api-key": key["key"]}).generate(
            model="tiny", prompt=PROMPT, options={"num_predict": 3})
        prompt += o.prompt_eval_count
        generated += o.eval_count
    finally:
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
    assert d.proc.returncode == -signal.SIGKILL
    usage = list_keys(home)[key["id"]]["usage"]
    assert usage == {"requests": 3, "prompt_tokens": prompt, "generated_tokens": generated}

    with serving(home, *SERVE_ARGS) as d:
        r = chat(d, key["key"], max_tokens=2)
    usage = list_keys(home)[key["id"]]["usage"]
    assert usage["requests"] == 4
    assert usage["prompt_tokens"] == prompt + r.usage.prompt_tokens
    assert usage["generated_tokens"] == generated + r.usage.completion_tokens
