"""Fuzz: any TOML structure, any extends graph (loops, missing files, FIFOs, devices), any bytes.

Loading a profile gives a Profile or a ProfileError, nothing else; `lftop validate` over many still passes the good."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lftop import commands
from lftop.profiles import Profile, ProfileError, convert, launch, load, schema
from tomlgen import dumps, table, values

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GOOD = '[train]\nmodel_name_or_path = "m"\nstage = "sft"\noutput_dir = "out"\nlogging_steps = 5\n'
TRAIN_KEYS = ["model_name_or_path", "stage", "output_dir", "logging_steps", "finetuning_type", "lora_rank",
              "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "bf16",
              "overwrite_output_dir", "save_only_model", "deepspeed", "template", "lora_rnak"]
NEAR_LAUNCH = {
    "gpus": st.sampled_from(["0", "0,1", "all", "", "GPU-1a2b", "0;1", 0, 2, -1, 5000]),
    "python": st.sampled_from(["python3", "/usr/bin/python3", "pyhton3", "/dev/null", "", "/", "a" * 300]),
    "env": st.dictionaries(st.sampled_from(["A", "HF_HOME", "1X", "A-B", ""]), st.text(max_size=4) | values),
    "engine": st.sampled_from(["local", "slurm", "slurmm"]),
    "sbatch": st.lists(st.text(max_size=8)) | st.text(max_size=8),
    "stall_after": st.sampled_from([0, -1, 0.5, 600, float("inf"), float("nan")]),
}
NEAR_TRAIN = {"stage": st.sampled_from(["sft", "pt", "dpo", "stf"]),
              "finetuning_type": st.sampled_from(["lora", "lroa"]),
              "output_dir": st.sampled_from(["out", "", "~/x", "$HOME/y", "a" * 5000])}
PROFILE_TABLE = table(["description", "abstract", "extends"], {"abstract": st.booleans()})
TABLES = {"profile": PROFILE_TABLE, "launch": table(list(launch.KEYS), NEAR_LAUNCH),
          "train": table(TRAIN_KEYS, NEAR_TRAIN)}
documents = st.fixed_dictionaries({}, optional={
    **{name: strategy | values for name, strategy in TABLES.items()},  # mostly tables, sometimes not
    "trian": st.dictionaries(st.text(max_size=4), values, max_size=2),
})
TARGETS = ["missing.toml", "dir.toml", "pipe.toml", "/dev/zero", "loop.toml", "sub/../p0.toml", "x" * 300, ""]


def _arena(directory: Path) -> None:
    """The things `extends` may wrongly name: a directory, a FIFO, a symlink loop."""
    (directory / "dir.toml").mkdir()
    os.mkfifo(directory / "pipe.toml")
    (directory / "loop.toml").symlink_to("loop2.toml")
    (directory / "loop2.toml").symlink_to("loop.toml")
    (directory / "sub").mkdir()


def _check(path: Path) -> Profile | None:
    """Load; only ProfileError may escape, each problem printable; a loaded profile converts to YAML and a command."""
    try:
        profile = load(path)
    except ProfileError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
        return None
    convert.to_yaml(profile.args())
    convert.cli_command(profile.args())
    profile.effective_batch()
    return profile


@FUZZ
@given(documents)
def test_any_toml_structure_is_a_profile_or_named_problems(document):
    text = dumps(document)
    assert isinstance(tomllib.loads(text), dict)  # the fuzz reaches validation, not only the parser
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.toml"
        path.write_text(text, encoding="utf-8")
        _check(path)


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_any_bytes_are_a_profile_or_named_problems(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.toml"
        path.write_bytes(data)
        _check(path)


def _extends(count: int) -> st.SearchStrategy:
    return st.sampled_from([f"p{i}.toml" for i in range(count)] + TARGETS) | values


@FUZZ
@given(st.integers(1, 4).flatmap(lambda n: st.lists(
    st.tuples(documents, st.none() | _extends(n)), min_size=n, max_size=n)))
def test_any_extends_graph_is_profiles_or_named_problems(files):
    """Each file may extend another of the set (loops included), itself, or what is not a profile."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        _arena(directory)
        for i, (document, parent) in enumerate(files):
            if parent is not None:
                meta = document.get("profile")
                document = {**document, "profile": {**(meta if isinstance(meta, dict) else {}), "extends": parent}}
            (directory / f"p{i}.toml").write_text(dumps(document), encoding="utf-8")
        for i in range(len(files)):
            _check(directory / f"p{i}.toml")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents | st.binary(max_size=80), min_size=1, max_size=4), st.integers(0, 4))
def test_validate_over_many_profiles_passes_each_good_one(documents_or_bytes, at):
    """`lftop validate` reports every good profile ok among broken ones, and exits 1 when any is broken."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        paths = []
        for i, item in enumerate(documents_or_bytes):
            path = directory / f"p{i}.toml"
            path.write_bytes(item if isinstance(item, bytes) else dumps(item).encode())
            paths.append(path)
        good = directory / "good.toml"
        good.write_text(GOOD)
        paths.insert(min(at, len(paths)), good)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = commands.cmd_validate(argparse.Namespace(profiles=[str(p) for p in paths]))
        loads = {p: _check(p) is not None for p in paths}
        assert f"{good}: ok" in out.getvalue()
        assert [line.split(": ok")[0] for line in out.getvalue().splitlines()] == [str(p) for p in paths if loads[p]]
        assert status == (0 if all(loads.values()) else 1)
        assert "Traceback" not in err.getvalue()


def test_the_train_keys_fuzzed_are_real_arguments_and_one_misspelling():
    """The near-valid keys must be LLaMA-Factory's, or the fuzz would only test 'unknown key'."""
    assert [k for k in TRAIN_KEYS if k not in schema.load().fields] == ["lora_rnak"]
