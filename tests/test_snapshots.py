"""Snapshots of each screen at 80x24 and 200x50, from fixed runs on disk and fixed GPU readings.

GPU readings come from the simulated pynvml; the host reading is fixed here because psutil's live
numbers would differ on every run. Update baselines with `pytest tests/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.text import Text

from lftop.gpu.host import HostSnapshot
from lftop.gpu.nvml import Nvml
from lftop.gpu.sampler import Sample
from lftop.gpu.simulated import SimulatedNvml
from lftop.tui.app import LftopApp

DATA = Path(__file__).parent / "data"
SIZES = [(80, 24), (200, 50)]
GIB = 1 << 30


def make_home(root: Path) -> Path:
    home = root / "home"
    created = time.time() - 3 * 86400 - 20
    runs = [
        ("qwen7b-lora-20261120-090000", "completed", "0", None),
        ("llama8b-zero3-20261121-100000", "paused", "0,1", None),
        ("glm3-ddp-20261122-110000", "failed", "0,1", {"event": "failed", "kind": "oom", "message": "CUDA out of memory"}),
    ]
    for i, (run_id, state, gpus, failure) in enumerate(runs):
        run = home / "runs" / run_id
        out = root / "saves" / run_id
        (out / "checkpoint-4" ).mkdir(parents=True)
        (out / "checkpoint-4" / "trainer_state.json").write_text("{}")
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"id": run_id, "created": created + i, "output_dir": str(out),
                                                  "command": ["python", "-u", "worker.py", str(run)], "args": {},
                                                  "env": {},
                                                  "gpus": gpus, "nproc": len(gpus.split(",")), "profile": f"{run_id}.toml"}))
        (run / "state").write_text(state + "\n")
        shutil.copy(DATA / "v5.log", run / "training.log")
        shutil.copy(DATA / "trainer_log.jsonl", out / "trainer_log.jsonl")
        if failure:
            (run / "events.jsonl").write_text(json.dumps(failure) + "\n")
    return home


def fixed_sample(home: Path, count: int) -> Sample:
    gpus = Nvml(SimulatedNvml(count=count, home=home, na={"fan"} if count > 2 else set())).read()
    host = HostSnapshot(0.0, 12.0, 16, 20 * GIB, 128 * GIB, 0, 8 * GIB, (1.0, 0.8, 0.5), {str(home): 500 * GIB})
    return Sample(gpus, host, {})


def app_for(tmp_path: Path, gpus: int = 2) -> LftopApp:
    home = make_home(tmp_path)
    sample = fixed_sample(home, gpus)
    return LftopApp(home, interval=3600, select="glm3-ddp-20261122-110000", gpu_source=lambda: sample)


def laid_out(table) -> bool:
    """The runs table has measured the rows it was given (a DataTable does that when idle): each column is as
    wide as its widest cell. A busy machine can take a snapshot between a table's rows and their widths."""
    if not table.row_count:
        return False
    cells = [table.get_row_at(i) for i in range(table.row_count)]
    return all(column.content_width >= max(cell_len(row[k].plain if isinstance(row[k], Text) else str(row[k]))
                                           for row in cells)
               for k, column in enumerate(table.ordered_columns))


async def settled(pilot) -> None:
    """Until the runs table is laid out, then until rendering settles."""
    for _ in range(400):
        if laid_out(pilot.app.runs_table):
            break
        await pilot.pause(0.05)
    for _ in range(3):
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.2)


async def loaded(pilot) -> None:
    """Until both feeds have delivered and the selected run's log is on screen, then until rendering settles."""
    app = pilot.app
    for _ in range(400):
        if (app.curves is not None and app.query_one("#gpus").sample is not None and app.runs
                and app.query_one("#log").lines and app.query_one("#runs").selected() == app.curves.run):
            break
        await pilot.pause(0.05)
    await settled(pilot)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_dashboard(snap_compare, tmp_path, monkeypatch, size):
    monkeypatch.setenv("LFTOP_HOME", str(tmp_path / "home"))
    assert snap_compare(app_for(tmp_path, gpus=8 if size[1] >= 50 else 2), terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_screen(snap_compare, tmp_path, monkeypatch, size):
    monkeypatch.setenv("LFTOP_HOME", str(tmp_path / "home"))

    async def run_before(pilot):
        await loaded(pilot)
        await pilot.press("enter")
        await settled(pilot)

    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_launch_screen(snap_compare, tmp_path, monkeypatch, size):
    monkeypatch.setenv("LFTOP_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)

    async def run_before(pilot):
        await loaded(pilot)
        await pilot.press("l")
        for _ in range(100):
            if getattr(pilot.app.screen, "profile", None) is not None:
                break
            await pilot.pause(0.05)
        await settled(pilot)

    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_screen(snap_compare, tmp_path, monkeypatch, size):
    monkeypatch.setenv("LFTOP_HOME", str(tmp_path / "home"))

    async def run_before(pilot):
        await loaded(pilot)
        await pilot.press("question_mark")
        await settled(pilot)

    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=run_before)


def test_too_small(snap_compare, tmp_path, monkeypatch):
    monkeypatch.setenv("LFTOP_HOME", str(tmp_path / "home"))
    assert snap_compare(app_for(tmp_path), terminal_size=(60, 20), run_before=loaded)
