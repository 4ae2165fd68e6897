"""Safe on a shared server: damaged files are named problems, nothing another user wrote is trusted, bad
arguments are one line with a suggestion. Every reproduction of issue #14 that concerns runs and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import stand_in_profile, wait_for
from lftop.runs.rundir import RunDir, all_runs, make_runs_root
from lftop.runs.status import all_statuses

DAMAGED = {
    "list": b"[]", "string": b'"abc"', "null": b"null", "pid-text": b'{"pid": "abc", "command": []}',
    "pid-float": b'{"pid": 1.5, "command": []}', "created-text": b'{"created": "yesterday", "command": []}',
    "output-dir-number": b'{"output_dir": 5, "command": []}', "pid-1": b'{"pid": 1, "command": ["x"]}',
    "truncated": b'{"id": "x", "command": ["py', "not-utf8": b"\xff\xfe{}",
    "job-number": b'{"engine": "slurm", "job": 5, "command": [], "args": {}, "env": {}, "output_dir": "/x"}',
}


def strict(text: str):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))


@pytest.fixture
def good_run(lftop, tmp_path):
    """A real run of a stand-in trainer, stopped."""
    run = lftop.json("launch", str(stand_in_profile(tmp_path, str(tmp_path / "out"))), "--json")["run"]
    wait_for(lambda: lftop.json("show", run, "--json")["checkpoints"] == [5], 60, "the checkpoint")
    lftop("stop", run)
    return run


def plant(home: Path, name: str, run_json: bytes, state: bytes = b"running\n", events: bytes = b"1\n") -> Path:
    path = home / "runs" / name
    path.mkdir(parents=True)
    (path / "run.json").write_bytes(run_json)
    (path / "state").write_bytes(state)
    (path / "events.jsonl").write_bytes(events)
    return path


def test_one_damaged_run_never_hides_the_others(lftop, good_run):
    for name, content in DAMAGED.items():
        plant(lftop.home, f"bad-{name}", content, state=b"\xff\xfe", events=b'{"event": "x"}\n1\n[]\n')
    listed = lftop("ls")
    assert good_run in listed.stdout and "Traceback" not in listed.stderr
    rows = {r["run"]: r for r in strict(lftop("ls", "--json").stdout)}
    assert rows[good_run]["state"] == "stopped" and rows[good_run]["problem"] is None
    for name in DAMAGED:
        row = rows[f"bad-{name}"]
        assert row["problem"] and "damaged" in row["problem"], (name, row)
        assert row["alive"] is False
        shown = lftop("show", f"bad-{name}", check=False)
        assert shown.returncode == 0 and "Traceback" not in shown.stderr
        for action in (("stop", f"bad-{name}"), ("resume", f"bad-{name}"), ("pause", f"bad-{name}")):
            refused = lftop(*action, check=False)
            assert refused.returncode == 1 and "damaged" in refused.stderr and "Traceback" not in refused.stderr
    assert psutil.pid_exists(1)
    assert lftop("gpus", "--simulate", "2").returncode == 0  # a global option after the sub-command


def test_a_run_file_others_can_write_is_not_trusted(lftop, good_run):
    run_json = lftop.home / "runs" / good_run / "run.json"
    os.chmod(run_json, 0o666)
    refused = lftop("resume", good_run, check=False)
    assert refused.returncode == 1 and "writable by other users" in refused.stderr
    assert lftop.json("show", good_run, "--json")["problem"].startswith("the run directory or run.json")


def test_a_lock_replaced_by_a_symlink_is_refused_and_its_target_kept(lftop, tmp_path, good_run):
    target = tmp_path / "precious"
    target.write_text("keep me")
    lock = lftop.home / "runs" / f".launch-{os.getuid()}.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(target)
    result = lftop("launch", str(stand_in_profile(tmp_path, str(tmp_path / "other"), "q")), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "nothing was changed" in result.stderr
    assert target.read_text() == "keep me"


def test_a_profile_name_with_braces_runs(lftop, tmp_path):
    profile = stand_in_profile(tmp_path, str(tmp_path / "out"), "x{port}")
    run = lftop.json("launch", str(profile), "--json")["run"]
    wait_for(lambda: lftop.json("show", run, "--json")["checkpoints"] == [5], 60, "the checkpoint")
    lftop("stop", run)


@pytest.mark.parametrize("args, words", [
    (("stop", "r", "--grace", "-1"), "--grace: seconds must be a finite number"),
    (("--simulate", "2,foo=1", "ls"), "unknown option 'foo'"),
    (("--simulate", "2,mem=x", "ls"), "'mem=x' is not a valid mem="),
    (("estimate", "p.toml", "--gpus", "-3"), "--gpus: must be a whole number of 1 or more"),
    (("estimate", "p.toml", "--gpu-mem", "-5"), "--gpu-mem: the value must be a finite number"),
    (("estimate", "p.toml", "--gpu-mem", "nan"), "--gpu-mem: the value must be a finite number"),
    (("--interval", "inf"), "--interval: the interval must be a finite number"),
    (("ls", "--interval", "0"), "--interval: the interval must be a finite number"),
])
def test_bad_arguments_are_one_line_usage_errors(lftop, args, words):
    result = lftop(*args, check=False)
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr


def test_run_ids_and_homes_are_checked(lftop, tmp_path, good_run):
    empty = lftop("stop", "", check=False)
    assert empty.returncode == 1 and "no run named" in empty.stderr
    assert lftop.json("show", good_run, "--json")["state"] == "stopped"
    afile = tmp_path / "afile"
    afile.write_text("")
    result = lftop("ls", check=False, env={"LFTOP_HOME": str(afile)})
    result = subprocess.run([sys.executable, "-m", "lftop", "ls"], capture_output=True, text=True,
                            env={**os.environ, "LFTOP_HOME": str(afile)})
    assert result.returncode == 1 and "is not a directory" in result.stderr


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)
KEYS = ["pid", "create_time", "created", "output_dir", "command", "args", "env", "nproc", "gpus", "engine", "cwd"]
run_json = st.one_of(json_values.map(lambda v: json.dumps(v).encode()),
                     st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6).map(lambda d: json.dumps(d).encode()),
                     st.binary(max_size=40))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=run_json, state=st.binary(max_size=12), events=st.binary(max_size=60), control=st.binary(max_size=8))
def test_no_run_directory_makes_a_reader_fail(tmp_path, meta, state, events, control):
    """Whatever is in a run directory, every reader names a problem or reads it; none raises."""
    home = Path(tempfile.mkdtemp(dir=tmp_path))
    path = plant(home, "fuzzed", meta, state, events)
    (path / "control").write_bytes(control)
    (statuses,) = [all_statuses(all_runs(home))]
    assert len(statuses) == 1
    assert not (statuses[0].problem or "").startswith("cannot be read"), statuses[0].problem  # no unforeseen error
    from lftop.console import dumps

    strict(dumps(statuses[0].to_dict()))
    RunDir(path).events()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None or not os.path.exists("/usr/bin/python3"),
                    reason="needs root, setpriv and /usr/bin/python3 (CI runs as root)")
def test_another_user_cannot_make_lftop_act_for_them(tmp_path, good_run, lftop):
    """In a shared 1777 home, `nobody` plants a command, a pid and a symlink; lftop refuses each, the command
    never runs, the process lives, the file is intact."""
    shared = Path(tempfile.mkdtemp(prefix="lftop-shared-", dir="/tmp"))
    try:
        os.chmod(shared, 0o1777)
        victim = subprocess.Popen(["sleep", "300"])
        mine = psutil.Process(victim.pid)
        precious = shared / "precious"
        precious.write_text("root's")
        assert stat.S_IMODE(make_runs_root(shared).stat().st_mode) == 0o1777  # a shared home's runs/: like /tmp
        pwned = shared / "pwned"
        script = (
            "import json, os, sys\n"
            f"home = {str(shared)!r}\n"
            "for name, meta in (('evil', {'command': ['/bin/sh', '-c', 'id > %s' % sys.argv[1]], 'args': {},"
            " 'env': {}, 'output_dir': home + '/o', 'cwd': home}), ('thief', {'command': ['x'], 'pid': int(sys.argv[2]),"
            " 'create_time': float(sys.argv[3]), 'output_dir': home + '/o'})):\n"
            "    d = os.path.join(home, 'runs', name); os.makedirs(home + '/o/checkpoint-5', exist_ok=True)\n"
            "    os.makedirs(d, exist_ok=True); open(d + '/run.json', 'w').write(json.dumps(meta))\n"
            "    open(d + '/state', 'w').write('paused')\n"
            "    open(d + '/events.jsonl', 'w').write('{\"event\": \"checkpoint\", \"step\": 5}\\n')\n"
            "open(home + '/o/checkpoint-5/trainer_state.json', 'w').write('{\"global_step\": 5}')\n"
            f"os.symlink({str(precious)!r}, os.path.join(home, 'runs', '.launch-0.lock'))\n"
        )
        planted = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3",
                                  "-c", script, str(pwned), str(mine.pid), str(mine.create_time())],
                                 capture_output=True, text=True)
        assert planted.returncode == 0, planted.stderr

        def lftop_shared(*args):
            return subprocess.run([sys.executable, "-m", "lftop", "--home", str(shared), *args], capture_output=True,
                                  text=True, timeout=120)

        resumed = lftop_shared("resume", "evil")
        assert resumed.returncode == 1 and "another user's run" in resumed.stderr
        stopped = lftop_shared("stop", "thief")
        assert stopped.returncode == 1 and "another user's run" in stopped.stderr
        listed = strict(lftop_shared("ls", "--json").stdout)
        assert {r["run"]: r["owner"] for r in listed if not r["external"]} == {"evil": "nobody", "thief": "nobody"}
        launched = lftop_shared("launch", str(stand_in_profile(tmp_path, str(tmp_path / "o2"), "mine")))
        # refused: O_NOFOLLOW (ELOOP), or the kernel's protected_symlinks in a sticky folder (EACCES)
        assert launched.returncode == 1 and ".launch-0.lock" in launched.stderr and "Traceback" not in launched.stderr
        assert not pwned.exists() and mine.is_running() and precious.read_text() == "root's"
    finally:
        victim.kill()
        shutil.rmtree(shared, ignore_errors=True)
