"""The model registry driven through the CLI, as a user drives it: import, list, show, tag,
history, diff, rollback, cp, rm with garbage collection, running a model by reference, and
the refusals: a bad name, a bad digest, a tampered blob, a loaded-model guard.

Every test gets its own LLMASOS_HOME, so nothing touches the user's registry.
"""
import hashlib
import json
import os
import resource
import signal
import sqlite3
import subprocess

import pytest

BUILD = os.environ.get("LLMASOS_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
LLMASOS = os.path.join(BUILD, "llmasos")
MAKE_TINY = os.path.join(BUILD, "make_tiny_model")


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    return str(h)


def cli(home, *args, check=True):
    env = dict(os.environ, LLMASOS_HOME=home)
    proc = subprocess.run([LLMASOS, *args], capture_output=True, text=True, timeout=300, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"llmasos {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def tiny(tmp_path, name, seed, wtype="q8_0"):
    path = str(tmp_path / name)
    subprocess.run([MAKE_TINY, "--out", path, "--seed", str(seed), "--type", wtype], check=True,
                   capture_output=True)
    return path


def sha256(path):
    return "sha256:" + hashlib.sha256(open(path, "rb").read()).hexdigest()


def blobs(home):
    d = os.path.join(home, "blobs")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def show(home, ref):
    return json.loads(cli(home, "show", ref, "--json").stdout)


def test_import_list_show_and_run_by_reference(tmp_path, home):
    a = tiny(tmp_path, "a.gguf", 1, "q4_1")
    out = cli(home, "import", a, "--name", "tiny", "--notes", "first cut").stdout
    assert "tiny@1.0.0" in out and sha256(a) in out
    # The blob is the file, content-addressed, and nothing else is left in blobs/.
    assert blobs(home) == ["sha256-" + sha256(a)[7:]]
    m = show(home, "tiny")
    assert m["version"] == "1.0.0" and m["digest"] == sha256(a)
    assert m["size_bytes"] == os.path.getsize(a)
    assert m["architecture"] == "llama" and m["quantization"] == "Q4_1"
    assert m["context_length"] == 256 and m["parameter_count"] > 0
    assert m["lineage"]["source"] == a and m["lineage"]["notes"] == "first cut"
    assert m["lineage"]["command"] == "import" and m["tags"] == ["latest"]
    assert open(m["blob_path"], "rb").read() == open(a, "rb").read()
    listed = json.loads(cli(home, "list", "--json").stdout)
    assert [(e["name"], e["version"]) for e in listed] == [("tiny", "1.0.0")]
    text = cli(home, "list").stdout
    assert "tiny" in text and "1.0.0" in text and "latest" in text
    # Metadata is in SQLite, in WAL mode, with a schema version.
    db = sqlite3.connect(os.path.join(home, "state.db"))
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version FROM schema_versions WHERE component='registry'").fetchone()[0] >= 1
    db.close()
    # A model command takes the reference where it took a path: same output either way.
    by_ref = cli(home, "run", "tiny@1.0.0", "--raw", "-p", "ab", "-n", "4", "--temp", "0").stdout
    by_path = cli(home, "run", a, "--raw", "-p", "ab", "-n", "4", "--temp", "0").stdout
    assert by_ref == by_path
    ev = json.loads(cli(home, "eval", "tiny", "--tokens", "1,2,3", "--greedy", "2").stdout)
    assert ev["num_tokens"] == 3 and len(ev["greedy"]) == 2


def test_tags_history_diff_and_rollback(tmp_path, home):
    a = tiny(tmp_path, "a.gguf", 1, "q8_0")
    b = tiny(tmp_path, "b.gguf", 2, "q4_1")
    c = tiny(tmp_path, "c.gguf", 3, "q4_0")
    cli(home, "import", a, "--name", "m", "--version", "1.0.0")
    cli(home, "import", b, "--name", "m", "--notes", "requantized")  # next minor: 1.1.0
    cli(home, "import", c, "--name", "m", "--version", "2.0.0-rc.1", "--no-latest")
    assert show(home, "m")["version"] == "1.1.0"
    assert show(home, "m")["lineage"]["parent_version"] == "1.0.0"
    assert show(home, "m@^1")["version"] == "1.1.0"
    assert show(home, "m@~1.0.0")["version"] == "1.0.0"
    assert show(home, 'm@">=1.0 <1.1"')["version"] == "1.0.0"
    assert show(home, "m@>=2.0.0-rc.0")["version"] == "2.0.0-rc.1"

    assert "m:stable -> 1.0.0" in cli(home, "tag", "m@1.0.0", "stable").stdout
    assert show(home, "m:stable")["version"] == "1.0.0"
    cli(home, "tag", "m@1.1.0", "stable")  # moves
    assert show(home, "m:stable")["version"] == "1.1.0"

    hist = json.loads(cli(home, "history", "m", "--json").stdout)
    assert [h["version"] for h in hist] == ["2.0.0-rc.1", "1.1.0", "1.0.0"]
    assert hist[1]["tags"] == ["latest", "stable"]
    assert hist[1]["lineage"]["notes"] == "requantized"
    assert "requantized" in cli(home, "history", "m").stdout

    diff = {d["field"]: (d["a"], d["b"]) for d in json.loads(cli(home, "diff", "m@1.0.0", "m@1.1.0", "--json").stdout)}
    assert diff["version"] == ("1.0.0", "1.1.0")
    assert diff["digest"] == (sha256(a), sha256(b))
    assert diff["quantization"] == ("Q8_0", "Q4_1")
    assert "architecture" not in diff and "context_length" not in diff
    text = cli(home, "diff", "m@1.0.0", "m@1.1.0").stdout
    assert "quantization:" in text and "Q8_0" in text and "Q4_1" in text
    assert cli(home, "diff", "m:stable", "m@1.1.0").stdout.strip() == "no differences"

    assert "m:latest -> 1.0.0" in cli(home, "rollback", "m").stdout
    assert show(home, "m")["version"] == "1.0.0"
    # Nothing earlier than 1.0.0: a clear refusal, latest unchanged.
    proc = cli(home, "rollback", "m", check=False)
    assert proc.returncode == 1 and "no earlier release" in proc.stderr
    assert show(home, "m")["version"] == "1.0.0"
    cli(home, "rollback", "m", "--to", "2.0.0-rc.1")
    assert show(home, "m")["version"] == "2.0.0-rc.1"
    proc = cli(home, "rollback", "m", "--to", "9.0.0", check=False)
    assert proc.returncode == 1 and "has no version 9.0.0" in proc.stderr


def test_copy_and_remove_with_garbage_collection(tmp_path, home):
    a = tiny(tmp_path, "a.gguf", 1)
    b = tiny(tmp_path, "b.gguf", 2)
    cli(home, "import", a, "--name", "m", "--version", "1.0.0")
    cli(home, "import", b, "--name", "m", "--version", "2.0.0")
    assert "copied to team/m@1.0.0" in cli(home, "cp", "m@1.0.0", "team/m:prod").stdout
    assert show(home, "team/m:prod")["lineage"]["source"] == "m@1.0.0"
    assert len(blobs(home)) == 2  # the copy shares the blob

    # The model manager marks versions loaded; rm refuses them unless forced.
    db = sqlite3.connect(os.path.join(home, "state.db"))
    db.execute("UPDATE registry_versions SET loaded = 1 WHERE name = 'm' AND version = '2.0.0'")
    db.commit()
    db.close()
    proc = cli(home, "rm", "m", check=False)
    assert proc.returncode == 1 and "loaded" in proc.stderr and "--force" in proc.stderr
    assert len(blobs(home)) == 2
    out = cli(home, "rm", "m", "--force").stdout
    assert "removed m@2.0.0" in out and "deleted blob " + sha256(b) in out
    assert blobs(home) == ["sha256-" + sha256(a)[7:]]
    assert show(home, "m")["version"] == "1.0.0"  # latest moved to what remains

    out = cli(home, "rm", "m@1.0.0").stdout
    assert "removed m@1.0.0" in out and "deleted blob" not in out  # team/m still uses it
    assert len(blobs(home)) == 1
    out = cli(home, "rm", "team/m:prod").stdout
    assert "deleted blob " + sha256(a) in out
    assert blobs(home) == []
    assert "no models" in cli(home, "list").stdout
    proc = cli(home, "show", "m", check=False)
    assert proc.returncode == 1 and "no model named 'm'" in proc.stderr


@pytest.mark.parametrize("name,problem", [
    ("../evil", "contains '..'"),
    ("/etc/passwd", "starts with '/'"),
    ("a/b/c", "more than one '/'"),
    ("Tiny", "use lowercase"),
    (".hidden", "must start"),
    ("bad\nname", "byte 0x0a"),
    ("x" * 200, "the limit is"),
])
def test_bad_names_are_refused_before_anything_is_written(tmp_path, home, name, problem):
    a = tiny(tmp_path, "a.gguf", 1)
    proc = cli(home, "import", a, "--name", name, check=False)
    assert proc.returncode == 2, proc.stderr
    assert problem in proc.stderr
    assert "\n" not in proc.stderr.rstrip("\n")  # a hostile name cannot break the line
    assert blobs(home) == []


def test_bad_versions_tags_and_references_are_refused(tmp_path, home):
    a = tiny(tmp_path, "a.gguf", 1)
    proc = cli(home, "import", a, "--name", "m", "--version", "1.0", check=False)
    assert proc.returncode == 2 and "MAJOR.MINOR.PATCH" in proc.stderr
    proc = cli(home, "import", a, "--name", "m", "--version", "01.0.0", check=False)
    assert proc.returncode == 2 and "leading zero" in proc.stderr
    cli(home, "import", a, "--name", "m", "--version", "1.0.0")
    proc = cli(home, "import", a, "--name", "m", "--version", "1.0.0+rebuild", check=False)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    proc = cli(home, "tag", "m", "../x", check=False)
    assert proc.returncode == 2 and "'..'" in proc.stderr
    proc = cli(home, "show", "m@>=1.0 <", check=False)
    assert proc.returncode == 2 and "no version after it" in proc.stderr
    proc = cli(home, "run", "m:nightly", "-p", "hi", check=False)
    assert proc.returncode == 1 and "has no tag 'nightly'" in proc.stderr
    proc = cli(home, "run", "nothing-here", "-p", "hi", check=False)
    assert proc.returncode == 1 and "no model named 'nothing-here'" in proc.stderr
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model" * 100)
    proc = cli(home, "import", str(junk), "--name", "junk", check=False)
    assert proc.returncode == 2 and "junk.gguf" in proc.stderr
    assert len(blobs(home)) == 1


def test_bad_digest_in_the_database_builds_no_path(tmp_path, home):
    a = tiny(tmp_path, "a.gguf", 1)
    cli(home, "import", a, "--name", "m")
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    db = sqlite3.connect(os.path.join(home, "state.db"))
    # A manifest whose digest would point outside the store if it were used to build a path.
    row = db.execute("SELECT manifest FROM registry_versions").fetchone()[0]
    manifest = json.loads(row)
    manifest["digest"] = "sha256:../../outside" + "0" * 51
    db.execute("UPDATE registry_versions SET manifest = ?", (json.dumps(manifest),))
    db.commit()
    db.close()
    for cmd in (["run", "m", "-p", "hi"], ["verify", "m"]):
        proc = cli(home, *cmd, check=False)
        assert proc.returncode != 0
        assert "DATA_LOSS" in proc.stderr and "invalid digest" in proc.stderr, proc.stderr
        assert "lowercase hex" in proc.stderr, proc.stderr
    assert outside.read_bytes() == b"secret"


def test_tampered_blob_is_detected(tmp_path, home):
    a = tiny(tmp_path, "a.gguf", 1)
    cli(home, "import", a, "--name", "m")
    assert "ok m@1.0.0" in cli(home, "verify", "m").stdout
    blob = show(home, "m")["blob_path"]
    data = bytearray(open(blob, "rb").read())
    data[len(data) // 2] ^= 0x55
    os.chmod(blob, 0o644)
    open(blob, "wb").write(bytes(data))
    proc = cli(home, "verify", "m", check=False)
    assert proc.returncode == 1 and "DATA_LOSS" in proc.stderr and "corrupt" in proc.stderr
    # A truncated blob is caught on every resolve, before loading.
    open(blob, "wb").write(bytes(data[:-10]))
    proc = cli(home, "run", "m", "-p", "hi", check=False)
    assert proc.returncode == 1 and "bytes but the manifest says" in proc.stderr


def test_recovery_removes_orphans_left_by_a_crash(tmp_path, home):
    a = tiny(tmp_path, "a.gguf", 1)
    b = tiny(tmp_path, "b.gguf", 2)
    cli(home, "import", a, "--name", "m")
    # A crash between writing a blob and recording it, and one in the middle of a write.
    orphan = os.path.join(home, "blobs", "sha256-" + sha256(b)[7:])
    with open(orphan, "wb") as f:
        f.write(open(b, "rb").read())
    with open(os.path.join(home, "blobs", ".tmp-crashed0000000"), "wb") as f:
        f.write(b"half")
    proc = cli(home, "list")
    assert "recovery removed 1 unfinished temp file(s) and 1 orphan blob(s)" in proc.stderr
    assert blobs(home) == ["sha256-" + sha256(a)[7:]]
    assert "ok m@1.0.0" in cli(home, "verify", "m").stdout


def test_full_disk_during_import_is_reported_and_leaves_nothing(tmp_path, home):
    """A disk that fills up mid-copy (simulated with RLIMIT_FSIZE) gives an error naming the
    problem; no blob, temp file or version is left, and the same import works with room."""
    model = tiny(tmp_path, "m.gguf", 1)
    cli(home, "list")  # the registry exists before the limit applies
    size = os.path.getsize(model)

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    env = dict(os.environ, LLMASOS_HOME=home)
    proc = subprocess.run([LLMASOS, "import", model, "--name", "m"], capture_output=True, text=True,
                          timeout=300, env=env, preexec_fn=small_disk)
    assert proc.returncode != 0
    assert "File too large" in proc.stderr or "No space" in proc.stderr or "disk full" in proc.stderr, proc.stderr
    assert blobs(home) == []
    assert os.listdir(os.path.join(home, "blobs")) == []  # no temp file either
    assert "m" not in cli(home, "list").stdout.split()
    cli(home, "import", model, "--name", "m")
    assert blobs(home) == ["sha256-" + sha256(model).split(":")[1]]
