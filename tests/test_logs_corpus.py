"""The corpus of real logs (tests/data/logs/MANIFEST.json): every excerpt gives what reading it gives."""

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from lftop.console import dumps
from lftop.logs import scan

CORPUS = Path(__file__).parent / "data" / "logs"
MANIFEST = json.loads((CORPUS / "MANIFEST.json").read_text())["logs"]


def _same(got, want) -> bool:
    if want == "nan":
        return isinstance(got, float) and math.isnan(got)
    if isinstance(want, float) and isinstance(got, float):
        return math.isclose(got, want, rel_tol=1e-12)
    return got == want


def _series(got: list, want: list) -> bool:
    return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want, strict=True))


def test_the_corpus_is_whole():
    files = {p.name for p in CORPUS.iterdir() if p.name != "MANIFEST.json"}
    assert files == {entry["file"] for entry in MANIFEST}
    issues = {entry["source"] for entry in MANIFEST if entry["source"].startswith("https://github.com/hiyouga/")}
    assert len(issues) >= 30


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_a_real_log_gives_what_reading_it_gives(entry):
    history = scan.scan(CORPUS / entry["file"])
    points = [history.points[s] for s in sorted(history.points)]
    assert _series([p.loss for p in points], entry.get("losses", []))
    assert [p.step for p in points] == entry.get("steps", [])
    for field, key in (("grad_norm", "grad_norms"), ("lr", "lrs")):
        if key in entry:
            assert _series([getattr(p, field) for p in points], entry[key]), field
    evals = [[s, history.evals[s].eval_loss] for s in sorted(history.evals)]
    assert evals == entry.get("evals", [])
    assert (history.total, history.step) == (entry.get("total"), entry.get("step"))
    assert [f.kind for f in history.failures] == entry.get("failures", [])
    if "failure_messages" in entry:
        assert [f.message for f in history.failures] == entry["failure_messages"]
    assert (history.diverged_at is not None) == entry.get("diverging", False)
    for name, values in {**entry.get("metrics", {}), **entry.get("eval_metrics", {})}.items():
        assert _series(history.series(name), values), name
        assert name in history.metric_names()
    if "facts" in entry:
        assert history.facts == entry["facts"]
    if "summary" in entry:
        assert entry["summary"].items() <= (history.summary or {}).items()
    out = json.loads(dumps(scan.to_json(history)))  # what `scan --json` prints: strict JSON, nan as "nan"
    assert _series([float(p["loss"]) for p in out["points"]], entry.get("losses", []))


def test_lftop_scan_json_prints_a_diverging_run_as_strict_json():
    """`lftop scan --json` as a user runs it: valid JSON (no NaN token), nan as "nan", stage metrics by name."""
    def no_constants(name):
        raise ValueError(f"not JSON: {name}")

    for name in ("nan_loss_zero_npu_5627.log", "made_here_dpo_lf095_tf56.log"):
        done = subprocess.run([sys.executable, "-m", "lftop", "scan", str(CORPUS / name), "--json"],
                              capture_output=True, text=True, timeout=60, check=True)
        out = json.loads(done.stdout, parse_constant=no_constants)
        if name.startswith("nan"):
            assert out["diverged_at"] == 1 and [p["grad_norm"] for p in out["points"]] == ["nan"] * 4
        else:
            assert [p["rewards/accuracies"] for p in out["points"]] == [0.5, 0.5, 1.0]
            assert "rewards/margins" in out["metrics"] and out["eval"][0]["eval_rewards/accuracies"] == 1.0


def test_csv_has_a_column_for_each_stage_metric():
    rows = list(csv.reader(io.StringIO(scan.to_csv(scan.scan(CORPUS / "made_here_orpo_lf095_tf56.log")))))
    header = rows[0]
    assert header[:5] == ["step", "loss", "lr", "grad_norm", "epoch"] and "odds_ratio_loss" in header
    assert [row[header.index("odds_ratio_loss")] for row in rows[1:]] == ["0.6936", "0.6936", "0.7019"]
