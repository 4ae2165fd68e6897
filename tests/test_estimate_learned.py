"""Measured peaks recorded by the worker, and the next estimate corrected from the home's finished runs."""

import json

import pytest

from lftop import worker
from lftop.estimate import learned
from lftop.estimate.advice import advise, describe

GIB = 1 << 30
PROFILE = {"model_name_or_path": "Qwen/Qwen2.5-7B-Instruct", "stage": "sft", "finetuning_type": "lora",
           "bf16": True, "per_device_train_batch_size": 2, "cutoff_len": 2048}


def finished_run(home, run_id, args, reserved_gib, gpu="NVIDIA H100 80GB HBM3", ranks=1, oom=False):
    """A run directory as lftop leaves it: run.json, and the worker's per-rank peaks at two steps and the end."""
    run_dir = home / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"args": args, "cwd": str(home)}))
    for rank in range(ranks):
        worker.RANK = rank
        for step, share in ((10, 0.7), (20, 1.0)):
            peaks = {"allocated": int(share * (reserved_gib - 2) * GIB), "reserved": int(share * reserved_gib * GIB),
                     "gpu": gpu, "total": 80 * GIB}
            worker.record_memory(str(run_dir), step, peaks)
        worker.record_memory(str(run_dir), 20, {**peaks, **({"oom": True} if oom else {})}, final=True)
    worker.RANK = 0
    return run_dir


def test_worker_records_each_ranks_peaks_and_nothing_on_the_cpu(tmp_path):
    worker.record_memory(str(tmp_path), 5, None)  # torch.cuda unavailable: no file at all
    assert not (tmp_path / worker.MEMORY_FILE).exists()
    run_dir = finished_run(tmp_path, "r1", PROFILE, 30.0, ranks=2)
    lines = [json.loads(line) for line in (run_dir / worker.MEMORY_FILE).read_text().splitlines()]
    assert [(line["rank"], line["step"], line["final"]) for line in lines] == [
        (0, 10, False), (0, 20, False), (0, 20, True), (1, 10, False), (1, 20, False), (1, 20, True)]
    assert "versions" in lines[2] and "versions" not in lines[0]
    assert oct((run_dir / worker.MEMORY_FILE).stat().st_mode & 0o777) == "0o600"
    peak = learned.measured_peak(run_dir)
    assert peak.reserved_gib == pytest.approx(30.0, rel=1e-6) and peak.allocated_gib == pytest.approx(28.0, rel=1e-6)
    assert peak.ranks == 2 and peak.gpu == "NVIDIA H100 80GB HBM3"


def test_bad_memory_lines_are_skipped(tmp_path):
    (tmp_path / worker.MEMORY_FILE).write_bytes(b'1\n{"reserved": "x"}\n\xff\xfe\n{"allocated": 1073741824, '
                                                b'"reserved": 2147483648, "rank": 0}\n[')
    assert learned.measured_peak(tmp_path).reserved_gib == pytest.approx(2.0)
    (tmp_path / worker.MEMORY_FILE).write_text('{"allocated": -5, "reserved": 1e300}\n')
    assert learned.measured_peak(tmp_path) is None


def test_two_recorded_runs_calibrate_the_next_similar_estimate_and_say_from_what(tmp_path):
    raw = advise(PROFILE, 1, 80, calibrate=False).per_gpu_gib
    context = learned.CUDA_CONTEXT / GIB
    finished_run(tmp_path, "a", PROFILE, raw * 1.05 - context)
    finished_run(tmp_path, "b", {**PROFILE, "cutoff_len": 1024}, 0.0 + advise(
        {**PROFILE, "cutoff_len": 1024}, 1, 80, calibrate=False).per_gpu_gib * 1.07 - context)
    report = advise({**PROFILE, "per_device_train_batch_size": 4}, 1, 80, home=tmp_path)
    plain = advise({**PROFILE, "per_device_train_batch_size": 4}, 1, 80, calibrate=False)
    assert report.calibration.runs == 2 and report.calibration.factor == pytest.approx(1.06, abs=0.002)
    assert report.per_gpu_gib == pytest.approx(plain.per_gpu_gib * 1.06, rel=0.01)
    text = "\n".join(describe(report))
    assert "calibrated from 2 runs on this machine (NVIDIA H100 80GB HBM3): +6%" in text
    assert report.to_dict()["calibration"]["runs"] == 2
    assert len(learned.history(tmp_path)) == 2
    advise(PROFILE, 1, 80, home=tmp_path)
    assert len(learned.history(tmp_path)) == 2  # each run is recorded once


def test_other_setups_gpus_and_ooms_do_not_calibrate(tmp_path):
    finished_run(tmp_path, "dpo", {**PROFILE, "stage": "dpo"}, 50.0)
    finished_run(tmp_path, "oom", PROFILE, 79.0, oom=True)
    finished_run(tmp_path, "a100", PROFILE, 30.0, gpu="NVIDIA A100-SXM4-80GB")
    assert advise(PROFILE, 1, 80, home=tmp_path, gpu="NVIDIA H100 80GB HBM3").calibration is None
    assert advise({**PROFILE, "finetuning_type": "full"}, 1, 80, home=tmp_path).calibration is None
    dpo = advise({**PROFILE, "stage": "dpo"}, 1, 80, home=tmp_path)
    assert dpo.calibration.runs == 1 and "calibration" in dpo.estimate.breakdown
    assert sum(dpo.estimate.breakdown.values()) == pytest.approx(dpo.per_gpu_gib)


def test_a_peak_near_the_gpus_memory_is_flagged(tmp_path):
    finished_run(tmp_path, "near", PROFILE, 76.5)
    finished_run(tmp_path, "far", PROFILE, 60.0)
    assert learned.measured_peak(tmp_path / "runs" / "near").near_capacity  # 76.5 of 80 GiB
    assert not learned.measured_peak(tmp_path / "runs" / "far").near_capacity


def test_a_home_that_cannot_be_written_still_gives_the_raw_estimate(tmp_path, monkeypatch):
    finished_run(tmp_path, "a", PROFILE, 30.0)

    def refuse(*args, **kwargs):
        raise PermissionError("read-only home")

    monkeypatch.setattr(learned, "record", refuse)
    report = advise(PROFILE, 1, 80, home=tmp_path)
    assert report.calibration is None
    assert report.per_gpu_gib == pytest.approx(advise(PROFILE, 1, 80, calibrate=False).per_gpu_gib)
