"""Training jobs on the daemon (/os/jobs, `llmasos jobs`): a tiny fine-tune submitted through the
shell runs to succeeded, registers its adapter and lowers the loss; bad specs get a 400 naming the
field; pause, resume and cancel; and a job whose daemon is killed with SIGKILL mid-run resumes
from its checkpoint in the next daemon and finishes. Batch jobs: a file of prompts answered as
`llmasos batch` answers it, a bad line failing the job with its line number, and a job that
pauses, resumes and survives a killed daemon, answering each line once.

Models are tiny ones made by make_tiny_model; every test has its own LLMASOS_HOME.
"""
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from serve_util import LLMASOS, cli, serving, tiny_home, wait_for


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
    with serving(tiny_home(tmp_path), "--models", "tiny", "--threads", "2", "--ctx-size", "256", clean_exit=False) as d:
        d.tmp = tmp_path
        yield d


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
    ({"kind": "bake"}, "kind"),
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
    with serving(home, "--threads", "2", clean_exit=False) as d:
        body = {"kind": "finetune", "model": "tiny", "data": data, "steps": 400, "rank": 2, "batch": 4,
                "lr": 0.005, "checkpoint_every": 1, "name": "tiny-resumed"}
        status, job = call(d, "POST", "/os/jobs", body)
        assert status == 201, job
        wait_job(d, job["id"], lambda j: j["progress"]["step"] >= 3)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
    with serving(home, "--threads", "2") as d:
        done = wait_job(d, job["id"], ended)
        assert done["state"] == "succeeded", done
        assert done["adapter"] == "tiny-resumed@1.0.0"
        assert done["result"]["final_loss"] < done["result"]["first_loss"]
        logs = [l["line"] for l in call(d, "GET", f"/os/jobs/{job['id']}/logs")[1]["lines"]]
        assert any("queued again to resume" in l for l in logs), logs
        resumed = [l for l in logs if "resumed from the checkpoint at step" in l]
        assert resumed and int(resumed[-1].rsplit(" ", 1)[1]) >= 3, logs


# --- batch jobs: a file of prompts (`llmasos batch`'s format) as a job ---

def write_prompts(path, n, max_tokens=6):
    with open(path, "w") as f:
        for i in range(n):
            line = {"id": f"q{i}", "prompt": f"item {i} is", "raw": True, "max_tokens": max_tokens}
            if i % 3 == 1:
                line["temperature"] = 0.9  # seeded sampling: the default seed, as the CLI's
            if i % 3 == 2:
                line["seed"] = 7 + i
            f.write(json.dumps(line) + "\n")
    return str(path)


def result_lines(path):
    """The complete result lines (a line a SIGKILL cut short is not one: the job drops it)."""
    with open(path) as f:
        return [json.loads(line) for line in f.read().split("\n")[:-1]]


def test_a_batch_job_answers_every_line_as_llmasos_batch_does(daemon):
    prompts = write_prompts(daemon.tmp / "p.jsonl", 9)
    out = daemon.tmp / "job-out.jsonl"
    job_id, state = jobs_cli(daemon, "submit", "tiny", "--kind", "batch", "--input", prompts, "--output", str(out),
                             "--parallel", "3").stdout.split()
    assert state == "queued"
    job = wait_job(daemon, job_id, ended)
    assert job["state"] == "succeeded", job
    assert job["kind"] == "batch"
    assert job["progress"]["step"] == 9 and job["progress"]["total_steps"] == 9, job
    assert job["result"]["prompts"] == 9 and job["result"]["answered_this_run"] == 9, job
    got = result_lines(out)
    assert sorted(r["id"] for r in got) == [f"q{i}" for i in range(9)]  # each line once
    # The same file through `llmasos batch` in the foreground gives the same answers.
    cli_out = daemon.tmp / "cli-out.jsonl"
    cli(daemon.home, "batch", "tiny", "-f", prompts, "-o", str(cli_out))
    expected = {r["id"]: r for r in result_lines(cli_out)}
    assert {r["id"]: r for r in got} == expected
    assert all(r["completion_tokens"] >= 1 and r["finish_reason"] in ("stop", "length") for r in got), got
    assert "succeeded: 9 prompts answered" in jobs_cli(daemon, "logs", job_id).stdout
    # Options set defaults for every line: max_tokens 2 caps lines that give none.
    no_max = daemon.tmp / "nomax.jsonl"
    no_max.write_text(json.dumps({"id": "a", "prompt": "x", "raw": True}) + "\n")
    status, job = call(daemon, "POST", "/os/jobs", {"kind": "batch", "model": "tiny", "input": str(no_max),
                                                    "output": str(daemon.tmp / "o2.jsonl"),
                                                    "options": {"max_tokens": 2, "temperature": 0}})
    assert status == 201, job
    assert wait_job(daemon, job["id"], ended)["state"] == "succeeded"
    assert result_lines(daemon.tmp / "o2.jsonl")[0]["completion_tokens"] <= 2


