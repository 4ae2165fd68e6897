import json

import pytest

from lftop.estimate import arch as arch_mod
from lftop.estimate.advice import advise, verdict
from lftop.estimate.memory import estimate, setup_from_args

LLAMA3_8B = {"model_name_or_path": "meta-llama/Llama-3.1-8B-Instruct", "finetuning_type": "lora", "bf16": True,
             "per_device_train_batch_size": 2, "cutoff_len": 2048}


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    """Estimates here are the raw model: no finished runs of the developer's own home calibrate them."""
    monkeypatch.setenv("LFTOP_HOME", str(tmp_path / "home"))


def parts(args: dict, gpus: int = 1) -> dict:
    return estimate(arch_mod.load(args["model_name_or_path"]), setup_from_args(args, gpus)).breakdown


def test_doubling_the_micro_batch_doubles_activations_and_leaves_weights():
    one, two = parts(LLAMA3_8B), parts({**LLAMA3_8B, "per_device_train_batch_size": 4})
    assert two["activations"] == pytest.approx(2 * one["activations"])
    assert two["logits"] == pytest.approx(2 * one["logits"])
    assert two["weights"] == one["weights"] and two["optimizer"] == one["optimizer"]


def test_zero3_over_8_gpus_divides_model_states_by_8():
    full = {**LLAMA3_8B, "finetuning_type": "full"}
    alone = parts({**full, "deepspeed": "ds_z3_config.json"}, gpus=1)
    eight = parts({**full, "deepspeed": "ds_z3_config.json"}, gpus=8)
    for part in ("gradients", "optimizer"):
        assert eight[part] == pytest.approx(alone[part] / 8)
    model = arch_mod.load(full["model_name_or_path"])
    gathered = 2 * (model.attention_params() + model.mlp_params()) * 2 / (1 << 30)  # the layers being computed
    assert eight["weights"] - gathered == pytest.approx((alone["weights"] - gathered) / 8)


def test_4bit_weights_are_a_quarter_of_bf16_on_linear_layers_while_embeddings_stay():
    model = arch_mod.load(LLAMA3_8B["model_name_or_path"])
    bf16, nf4 = parts(LLAMA3_8B)["weights"], parts({**LLAMA3_8B, "quantization_bit": 4})["weights"]
    embeddings = model.embedding_params() * 2 / (1 << 30)
    linear_bf16 = model.linear_params() * 2 / (1 << 30)
    assert nf4 - embeddings == pytest.approx(linear_bf16 / 4, rel=0.1)
    assert bf16 - embeddings == pytest.approx(linear_bf16, rel=0.01)


def test_gradient_checkpointing_and_liger_lower_what_they_should():
    base = parts(LLAMA3_8B)
    assert parts({**LLAMA3_8B, "disable_gradient_checkpointing": True})["activations"] > 5 * base["activations"]
    assert parts({**LLAMA3_8B, "enable_liger_kernel": True})["logits"] == 0


def test_every_suggestion_lowers_the_estimate():
    report = advise({**LLAMA3_8B, "per_device_train_batch_size": 8, "disable_gradient_checkpointing": True},
                    gpus=2, capacity_gib=16)
    assert report.verdict == "oom" and len(report.suggestions) >= 5
    assert all(s.per_gpu_gib < report.per_gpu_gib for s in report.suggestions)
    first = report.suggestions[0]
    assert first.set == {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2}  # effective batch kept
    assert any("deepspeed" in s.set for s in report.suggestions)


def test_report_json_breakdown_sums_to_the_total():
    data = advise(LLAMA3_8B, 1, 24).to_dict()
    assert sum(data["breakdown"].values()) == pytest.approx(data["per_gpu_gib"], abs=0.02)
    assert data["verdict"] in ("fits", "tight", "oom")
    assert verdict(10, 24) == "fits" and verdict(23, 24) == "tight" and verdict(25, 24) == "oom"


def test_parameter_counts_from_configs():
    llama = arch_mod.load("meta-llama/Llama-3.1-8B")
    assert llama.params() == pytest.approx(8.03e9, rel=0.01)  # GQA: 8 key/value heads
    qwen = arch_mod.load("Qwen/Qwen2.5-1.5B-Instruct")
    assert qwen.tied and qwen.params() == pytest.approx(1.54e9, rel=0.02)  # tied embeddings counted once
    moe = arch_mod.from_config({"model_type": "mixtral", "hidden_size": 4096, "num_hidden_layers": 32,
                                "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
                                "vocab_size": 32000, "num_local_experts": 8, "num_experts_per_tok": 2})
    assert moe.params() == pytest.approx(46.7e9, rel=0.01)  # Mixtral-8x7B


