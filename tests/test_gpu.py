import json
import os
import subprocess
import sys
import threading
import time

import psutil
import pytest

from conftest import wait_for
from lftop.gpu import nvml
from lftop.gpu.nvml import Nvml, least_used, visible
from lftop.gpu.ring import Ring, Rings
from lftop.gpu.sampler import Sampler, record, sample
from lftop.gpu.simulated import SimulatedNvml, parse_spec
from lftop.runs.process import ProcessRef
from lftop.runs.rundir import RunDir

GIB = 1 << 30


def test_every_field_of_an_idle_simulated_gpu():
    snapshot = Nvml(SimulatedNvml(count=2, model="NVIDIA A100-SXM4-80GB", memory_gib=80)).read()
    assert snapshot.error is None and snapshot.driver == "550.54.15" and snapshot.cuda == "12.4"
    d = snapshot.devices[1]
    assert (d.index, d.name, d.mem_total) == (1, "NVIDIA A100-SXM4-80GB", 80 * GIB)
    assert d.mem_used + d.mem_free == d.mem_total
    assert d.uuid.startswith("GPU-") and d.lost is False
    for field in ("util_gpu", "util_mem", "temperature", "power_w", "power_limit_w", "fan", "clock_sm", "clock_mem", "pstate"):
        assert getattr(d, field) is not None, field
    assert d.processes == ()


def test_unsupported_fields_read_as_na_not_exceptions():
    snapshot = Nvml(SimulatedNvml(count=1, na={"fan", "power", "temperature", "processes"})).read()
    d = snapshot.devices[0]
    assert (d.fan, d.power_w, d.power_limit_w, d.temperature) == (None, None, None, None)
    assert d.processes == () and d.mem_total is not None


def test_a_gpu_lost_mid_run_leaves_the_others_reading():
    sim = SimulatedNvml(count=8)
    reader = Nvml(sim)
    assert len([d for d in reader.read().devices if not d.lost]) == 8
    sim.lost.add(3)
    devices = reader.read().devices
    assert [d.index for d in devices if d.lost] == [3]
    assert "lost" in devices[3].error and devices[4].mem_total is not None


def test_missing_driver_and_mismatch_are_explained():
    import pynvml

    for error, words in ((pynvml.NVMLError_LibraryNotFound, "no NVIDIA driver found"),
                         (pynvml.NVMLError_DriverNotLoaded, "not loaded"),
                         (pynvml.NVMLError_LibRmVersionMismatch, "version mismatch")):
        snapshot = Nvml(SimulatedNvml(init_error=error)).read()
        assert snapshot.devices == () and words in snapshot.error


def test_visible_devices_follow_cuda_visible_devices():
    snapshot = Nvml(SimulatedNvml(count=4)).read()
    assert [d.index for d in visible(snapshot, "2,0")] == [2, 0]
    assert [d.index for d in visible(snapshot, "1,7,2")] == [1]  # CUDA stops at the first invalid entry
    uuid = snapshot.devices[3].uuid
    assert [d.index for d in visible(snapshot, uuid[:12])] == [3]
    assert [d.index for d in visible(snapshot, None)] == [0, 1, 2, 3]


def test_least_used_prefers_free_memory():
    sim = SimulatedNvml(count=4)
    sim.external = {0: [os.getpid()], 2: [os.getpid()]}
    assert least_used(2, Nvml(sim).read()) == [1, 3]
    with pytest.raises(nvml.NvmlUnavailable):
        least_used(5, Nvml(sim).read())


def test_ownership_walks_up_a_real_process_tree(home):
    """A GPU process two levels below a run's supervisor belongs to that run; others' processes to nobody."""
    tree = subprocess.Popen([sys.executable, "-c",
                             "import subprocess,sys,time; p=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']);"
                             "print(p.pid, flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(tree.stdout.readline())
        run = RunDir(home / "runs" / "r1")
        run.path.mkdir(parents=True)
        ref = ProcessRef.of(tree.pid)
        run.write_meta({"id": "r1", "pid": ref.pid, "create_time": ref.create_time, "gpus": "0"})
        sim = SimulatedNvml(count=3, home=home)
        sim.external = {1: [1]}  # pid 1: not this run's
        s = sample(Nvml(sim), runs=[("r1", ref)])
        gpu0 = [p.pid for p in s.gpus.devices[0].processes]
        assert grandchild in gpu0 or tree.pid in gpu0
        assert all(s.owners[pid].run == "r1" for pid in gpu0)
        assert s.owners[1].run is None
        assert s.gpus.devices[0].mem_used > s.gpus.devices[2].mem_used  # the run's GPU fills, an idle one does not
        assert s.gpus.devices[0].util_gpu > s.gpus.devices[2].util_gpu == 0
    finally:
        for proc in psutil.Process(tree.pid).children(recursive=True) + [psutil.Process(tree.pid)]:
            proc.kill()


def test_a_recycled_pid_is_not_the_run():
    ref = ProcessRef.of(os.getpid())
    assert ref.alive()
    assert not ProcessRef(ref.pid, ref.create_time - 100).alive()


def test_history_rings_stay_bounded():
    ring = Ring(size=5)
    for value in [3, None, 1, 4, 1, 5, 9, 2, 6]:
        ring.add(value)
    assert ring.values() == [1, 5, 9, 2, 6]
    rings = Rings(size=3)
    s = sample(Nvml(SimulatedNvml(count=8)))
    for _ in range(10):
        record(rings, s)
    assert len(rings.get("gpu7.util")) == 3


def test_sampler_polls_never_overlap():
    active, overlaps, delivered = [0], [0], []
    lock = threading.Lock()

    def slow_take():
        with lock:
            active[0] += 1
            overlaps[0] = max(overlaps[0], active[0])
        time.sleep(0.3)  # slower than the interval
        with lock:
            active[0] -= 1
        return time.monotonic()

    sampler = Sampler(slow_take, delivered.append, interval=0.1)
    assert sampler.interval == 0.25  # the floor
    sampler.start()
    wait_for(lambda: len(delivered) >= 3, 30, "three polls")
    sampler.stop()
    sampler.join(5)
    assert overlaps[0] == 1


def test_simulate_spec():
    assert parse_spec("8,model=H100,mem=80,na=fan+power,lost=3") == {
        "count": 8, "model": "H100", "memory_gib": 80.0, "na": {"fan", "power"}, "lost": {3}}


def _real_nvml_loads() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(_real_nvml_loads(), reason="this machine has an NVIDIA driver")
def test_gpus_without_a_driver_says_so_without_a_traceback(lftop):
    result = lftop("gpus", check=False, env={"LFTOP_SIMULATE": ""})
    assert result.returncode == 1
    assert "no NVIDIA driver found" in result.stderr and "Traceback" not in result.stderr
    assert lftop("validate", str(__import__("conftest").PROFILES / "base.toml"), env={"LFTOP_SIMULATE": ""}).returncode == 0


def test_gpus_json_on_eight_simulated_gpus(lftop):
    data = json.loads(lftop("--simulate", "8,na=fan", "gpus", "--json").stdout)
    assert len(data["gpus"]["devices"]) == 8
    assert data["gpus"]["devices"][0]["fan"] is None and data["host"]["ram_total"] > 0
