"""LLaMA-Factory's own YAML/JSON configs: launched and imported through the profiles' checks, `key=value`
overrides typed as LLaMA-Factory (OmegaConf) types them. The configs are LLaMA-Factory 0.9.5's examples
(tests/data/llamafactory_examples/SOURCE.md)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from conftest import stand_in_profile
from lftop.profiles import ProfileError, importer, lfconfig, load

EXAMPLES = Path(__file__).parent / "data" / "llamafactory_examples"
CONFIGS = sorted(EXAMPLES.rglob("*.yaml"))
# Examples whose keys are not LLaMA-Factory's own arguments: Megatron's (read under USE_MCA=1, as its README runs
# them) and an FSDP key transformers 5 dropped (accepted only under ALLOW_EXTRA_ARGS=1).
SWITCHED = {"megatron": "USE_MCA", "llama3_fp8_fsdp_sft": "ALLOW_EXTRA_ARGS"}


def _switch(path: Path) -> str | None:
    return SWITCHED.get(path.parent.name) or SWITCHED.get(path.stem)


def _omegaconf_values(path: Path) -> dict:
    """The config as LLaMA-Factory 0.9.5's read_args loads it, nulls left out."""
    omegaconf = pytest.importorskip("omegaconf")
    loaded = omegaconf.OmegaConf.to_container(omegaconf.OmegaConf.load(path))
    return {k: v for k, v in loaded.items() if v is not None}


def test_the_fixtures_are_every_training_example():
    assert len(CONFIGS) == 49
    assert {p.parent.name for p in CONFIGS} >= {"train_lora", "train_full", "train_qlora", "megatron", "galore"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_each_example_imports_to_a_profile_that_validates(path, tmp_path, monkeypatch):
    for name in lfconfig.SWITCHES:
        monkeypatch.delenv(name, raising=False)
    if switch := _switch(path):
        monkeypatch.setenv(switch, "1")
    text, profile = importer.to_toml(path)
    assert profile.train == _omegaconf_values(path)
    out = tmp_path / "imported.toml"
    out.write_text(text)
    reloaded = load(out)
    assert reloaded.train == profile.train
    assert reloaded.launch.env == ({switch: "1"} if switch else {})
    if profile.train.get("overwrite_output_dir") is True:
        flag = text.index("# lftop: overwrite_output_dir deletes trainer_log.jsonl")
        assert flag < text.index("overwrite_output_dir = true")


def test_keys_outside_llamafactorys_arguments_are_named_without_the_switch(monkeypatch):
    monkeypatch.delenv("USE_MCA", raising=False)
    path = EXAMPLES / "megatron" / "qwen3_moe_full.yaml"
    with pytest.raises(ProfileError) as caught:
        load(path)
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("moe_grouped_gemm"))
    assert f"{path}:{line}: moe_grouped_gemm: unknown key" in str(caught.value)
    monkeypatch.setenv("USE_MCA", "1")
    warnings = [str(w) for w in load(path).warnings]
    assert any("moe_grouped_gemm" in w and "USE_MCA" in w for w in warnings)


def test_import_keeps_comments_and_relative_paths_as_written():
    text, _ = importer.to_toml(EXAMPLES / "train_lora" / "qwen3_lora_sft_ds3.yaml")
    data = tomllib.loads(text)
    assert data["train"]["deepspeed"] == "examples/deepspeed/ds_z3_config.json"
    assert ('deepspeed = "examples/deepspeed/ds_z3_config.json"  # choices: [ds_z0_config.json, ds_z2_config.json, '
            'ds_z3_config.json]; relative to the launch directory\n') in text  # the YAML's comment, and lftop's
    assert "model_name_or_path" in data["train"]
    assert "relative" not in text.split("model_name_or_path =", 1)[1].splitlines()[0]  # a hub id, not a path
    assert "\n# model\nmodel_name_or_path" in text
    assert "resume_from_checkpoint" not in data["train"]  # null in the YAML: LLaMA-Factory's default applies


OVERRIDES = ["learning_rate=2e-5", "warmup_ratio=1.0e-1", "do_train=yes", "plot_loss=off", "num_train_epochs=3",
             "lora_target=q_proj,v_proj", "report_to=[wandb, tensorboard]", "run_name='007'", "max_samples=1_000",
             "save_steps=0x10", "template=2024-01-01", "url=http://x?a=1", "ray_init_kwargs.num_cpus=4",
             "max_grad_norm=.5", "seed=-3"]


def test_overrides_are_typed_as_omegaconf_types_them():
    omegaconf = pytest.importorskip("omegaconf")
    expected = omegaconf.OmegaConf.to_container(omegaconf.OmegaConf.from_cli(OVERRIDES))
    assert lfconfig.overrides(OVERRIDES) == expected
    assert type(expected["learning_rate"]) is float and expected["template"] == "2024-01-01"