def test_local_config_and_hf_cache(tmp_path, monkeypatch):
    local = tmp_path / "m"
    local.mkdir()
    (local / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
                                                   "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100}))
    assert arch_mod.load(str(local)).hidden == 64
    snapshot = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text((local / "config.json").read_text())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    found = arch_mod.load("acme/tiny")
    assert found.layers == 2 and "cache" in found.source


def test_unknown_model_asks_for_a_local_path():
    with pytest.raises(arch_mod.UnknownModel, match="local model folder"):
        arch_mod.load("nobody/unheard-of-model")


def test_estimate_cli_plans_for_another_machine(lftop):
    from conftest import PROFILES

    data = lftop.json("estimate", str(PROFILES / "llama3.1-8b-lora-zero3.toml"), "--gpus", "1", "--gpu-mem", "8", "--json")
    assert data["verdict"] == "oom" and data["gpus"] == 1 and data["capacity_gib"] == 8
    assert all(s["per_gpu_gib"] < data["per_gpu_gib"] for s in data["suggestions"])
    cpu = lftop.json("estimate", str(PROFILES / "demo-cpu.toml"), "--json")
    assert cpu["verdict"] is None and "CPU" in cpu["note"]


def test_launch_refuses_a_predicted_oom_without_force(lftop, tmp_path):
    profile = tmp_path / "big.toml"
    profile.write_text('[launch]\ngpus = "0"\n[train]\nmodel_name_or_path = "meta-llama/Llama-3.1-8B-Instruct"\n'
                       f'stage = "sft"\noutput_dir = "{tmp_path / "out"}"\nlogging_steps = 5\nbf16 = true\n')
    result = lftop("launch", str(profile), check=False, env={"LFTOP_SIMULATE": "1,mem=8"})
    assert result.returncode == 1
    assert "OOM" in result.stderr and "try " in result.stderr and "--force" in result.stderr
    assert not (lftop.home / "runs").exists() or not any((lftop.home / "runs").iterdir())  # nothing started


def test_fused_layernorm_models_keep_their_norm_input_only_in_the_compute_dtype():
    shape = {"hidden_size": 2560, "num_hidden_layers": 32, "num_attention_heads": 32, "intermediate_size": 10240,
             "vocab_size": 51200}
    phi, llama = arch_mod.from_config({**shape, "model_type": "phi"}), arch_mod.from_config({**shape, "model_type": "llama"})
    assert phi.layer_norm and not llama.layer_norm
    args = {"finetuning_type": "full", "bf16": True, "disable_gradient_checkpointing": True,
            "per_device_train_batch_size": 1, "cutoff_len": 1000}
    setup = setup_from_args(args)
    per_token_layer = {name: estimate(m, setup).breakdown["activations"] * (1 << 30) / 1000 / 32
                       for name, m in (("phi", phi), ("llama", llama))}
    mlp_gap = 10240 * 2  # phi's MLP has no gate: one inter-wide tensor fewer
    # two RMSNorms keep fp32 input, fp32 normalised and bf16 output (10 B each); two LayerNorms only bf16 input
    assert per_token_layer["llama"] - per_token_layer["phi"] == pytest.approx(mlp_gap + 2 * 2560 * (10 - 2))


def test_deepspeed_trains_16_bit_weights_and_upcasts_one_gradient_partition_at_the_step():
    full = {**LLAMA3_8B, "finetuning_type": "full"}
    params = arch_mod.load(full["model_name_or_path"]).params()
    z2 = parts({**full, "deepspeed": "ds_z2_config.json"}, gpus=4)
    assert z2["gradients"] == pytest.approx(params * 2 / 4 / (1 << 30))  # bf16 gradients, reduced and partitioned
    assert z2["optimizer"] == pytest.approx(params * 12 / 4 / (1 << 30))  # fp32 master + two Adam moments
    assert z2["fp32_grad_partition"] == pytest.approx(params * 4 / 4 / (1 << 30))
    z3 = parts({**full, "deepspeed": "ds_z3_config.json"}, gpus=4)
    assert z3["fp32_grad_partition"] == pytest.approx(1e9 * 4 / (1 << 30))  # one 1e9-parameter sub-group
    offload = parts({**full, "deepspeed": "ds_z3_offload_config.json"}, gpus=4)
    assert offload["fp32_grad_partition"] == 0 and offload["optimizer"] == 0
    assert parts(full)["fp32_grad_partition"] == 0  # no DeepSpeed: the Trainer's own fp32 upcast
