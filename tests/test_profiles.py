import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROFILES, needs_llamafactory
from lftop.profiles import ProfileError, convert, load, schema


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors(path: Path) -> list[str]:
    with pytest.raises(ProfileError) as info:
        load(path)
    return [str(p) for p in info.value.problems]


GOOD = """[profile]
description = "ok"

[train]
model_name_or_path = "m"
stage = "sft"
output_dir = "out"
logging_steps = 5
"""


def test_shipped_profiles_are_valid():
    for path in PROFILES.glob("*.toml"):
        profile = load(path)
        assert profile.train or profile.abstract, path


def test_misspelt_key_names_file_line_and_suggestion(tmp_path):
    path = write(tmp_path, GOOD + "lora_rnak = 8\n")
    assert errors(path) == [f"{path}:9: lora_rnak: unknown key, did you mean lora_rank?"]


def test_wrong_type(tmp_path):
    path = write(tmp_path, GOOD + 'per_device_train_batch_size = "2"\n')
    assert errors(path) == [f"{path}:9: per_device_train_batch_size: expected an integer, got '2'"]


def test_value_outside_choices(tmp_path):
    path = write(tmp_path, GOOD + 'finetuning_type = "lroa"\n')
    (message,) = errors(path)
    assert message.startswith(f"{path}:9: finetuning_type: 'lroa' is not one of lora, oft, freeze, full")
    assert message.endswith("did you mean lora?")


def test_missing_required_keys(tmp_path):
    path = write(tmp_path, "[train]\nstage = \"sft\"\n")
    assert errors(path) == [
        f"{path}:1: model_name_or_path: missing required key",
        f"{path}:1: output_dir: missing required key",
    ]


def test_toml_syntax_error_has_line_and_column(tmp_path):
    path = write(tmp_path, '[train]\nstage = "sft\n')
    (message,) = errors(path)
    assert message.startswith(f"{path}:2: TOML syntax error")
    assert "column" in message


def test_all_mistakes_of_a_file_at_once(tmp_path):
    path = write(tmp_path, GOOD + 'lora_rnak = 8\nbf16 = "yes"\noptim = "adamw"\n[launch]\ngpu = "0"\n')
    found = errors(path)
    assert len(found) == 4
    assert [m.split(":")[1] for m in found] == ["9", "10", "11", "13"]
    assert "gpu: unknown key in [launch], did you mean gpus?" in found[-1]


def test_extends_merges_key_by_key_and_reports_the_parents_line(tmp_path):
    write(tmp_path, '[train]\nstage = "sft"\nlora_rnak = 8\nlogging_steps = 1\n', "base.toml")
    child = write(tmp_path, '[profile]\nextends = "base.toml"\n[train]\nmodel_name_or_path = "m"\noutput_dir = "o"\n'
                            "logging_steps = 7\n")
    (message,) = errors(child)
    assert message.startswith(f"{tmp_path / 'base.toml'}:3: lora_rnak")
    (tmp_path / "base.toml").write_text('[train]\nstage = "sft"\nlogging_steps = 1\ncutoff_len = 64\n')
    profile = load(child)
    assert profile.train == {"stage": "sft", "logging_steps": 7, "cutoff_len": 64, "model_name_or_path": "m",
                             "output_dir": "o"}


def test_extends_cycle_is_an_error(tmp_path):
    write(tmp_path, '[profile]\nextends = "b.toml"\n', "a.toml")
    write(tmp_path, '[profile]\nextends = "a.toml"\n', "b.toml")
    (message,) = errors(tmp_path / "a.toml")
    assert "extends cycle: a.toml -> b.toml -> a.toml" in message


def test_warnings_for_the_fields_traps(tmp_path):
    out = tmp_path / "out"
    (out / "checkpoint-10").mkdir(parents=True)
    path = write(tmp_path, f'[train]\nmodel_name_or_path = "m"\nstage = "sft"\noutput_dir = "{out}"\n'
                           "overwrite_output_dir = true\nsave_only_model = true\nlora_rank = 4\n")
    keys = sorted(w.key for w in load(path).warnings)
    assert keys == ["logging_steps", "lora_rank", "overwrite_output_dir", "save_only_model"]


def test_effective_batch_and_yaml(tmp_path):
    path = write(tmp_path, GOOD + "per_device_train_batch_size = 2\ngradient_accumulation_steps = 4\n"
                               '[launch]\ngpus = "0,1"\n')
    profile = load(path)
    assert profile.effective_batch() == 16
    yaml = convert.to_yaml(profile.args())
    assert 'model_name_or_path: "m"\n' in yaml and "per_device_train_batch_size: 2\n" in yaml


def test_path_values_expand_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LFTOP_HOME", "/somewhere")
    profile = load(PROFILES / "demo-cpu.toml")
    assert profile.args()["model_name_or_path"] == "/somewhere/tiny/model"


def test_validate_cli_exit_codes_and_stderr(tmp_path):
    bad = write(tmp_path, GOOD + "lora_rnak = 8\n")
    good = subprocess.run([sys.executable, "-m", "lftop", "validate", *map(str, PROFILES.glob("*.toml"))],
                          capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    result = subprocess.run([sys.executable, "-m", "lftop", "validate", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{bad}:9: lora_rnak: unknown key, did you mean lora_rank?" in result.stderr


def test_show_args_prints_yaml_and_command():
    out = subprocess.run([sys.executable, "-m", "lftop", "show-args", str(PROFILES / "chatglm3-6b-lora-2gpu.toml")],
                         capture_output=True, text=True, check=True).stdout
    assert 'template: "chatglm3"' in out
    assert "torch.distributed.run" in out and "--nproc_per_node 2" in out
    assert "llamafactory-cli train" in out
    zero3 = subprocess.run([sys.executable, "-m", "lftop", "show-args", str(PROFILES / "llama3.1-8b-lora-zero3.toml")],
                           capture_output=True, text=True, env={**os.environ, "LFTOP_SIMULATE": ""})
    assert zero3.returncode == 0, zero3.stderr  # a GPU count needs no GPU to preview
    assert "--nproc_per_node 4" in zero3.stdout and 'deepspeed: "ds_z3_config.json"' in zero3.stdout


@needs_llamafactory
def test_schema_snapshot_matches_installed_llamafactory():
    live = schema.from_llamafactory()
    snapshot = schema.from_snapshot()
    assert snapshot.version == live.version
    assert snapshot.fields == live.fields