def test_overrides_change_train_and_go_through_the_same_checks(tmp_path):
    config = EXAMPLES / "train_lora" / "qwen3_lora_sft.yaml"
    profile = load(config, ["learning_rate=2e-5", "max_samples=null", "lora_rank=16"])
    assert profile.train["learning_rate"] == 2e-5 and profile.train["lora_rank"] == 16
    assert "max_samples" not in profile.train
    assert profile.overrides == {"learning_rate": 2e-5, "max_samples": None, "lora_rank": 16}
    with pytest.raises(ProfileError) as caught:
        load(config, ["learnin_rate=1", "lora_rank=big"])
    text = str(caught.value)
    assert "<command line>: learnin_rate: unknown key, did you mean learning_rate?" in text
    assert "<command line>: lora_rank: expected an integer, got 'big'" in text
    with pytest.raises(ProfileError) as caught:
        load(config, ["stage", "a[0]=1"])
    assert [p.message.split(":")[0] for p in caught.value.problems] == ["'stage'", "'a[0]=1'"]


@pytest.mark.parametrize("content, message", [
    ("stage: sft\nstage: pt\n", "2: YAML syntax error: while constructing a mapping found duplicate key stage"),
    ("stage: [sft\n", "YAML syntax error"),
    ("- a\n- b\n", "expected LLaMA-Factory arguments, one `key: value` a line; got a list"),
    ("", "got an empty file"),
    ("model_name_or_path: x\n1: y\n", "a key must be a name, got 1"),
    ("when: !!binary aGk=\n", "when: bytes values are not LLaMA-Factory arguments"),
])
def test_a_bad_yaml_config_is_named(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ProfileError) as caught:
        load(path)
    assert message in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_a_json_config_reads_as_llamafactory_reads_it(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model_name_or_path": "m", "stage": "sft", "output_dir": "out", "logging_steps": 5,
                                "learning_rate": 2e-5, "max_samples": None, "lora_rnk": 8}, indent=1))
    with pytest.raises(ProfileError) as caught:
        load(path)
    assert f"{path}:8: lora_rnk: unknown key, did you mean lora_rank?" in str(caught.value)
    profile = load(path, ["lora_rnk=null"])
    assert profile.train == {"model_name_or_path": "m", "stage": "sft", "output_dir": "out", "logging_steps": 5,
                             "learning_rate": 2e-5}


def test_lftop_import_writes_a_profile_and_never_overwrites(lftop, tmp_path):
    config = EXAMPLES / "train_full" / "qwen3_full_sft.yaml"
    out = tmp_path / "full.toml"
    result = lftop("import", str(config), "-o", str(out))
    assert "overwrite_output_dir" in result.stderr and "flagged" in result.stderr
    assert load(out).train == _omegaconf_values(config)
    again = lftop("import", str(config), "-o", str(out), check=False)
    assert again.returncode == 1 and "exists; --force replaces it" in again.stderr
    assert lftop("import", str(config), "-o", str(out), "--force").returncode == 0
    printed = lftop("import", str(config)).stdout
    assert tomllib.loads(printed)["train"] == tomllib.loads(out.read_text())["train"]


def test_lftop_import_of_a_bad_config_names_the_line(lftop, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("model_name_or_path: m\nstage: sft\noutput_dir: o\nlerning_rate: 1e-4\n")
    result = lftop("import", str(path), "-o", str(tmp_path / "typo.toml"), check=False)
    assert result.returncode == 1
    assert f"{path}:4: lerning_rate: unknown key, did you mean learning_rate?" in result.stderr
    assert not (tmp_path / "typo.toml").exists()


def test_launch_records_overrides_given_before_or_after_options(lftop, tmp_path):
    profile = stand_in_profile(tmp_path, str(tmp_path / "out"))
    launched = lftop.json("launch", str(profile), "learning_rate=2e-5", "--json", "lora_target=q_proj,v_proj")
    meta = json.loads((Path(launched["run_dir"]) / "run.json").read_text())
    assert meta["overrides"] == {"learning_rate": 2e-5, "lora_target": "q_proj,v_proj"}
    assert meta["args"]["learning_rate"] == 2e-5 and meta["args"]["lora_target"] == "q_proj,v_proj"
    bad = lftop("launch", str(profile), "--json", "--bogus", check=False)
    assert bad.returncode == 2 and "unrecognized arguments: --bogus" in bad.stderr


def test_launch_of_an_example_yaml_records_its_values(lftop, tmp_path):
    config = EXAMPLES / "train_lora" / "qwen3_lora_sft.yaml"
    launched = lftop.json("launch", str(config), "--gpus", "", "max_steps=3", "--json")
    try:
        meta = json.loads((Path(launched["run_dir"]) / "run.json").read_text())
        assert meta["profile"] == str(config)
        assert meta["args"] == {**_omegaconf_values(config), "max_steps": 3}
        assert meta["overrides"] == {"max_steps": 3}
        assert meta["output_dir"] == str(tmp_path / "saves" / "qwen3-4b" / "lora" / "sft")  # from the launch dir
    finally:
        lftop("stop", launched["run"], "--grace", "1")
