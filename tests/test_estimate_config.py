"""config.json and argument problems are named (EstimateError), never a TypeError or a negative 'fits'."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lftop.estimate import arch as arch_mod
from lftop.estimate.advice import advise
from lftop.estimate.memory import estimate, setup_from_args

GOOD = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 128, "vocab_size": 100}


def write(tmp_path, content) -> str:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    data = content if isinstance(content, bytes) else json.dumps(content).encode()
    (folder / "config.json").write_bytes(data)
    return str(folder)


@pytest.mark.parametrize("config, message", [
    ({"model_type": "mamba", "hidden_size": 768, "num_hidden_layers": 24, "vocab_size": 50280}, "attention heads"),
    ([1, 2], "must be an object"),
    ({"text_config": 5}, "text_config must be an object"),
    ({**GOOD, "hidden_size": "4096"}, "hidden_size must be a whole number"),
    ({**GOOD, "num_local_experts": -8}, "num_local_experts = -8 is out of range"),
    ({**GOOD, "num_hidden_layers": -32}, "num_hidden_layers = -32 is out of range"),
    ({**GOOD, "vocab_size": 1e300}, "vocab_size = .* is out of range"),
    ({**GOOD, "num_key_value_heads": 8}, "exceeds num_attention_heads"),
    ({**GOOD, "vision_config": {"depth": 0, "hidden_size": 8}}, "depth = 0 is out of range"),
    (b"\xff\xfe", "cannot read the architecture"),
    (b'{"hidden_size": ', "cannot read the architecture"),
])
def test_bad_config_json_is_a_named_problem_at_launch(tmp_path, config, message):
    path = write(tmp_path, config)
    with pytest.raises(arch_mod.UnknownModel, match=message) as caught:
        advise({"model_name_or_path": path, "bf16": True}, 1, 24)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("name", [None, "", "a\0b", "x" * 300, 5])
def test_a_bad_model_name_is_a_named_problem(name):
    with pytest.raises(arch_mod.UnknownModel):
        advise({"model_name_or_path": name}, 1, 24) if name is not None else advise({}, 1, 24)


def test_a_config_json_that_is_a_device_or_huge_is_not_read_whole(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").symlink_to("/dev/zero")
    with pytest.raises(arch_mod.UnknownModel, match="not a known architecture"):
        arch_mod.load(str(folder))  # not a regular file: never opened
    (folder / "config.json").unlink()
    (folder / "config.json").write_text('{"hidden_size": 64, "pad": "' + "x" * (2 << 20) + '"}')
    with pytest.raises(arch_mod.UnknownModel, match="cannot read"):
        arch_mod.load(str(folder))  # only its first MiB is read


@pytest.mark.parametrize("args, key", [
    ({"per_device_train_batch_size": "x"}, "per_device_train_batch_size"),
    ({"cutoff_len": -5}, "cutoff_len"),
    ({"lora_rank": 2.5}, "lora_rank"),
    ({"cutoff_len": [1]}, "cutoff_len"),
    ({"deepspeed": {"zero_optimization": {"stage": 7}}}, "stage"),
])
def test_bad_arguments_are_named(args, key):
    with pytest.raises(arch_mod.EstimateError, match=key):
        setup_from_args({"finetuning_type": "lora", **args})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)
KEYS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
        "vocab_size", "head_dim", "num_local_experts", "moe_intermediate_size", "tie_word_embeddings", "model_type",
        "multi_query_attention", "n_embd", "d_model", "text_config", "vision_config", "downsample_ratio"]
near_good = st.fixed_dictionaries({}, optional={k: json_values | st.integers(-64, 4096) for k in KEYS}).map(
    lambda d: {**GOOD, **d})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=near_good | json_values)
def test_any_config_shape_gives_a_positive_finite_estimate_or_a_named_problem(config):
    try:
        model = arch_mod.from_config(config)
    except arch_mod.UnknownModel as exc:
        assert str(exc)
        return
    for stage in ("sft", "dpo", "ppo"):
        total = estimate(model, setup_from_args({"stage": stage, "bf16": True, "cutoff_len": 512})).per_gpu_gib
        assert math.isfinite(total) and total > 0
