"""The scheduler's parameters at run time: GET /os/scheduler shows each instance's policy and
every parameter, PUT changes some of them (validated field by field: an unknown field or a bad
value is a 400 naming it), config.toml's [scheduler] table and serve's flags set the starting
values (flags win), and `llmasos sched` shows and sets them on a running daemon."""
import json
import tomllib
import urllib.error
import urllib.request

import pytest

from serve_util import cli, serving, tiny_home


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tiny_home(tmp_path_factory.mktemp("serve_sched"))


@pytest.fixture(scope="module")
def daemon(home):
    with serving(home, "--models", "tiny", "--threads", "1", "--ctx-size", "128", "--parallel", "2",
                 "--policy", "rr", "--rr-slice", "5") as d:
        yield d


def call(d, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(d.url + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def instance(d):
    status, body = call(d, "GET", "/os/scheduler")
    assert status == 200, body
    [inst] = body["instances"]
    return inst


def test_get_shows_the_policy_and_every_parameter(daemon):
    inst = instance(daemon)
    assert inst["policy"] == "rr" and inst["rr"]["slice_tokens"] == 5  # from the flags
    assert inst["fair"] == {"weights": {}, "default_weight": 1.0}
    assert inst["sjf"]["aging_tokens_per_second"] > 0 and inst["priority"]["aging_per_second"] >= 0
    assert set(inst["preemption"]) == {"waiting_may_preempt", "min_tokens_before_preempt", "mode",
                                       "swap_seconds_per_byte", "recompute_seconds_per_token"}
    assert inst["preemption"]["mode"] == "auto" and inst["preemption"]["waiting_may_preempt"] is True


def test_put_changes_parameters_and_keeps_the_rest(daemon):
    before = instance(daemon)
    status, body = call(daemon, "PUT", "/os/scheduler",
                        {"policy": "fair", "fair": {"weights": {"acme": 1, "beta": 3}},
                         "preemption": {"mode": "recompute", "waiting_may_preempt": False}})
    assert status == 200, body
    [row] = body["instances"]
    assert row["policy"] == "fair" and row["fair"]["weights"] == {"acme": 1, "beta": 3}
    after = instance(daemon)
    assert after == row
    assert after["rr"] == before["rr"] and after["sjf"] == before["sjf"]  # not given: kept
    assert after["preemption"]["mode"] == "recompute" and after["preemption"]["waiting_may_preempt"] is False
    # The weights table is replaced as a whole; other fields of "fair" stay.
    status, body = call(daemon, "PUT", "/os/scheduler", {"fair": {"weights": {"gamma": 2}}, "instance": row["instance"]})
    assert status == 200 and body["instances"][0]["fair"] == {"weights": {"gamma": 2}, "default_weight": 1.0}
    # A GET row is a valid PUT body (the same schema both ways).
    del before["model"], before["version"]
    assert call(daemon, "PUT", "/os/scheduler", before)[0] == 200
    assert instance(daemon)["policy"] == "rr" and instance(daemon)["fair"]["weights"] == {}


@pytest.mark.parametrize("body,param", [
    ({}, "policy"),
    ({"policy": "lottery"}, "policy"),
    ({"rr": {"slice": 4}}, "rr.slice"),
    ({"rr": {"slice_tokens": 0}}, "rr.slice_tokens"),
    ({"rr": {"slice_tokens": "8"}}, "rr.slice_tokens"),
    ({"fair": {"weights": {"acme": -1}}}, "fair.weights.acme"),
    ({"sjf": {"aging_tokens_per_second": 0}}, "sjf.aging_tokens_per_second"),
    ({"priority": {"aging_per_second": "fast"}}, "priority.aging_per_second"),
    ({"preemption": {"mode": "swapless"}}, "preemption.mode"),
    ({"preemption": {"waiting_may_preempt": "yes"}}, "preemption.waiting_may_preempt"),
    ({"nice": 1}, "nice"),
])
def test_bad_values_are_400s_naming_the_field_and_change_nothing(daemon, body, param):
    before = instance(daemon)
    status, err = call(daemon, "PUT", "/os/scheduler", body)
    assert status == 400 and err["error"]["param"] == param, err
    assert param in err["error"]["message"]
    assert instance(daemon) == before


def test_an_instance_that_is_not_loaded_is_a_404(daemon):
    status, err = call(daemon, "PUT", "/os/scheduler", {"policy": "fcfs", "instance": 999})
    assert status == 404, err


def test_the_shell_shows_and_sets_parameters(daemon):
    host, port = daemon.host_port
    at = ["--host", host, "--port", str(port)]
    out = cli(daemon.home, "sched", "fair", "--weight", "acme=1", "--weight", "beta=3", "--rr-slice", "9",
              "--preempt-mode", "swap", *at).stdout
    assert "policy fair" in out and "acme=1 beta=3" in out and "slice 9 tokens" in out and "mode swap" in out, out
    inst = instance(daemon)
    assert inst["policy"] == "fair" and inst["fair"]["weights"] == {"acme": 1, "beta": 3}
    assert inst["rr"]["slice_tokens"] == 9 and inst["preemption"]["mode"] == "swap"
    shown = cli(daemon.home, "sched", *at).stdout  # no arguments: show
    assert "policy fair" in shown and "acme=1 beta=3" in shown
    bad = cli(daemon.home, "sched", "--weight", "acme", *at, check=False)
    assert bad.returncode != 0 and "TENANT=WEIGHT" in bad.stderr
    bad = cli(daemon.home, "sched", "--weight", "acme=0", *at, check=False)
    assert bad.returncode != 0 and "fair.weights.acme" in bad.stderr
    assert instance(daemon)["fair"]["weights"] == {"acme": 1, "beta": 3}


def print_config(home, *args):
    return tomllib.loads(cli(home, "serve", *args, "--print-config").stdout)


def test_config_file_scheduler_table_sets_the_start_and_flags_win(home, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('port = 9000\n[scheduler]\npolicy = "priority"\n[scheduler.fair.weights]\nacme = 2\n'
                    '[scheduler.rr]\nslice_tokens = 7\n[scheduler.preemption]\nmode = "recompute"\n')
    sched = print_config(home, "--config", str(path))["scheduler"]
    assert sched["policy"] == "priority" and sched["fair"]["weights"] == {"acme": 2}
    assert sched["rr"]["slice_tokens"] == 7 and sched["preemption"]["mode"] == "recompute"
    sched = print_config(home, "--config", str(path), "--policy", "fair", "--rr-slice", "3",
                         "--weight", "beta=4")["scheduler"]
    assert sched["policy"] == "fair" and sched["rr"]["slice_tokens"] == 3 and sched["fair"]["weights"] == {"beta": 4}
    assert sched["preemption"]["mode"] == "recompute"  # from the file, no flag given
    # The printed configuration reads back to itself, [scheduler] included.
    printed = cli(home, "serve", "--config", str(path), "--weight", "beta=4", "--print-config").stdout
    again = tmp_path / "printed.toml"
    again.write_text(printed)
    assert cli(home, "serve", "--config", str(again), "--print-config").stdout == printed
    # A daemon started from it runs with those settings.
    with serving(home, "--config", str(path), "--models", "tiny", "--threads", "1", "--ctx-size", "128",
                 "--swap-mib", "1") as d:
        inst = instance(d)
        assert inst["policy"] == "priority" and inst["fair"]["weights"] == {"acme": 2}
        assert inst["rr"]["slice_tokens"] == 7
        # --swap-mib gives the instance swap space, which preemption.mode "swap" and "auto" use.
        [mem] = call(d, "GET", "/os/memory")[1]["instances"]
        assert mem["swap"]["capacity_blocks"] > 0, mem


def test_bad_scheduler_tables_are_errors_naming_the_line_and_field(home, tmp_path):
    def error(text):
        path = tmp_path / "bad.toml"
        path.write_text(text)
        proc = cli(home, "serve", "--config", str(path), "--print-config", check=False)
        assert proc.returncode != 0 and proc.stdout == ""
        return proc.stderr
    err = error("[scheduler]\npolicy = \"fair\"\n\n[scheduler.rr]\nslice_tokens = 0\n")
    assert "bad.toml:5:" in err and "rr.slice_tokens" in err, err
    err = error("[scheduler]\nslice = 3\n")
    assert "bad.toml:2:" in err and "slice: is not a field" in err, err
    err = error("[scheduler.fair.weights]\nacme = \"heavy\"\n")
    assert "bad.toml:2:" in err and "fair.weights.acme" in err, err
    err = error("policy = \"fair\"\n")  # the scheduler's keys live under [scheduler]
    assert "unknown key 'policy'" in err and "[scheduler]" in err, err
    err = error("scheduler = 3\n")
    assert "must be a table" in err, err
