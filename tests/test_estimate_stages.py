"""What each LLaMA-Factory stage and a vision tower add to the estimate, term by term."""

import pytest

from lftop.estimate import arch as arch_mod
from lftop.estimate.advice import advise, describe
from lftop.estimate.memory import estimate, setup_from_args

QWEN = {"model_name_or_path": "Qwen/Qwen2.5-7B-Instruct", "finetuning_type": "lora", "bf16": True,
        "per_device_train_batch_size": 2, "cutoff_len": 2048}
GIB = 1 << 30


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    """Estimates here are the raw model: no finished runs of the developer's own home calibrate them."""
    monkeypatch.setenv("LFTOP_HOME", str(tmp_path / "home"))


def parts(args: dict, gpus: int = 1) -> dict:
    return estimate(arch_mod.load(args["model_name_or_path"]), setup_from_args(args, gpus)).breakdown


def test_dpo_exceeds_sft_by_the_pairs_activations_and_logits_and_the_reference_pass():
    sft, dpo = parts(QWEN), parts({**QWEN, "stage": "dpo"})
    assert dpo["activations"] == pytest.approx(2 * sft["activations"])  # chosen and rejected together
    assert dpo["logits"] == pytest.approx(2 * sft["logits"])
    model = arch_mod.load(QWEN["model_name_or_path"])
    pairs_tokens = 2 * 2 * 2048
    assert dpo["reference_logits"] == pytest.approx(pairs_tokens * model.vocab * 8 / GIB)
    assert dpo["reference_model"] == 0  # LoRA: the reference is the base with adapters disabled
    extra = sum(dpo.values()) - sum(sft.values())
    pairs = dpo["activations"] - sft["activations"] + dpo["logits"] - sft["logits"] + dpo["reference_logits"]
    assert extra == pytest.approx(pairs * 1.06, rel=0.01)  # plus the allocator's slack on them, nothing else


def test_full_dpo_loads_a_reference_model_but_orpo_and_simpo_do_not():
    full = {**QWEN, "stage": "dpo", "finetuning_type": "full"}
    params = arch_mod.load(QWEN["model_name_or_path"]).params()
    assert parts(full)["reference_model"] == pytest.approx(params * 2 / GIB)
    for loss in ("orpo", "simpo"):
        terms = parts({**full, "pref_loss": loss})
        assert "reference_model" not in terms and "reference_logits" not in terms
        assert terms["logits"] == pytest.approx(parts(full)["logits"])  # still a pair per example


def test_dpo_logits_stay_under_liger_because_the_trainer_takes_them_itself():
    liger = {**QWEN, "enable_liger_kernel": True}
    assert parts(liger)["logits"] == 0
    assert parts({**liger, "stage": "dpo"})["logits"] > 0


def test_rm_adds_a_value_head_and_ppo_adds_its_reward_and_reference_models():
    rm, ppo = parts({**QWEN, "stage": "rm"}), parts({**QWEN, "stage": "ppo", "reward_model_type": "full"})
    assert rm["value_head"] > 0 and rm["activations"] == pytest.approx(2 * parts(QWEN)["activations"])
    params = arch_mod.load(QWEN["model_name_or_path"]).params()
    assert ppo["reward_model"] == pytest.approx(params * 2 / GIB)
    assert ppo["value_head"] > 0 and ppo["rollout_kv_cache"] > 0
    assert parts({**QWEN, "stage": "ppo"})["reward_model"] == 0  # the default reward is a LoRA adapter
    full_ppo = parts({**QWEN, "stage": "ppo", "finetuning_type": "full"})
    assert full_ppo["reference_model"] == pytest.approx(params * 2 / GIB)


def test_kto_holds_a_reference_for_full_training_and_a_kl_pass():
    kto = parts({**QWEN, "stage": "kto", "finetuning_type": "full"})
    assert kto["reference_model"] > 0 and kto["reference_logits"] > 0
    assert kto["activations"] == pytest.approx(parts({**QWEN, "finetuning_type": "full"})["activations"])


def test_each_stage_names_its_terms_in_the_described_breakdown():
    expected = {"pt": "logits", "sft": "logits", "rm": "value_head", "dpo": "reference_logits",
                "kto": "reference_logits", "ppo": "rollout_kv_cache"}
    for stage, term in expected.items():
        report = advise({**QWEN, "stage": stage}, 1, 80)
        assert report.estimate.breakdown[term] > 0
        lines = describe(report)
        shown = {line.split()[0] for line in lines[2:] if line.startswith("  ") and line.endswith("GiB")}
        assert {k for k, v in report.estimate.breakdown.items() if v >= 0.005} == shown
        assert any(f"stage {stage}" in line for line in lines)


def test_unknown_stage_is_a_named_problem():
    with pytest.raises(arch_mod.EstimateError, match="stage"):
        setup_from_args({**QWEN, "stage": "grpo"})


def test_qwen25_vl_lora_is_estimated_above_its_language_model_with_vision_terms():
    vl = {**QWEN, "model_name_or_path": "Qwen/Qwen2.5-VL-7B-Instruct"}
    text, vision = advise(QWEN, 1, 80), advise(vl, 1, 80)
    assert vision.per_gpu_gib > text.per_gpu_gib
    terms = vision.estimate.breakdown
    assert terms["vision_weights"] == pytest.approx(0.67e9 * 2 / GIB, rel=0.05)  # ~670M-parameter ViT + merger
    assert terms["vision_activations"] > 0 and terms["vision_training"] == 0  # frozen by default
    assert "vision_weights" not in text.estimate.breakdown
    assert any("image tokens" in line for line in describe(vision))


def test_training_the_vision_tower_adds_its_gradients_and_states():
    vl = {**QWEN, "model_name_or_path": "Qwen/Qwen2.5-VL-7B-Instruct", "finetuning_type": "full"}
    frozen, trained = parts(vl), parts({**vl, "freeze_vision_tower": False})
    assert trained["vision_training"] > 0 and trained["vision_activations"] > frozen["vision_activations"]


def test_vision_configs_from_config_json():
    qwen2vl = {"model_type": "qwen2_vl", "hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
               "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064,
               "vision_config": {"depth": 32, "embed_dim": 1280, "hidden_size": 3584, "mlp_ratio": 4,
                                 "num_heads": 16, "patch_size": 14, "spatial_merge_size": 2}}
    model = arch_mod.from_config(qwen2vl)
    assert model.vision.hidden == 1280 and model.vision.out_hidden == 3584  # embed_dim is the width here
    assert model.vision.tokens(768 * 768) == 768 * 768 // 28 ** 2  # at most: 28 x 28 pixels per token
    llava = {"model_type": "llava", "text_config": {"model_type": "llama", "vocab_size": 32064},
             "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                               "image_size": 336, "patch_size": 14}}
    model = arch_mod.from_config(llava)
    assert model.hidden == 4096 and model.vision.tokens(768 * 768) == 576  # fixed 336 px: 24 x 24 patches
    internvl = {"model_type": "internvl", "downsample_ratio": 0.5, "text_config": {**qwen2vl, "vision_config": None},
                "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                                  "image_size": [448, 448], "patch_size": [14, 14]}}
    assert arch_mod.from_config(internvl).vision.tokens(768 * 768) == 256
