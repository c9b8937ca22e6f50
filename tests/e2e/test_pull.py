"""`llmasos pull URL` against a local HTTP server with Range/ETag support and injected faults:
a dropped connection, a stalled one, wrong bytes, a server that ignores Range, one that answers
with the wrong Content-Range, one that sends no validator, an ETag that changes between
requests (once, or on every request), slow streaming. The pull must resume or restart
correctly, give up after the documented number of attempts or restarts, and never register a
corrupt blob; kill -9 in the middle resumes; two concurrent pulls store the blob once; a crash
between storing the blob and recording its version leaves a registry that recovery repairs.

The server is on loopback, which pull refuses unless --allow-private is given, so every pull
that should reach it passes that flag. Every test gets its own LLMASOS_HOME.
"""
import hashlib
import http.server
import json
import os
import re
import resource
import signal
import subprocess
import threading
import time

import pytest

BUILD = os.environ.get("LLMASOS_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
LLMASOS = os.path.join(BUILD, "llmasos")
MAKE_TINY = os.path.join(BUILD, "make_tiny_model")


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class ModelServer:
    """Serves `files` ({path: bytes}) with ETag, Range and If-Range, and records every request.

    Faults, settable between and during pulls:
      drops          the next `drops` GETs send only `drop_after` bytes of the body, then close
      corrupt        flip one byte in every body
      ignore_range   answer 200 with the whole file even when a Range was asked for
      swap_after     after this many GETs, serve `swap_to` (new bytes, new ETag) instead, and
                     ignore If-Range while doing it (the worst case: a 206 of the new file)
      no_length      send no Content-Length (the body ends when the connection closes)
      chunk_delay    seconds to sleep after each 4 KiB of body (slow streaming)
      stall_after    send this many body bytes, then wait for `release` (at most 20 s)
      stalls         the next `stalls` GETs send `stall_at` body bytes, then hang as above
      change_every   every GET serves a new version of the file (new bytes, new ETag), and
                     ignores If-Range while doing it
      bad_range      a Range request gets a 206 of the whole file, labelled bytes 0-
      no_validator   send no ETag (the server sends no Last-Modified either)
    """

    def __init__(self, files):
        self.files = dict(files)
        self.etags = {p: '"v1-%s"' % hashlib.sha256(b).hexdigest()[:12] for p, b in files.items()}
        self.log = []  # (method, path, Range header, If-Range header, status)
        self.drops = 0
        self.drop_after = 0
        self.corrupt = False
        self.ignore_range = False
        self.swap_after = None
        self.swap_to = None
        self.no_length = False
        self.chunk_delay = 0.0
        self.stall_after = None
        self.stalls = 0
        self.stall_at = 0
        self.change_every = False
        self.bad_range = False
        self.no_validator = False
        self.release = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.httpd.server_address[1], path)

    def gets(self):
        return [e for e in self.log if e[0] == "GET"]

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, h):
        path = h.path
        if path.startswith("/redirect-to-file"):
            h.send_response(302)
            h.send_header("Location", "file:///etc/passwd")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if path.startswith("/r/"):
            h.send_response(302)
            h.send_header("Location", path[2:])
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        with self.lock:
            num_gets = len(self.gets())
            if self.swap_after is not None and num_gets >= self.swap_after and path in self.files:
                self.files[path] = self.swap_to
                self.etags[path] = '"v2-%s"' % hashlib.sha256(self.swap_to).hexdigest()[:12]
            if self.change_every and path in self.files:
                self.files[path] = self.files[path] + b"\0"  # still a GGUF: padding after the data
                self.etags[path] = '"v%d-%s"' % (num_gets + 3, hashlib.sha256(self.files[path]).hexdigest()[:12])
            data = self.files.get(path)
            etag = self.etags.get(path)
            rng = h.headers.get("Range")
            if_range = h.headers.get("If-Range")
            drop = self.drops > 0
            if drop:
                self.drops -= 1
            stall_after = self.stall_after
            if self.stalls > 0:
                self.stalls -= 1
                stall_after = self.stall_at
        if data is None:
            self.log.append(("GET", path, rng, if_range, 404))
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        start = 0
        status = 200
        honour = rng is not None and not self.ignore_range
        if (honour and if_range is not None and if_range != etag and self.swap_after is None
                and not self.change_every):
            honour = False  # the file changed: RFC 9110 says send it whole
        if honour:
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            assert m, rng
            start = int(m.group(1))
            if start >= len(data):
                self.log.append(("GET", path, rng, if_range, 416))
                h.send_response(416)
                h.send_header("Content-Range", "bytes */%d" % len(data))
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            status = 206
        body = data[start:]
        if status == 206 and self.bad_range:
            start, body = 0, data
        if self.corrupt:
            body = bytearray(body)
            body[len(body) // 2] ^= 0xFF
            body = bytes(body)
        self.log.append(("GET", path, rng, if_range, status))
        h.send_response(status)
        if not self.no_validator:
            h.send_header("ETag", etag)
        h.send_header("Accept-Ranges", "bytes")
        if status == 206:
            h.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        if self.no_length:
            h.send_header("Connection", "close")
            h.close_connection = True
        else:
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        try:
            if drop:
                h.wfile.write(body[: self.drop_after])
                h.wfile.flush()
                h.close_connection = True
                return
            sent = 0
            while sent < len(body):
                if stall_after is not None and sent >= stall_after:
                    self.release.wait(20)
                    h.close_connection = True
                    return
                step = 4096
                if stall_after is not None:
                    step = min(step, stall_after - sent) or step
                h.wfile.write(body[sent : sent + step])
                h.wfile.flush()
                sent += step
                if self.chunk_delay:
                    time.sleep(self.chunk_delay)
        except (BrokenPipeError, ConnectionResetError):
            pass


def make_model(tmp_path, seed, wtype="q8_0"):
    path = str(tmp_path / ("m%d.gguf" % seed))
    subprocess.run([MAKE_TINY, "--out", path, "--seed", str(seed), "--type", wtype], check=True,
                   capture_output=True)
    return open(path, "rb").read()


@pytest.fixture
def model(tmp_path):
    return make_model(tmp_path, 1)


@pytest.fixture
def server(model):
    s = ModelServer({"/tiny.gguf": model})
    yield s
    s.close()


@pytest.fixture
def home(tmp_path):
    return str(tmp_path / "home")


def cli(home, *args, check=True, **kwargs):
    env = dict(os.environ, LLMASOS_HOME=home)
    env.pop("LLMASOS_TEST_PULL_CRASH", None)
    env.update(kwargs.pop("env", {}))
    proc = subprocess.run([LLMASOS, *args], capture_output=True, text=True, timeout=60, env=env, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"llmasos {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def pull(home, url, *args, check=True, **kwargs):
    return cli(home, "pull", url, "--allow-private", *args, check=check, **kwargs)


def blobs(home):
    d = os.path.join(home, "blobs")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def parts(home):
    d = os.path.join(home, "downloads")
    return sorted(f for f in os.listdir(d) if f.endswith(".part")) if os.path.isdir(d) else []


def versions(home):
    return [(e["name"], e["version"], e["digest"]) for e in json.loads(cli(home, "list", "--json").stdout)]


def assert_nothing_stored(home):
    assert blobs(home) == []
    d = os.path.join(home, "downloads")
    assert not os.path.isdir(d) or os.listdir(d) == []  # no part file, sidecar or lock
    assert versions(home) == []


def test_clean_pull_registers_the_verified_file(home, server, model):
    url = server.url("/tiny.gguf")
    proc = pull(home, url)
    assert "pulled tiny@1.0.0 " + sha256(model) in proc.stdout
    assert "verifying sha256 digest" in proc.stderr and "success" in proc.stderr
    m = json.loads(cli(home, "show", "tiny", "--json").stdout)
    assert m["digest"] == sha256(model) and m["size_bytes"] == len(model)
    assert m["lineage"]["command"] == "pull" and m["lineage"]["source"] == url
    assert open(m["blob_path"], "rb").read() == model
    assert blobs(home) == ["sha256-" + sha256(model)[7:]] and parts(home) == []
    # Through a redirect, with a name, a version and the right digest.
    proc = pull(home, server.url("/r/tiny.gguf"), "--name", "ns/other", "--version", "2.0.0",
                "--digest", sha256(model), "-q")
    assert "pulled ns/other@2.0.0" in proc.stdout and proc.stderr == ""
    assert len(blobs(home)) == 1
    # Pulling the same thing again adds nothing.
    assert "nothing added" in pull(home, url).stdout
    assert [v[:2] for v in versions(home)] == [("ns/other", "2.0.0"), ("tiny", "1.0.0")]


def test_refusals_name_what_is_wrong(home, server):
    # Loopback is refused before anything is sent.
    proc = cli(home, "pull", server.url("/tiny.gguf"), check=False)
    assert proc.returncode == 1
    assert "127.0.0.1 (loopback)" in proc.stderr and "--allow-private" in proc.stderr
    assert server.log == []
    for url, words in [("ftp://127.0.0.1/tiny.gguf", "only http and https"),
                       (server.url("/missing.gguf"), "HTTP 404"),
                       (server.url("/redirect-to-file"), "fetching")]:
        proc = pull(home, url, "--name", "x", check=False)
        assert proc.returncode != 0 and words in proc.stderr, proc.stderr
    proc = pull(home, server.url("/tiny.gguf"), "--digest", "sha256:abc", check=False)
    assert proc.returncode != 0 and "digest" in proc.stderr
    assert_nothing_stored(home)


def test_dropped_connection_resumes_with_range(home, server, model):
    server.drops, server.drop_after = 1, 40000
    proc = pull(home, server.url("/tiny.gguf"), "--digest", sha256(model))
    assert "pulled tiny@1.0.0" in proc.stdout and "resuming at 40000 bytes" in proc.stderr
    gets = server.gets()
    assert len(gets) == 2 and gets[0][2] is None
    assert gets[1][2] == "bytes=40000-" and gets[1][3] == server.etags["/tiny.gguf"] and gets[1][4] == 206
    assert versions(home)[0][2] == sha256(model)


def test_server_ignoring_range_restarts_from_zero(home, server, model):
    server.drops, server.drop_after = 1, 50000
    server.ignore_range = True
    proc = pull(home, server.url("/tiny.gguf"))
    assert "restarting" in proc.stderr
    assert [g[4] for g in server.gets()] == [200, 200] and server.gets()[1][2] == "bytes=50000-"
    assert versions(home)[0][2] == sha256(model)


def test_changed_etag_restarts_and_never_mixes_files(home, server, model, tmp_path):
    newer = make_model(tmp_path, 2)
    server.drops, server.drop_after = 1, 50000
    server.swap_after, server.swap_to = 1, newer  # the second GET gets a 206 of another file
    proc = pull(home, server.url("/tiny.gguf"))
    assert "the ETag changed" in proc.stderr
    gets = server.gets()
    assert [(g[2] is not None, g[4]) for g in gets] == [(False, 200), (True, 206), (False, 200)]
    assert versions(home)[0][2] == sha256(newer)
    assert blobs(home) == ["sha256-" + sha256(newer)[7:]]


def test_416_for_a_shrunken_file_restarts(home, server, model, tmp_path):
    smaller = make_model(tmp_path, 2, "q4_0")
    assert len(smaller) < 100000 < len(model)
    server.drops, server.drop_after = 1, 100000
    server.swap_after, server.swap_to = 1, smaller
    proc = pull(home, server.url("/tiny.gguf"))
    assert "HTTP 416" in proc.stderr
    assert [g[4] for g in server.gets()] == [200, 416, 200]
    assert versions(home)[0][2] == sha256(smaller)


def test_stalled_connection_is_dropped_and_resumed(home, server, model):
    # The server stops sending after 40000 bytes and holds the connection open (20 s); with a
    # 1 s stall timeout the pull drops it and resumes where it was.
    server.stalls, server.stall_at = 1, 40000
    proc = pull(home, server.url("/tiny.gguf"), "--stall-timeout", "1", "--digest", sha256(model))
    assert "pulled tiny@1.0.0" in proc.stdout and "resuming at 40000 bytes" in proc.stderr
    gets = server.gets()
    assert [(g[2], g[4]) for g in gets] == [(None, 200), ("bytes=40000-", 206)]
    assert versions(home)[0][2] == sha256(model)
    for bad in ("0", "3601", "soon"):
        proc = pull(home, server.url("/tiny.gguf"), "--stall-timeout", bad, check=False)
        assert proc.returncode != 0 and "--stall-timeout" in proc.stderr, proc.stderr


def test_gives_up_after_five_attempts_and_keeps_the_part_for_later(home, server, model):
    server.drops, server.drop_after = 100, 1000  # every transfer breaks off after 1000 bytes
    proc = pull(home, server.url("/tiny.gguf"), check=False)
    assert proc.returncode == 1 and "giving up after 5 attempts" in proc.stderr, proc.stderr
    gets = server.gets()
    assert [g[2] for g in gets] == [None] + ["bytes=%d-" % (1000 * i) for i in range(1, 5)]
    assert blobs(home) == [] and versions(home) == []
    part = parts(home)
    assert len(part) == 1 and os.path.getsize(os.path.join(home, "downloads", part[0])) == 5000
    server.drops = 0  # the network is back: the next pull resumes what the last one got
    proc = pull(home, server.url("/tiny.gguf"))
    assert "resuming at 5000 bytes" in proc.stderr
    assert versions(home)[0][2] == sha256(model) and parts(home) == []


def test_a_file_that_keeps_changing_is_given_up_on(home, server):
    # Every transfer breaks off, and every request gets a new version of the file: each resume
    # sees a new ETag and restarts from zero. The fourth change is one too many.
    server.drops, server.drop_after = 100, 1000
    server.change_every = True
    proc = pull(home, server.url("/tiny.gguf"), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "keeps changing while it downloads (the ETag changed" in proc.stderr, proc.stderr
    assert proc.stderr.count("restarting: the ETag changed") == 3
    # From zero, resume (a changed file), and so on: four restarts need eight requests.
    assert [(g[2] is not None, g[4]) for g in server.gets()] == [(False, 200), (True, 206)] * 4
    assert_nothing_stored(home)


def test_wrong_content_range_restarts_from_zero(home, server, model):
    server.drops, server.drop_after = 1, 40000
    server.bad_range = True  # the resume gets a 206 of the whole file, labelled bytes 0-
    proc = pull(home, server.url("/tiny.gguf"), "--digest", sha256(model))
    assert ("restarting: asked for bytes 40000- but the server sent Content-Range 'bytes 0-%d/%d'"
            % (len(model) - 1, len(model))) in proc.stderr, proc.stderr
    assert [(g[2], g[4]) for g in server.gets()] == [(None, 200), ("bytes=40000-", 206), (None, 200)]
    assert versions(home)[0][2] == sha256(model)


def test_server_without_validator_is_never_resumed(home, server, model, tmp_path):
    # No ETag and no Last-Modified: nothing tells a resumed range from a changed file, so a
    # dropped transfer starts again from zero without Range or If-Range.
    server.no_validator = True
    server.drops, server.drop_after = 1, 40000
    proc = pull(home, server.url("/tiny.gguf"), "--digest", sha256(model))
    assert "resuming" not in proc.stderr
    assert [(g[2], g[3], g[4]) for g in server.gets()] == [(None, None, 200), (None, None, 200)]
    assert versions(home)[0][2] == sha256(model)
    # Nor is a part file a killed pull left behind: the next pull downloads afresh.
    other = make_model(tmp_path, 3)
    server.files["/other.gguf"] = other
    server.etags["/other.gguf"] = '"unused"'
    server.stalls, server.stall_at = 1, 40000
    env = dict(os.environ, LLMASOS_HOME=home)
    p = subprocess.Popen([LLMASOS, "pull", server.url("/other.gguf"), "--allow-private", "-q"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ps = parts(home)
            if ps and os.path.getsize(os.path.join(home, "downloads", ps[0])) >= 40000:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the pull never wrote its first 40000 bytes")
    finally:
        p.kill()
        p.wait()
    server.release.set()
    proc = pull(home, server.url("/other.gguf"), "--digest", sha256(other))
    assert "resuming" not in proc.stderr
    assert server.gets()[-1][1:4] == ("/other.gguf", None, None)
    assert sha256(other) in [v[2] for v in versions(home)]


def test_wrong_bytes_with_digest_register_nothing(home, server, model):
    server.corrupt = True
    proc = pull(home, server.url("/tiny.gguf"), "--digest", sha256(model), check=False)
    assert proc.returncode == 1
    assert "does not match its digest" in proc.stderr and sha256(model) in proc.stderr
    assert_nothing_stored(home)


def test_size_limit_is_checked_up_front_and_while_streaming(home, server, model):
    proc = pull(home, server.url("/tiny.gguf"), "--max-size", "1K", check=False)
    assert proc.returncode == 1 and "size limit of 1024 bytes" in proc.stderr
    assert len(server.gets()) == 1
    server.no_length = True  # nothing announced: the limit stops the stream
    proc = pull(home, server.url("/tiny.gguf"), "--max-size", "64K", check=False)
    assert proc.returncode == 1 and "larger than the size limit of 65536 bytes" in proc.stderr
    assert_nothing_stored(home)
    proc = pull(home, server.url("/tiny.gguf"), "--max-size", "huge", check=False)
    assert proc.returncode != 0 and "not a size" in proc.stderr


def test_full_disk_is_reported_and_leaves_nothing(home, server, model):
    cli(home, "list")  # the registry exists before the limit applies

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(model) // 2, len(model) // 2))

    proc = pull(home, server.url("/tiny.gguf"), check=False, preexec_fn=small_disk)
    assert proc.returncode == 1, proc.stderr
    assert "disk full writing" in proc.stderr and "/downloads/" in proc.stderr
    assert_nothing_stored(home)
    pull(home, server.url("/tiny.gguf"))  # with room again it works
    assert versions(home)[0][2] == sha256(model)


def test_kill_9_mid_pull_then_pull_again_resumes(home, server, model):
    server.stall_after = 60000
    env = dict(os.environ, LLMASOS_HOME=home)
    p = subprocess.Popen([LLMASOS, "pull", server.url("/tiny.gguf"), "--allow-private", "-q"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        part = None
        while time.monotonic() < deadline:
            ps = parts(home)
            if ps and os.path.getsize(os.path.join(home, "downloads", ps[0])) >= 60000:
                part = ps[0]
                break
            time.sleep(0.02)
        assert part is not None, "the pull never wrote its first 60000 bytes"
    finally:
        p.kill()
        p.wait()
    assert p.returncode == -signal.SIGKILL
    server.stall_after = None
    server.release.set()
    assert blobs(home) == []
    proc = pull(home, server.url("/tiny.gguf"))
    assert "resuming at 60000 bytes" in proc.stderr
    assert server.gets()[-1][2] == "bytes=60000-" and server.gets()[-1][4] == 206
    assert versions(home)[0][2] == sha256(model) and parts(home) == []


def test_two_concurrent_pulls_store_the_blob_once(home, server, model):
    cli(home, "list")
    server.chunk_delay = 0.03  # ~1 s for the file, so the two overlap
    env = dict(os.environ, LLMASOS_HOME=home)
    cmd = [LLMASOS, "pull", server.url("/tiny.gguf"), "--allow-private"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    stdout = "".join(o[0] for o in outs)
    assert stdout.count("pulled tiny@1.0.0") == 1 and stdout.count("nothing added") == 1
    assert "waiting for another pull" in "".join(o[1] for o in outs)
    assert len(server.gets()) == 1
    assert blobs(home) == ["sha256-" + sha256(model)[7:]]
    assert [v[:2] for v in versions(home)] == [("tiny", "1.0.0")]


def test_crash_between_blob_and_version_is_repaired_by_recovery(home, server, model):
    proc = pull(home, server.url("/tiny.gguf"), check=False, env={"LLMASOS_TEST_PULL_CRASH": "after-blob"})
    assert proc.returncode == 86
    assert blobs(home) == ["sha256-" + sha256(model)[7:]]  # stored, but no version names it
    proc = cli(home, "list", "--json")
    assert "1 orphan blob(s)" in proc.stderr and json.loads(proc.stdout) == []
    assert blobs(home) == []
    pull(home, server.url("/tiny.gguf"))
    assert versions(home)[0][2] == sha256(model)
