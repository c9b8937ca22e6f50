"""`llmasos serve --tls-cert FILE --tls-key FILE` (or the same keys in config.toml): HTTPS with a
certificate the test makes with the openssl command (its own CA, so clients verify for real).
The OpenAI client, the console's files and /metrics work over it; a client that speaks plain
HTTP to the port gets a 400 saying to use https, and neither it nor a broken handshake harms
the daemon or leaks its connection; bad or mismatched files are start-up errors naming them."""
import http.client
import os
import socket
import ssl
import subprocess
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serve_util import LLMASOS, cli, serving, tiny_home


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(d, name):
    key, crt = str(d / f"{name}.key"), str(d / f"{name}.crt")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, crt


def make_server_cert(d, name, ca_key, ca_crt):
    """A key and a certificate for 127.0.0.1 and localhost, signed by the CA."""
    key, csr, crt, ext = (str(d / f"{name}.{x}") for x in ("key", "csr", "crt", "ext"))
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
            "-out", csr, "-subj", "/CN=127.0.0.1")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
            "-days", "2", "-extfile", ext)
    return key, crt


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca_crt = make_ca(d, "ca")
    key, crt = make_server_cert(d, "server", ca_key, ca_crt)
    other_key, other_crt = make_server_cert(d, "other", ca_key, ca_crt)
    chain = d / "chain.crt"  # the server's certificate, then the CA's: a chain file
    chain.write_text(open(crt).read() + open(ca_crt).read())
    return {"dir": d, "ca": ca_crt, "key": key, "crt": crt, "chain": str(chain), "other_key": other_key}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, pki):
    tmp = tmp_path_factory.mktemp("serve_tls")
    home = tiny_home(tmp)
    config = tmp / "config.toml"  # the TLS keys from the configuration file
    config.write_text(f'tls-cert = "{pki["chain"]}"\ntls-key = "{pki["key"]}"\n')
    with serving(home, "--config", str(config), "--models", "tiny", "--threads", "1", "--ctx-size", "128",
                 ssl_context=ssl.create_default_context(cafile=pki["ca"])) as d:
        yield d


def test_serve_prints_https_addresses(daemon):
    assert daemon.url.startswith("https://127.0.0.1:")
    assert any(line.startswith("console: https://127.0.0.1:") for line in daemon.log)


def test_openai_client_over_https_verifies_the_ca(daemon, pki):
    client = openai.OpenAI(base_url=daemon.url + "/v1", api_key="none",
                           http_client=httpx.Client(verify=ssl.create_default_context(cafile=pki["ca"])))
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens >= 1
    parts = list(client.completions.create(model="tiny", prompt="hi", max_tokens=4, stream=True))
    assert parts and all(p.object == "text_completion" for p in parts)
    e = client.embeddings.create(model="tiny", input=["a", "b"])
    assert len(e.data) == 2
    # Without the CA the certificate is not trusted: the connection really is TLS with it.
    untrusting = openai.OpenAI(base_url=daemon.url + "/v1", api_key="none", max_retries=0,
                               http_client=httpx.Client(verify=ssl.create_default_context()))
    with pytest.raises(openai.APIConnectionError):
        untrusting.models.list()


def test_console_and_metrics_over_https(daemon):
    ctx = daemon.ssl_context
    host, port = daemon.host_port
    c = http.client.HTTPSConnection(host, port, timeout=30, context=ctx)
    c.request("GET", "/")
    r = c.getresponse()
    page = r.read().decode()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/html") and "LLMasOS console" in page
    c.request("GET", "/console/console.js")  # the same connection: keep-alive over TLS
    r = c.getresponse()
    assert r.status == 200 and b"fetch(" in r.read()
    c.request("GET", "/metrics")
    r = c.getresponse()
    families = {f.name for f in text_string_to_metric_families(r.read().decode())}
    assert r.status == 200 and "vllm:num_requests_running" in families
    c.close()


def open_fds(daemon):
    return len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))