def test_a_bad_batch_file_fails_the_job_with_its_line_number(daemon):
    bad = daemon.tmp / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "prompt": "x", "raw": True}) + "\n\n" +
                   json.dumps({"id": "b", "prompt": "y", "raw": True, "temperature": -1}) + "\n")
    status, job = call(daemon, "POST", "/os/jobs", {"kind": "batch", "model": "tiny", "input": str(bad),
                                                    "output": str(daemon.tmp / "o.jsonl")})
    assert status == 201, job
    job = wait_job(daemon, job["id"], ended)
    assert job["state"] == "failed", job
    assert "bad.jsonl:3: temperature" in job["error"], job
    assert str(daemon.tmp) not in job["error"]  # no paths of the daemon's machine


@pytest.mark.parametrize("patch,field", [
    ({"input": None}, "input"),
    ({"input": "relative.jsonl"}, "input"),
    ({"input": "/no/such/file.jsonl"}, "input"),
    ({"output": "/no/such/dir/out.jsonl"}, "output"),
    ({"model": "no-such-model"}, "model"),
    ({"parallel": 0}, "parallel"),
    ({"options": {"temperature": "hot"}}, "options.temperature"),
    ({"options": {"prompt": "x"}}, "options.prompt"),
    ({"data": "/x.jsonl"}, "data"),
])
def test_a_bad_batch_spec_is_refused_naming_the_field(daemon, patch, field):
    body = {"kind": "batch", "model": "tiny", "input": write_prompts(daemon.tmp / "p.jsonl", 2),
            "output": str(daemon.tmp / "o.jsonl")}
    body.update(patch)
    body = {k: v for k, v in body.items() if v is not None}
    status, answer = call(daemon, "POST", "/os/jobs", body)
    assert status == 400, answer
    assert answer["error"]["param"] == field and answer["error"]["message"].startswith(field), answer


def test_a_batch_job_pauses_and_resumes_and_after_a_killed_daemon_finishes_from_its_results(tmp_path):
    home = tiny_home(tmp_path)
    # Long answers, one at a time: a few seconds of work, so the pause and the kill land mid-run.
    prompts = write_prompts(tmp_path / "p.jsonl", 60, max_tokens=400)
    out = tmp_path / "out.jsonl"
    body = {"kind": "batch", "model": "tiny", "input": prompts, "output": str(out), "parallel": 1}
    with serving(home, "--threads", "1", clean_exit=False) as d:
        status, job = call(d, "POST", "/os/jobs", body)
        assert status == 201, job
        wait_job(d, job["id"], lambda j: j["progress"]["step"] >= 2)
        status, paused = call(d, "POST", f"/os/jobs/{job['id']}/pause")
        assert status == 200 and paused["state"] == "paused", paused
        assert len(result_lines(out)) == paused["progress"]["step"]
        status, resumed = call(d, "POST", f"/os/jobs/{job['id']}/resume")
        assert status == 200, resumed
        before = paused["progress"]["step"]
        wait_job(d, job["id"], lambda j: j["progress"]["step"] >= before + 2)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
    answered = len(result_lines(out))
    assert 0 < answered < 60
    with serving(home, "--threads", "2") as d:
        done = wait_job(d, job["id"], ended)
        assert done["state"] == "succeeded", done
        assert done["result"]["answered_this_run"] <= 60 - answered + 1  # at most a cut line again
        got = result_lines(out)
        assert sorted(r["id"] for r in got) == sorted(f"q{i}" for i in range(60))  # each once
        logs = [l["line"] for l in call(d, "GET", f"/os/jobs/{job['id']}/logs")[1]["lines"]]
        assert any("queued again to resume" in l for l in logs), logs
        assert any(re.match(r"batch: 60 prompts, [1-9][0-9]* already answered", l) for l in logs), logs
