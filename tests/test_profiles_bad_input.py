"""Damaged, hostile or odd profiles: each is one named problem at FILE:LINE, never a traceback or a hang."""

import dataclasses
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROFILES
from lftop.profiles import Launch, ProfileError, launch, load

GOOD = '[train]\nmodel_name_or_path = "m"\nstage = "sft"\noutput_dir = "out"\nlogging_steps = 5\n'


def write(directory: Path, text: str | bytes, name: str = "p.toml") -> Path:
    path = directory / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ProfileError) as info:
        load(path)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(("text", "expected"), [
    ("profile = 1\n" + GOOD, "p.toml:1: profile: expected a table, got 1; write [profile]"),
    ('profile = ["a"]\n' + GOOD, "p.toml:1: profile: expected a table, got a list"),
    ("launch = 3\n" + GOOD, "p.toml:1: launch: expected a table, got 3"),
    ('train = "x"\n', "p.toml:1: train: expected a table, got 'x'"),
    ('[profile]\ndescription = "x"\n[[train]]\nstage = "sft"\n', "p.toml:3: train: expected a table, got a list"),
    ('[profile]\nextends = 5\n' + GOOD, "p.toml:2: extends: expected the path of a profile"),
    ('[profile]\nabstract = "yes"\n' + GOOD, "p.toml:2: abstract: expected true or false"),
    (GOOD + 'template = "a\\u0000b"\n', "p.toml:6: template: contains a NUL character"),
    (GOOD + 'learning_rate = nan\n', "p.toml:6: learning_rate: expected a finite number, got nan"),
    (GOOD + "x = " + "[" * 5000 + "]" * 5000 + "\n", "p.toml:6: arrays or inline tables nested too deeply"),
    (GOOD + "x = " + "{a=" * 5000 + "1" + "}" * 5000 + "\n", "p.toml:6: arrays or inline tables nested too deeply"),
    (GOOD + "x = " + "[" * 40 + "]" * 40 + "\n", "p.toml:6: x: lists or tables nested more than 16 deep"),
    (b'[train]\nstage = "s\xff\xfeft"\n', "p.toml:2: not UTF-8 text: byte 0xff; save the file as UTF-8"),
])
def test_a_bad_value_or_table_is_named_at_its_line(tmp_path, text, expected):
    assert any(expected in p for p in problems(write(tmp_path, text))), problems(tmp_path / "p.toml")


def test_a_parent_whose_train_is_not_a_table_is_named_in_the_parent(tmp_path):
    write(tmp_path, "train = 1\n", "base.toml")
    child = write(tmp_path, '[profile]\nextends = "base.toml"\n' + GOOD)
    assert problems(child) == [(f"{tmp_path / 'base.toml'}:1: train: expected a table, got 1; "
                                "write [train] with its keys on the lines below")]


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _loop(path: Path) -> None:
    path.symlink_to(path.with_name("other.toml"))
    path.with_name("other.toml").symlink_to(path)


@pytest.mark.parametrize(("make", "target", "expected"), [
    (None, "/dev/zero", "/dev/zero: a character device, not a file"),
    (_fifo, "pipe.toml", "pipe.toml: a FIFO, not a file"),
    (Path.mkdir, "dir.toml", "dir.toml: a directory, not a file"),
    (_loop, "loop.toml", "loop.toml: a symlink loop"),
    (None, "missing.toml", "missing.toml: no such file (relative to"),
    (None, "x" * 300 + ".toml", ": file name too long"),
])
def test_extends_naming_what_is_not_a_profile_is_named_at_the_extends_line(tmp_path, make, target, expected):
    if make:
        make(tmp_path / target)
    child = write(tmp_path, f'[profile]\nextends = "{target}"\n' + GOOD)
    (found,) = problems(child)  # required keys are not asked for: the parent may have held them
    assert found.startswith(f"{child}:2: extends: ") and expected in found


def test_a_fifo_or_device_given_directly_is_named_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "p.toml")  # opening it for reading would block until a writer came
    assert problems(tmp_path / "p.toml") == [f"{tmp_path / 'p.toml'}: a FIFO, not a file"]
    assert problems(Path("/dev/null")) == ["/dev/null: a character device, not a file"]


def test_a_file_larger_than_a_profile_is_refused_without_reading_it_all(tmp_path):
    path = write(tmp_path, GOOD + "# " + "x" * (2 << 20) + "\n")
    assert problems(path) == [f"{path}: larger than 1024 KiB: not a TOML settings file"]


def test_an_extends_chain_is_bounded(tmp_path):
    for i in range(40):
        write(tmp_path, f'[profile]\nextends = "p{i + 1}.toml"\n', f"p{i}.toml")
    write(tmp_path, GOOD, "p40.toml")
    (found,) = problems(tmp_path / "p0.toml")
    assert found.endswith("extends: more than 32 profiles in one extends chain")


def test_the_parents_problems_and_the_childs_are_reported_together(tmp_path):
    write(tmp_path, '[train]\nlora_rnak = 8\n[launch]\nnproc = 0\n', "base.toml")
    child = write(tmp_path, '[profile]\nextends = "base.toml"\n' + GOOD + "bf16 = 1\n")
    assert problems(child) == [
        f"{tmp_path / 'base.toml'}:2: lora_rnak: unknown key, did you mean lora_rank?",
        f"{tmp_path / 'base.toml'}:4: nproc: 0 is out of range: 1 to 4096",
        f"{child}:8: bf16: expected true or false, got 1",
    ]


