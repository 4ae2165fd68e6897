"""Runs inside the training interpreter: LLaMA-Factory's run_exp plus lftop's pause callback.

Self-contained on purpose (standard library and llamafactory only): the profile's `[launch] python`
may be an environment where lftop is not installed. Started by path as `python worker.py RUN_DIR`,
or under torchrun with one copy per rank. It reads RUN_DIR/run.json, polls RUN_DIR/control at every
optimizer step, and records its state (written atomically) and events in RUN_DIR: each event before the state it explains.
"""

import json
import os
import sys
import time
import traceback

RANK = int(os.environ.get("RANK", "0"))
NEAR_CAPACITY = 0.95  # reserved memory above this share of the GPU: an OOM may be ahead
MEMORY_FILE = "memory.jsonl"  # one line per rank at each logging step and at the end: peak CUDA memory
OOM_MARKERS = ("OutOfMemoryError", "CUDA out of memory", "HIP out of memory", "CUBLAS_STATUS_ALLOC_FAILED")


def write_state(run_dir, state):
    tmp = os.path.join(run_dir, f".state.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(state + "\n")
    os.replace(tmp, os.path.join(run_dir, "state"))


def event(run_dir, name, **fields):
    line = json.dumps({"time": time.time(), "event": name, "rank": RANK, "pid": os.getpid(), **fields})
    fd = os.open(os.path.join(run_dir, "events.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def cuda_peaks():
    """This rank's peak allocated and reserved CUDA memory (bytes) and its GPU; None on the CPU."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    device = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(device)
    return {"allocated": torch.cuda.max_memory_allocated(device), "reserved": torch.cuda.max_memory_reserved(device),
            "gpu": props.name, "total": props.total_memory}


def versions():
    from importlib import metadata

    found = {}
    for name in ("torch", "transformers", "llamafactory", "peft", "deepspeed", "bitsandbytes"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def record_memory(run_dir, step, peaks, final=False):
    """Append this rank's peaks to RUN_DIR/memory.jsonl (nothing when there are none: CPU runs)."""
    if not peaks:
        return
    fields = {"time": time.time(), "rank": RANK, "step": step, "final": final, **peaks}
    if final:
        fields["versions"] = versions()
    fd = os.open(os.path.join(run_dir, MEMORY_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (json.dumps(fields) + "\n").encode())
    finally:
        os.close(fd)


def read_control(run_dir):
    try:
        with open(os.path.join(run_dir, "control")) as f:
            return f.read().strip()
    except OSError:
        return ""


def make_callback(run_dir):
    import torch
    import torch.distributed as dist
    from transformers import TrainerCallback

    class PauseCallback(TrainerCallback):
        """At each optimizer step end: if any rank sees `pause`, every rank saves a checkpoint and stops."""

        paused_at = None

        def on_train_begin(self, args, state, control, **kwargs):
            if RANK == 0:
                event(run_dir, "running", step=state.global_step, total_steps=state.max_steps)
                write_state(run_dir, "running")

        near_capacity = False

        def on_log(self, args, state, control, **kwargs):
            peaks = cuda_peaks()
            record_memory(run_dir, state.global_step, peaks)
            if peaks and not self.near_capacity and peaks["reserved"] > NEAR_CAPACITY * peaks["total"]:
                self.near_capacity = True  # the longest batches may still be ahead: say so once per rank
                event(run_dir, "memory near capacity", step=state.global_step, reserved=peaks["reserved"],
                      total=peaks["total"], gpu=peaks["gpu"])

        def on_train_end(self, args, state, control, **kwargs):
            record_memory(run_dir, state.global_step, cuda_peaks(), final=True)

        def on_save(self, args, state, control, **kwargs):
            """Record the checkpoint as this run's own: resume and pause name only checkpoints the run wrote."""
            if RANK == 0:
                path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
                event(run_dir, "checkpoint", step=state.global_step, path=path)

        def on_step_end(self, args, state, control, **kwargs):
            flag = 1 if read_control(run_dir) in ("pause", "requeue") else 0  # requeue: Slurm's warning signal
            if dist.is_available() and dist.is_initialized():
                device = args.device if dist.get_backend() == "nccl" else "cpu"
                tensor = torch.tensor([flag], device=device)
                dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
                flag = int(tensor.item())
            if flag and state.global_step < state.max_steps:
                control.should_save = True
                control.should_training_stop = True
                self.paused_at = state.global_step
                if RANK == 0:
                    event(run_dir, "pausing", step=state.global_step)
                    write_state(run_dir, "pausing")
            return control

    return PauseCallback()


def main(run_dir):
    with open(os.path.join(run_dir, "run.json")) as f:
        meta = json.load(f)
    import torch

    # A multi-rank CPU (gloo) resume tags optimizer tensors "cpu:0", which torch's loader does not know.
    torch.serialization.register_package(9, lambda obj: None, lambda obj, loc: obj if loc.startswith("cpu:") else None)
    from llamafactory.train.tuner import run_exp

    callback = make_callback(run_dir)
    try:
        run_exp(dict(meta["args"]), callbacks=[callback])
    except BaseException as exc:  # record why, then let the process fail as it would have
        message = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ""
        text = f"{type(exc).__name__}: {exc}"
        kind = "oom" if any(m in text for m in OOM_MARKERS) else "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
        peaks = cuda_peaks() if kind == "oom" else None
        if peaks:  # the peak when memory ran out: a floor, not what the run needed
            record_memory(run_dir, None, {**peaks, "oom": True}, final=True)
        event(run_dir, "failed", kind=kind, exception=type(exc).__name__, message=message,
              traceback=traceback.format_exc()[-4000:])
        write_state(run_dir, "failed")
        raise
    if RANK == 0:
        if callback.paused_at is not None:
            event(run_dir, "paused", step=callback.paused_at)
            write_state(run_dir, "paused")
        else:
            event(run_dir, "completed")
            write_state(run_dir, "completed")


if __name__ == "__main__":
    main(sys.argv[1])
