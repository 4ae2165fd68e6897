"""`lftop compare`: the arguments that differ and loss/eval loss at common steps, from run.json and trainer_log.jsonl."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lftop.runs import rundir
from lftop.runs.compare import compare, differing, history

DATA = Path(__file__).parent / "data"
BASE = {"model_name_or_path": "m", "stage": "sft", "learning_rate": 1e-4, "lora_rank": 8, "logging_steps": 2}


def _run(home: Path, name: str, args: dict, log_lines: list[str] | None = None, log_file: Path | None = None):
    run = rundir.create(home, name)
    out = home / f"out-{name}"
    out.mkdir()
    if log_file is not None:
        shutil.copy(log_file, out / "trainer_log.jsonl")
    if log_lines is not None:
        with open(out / "trainer_log.jsonl", "a") as f:
            f.write("".join(line + "\n" for line in log_lines))
    run.write_meta({"id": run.id, "command": ["x"], "env": {}, "output_dir": str(out),
                    "args": {**args, "output_dir": str(out)}})
    return run


def _line(step: int, **values) -> str:
    return json.dumps({"current_steps": step, "total_steps": 24, **values})


def test_history_reads_loss_and_eval_loss_skipping_garbage():
    h = history(DATA)  # tests/data/trainer_log.jsonl: a real log with a garbage line in it
    assert h.loss == {2: 5.706016540527344, 4: 5.7, 6: 5.5, 8: 5.4}
    assert h.eval_loss == {4: 5.602165222167969}
    assert history(DATA / "nowhere") == type(h)({}, {})


def test_differing_names_changed_added_and_missing_keys():
    found = differing([{"a": 1, "b": 2, "c": [1]}, {"a": 1, "b": 3, "c": [1], "d": True}])
    assert found == {"b": [2, 3], "d": [None, True]}


def test_compare_pairs_losses_at_common_steps(tmp_path):
    a = _run(tmp_path, "a", BASE, log_file=DATA / "trainer_log.jsonl")
    b = _run(tmp_path, "b", {**BASE, "learning_rate": 2e-5, "lora_rank": 16}, [
        _line(2, loss=6.0), _line(4, loss=5.9), _line(4, eval_loss=5.8),
        _line(4, loss=5.85),  # logged again after a resume from checkpoint-2: the newest value counts
        _line(10, loss=5.0),
    ])
    result = compare([a, b])
    assert result.runs == [a.id, b.id]
    assert result.args["learning_rate"] == [1e-4, 2e-5] and result.args["lora_rank"] == [8, 16]
    assert set(result.args) == {"learning_rate", "lora_rank", "output_dir"}
    assert result.steps == [
        {"step": 2, "loss": [5.706016540527344, 6.0], "eval_loss": [None, None]},
        {"step": 4, "loss": [5.7, 5.85], "eval_loss": [5.602165222167969, 5.8]},
    ]


def test_lftop_compare_json_and_text(lftop, home):
    a = _run(home, "a", BASE, log_file=DATA / "trainer_log.jsonl")
    b = _run(home, "b", {**BASE, "learning_rate": 2e-5}, [_line(2, loss=6.0), _line(8, loss=5.0)])
    data = lftop.json("compare", a.id, b.id, "--json")
    assert data["args"]["learning_rate"] == [1e-4, 2e-5]
    assert [row["step"] for row in data["steps"]] == [2, 8]
    assert data["steps"][1]["loss"] == [5.4, 5.0]
    text = lftop("compare", a.id, b.id).stdout
    assert f"A  {a.id}" in text and f"B  {b.id}" in text
    assert "learning_rate" in text and "0.0001" in text and "2e-05" in text
    assert "5.4000" in text and "5.0000" in text
    one = lftop("compare", a.id, check=False)
    assert one.returncode == 1 and "two runs or more" in one.stderr
    missing = lftop("compare", a.id, "nope", check=False)
    assert missing.returncode == 1 and "no run matches 'nope'" in missing.stderr