@pytest.mark.parametrize(("line", "expected"), [
    ('gpus = "0;1"', "'0;1' is not a device list"),
    ("gpus = 0", "0 is out of range: 1 to 4096"),
    ("gpus = true", 'expected a device list like "0,1"'),
    ("nproc = 0", "0 is out of range: 1 to 4096"),
    ('nproc = "2"', "expected an integer, got '2'"),
    ('python = "pyhton3"', "pyhton3: not found on PATH; give the Python that has llamafactory"),
    ('python = "/no/such/python"', "/no/such/python: no such file"),
    ('python = "/usr"', "/usr: not an executable file"),
    ('env = { "1X" = "a" }', "'1X' is not a valid environment variable name"),
    ('env = { "A-B" = "a" }', "'A-B' is not a valid environment variable name"),
    ("env = { A = 1 }", 'A: expected a string, got 1; quote it: A = "1"'),
    ('env = "A=1"', "expected a table of strings"),
    ('engine = "slurmm"', "expected one of 'local', 'slurm', got 'slurmm'"),
    ("nodes = 0", "0 is out of range: 1 to 4096"),
    ("nproc_per_node = 1.5", "expected an integer, got 1.5"),
    ("gpus_per_node = -1", "-1 is out of range: 0 to 4096"),
    ("partition = 5", "expected a string, got 5"),
    ("time = []", "expected a string, got a list"),
    ("account = false", "expected a string, got False"),
    ('sbatch = "--qos=high --exclusive"', "a string is not split"),
    ("sbatch = [1]", "expected a list of strings"),
    ("stall_after = 0", "expected a finite number of seconds above 0, got 0"),
    ("stall_after = inf", "got inf"),
    ('stall_after = "10m"', "expected a number of seconds"),
    ("gpu = 1", "unknown key in [launch], did you mean gpus?"),
])
def test_launch_values_are_checked_for_type_and_range(tmp_path, line, expected):
    path = write(tmp_path, f"[launch]\n{line}\n" + GOOD)
    found = problems(path)
    assert len(found) == 1 and found[0].startswith(f"{path}:2: ") and expected in found[0], found


def test_a_python_that_is_not_executable_is_named(tmp_path):
    plain = write(tmp_path, "#!/bin/sh\n", "python")
    plain.chmod(0o644)
    path = write(tmp_path, f'[launch]\npython = "{plain}"\n' + GOOD)
    assert problems(path) == [(f"{path}:2: python: {plain}: not an executable file; give the Python that has "
                               "llamafactory installed (`which python` in its environment)")]


def test_every_launch_key_is_a_field_of_launch():
    """KEYS is the schema; a key checked there but missing from Launch would fail when the profile is built."""
    assert set(launch.KEYS) == {f.name for f in dataclasses.fields(Launch)}


def test_launch_values_that_pass_reach_the_profile(tmp_path):
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text("#!/bin/sh\n")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    path = write(tmp_path, f'[launch]\ngpus = "0,GPU-8d1c-2f"\npython = "{python}"\nenv = {{ HF_HOME = "/h" }}\n'
                           'engine = "slurm"\nnodes = 2\nnproc_per_node = 4\ngpus_per_node = 4\npartition = "gpu"\n'
                           'time = "1:00:00"\naccount = "lab"\nsbatch = ["--qos=high"]\nstall_after = 900\n' + GOOD)
    assert load(path).launch == Launch(gpus="0,GPU-8d1c-2f", python=str(python), env={"HF_HOME": "/h"},
                                       engine="slurm", nodes=2, nproc_per_node=4, gpus_per_node=4, partition="gpu",
                                       time="1:00:00", account="lab", sbatch=("--qos=high",), stall_after=900)
    assert load(write(tmp_path, '[launch]\npython = "sh"\n' + GOOD)).launch == Launch(python="sh")  # on PATH
    assert load(write(tmp_path, GOOD)).launch.engine == "local"


def test_validate_reports_every_bad_profile_and_still_passes_the_good_ones(tmp_path):
    """One `lftop validate` over good and broken profiles: each broken one named, each good one ok, exit 1."""
    os.mkfifo(tmp_path / "pipe.toml")
    bad = [write(tmp_path, "profile = 1\n" + GOOD, "a.toml"),
           write(tmp_path, '[profile]\nextends = "pipe.toml"\n' + GOOD, "b.toml"),
           write(tmp_path, GOOD + "x = " + "[" * 5000 + "]" * 5000 + "\n", "c.toml"),
           write(tmp_path, b"\xff\xfe[train]\n", "d.toml"),
           tmp_path / "pipe.toml", tmp_path / "missing.toml"]
    good = [PROFILES / "demo-cpu.toml", write(tmp_path, GOOD, "z.toml")]
    order = [bad[0], good[0], *bad[1:], good[1]]
    result = subprocess.run([sys.executable, "-m", "lftop", "validate", *map(str, order)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    for path in good:
        assert f"{path}: ok" in result.stdout
    for path, said in zip(bad, ["a.toml:1: profile: expected a table", "b.toml:2: extends: pipe.toml: a FIFO",
                                "c.toml:6: arrays or inline tables nested too deeply", "d.toml:1: not UTF-8 text",
                                "pipe.toml: a FIFO, not a file", "missing.toml: no such file"], strict=True):
        assert said in result.stderr, (path, result.stderr)
