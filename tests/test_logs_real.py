"""Preference training's metrics, read from what real LLaMA-Factory prints on the tiny model (CPU).

A small pairwise dataset is built from the tiny model's toy data; LLaMA-Factory trains DPO and ORPO on it,
its stdout and stderr going to a training.log as lftop's launcher writes one. Each point's stage metrics
must be the ones LLaMA-Factory recorded itself in trainer_state.json's log_history (the log prints them
to four significant digits in transformers 5.x, with full precision in 4.x).
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import needs_llamafactory
from lftop.console import dumps
from lftop.logs import scan

DPO_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
               "logps/rejected", "logits/chosen", "logits/rejected")


def _pairwise(tiny, folder: Path) -> Path:
    """The tiny model's toy rows as preference pairs: the right answer chosen, its reversal rejected."""
    rows = json.loads((tiny.data / "toy_alpaca.json").read_text())
    pairs = [{"instruction": r["instruction"], "input": r["input"], "chosen": r["output"],
              "rejected": r["output"][::-1]}
             for r in rows]
    folder.mkdir()
    (folder / "pairs.json").write_text(json.dumps(pairs))
    columns = {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}
    (folder / "dataset_info.json").write_text(json.dumps({"toy_pairs": {"file_name": "pairs.json", "ranking": True,
                                                                         "columns": columns}}))
    return folder


def _train(tiny, tmp_path: Path, pref_loss: str) -> tuple[Path, Path]:
    data, out = _pairwise(tiny, tmp_path / "data"), tmp_path / "out"
    args = {
        "model_name_or_path": str(tiny.model), "stage": "dpo", "do_train": True, "finetuning_type": "lora",
        "lora_target": "all", "lora_rank": 8, "pref_beta": 0.1, "pref_loss": pref_loss, "dataset_dir": str(data),
        "dataset": "toy_pairs", "template": "default", "cutoff_len": 64, "output_dir": str(out),
        "per_device_train_batch_size": 2, "learning_rate": 1e-3, "max_steps": 6, "logging_steps": 2,
        "save_steps": 100, "use_cpu": True, "report_to": "none", "val_size": 0.1, "eval_strategy": "steps",
        "eval_steps": 3, "per_device_eval_batch_size": 2,
    }
    config = tmp_path / "dpo.yaml"  # YAML: 0.9.5 cannot read a .json config (json.load of a Path)
    config.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in args.items()))
    log = tmp_path / "training.log"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "wb") as f:
        cli = Path(sys.executable).with_name("llamafactory-cli")
        done = subprocess.run([str(cli), "train", str(config)], stdout=f, stderr=subprocess.STDOUT,
                              env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, log.read_text(errors="replace")[-3000:]
    return log, out


def _close(parsed: float, recorded: float) -> bool:
    return math.isclose(parsed, recorded, rel_tol=5e-4, abs_tol=1e-12)  # 5.x prints '.4g'


@needs_llamafactory
@pytest.mark.parametrize("pref_loss, extra", [("sigmoid", ()), ("orpo", ("sft_loss", "odds_ratio_loss"))])
def test_preference_metrics_are_read_from_llamafactorys_real_output(tiny, tmp_path, pref_loss, extra):
    log, out = _train(tiny, tmp_path, pref_loss)
    history = scan.scan(log)
    recorded = json.loads((out / "trainer_state.json").read_text())["log_history"]
    steps = {row["step"]: row for row in recorded if "loss" in row}
    assert sorted(history.points) == sorted(steps) == [2, 4, 6]
    for step, row in steps.items():
        point = history.points[step]
        assert _close(point.loss, row["loss"]) and _close(point.grad_norm, row["grad_norm"])
        for name in DPO_METRICS + extra:
            assert _close(point.metrics[name], row[name]), (step, name)
        assert 0 <= point.metrics["rewards/accuracies"] <= 1
    evals = [row for row in recorded if "eval_loss" in row]
    assert [e.eval_loss for _, e in sorted(history.evals.items())] == pytest.approx(
        [row["eval_loss"] for row in evals], rel=5e-4)
    last_eval = history.evals[max(history.evals)]
    assert _close(last_eval.metrics["eval_rewards/accuracies"], evals[-1]["eval_rewards/accuracies"])
    names = history.metric_names()
    assert {"rewards/accuracies", "rewards/margins", "eval_rewards/accuracies", *extra} <= set(names)
    assert history.series("rewards/accuracies") == [history.points[s].metrics["rewards/accuracies"] for s in (2, 4, 6)]
    printed = json.loads(dumps(scan.to_json(history)))  # what `lftop scan --json` prints: every metric by name
    assert [p["rewards/margins"] for p in printed["points"]] == [history.points[s].metrics["rewards/margins"]
                                                                 for s in (2, 4, 6)]
    assert history.diverged_at is None and history.total == 6 and history.step == 6
