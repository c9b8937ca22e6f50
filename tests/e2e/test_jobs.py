"""Training jobs on the daemon (/os/jobs, `llmasos jobs`): a tiny fine-tune submitted through the
shell runs to succeeded, registers its adapter and lowers the loss; bad specs get a 400 naming the
field; pause, resume and cancel; and a job whose daemon is killed with SIGKILL mid-run resumes
from its checkpoint in the next daemon and finishes.

Models are tiny ones made by make_tiny_model; every test has its own LLMASOS_HOME.
"""
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from serve_util import LLMASOS, Daemon, cli, tiny_home, wait_for


def write_data(path, n=16):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": f"code of item {i}?", "completion": f"code {i * 7 % 100}"}) + "\n")
    return str(path)


def call(d, method, path, body=None):
    """(status, decoded JSON) of one request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(d.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def jobs_cli(d, *args, check=True):
    host, port = d.host_port
    env = dict(os.environ, LLMASOS_HOME=d.home, LLMASOS_HOST=f"{host}:{port}")
    proc = subprocess.run([LLMASOS, "jobs", *args], capture_output=True, text=True, timeout=120, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"llmasos jobs {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def wait_job(d, job_id, until, timeout=300):
    def poll():
        status, job = call(d, "GET", f"/os/jobs/{job_id}")
        assert status == 200, job
        return job if until(job) else None
    return wait_for(poll, f"job {job_id}", timeout)


def ended(job):
    return job["state"] in ("succeeded", "failed", "cancelled")


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tiny_home(tmp_path), "--models", "tiny", "--threads", "2", "--ctx-size", "256")
    d.tmp = tmp_path
    yield d
    d.stop()


def test_a_submitted_job_succeeds_registers_its_adapter_and_lowers_the_loss(daemon):
    data = write_data(daemon.tmp / "d.jsonl")
    out = jobs_cli(daemon, "submit", "tiny", "--data", data, "--steps", "8", "--rank", "4", "--lr", "0.01",
                   "--name", "tiny-tuned", "--checkpoint-every", "2", "--eval-split", "0.25").stdout.split()
    job_id, state = out[0], out[1]
    assert job_id.startswith("job-") and state == "queued"
    job = wait_job(daemon, job_id, ended)
    assert job["state"] == "succeeded", job
    assert job["adapter"] == "tiny-tuned@1.0.0"
    assert job["progress"]["step"] == 8 and job["progress"]["total_steps"] == 8
    result = job["result"]
    assert result["final_loss"] < result["first_loss"], result
    assert result["final_eval_loss"] < result["initial_eval_loss"], result
    assert job["started"] is not None and job["ended"] >= job["started"]
    assert "adapter_path" not in result  # no paths of the daemon's machine
    # The adapter is in the registry, with its lineage.
    shown = json.loads(cli(daemon.home, "show", "tiny-tuned@1.0.0", "--json").stdout)
    assert "finetune" in json.dumps(shown) and result["adapter_digest"] in json.dumps(shown), shown
    # The shell shows it.
    assert "succeeded" in jobs_cli(daemon, "status", job_id).stdout
    assert job_id in jobs_cli(daemon, "list").stdout
    logs = jobs_cli(daemon, "logs", job_id).stdout
    assert "step 8/8" in logs and "succeeded: tiny-tuned@1.0.0" in logs, logs
    status, lines = call(daemon, "GET", f"/os/jobs/{job_id}/logs?after=2")
    assert status == 200 and all(l["seq"] > 2 for l in lines["lines"])
    status, rows = call(daemon, "GET", "/os/jobs?state=succeeded")
    assert status == 200 and [r["id"] for r in rows["jobs"]] == [job_id]


@pytest.mark.parametrize("patch,field", [
    ({"kind": "batch"}, "kind"),
    ({"data": None}, "data"),
    ({"data": "relative.jsonl"}, "data"),
    ({"model": "no-such-model"}, "model"),
    ({"rank": 0}, "rank"),
    ({"lr": "fast"}, "lr"),
    ({"targets": ["q", "nope"]}, "targets"),
    ({"learning_rate": 0.1}, "learning_rate"),
])
def test_a_bad_spec_is_refused_naming_the_field(daemon, patch, field):
    body = {"kind": "finetune", "model": "tiny", "data": write_data(daemon.tmp / "d.jsonl"), "steps": 2}
    body.update(patch)
    body = {k: v for k, v in body.items() if v is not None}
    status, answer = call(daemon, "POST", "/os/jobs", body)
    assert status == 400, answer
    assert answer["error"]["param"] == field and answer["error"]["message"].startswith(field), answer
    status, rows = call(daemon, "GET", "/os/jobs")
    assert status == 200 and rows["jobs"] == []


def test_unknown_jobs_and_bad_ids_and_finished_jobs(daemon):
    assert call(daemon, "GET", "/os/jobs/job-99")[0] == 404
    assert call(daemon, "GET", "/os/jobs/banana")[0] == 400
    assert call(daemon, "GET", "/os/jobs?state=done")[0] == 400
    proc = jobs_cli(daemon, "status", "job-99", check=False)
    assert proc.returncode != 0 and "job-99" in proc.stderr


def test_pause_resume_and_cancel(daemon):
    data = write_data(daemon.tmp / "d.jsonl")
    body = {"kind": "finetune", "model": "tiny", "data": data, "steps": 100000, "rank": 2, "batch": 2,
            "checkpoint_every": 1}
    status, job = call(daemon, "POST", "/os/jobs", body)
    assert status == 201 and job["state"] == "queued", job
    wait_job(daemon, job["id"], lambda j: j["progress"]["step"] >= 2)
    status, paused = call(daemon, "POST", f"/os/jobs/{job['id']}/pause")
    assert status == 200 and paused["state"] == "paused", paused
    step = paused["progress"]["step"]
    time.sleep(0.2)
    assert call(daemon, "GET", f"/os/jobs/{job['id']}")[1]["progress"]["step"] == step  # it stays
    status, resumed = call(daemon, "POST", f"/os/jobs/{job['id']}/resume")
    assert status == 200 and resumed["state"] in ("queued", "running"), resumed
    wait_job(daemon, job["id"], lambda j: j["progress"]["step"] > step)
    out = jobs_cli(daemon, "cancel", job["id"]).stdout
    assert out.split() == [job["id"], "cancelled"], out
    logs = call(daemon, "GET", f"/os/jobs/{job['id']}/logs")[1]["lines"]
    assert any(f"resumed from the checkpoint at step {step}" in l["line"] for l in logs), logs
    # A cancelled job cannot be resumed (409) and DELETE on it says so too.
    assert call(daemon, "POST", f"/os/jobs/{job['id']}/resume")[0] == 409


def test_a_job_survives_a_killed_daemon_and_finishes_from_its_checkpoint(tmp_path):
    home = tiny_home(tmp_path)
    data = write_data(tmp_path / "d.jsonl")
    d = Daemon(home, "--threads", "2")
    try:
        body = {"kind": "finetune", "model": "tiny", "data": data, "steps": 400, "rank": 2, "batch": 4,
                "lr": 0.005, "checkpoint_every": 1, "name": "tiny-resumed"}
        status, job = call(d, "POST", "/os/jobs", body)
        assert status == 201, job
        wait_job(d, job["id"], lambda j: j["progress"]["step"] >= 3)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
    finally:
        d.stop()
    d = Daemon(home, "--threads", "2")
    try:
        done = wait_job(d, job["id"], ended)
        assert done["state"] == "succeeded", done
        assert done["adapter"] == "tiny-resumed@1.0.0"
        assert done["result"]["final_loss"] < done["result"]["first_loss"]
        logs = [l["line"] for l in call(d, "GET", f"/os/jobs/{job['id']}/logs")[1]["lines"]]
        assert any("queued again to resume" in l for l in logs), logs
        resumed = [l for l in logs if "resumed from the checkpoint at step" in l]
        assert resumed and int(resumed[-1].rsplit(" ", 1)[1]) >= 3, logs
    finally:
        assert d.stop() == 0, "".join(d.log)
