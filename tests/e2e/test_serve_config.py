"""`llmasos serve`'s configuration file: every flag has a key, the file's values apply and the
command line's win, `--print-config` prints the effective configuration as TOML that reads
back to itself, $LLMASOS_HOME/config.toml is the default, and unknown keys, wrong types, values
out of range and bad syntax are errors naming the file, the key and the line."""
import re
import tomllib

from serve_util import cli, serving, tiny_home

NOT_KEYS = {"help", "config", "print-config"}
# The scheduler's flags: their keys live in the [scheduler] table (test_serve_sched.py).
SCHED_FLAGS = {"policy", "weight", "default-weight", "rr-slice", "sjf-aging", "priority-aging", "preempt-mode",
               "waiting-preempt", "min-tokens-before-preempt"}


def print_config(home, *args):
    return tomllib.loads(cli(home, "serve", *args, "--print-config").stdout)


def test_every_serve_flag_has_a_key_and_defaults_print(tmp_path):
    home = str(tmp_path / "home")
    helptext = cli(home, "serve", "--help").stdout
    flags = set(re.findall(r"--([a-z][a-z0-9-]*)", helptext)) - NOT_KEYS
    assert SCHED_FLAGS <= flags
    config = print_config(home)
    assert set(config) == flags - SCHED_FLAGS | {"scheduler"}
    assert config["scheduler"]["policy"] == "fcfs"
    assert config["host"] == "127.0.0.1" and config["port"] == 8080 and config["parallel"] == 4
    assert config["log-prompts"] is False and config["drain-timeout"] == 30


def test_file_values_apply_and_flags_win(tmp_path):
    home = str(tmp_path / "home")
    path = tmp_path / "c.toml"
    path.write_text('port = 9000\nparallel = 2\nlog-prompts = true\nkeep-alive = -1\n'
                    'drain-timeout = 5\n[scheduler]\npolicy = "priority"\n')
    config = print_config(home, "--config", str(path), "--port", "9100", "--policy", "fair")
    assert config["port"] == 9100 and config["scheduler"]["policy"] == "fair"  # the command line wins
    assert config["parallel"] == 2 and config["log-prompts"] is True and config["keep-alive"] == -1
    assert config["drain-timeout"] == 5


def test_printed_config_reads_back_to_itself(tmp_path):
    home = str(tmp_path / "home")
    first = cli(home, "serve", "--port", "1234", "--models", 'a,"b"', "--keep-alive", "2.5",
                "--allow-private-pull", "--print-config").stdout
    path = tmp_path / "printed.toml"
    path.write_text(first)
    assert cli(home, "serve", "--config", str(path), "--print-config").stdout == first
    assert tomllib.loads(first)["models"] == 'a,"b"'


def test_home_config_is_the_default(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("max-queue = 7\n")
    assert print_config(str(home))["max-queue"] == 7


def errors(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    proc = cli(str(tmp_path / "home"), "serve", "--config", str(path), "--print-config", check=False)
    assert proc.returncode != 0 and proc.stdout == ""
    return proc.stderr


def test_bad_files_are_errors_naming_key_and_line(tmp_path):
    err = errors(tmp_path, "port = 1\n\nbogus = 2\n")
    assert "bad.toml:3:" in err and "unknown key 'bogus'" in err
    err = errors(tmp_path, 'parallel = "four"\n')
    assert "bad.toml:1:" in err and "'parallel' must be an integer, not a string" in err
    err = errors(tmp_path, "log-prompts = 1\n")
    assert "'log-prompts' must be true or false" in err
    err = errors(tmp_path, "host = 1.5\n")
    assert "'host' must be a string, not a float" in err
    err = errors(tmp_path, "[serve]\nport = 1\n")
    assert "bad.toml:1:" in err and "unknown key 'serve'" in err
    err = errors(tmp_path, "\nparallel = 0\n")
    assert "bad.toml:2:" in err and "'parallel'" in err and "range" in err
    err = errors(tmp_path, "port = \n")
    assert "bad.toml:1:" in err
    proc = cli(str(tmp_path / "home"), "serve", "--config", str(tmp_path / "none.toml"), check=False)
    assert proc.returncode != 0 and "does not exist" in proc.stderr


def test_daemon_serves_with_the_files_settings(tmp_path):
    home = tiny_home(tmp_path)
    path = tmp_path / "serve.toml"
    path.write_text('models = "tiny"\nthreads = 1\nctx-size = 128\nmax-queue = 3\nport = 1\n')
    with serving(home, "--config", str(path)) as d:  # Daemon adds --port 0, which wins over the file
        engines = d.engines()
        assert len(engines) == 1 and engines[0]["model"] == "tiny@1.0.0"