def test_plain_http_and_broken_handshakes_fail_cleanly_and_serving_goes_on(daemon):
    host, port = daemon.host_port
    assert daemon.get("/health")["status"] == "ok"
    baseline = open_fds(daemon)
    for _ in range(3):
        # Plain HTTP to the TLS port: a plain 400 that says to use https, then the close.
        c = http.client.HTTPConnection(host, port, timeout=30)
        c.request("GET", "/health")
        r = c.getresponse()
        body = r.read().decode()
        assert r.status == 400 and "https" in body
        c.close()
        # A TLS client that does not trust the certificate gives up in the handshake.
        with pytest.raises(ssl.SSLError):
            with socket.create_connection((host, port), timeout=30) as s:
                ssl.create_default_context().wrap_socket(s, server_hostname="127.0.0.1")
        # A client that starts a TLS handshake and goes away; one that connects and says nothing.
        with socket.create_connection((host, port), timeout=30) as s:
            s.sendall(b"\x16\x03\x01\x00\x05\x01\x00")
        socket.create_connection((host, port), timeout=30).close()
    # Every one of those connections is closed by the daemon (no leak), and it serves on.
    deadline = time.time() + 30
    while open_fds(daemon) > baseline and time.time() < deadline:
        time.sleep(0.1)
    assert open_fds(daemon) <= baseline
    assert daemon.alive() and daemon.get("/health")["status"] == "ok"


def test_shell_commands_reach_an_https_daemon_with_its_ca(daemon, pki):
    """`llmasos ps` over https: verified against --cacert (or $LLMASOS_CACERT); without the CA
    the certificate is refused with a hint, and the address's scheme is checked."""
    port = daemon.url.rsplit(":", 1)[1]
    ok = cli(daemon.home, "ps", "--host", "https://127.0.0.1", "--port", port, "--cacert", pki["ca"])
    assert ok.stdout.startswith("ID "), ok.stdout
    env_ok = subprocess.run([LLMASOS, "ps"], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, LLMASOS_HOME=daemon.home, LLMASOS_HOST=daemon.url,
                                     LLMASOS_CACERT=pki["ca"]))
    assert env_ok.returncode == 0 and env_ok.stdout.startswith("ID "), env_ok.stderr
    untrusted = cli(daemon.home, "ps", "--host", "https://127.0.0.1", "--port", port, check=False)
    assert untrusted.returncode == 1
    assert "--cacert" in untrusted.stderr and "certificate" in untrusted.stderr.lower(), untrusted.stderr
    plain = cli(daemon.home, "ps", "--host", "127.0.0.1", "--port", port, check=False)
    assert plain.returncode == 1 and "use an https:// address" in plain.stderr, plain.stderr
    bad = cli(daemon.home, "ps", "--host", "ftp://127.0.0.1", "--port", port, check=False)
    assert bad.returncode == 1 and "scheme" in bad.stderr, bad.stderr


def start_error(tmp_path, *args):
    """Runs `llmasos serve` expecting it to refuse to start; its stderr."""
    home = str(tmp_path / "home")
    proc = cli(home, "serve", "--port", "0", *args, check=False, timeout=60)
    assert proc.returncode != 0, proc.stderr
    assert "listening on" not in proc.stderr
    return proc.stderr


def test_bad_tls_files_are_start_up_errors_naming_them(tmp_path, pki):
    crt, key = pki["crt"], pki["key"]
    assert "--tls-key" in start_error(tmp_path, "--tls-cert", crt)
    assert "--tls-cert" in start_error(tmp_path, "--tls-key", key)
    missing = str(tmp_path / "absent.pem")
    err = start_error(tmp_path, "--tls-cert", missing, "--tls-key", key)
    assert missing in err and "--tls-cert" in err
    err = start_error(tmp_path, "--tls-cert", crt, "--tls-key", missing)
    assert missing in err and "--tls-key" in err
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    err = start_error(tmp_path, "--tls-cert", str(garbage), "--tls-key", key)
    assert str(garbage) in err and "certificate" in err
    err = start_error(tmp_path, "--tls-cert", crt, "--tls-key", str(garbage))
    assert str(garbage) in err and "private key" in err
    # The key of another certificate.
    err = start_error(tmp_path, "--tls-cert", crt, "--tls-key", pki["other_key"])
    assert "does not match" in err and pki["other_key"] in err and crt in err
    # An encrypted key is refused, never prompted for.
    encrypted = str(tmp_path / "encrypted.key")
    openssl("pkey", "-in", key, "-out", encrypted, "-aes256", "-passout", "pass:secret")
    err = start_error(tmp_path, "--tls-cert", crt, "--tls-key", encrypted)
    assert encrypted in err and "unencrypted" in err


def test_tls_does_not_lift_the_key_rule_for_other_addresses(tmp_path, pki):
    err = start_error(tmp_path, "--host", "0.0.0.0", "--tls-cert", pki["crt"], "--tls-key", pki["key"])
    assert "llmasos keys create" in err
