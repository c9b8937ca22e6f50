"""Starts the real daemon for the test_serve_* suites: a temporary LLMASOS_HOME with a tiny
generated model (and, where asked, the default model) imported, `llmasos serve --port 0` on
127.0.0.1, and the address it reports once it is ready."""
import contextlib
import http.client
import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request

from oracle_inputs import default_model, require

BUILD = os.environ.get("LLMASOS_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
LLMASOS = os.path.join(BUILD, "llmasos")
MAKE_TINY = os.path.join(BUILD, "make_tiny_model")
DEFAULT_MODEL_FILE = str(default_model())  # where scripts/setup installs it
DEFAULT_REF = "smollm2-135m-instruct:q4_1"


def cli(home, *args, check=True, timeout=300):
    env = dict(os.environ, LLMASOS_HOME=home)
    proc = subprocess.run([LLMASOS, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"llmasos {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def make_tiny(path, seed=1, wtype="q8_0", context=512):
    subprocess.run([MAKE_TINY, "--out", path, "--seed", str(seed), "--type", wtype, "--context", str(context)],
                   check=True, capture_output=True)
    return path


def wait_for(fn, what, timeout=120):
    """fn()'s first truthy value, polled every 50 ms; fails after `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


class Daemon:
    """`llmasos serve` in a home of its own; .url is http://127.0.0.1:PORT (https:// when it
    serves TLS: pass `ssl_context`, which trusts its certificate's CA)."""

    def __init__(self, home, *args, env=None, ssl_context=None):
        self.home = home
        self.ssl_context = ssl_context
        env = dict(os.environ, LLMASOS_HOME=home, **(env or {}))
        self.proc = subprocess.Popen([LLMASOS, "serve", "--port", "0", *args], stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True, env=env)
        self.log = []
        self.url = None
        deadline = time.time() + 120
        while self.url is None:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError(f"llmasos serve exited {self.proc.wait()}: {''.join(self.log)}")
            self.log.append(line)
            m = re.search(r"listening on (https?://[\d.]+:\d+)", line)
            if m:
                self.url = m.group(1)
            if time.time() > deadline:
                raise AssertionError("llmasos serve did not start: " + "".join(self.log))
        # Keep draining stderr so the daemon never blocks on a full pipe.
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        while True:
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=5, context=self.ssl_context) as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"llmasos serve exited {self.proc.returncode}: {''.join(self.log)}")
            if time.time() > deadline:
                raise AssertionError("llmasos serve never became ready: " + "".join(self.log))
            time.sleep(0.1)

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    @property
    def host_port(self):
        h, p = self.url.split("://", 1)[1].split(":")
        return h, int(p)

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=30, context=self.ssl_context) as r:
            return json.loads(r.read())

    def alive(self):
        return self.proc.poll() is None

    def engines(self):
        """Per loaded model instance, from GET /os/memory and GET /os/processes: its `model`
        (name@version), `instance`, `num_live` (its live processes), `kv_used_blocks`,
        `kv_total_blocks` and `kv_num_sequences`."""
        rows = self.get("/os/processes")["processes"]
        out = []
        for i in self.get("/os/memory")["instances"]:
            if "kv" not in i:
                continue  # no engine
            out.append({"model": f'{i["model"]}@{i["version"]}', "instance": i["instance"],
                        "num_live": sum(1 for r in rows if r["instance"] == i["instance"]),
                        "kv_used_blocks": i["kv"]["used_blocks"], "kv_total_blocks": i["kv"]["total_blocks"],
                        "kv_num_sequences": i["kv"]["num_sequences"]})
        return out

    def generated_tokens(self):
        """{model: tokens its engine generated since it loaded} from /metrics
        (llmasos_engine_generated_tokens_total, counted at each step)."""
        from prometheus_client.parser import text_string_to_metric_families
        with urllib.request.urlopen(self.url + "/metrics", timeout=30, context=self.ssl_context) as r:
            text = r.read().decode()
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "llmasos_engine_generated_tokens_total":
                    out[s.labels["model"]] = out.get(s.labels["model"], 0.0) + s.value
        return out

    def wait_idle(self, timeout=60):
        """Until every engine has no live process and no KV block in use; returns the stats."""
        deadline = time.time() + timeout
        while True:
            engines = self.engines()
            if all(e["num_live"] == 0 and e["kv_used_blocks"] == 0 for e in engines):
                return engines
            if time.time() > deadline:
                return engines
            time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextlib.contextmanager
