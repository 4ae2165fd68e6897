"""What each `lftop` sub-command does: a few lines over the core each. Imported only for a sub-command."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from lftop import paths
from lftop.cli import _err, open_app
from lftop.profiles import ProfileError, convert
from lftop.profiles import load as load_profile
from lftop.runs import launcher, rundir
from lftop.runs.status import status


def _load_warned(name: str):
    """The profile, its warnings printed to stderr."""
    profile = load_profile(name)
    for warning in profile.warnings:
        _err(f"{warning} (warning)")
    return profile


def cmd_validate(args: argparse.Namespace) -> int:
    status = 0
    for name in args.profiles:
        try:
            profile = _load_warned(name)
        except ProfileError as exc:
            for problem in exc.problems:
                _err(f"{problem}")
            status = 1
            continue
        if profile.abstract:
            print(f"{name}: ok (a base for other profiles)")
        else:
            print(f"{name}: ok, effective batch {profile.effective_batch()} (per-device x accumulation x GPUs)")
    return status


def cmd_show_args(args: argparse.Namespace) -> int:
    profile = _load_warned(args.profile)
    train = profile.args()
    print("# LLaMA-Factory arguments")
    print(convert.to_yaml(train), end="")
    print("\n# lftop runs (in a new session, output to the run's training.log)")
    gpus = args.gpus.split(",") if args.gpus else None
    nproc = profile.launch.nproc or (len(gpus) if gpus else profile.gpu_count()) or 1  # no GPU is picked here
    print(" ".join(launcher.training_command(profile, "<run-dir>", args.gpus, nproc)))
    print("\n# the same training with llamafactory-cli")
    print(convert.cli_command(train))
    return 0


def _run(args: argparse.Namespace):
    return rundir.find(args.home, args.run)


def cmd_estimate(args: argparse.Namespace) -> int:
    from lftop.estimate.advice import describe
    from lftop.estimate.arch import UnknownModel
    from lftop.estimate.plan import plan

    profile = load_profile(args.profile)
    try:
        result = plan(profile, args.gpus, args.gpu_mem)
    except UnknownModel as exc:
        _err(f"lftop: {exc}")
        return 1
    if result.report is None:
        print(json.dumps({"verdict": None, "note": result.note}) if args.json else result.note)
        return 0
    if args.json:
        print(json.dumps({**result.report.to_dict(), "note": result.note}, indent=1))
    else:
        print("\n".join(describe(result.report)))
        print(result.note)
    return 0


def _preflight(profile, args: argparse.Namespace) -> bool:
    """The estimate before a launch: False (and the reasons printed) when it predicts an OOM."""
    from lftop.estimate.advice import describe
    from lftop.estimate.arch import UnknownModel
    from lftop.estimate.plan import plan

    try:
        result = plan(profile, cuda_visible_devices=args.gpus)
    except UnknownModel as exc:
        _err(f"estimate skipped: {exc}")
        return True
    if result.report is None:
        _err(f"estimate: {result.note}")
        return True
    if result.report.verdict == "oom":
        _err("\n".join(describe(result.report)))
        _err("lftop: predicted out of memory; apply a suggestion to the profile, or launch anyway with --force")
        return args.force
    if result.report.verdict == "tight":
        _err(f"estimate: {result.report.per_gpu_gib:.1f} GiB of {result.report.capacity_gib:.1f} GiB free: tight")
    return True


def cmd_launch(args: argparse.Namespace) -> int:
    profile = _load_warned(args.profile)
    if profile.abstract:
        _err(f"lftop: {args.profile} is a base for other profiles (abstract = true); launch one that extends it")
        return 1
    if not _preflight(profile, args):
        return 1
    run = launcher.launch(profile, args.home, gpus=args.gpus, force=args.force)
    if args.json:
        print(launcher.to_json(run))
    else:
        print(f"launched {run.id}: log {run.log}")
        print(f"  lftop show {run.id}   lftop pause {run.id}   lftop stop {run.id}")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    run = _run(args)
    launcher.pause(run)
    if not args.wait:
        print(f"{run.id}: pause requested; it saves a checkpoint at the next step end")
        return 0
    deadline = time.monotonic() + args.timeout
    while (current := status(run)).alive and time.monotonic() < deadline:
        time.sleep(0.5)
    print(f"{run.id}: {current.state}" + (f" at checkpoint-{current.checkpoints[-1]}" if current.checkpoints else ""))
    return 0 if current.state == "paused" else 1


def cmd_resume(args: argparse.Namespace) -> int:
    run, step = launcher.resume(_run(args), args.home)
    if args.json:
        print(json.dumps({**json.loads(launcher.to_json(run)), "step": step}))
    else:
        print(f"resumed {run.id} from step {step}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    run = _run(args)
    count = launcher.stop(run, grace=args.grace)
    print(f"{run.id}: stopped ({count} processes)")
    return 0


def _age(created: float | None) -> str:
    if not created:
        return "-"
    seconds = int(time.time() - created)
    return f"{seconds // 86400}d" if seconds >= 86400 else f"{seconds // 3600}h" if seconds >= 3600 else f"{seconds // 60}m"


def cmd_ls(args: argparse.Namespace) -> int:
    rows = [status(r) for r in rundir.all_runs(args.home)]
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=1))
        return 0
    if not rows:
        print(f"no runs in {rundir.runs_root(args.home)}")
        return 0
    print(f"{'RUN':<36} {'STATE':<10} {'STEP':>11} {'LOSS':>8} {'AGE':>5}")
    for r in rows:
        step = f"{r.step}/{r.total_steps}" if r.step is not None else "-"
        loss = f"{r.loss:.4f}" if r.loss is not None else "-"
        print(f"{r.id:<36} {r.state:<10} {step:>11} {loss:>8} {_age(r.created):>5}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    current = status(_run(args))
    if args.json:
        print(json.dumps(current.to_dict(), indent=1))
        return 0
    for key, value in current.to_dict().items():
        if key not in ("log_tail", "failure"):
            print(f"{key:>12}: {value}")
    if current.failure:
        print(f"{'failure':>12}: {current.failure.get('kind')}: {current.failure.get('message')}")
    if current.log_tail:
        print("last lines of the log:")
        print("\n".join(f"  {line}" for line in current.log_tail))
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from lftop.logs import scan

    path = Path(args.log)
    if not path.is_file():
        _err(f"{path}: no such file")
        return 1
    history = scan.scan(path)
    if args.json:
        print(scan.dumps(history))
    elif args.csv:
        print(scan.to_csv(history), end="")
    else:
        print(scan.summary_text(path, history))
    return 0


def _sample(args: argparse.Namespace):
    from lftop.gpu.sampler import sample

    runs = rundir.all_runs(args.home)
    refs = [(r.id, ref) for r in runs if (ref := r.process_ref()) is not None]
    return sample(runs=refs, disks=[args.home])


def cmd_gpus(args: argparse.Namespace) -> int:
    from lftop.gpu import report

    while True:
        s = _sample(args)
        if s.gpus.error:
            _err(f"lftop: {s.gpus.error}")
            return 1
        if args.json:
            print(json.dumps({"gpus": s.gpus.to_dict(), "host": s.host.to_dict(),
                              "owners": {pid: vars(o) for pid, o in s.owners.items()}}))
        else:
            print("\n".join(report.gpu_lines(s)))
        if not args.watch:
            return 0
        sys.stdout.flush()
        time.sleep(max(0.25, args.interval))


def cmd_doctor(args: argparse.Namespace) -> int:
    from lftop.gpu import report

    s = _sample(args)
    lines, problems = report.doctor(s.gpus, s.host.disk_free, args.python)
    print("\n".join(lines))
    print(f"{problems} problem(s)" if problems else "all good")
    return 1 if problems else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from lftop import tinymodel

    os.environ.setdefault("LFTOP_SIMULATE", "2")
    print("building the tiny model (a few seconds)...", flush=True)
    tinymodel.build(args.home / "tiny")
    demo = args.home / "profiles" / "demo.toml"
    demo.parent.mkdir(parents=True, exist_ok=True)
    demo.write_text(
        "# Written by `lftop demo`: the shipped CPU demo, into a fresh output_dir.\n"
        f'[profile]\nextends = "{paths.shipped("profiles") / "demo-cpu.toml"}"\n\n'
        f'[train]\noutput_dir = "$LFTOP_HOME/saves/demo-{time.strftime("%Y%m%d-%H%M%S")}"\n'
    )
    run = launcher.launch(load_profile(demo), args.home, gpus="0")  # simulated GPU 0 fills while it trains
    return open_app(args, select=run.id)