def serving(home, *args, clean_exit=True, **kwargs):
    """A Daemon for the body of a `with` (or a fixture that yields inside one), stopped after it.
    When the body ends normally and clean_exit is set, the daemon must have exited with status 0
    (its log is the message); when the body raises, the daemon is stopped and the body's error
    stands. Tests that kill the daemon themselves pass clean_exit=False."""
    d = Daemon(home, *args, **kwargs)
    try:
        yield d
    except BaseException:
        d.stop()
        raise
    status = d.stop()
    if clean_exit:
        assert status == 0, f"llmasos serve exited {status}: " + "".join(d.log)


class LongStream:
    """A streamed completion of the default model that would run for minutes (up to 4000 tokens
    with its end-of-generation tokens banned by logit_bias), read on a thread of its own; the
    test kills it. .events: the parsed SSE events so far."""

    def __init__(self, d, prompt):
        host, port = d.host_port
        self.conn = http.client.HTTPConnection(host, port, timeout=300)
        body = {"model": DEFAULT_REF, "prompt": prompt, "stream": True, "max_tokens": 4000,
                "temperature": 0.7, "seed": 3, "logit_bias": {"0": -100, "1": -100, "2": -100}}
        self.conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        self.events = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        r = self.conn.getresponse()
        assert r.status == 200, r.read()
        for line in r:
            line = line.decode().strip()
            if line.startswith("data: ") and line != "data: [DONE]":
                self.events.append(json.loads(line[len("data: "):]))

    def finish(self, timeout=120):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the stream did not end"
        self.conn.close()
        return self.events


class EventLog:
    """GET /os/events (the kernel log; `query` e.g. "?kinds=admitted,killed") read on a thread of
    its own; .events: the parsed events so far. Subscribed once the constructor returns."""

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



# make_tiny_model's end-of-generation tokens (<|endoftext|> and its EOS, <|im_end|>: ids 261 and
# 263, after the 256 byte tokens and 5 merges, see tiny_model.cc), and the logit_bias that bans
# them both, so a random model's process runs to its max_tokens.
END_TOKENS = (261, 263)
NO_END = {str(t): -100 for t in END_TOKENS}


def slow_home(tmp_path):
    """A home with a slower tiny model (16384 context, 4 layers of 256) imported as `slow`: with
    its end tokens banned (NO_END as the logit_bias) its processes run until cancelled or max_tokens."""
    home = str(tmp_path / "home")
    path = str(tmp_path / "slow.gguf")
    subprocess.run([MAKE_TINY, "--out", path, "--seed", "3", "--context", "16384", "--embd", "256", "--layers", "4",
                    "--ff", "1024", "--heads", "4", "--kv-heads", "4"], check=True, capture_output=True)
    cli(home, "import", path, "--name", "slow")
    return home


def tiny_home(tmp_path, name="tiny", seed=1):
    """A home with one tiny model imported as NAME (NAME:latest)."""
    home = str(tmp_path / "home")
    model = make_tiny(str(tmp_path / f"{name}.gguf"), seed=seed)
    cli(home, "import", model, "--name", name)
    return home


def default_home(tmp_path):
    """A home with the default model imported as DEFAULT_REF; a missing default model fails the
    test (see oracle_inputs.py)."""
    require(DEFAULT_MODEL_FILE, "the default model")
    home = str(tmp_path / "home")
    name, tag = DEFAULT_REF.split(":")
    cli(home, "import", DEFAULT_MODEL_FILE, "--name", name)
    cli(home, "tag", name, tag)
    return home


@contextlib.contextmanager
def file_server(directory):
    """Serves `directory` over HTTP on 127.0.0.1 (for /api/pull, which needs
    --allow-private-pull to reach it); yields the base URL, http://127.0.0.1:PORT."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
