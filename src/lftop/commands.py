"""What each `lftop` sub-command does: a few lines over lftop.ops and the readers each. Imported only for a
sub-command. Every failure is one line on stderr with what to do, exit 1; never a traceback."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from lftop import ops, paths
from lftop.console import dumps, err
from lftop.profiles import ProfileError, convert
from lftop.profiles import load as load_profile
from lftop.runs import rundir
from lftop.runs.status import all_statuses, status
from lftop.units import GIB


def run(args: argparse.Namespace) -> int:
    """Run the sub-command `args.func`, turning every refusal into one line and exit status 1."""
    from lftop.gpu.nvml import NvmlUnavailable
    from lftop.runs.engines import UnknownEngine
    from lftop.runs.engines.slurmcli import SlurmError

    try:
        return globals()[f"cmd_{args.func}"](args)
    except ProfileError as exc:
        for problem in exc.problems:
            err(str(problem))
        return 1
    except (ops.Refused, rundir.RunNotFound, rundir.RunLocked, rundir.UnsafeHome, NvmlUnavailable, UnknownEngine,
            SlurmError) as exc:
        err(f"lftop: {exc}")
        return 1
    except PermissionError as exc:
        err(f"lftop: {exc.filename}: permission denied (is it another user's? --home chooses your own)")
        return 1
    except OSError as exc:  # e.g. a lock file replaced by a symlink (ELOOP), a full disk
        err(f"lftop: {exc.filename or ''}: {exc.strerror or exc}; nothing was changed")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _load_warned(name: str, overrides: list[str] = ()):
    """The profile (or LLaMA-Factory config) with `key=value` overrides, its warnings printed to stderr."""
    profile = load_profile(name, overrides)
    for warning in profile.warnings:
        err(f"{warning} (warning)")
    return profile


def cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    for name in args.profiles:
        try:
            profile = _load_warned(name)
        except ProfileError as exc:
            for problem in exc.problems:
                err(f"{problem}")
            failed = 1
            continue
        if profile.abstract:
            print(f"{name}: ok (a base for other profiles)")
        else:
            print(f"{name}: ok, effective batch {profile.effective_batch()} (per-device x accumulation x GPUs)")
    return failed


def cmd_show_args(args: argparse.Namespace) -> int:
    from lftop.runs.engines.local import training_command

    profile = _load_warned(args.profile)
    train = profile.args()
    print("# LLaMA-Factory arguments")
    print(convert.to_yaml(train), end="")
    print("\n# lftop runs (in a new session, output to the run's training.log)")
    gpus = args.gpus.split(",") if args.gpus else None
    nproc = profile.launch.nproc or (len(gpus) if gpus else profile.gpu_count()) or 1  # no GPU is picked here
    print(" ".join(training_command(profile.launch.python, "<run-dir>", nproc, bool(train.get("deepspeed")))))
    print("\n# the same training with llamafactory-cli")
    print(convert.cli_command(train))
    return 0


def _run(args: argparse.Namespace) -> rundir.RunDir:
    return rundir.find(args.home, args.run)


def _describe_plan(plan: ops.Plan) -> list[str]:
    from lftop.estimate.advice import describe

    return describe(plan.report) if plan.report else []


def cmd_estimate(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    plan = ops.plan(profile, what_if_gpus=args.gpus, what_if_gib=args.gpu_mem, home=args.home,
                    calibrate=not args.no_calibration)
    if plan.problem:
        err(f"lftop: {plan.problem}")
        return 1
    if args.json:
        print(dumps({**plan.report.to_dict(), "note": plan.note} if plan.report else {"verdict": None, "note": plan.note},
                    indent=1))
    else:
        print("\n".join([*_describe_plan(plan), plan.note or ""]))
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    profile = _load_warned(args.profile, args.overrides)
    plan = ops.plan(profile, gpus=args.gpus, home=args.home)
    if plan.problem and plan.placement is not None:
        err(f"estimate skipped: {plan.problem}")
    elif plan.report is None and plan.note:
        err(f"estimate: {plan.note}")
    elif plan.verdict == "tight":
        err(f"estimate: {plan.report.per_gpu_gib:.1f} GiB of {plan.report.capacity_gib:.1f} GiB free: tight")
    try:
        run = ops.launch(plan, args.home, fresh=args.force, accept_oom=args.force, queue=args.queue)
    except ops.PredictedOOM as exc:
        err("\n".join(_describe_plan(exc.plan)))
        raise
    queued = status(run).state == "queued"
    if args.json:
        print(dumps({"run": run.id, "pid": run.meta().get("pid"), "run_dir": str(run.path), "queued": queued}))
    elif queued:
        print(f"queued {run.id}: it starts by itself when it fits ({status(run).detail or 'see lftop ls'})")
    else:
        print(f"launched {run.id}: log {run.log}")
        print(f"  lftop show {run.id}   lftop pause {run.id}   lftop stop {run.id}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from lftop.profiles import importer

    text, profile = importer.to_toml(Path(args.config))
    for warning in profile.warnings:
        err(f"{warning} (warning)")
    if profile.train.get("overwrite_output_dir") is True:
        err(f"{args.config}: overwrite_output_dir: {importer.OVERWRITE_NOTE} (flagged in the profile)")
    if args.output is None:
        print(text, end="")
        return 0
    out = Path(args.output)
    if out.exists() and not args.force:
        err(f"lftop: {out} exists; --force replaces it")
        return 1
    rundir.write_atomic(out, text)
    load_profile(out)  # the profile passes the checks the config passed
    print(f"wrote {out}: `lftop launch {out}` starts it")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    run = _run(args)
    ops.pause(run)
    if not args.wait:
        print(f"{run.id}: pause requested; it saves a checkpoint at the next step end")
        return 0
    current = ops.wait_settled(run, args.timeout)
    print(f"{run.id}: {current.state}" + (f" at checkpoint-{current.checkpoints[-1]}" if current.checkpoints else ""))
    return 0 if current.state == "paused" else 1


def _live_external(args: argparse.Namespace):
    """The live external run `args.run` names (ext-<pid>), when no run directory of lftop's has that id."""
    from lftop.ops import external

    if not external.is_external(args.run) or any(r.id == args.run for r in rundir.all_runs(args.home)):
        return None
    return external.find(args.run)


def _resume_external(args: argparse.Namespace, record: rundir.RunDir) -> int:
    from lftop.ops import external

    if args.max_steps or args.epochs or args.gpus or args.source:
        err(f"lftop: {record.id} is an external run: it resumes as it ran (then `lftop resume NEW-RUN` takes options)")
        return 1
    run, step = external.resume(record, args.home)
    if args.json:
        print(dumps({"run": run.id, "pid": run.meta().get("pid"), "run_dir": str(run.path), "step": step,
                     "external": record.id}))
    else:
        print(f"resumed external run {record.id} as {run.id} from step {step}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    if (record := _run(args)).meta().get("external") is True:
        return _resume_external(args, record)
    overrides = {k: v for k, v in (("max_steps", args.max_steps), ("num_train_epochs", args.epochs)) if v is not None}
    source = Path(args.source) if args.source else None
    run, step = ops.resume(_run(args), args.home, overrides, source=source, gpus=args.gpus)
    meta = run.meta()
    if args.json:
        print(dumps({"run": run.id, "pid": meta.get("pid"), "run_dir": str(run.path), "step": step,
                     "nproc": meta.get("nproc"),
                     "gradient_accumulation_steps": meta["args"].get("gradient_accumulation_steps")}))
        return 0
    print(f"resumed {run.id} from step {step}")
    if args.gpus:
        print(f"  on {meta['nproc']} rank(s), gradient_accumulation_steps = "
              f"{meta['args'].get('gradient_accumulation_steps')}: the effective batch is kept")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    if ext := _live_external(args):
        from lftop.ops import external

        record, count = external.stop(ext, args.home, grace=args.grace)
        print(f"{ext.id}: stopped ({count} processes); `lftop resume {record.id}` continues it under lftop "
              "from its newest complete checkpoint")
        return 0
    run = _run(args)
    count = ops.stop(run, grace=args.grace)
    print(f"{run.id}: stopped ({count} processes)")
    return 0


def _age(created: float | None) -> str:
    if not created:
        return "-"
    seconds = int(time.time() - created)
    return f"{seconds // 86400}d" if seconds >= 86400 else f"{seconds // 3600}h" if seconds >= 3600 else f"{seconds // 60}m"


def cmd_ls(args: argparse.Namespace) -> int:
    from lftop.ops import external

    rows = all_statuses(rundir.all_runs(args.home))
    others = external.runs()
    if args.json:
        print(dumps([r.to_dict() for r in rows] + [e.to_dict() for e in others], indent=1))
        return 0
    if not rows and not others:
        print(f"no runs in {rundir.runs_root(args.home)}")
        return 0
    print(f"{'RUN':<36} {'STATE':<10} {'STEP':>11} {'LOSS':>8} {'AGE':>5}")
    for r in rows:
        step = f"{r.step}/{r.total_steps}" if r.step is not None else "-"
        loss = f"{r.loss:.4f}" if r.loss is not None else "-"
        owner = f"  ({r.owner}'s)" if r.owner and r.owner != _me() else ""
        problem = f"  {r.problem}" if r.problem else f"  {r.detail}" if r.detail else ""
        print(f"{r.id:<36} {r.state:<10} {step:>11} {loss:>8} {_age(r.created):>5}{owner}{problem}")
    for e in others:
        step = f"{e.step}/{e.total_steps}" if e.step is not None else "-"
        loss = f"{e.loss:.4f}" if e.loss is not None else "-"
        gpus = f"  GPUs {','.join(map(str, e.gpus))}" if e.gpus else ""
        print(f"{e.id:<36} {'running':<10} {step:>11} {loss:>8} {_age(e.root.create_time):>5}  external: "
              f"{e.config or ' '.join(e.command[:4])}{gpus}")
    return 0


def _peak(run: rundir.RunDir) -> dict | None:
    """The run's measured peak GPU memory (per rank, the largest), beside the estimate it launched with."""
    from lftop.estimate.learned import measured_peak

    peak = measured_peak(run.path)
    nvml = run.nvml_peaks()
    if peak is None and not nvml:
        return None
    predicted = run.meta().get("predicted_gib")
    found = {"predicted_gib": predicted if isinstance(predicted, (int, float)) else None,
             "nvml_gib": {gpu: round(b / GIB, 2) for gpu, b in nvml.items()}}
    if peak is not None:
        found.update(allocated_gib=round(peak.allocated_gib, 2), reserved_gib=round(peak.reserved_gib, 2),
                     gpu=peak.gpu, ranks=peak.ranks, oom=peak.oom, near_capacity=peak.near_capacity)
    return found


def _stall_hint(current) -> str | None:
    """For a stalled run: what its GPUs say about why (a likely NCCL hang)."""
    if not current.stalled:
        return None
    from lftop.gpu import nvml
    from lftop.ops import hangs

    return hangs.hint(current, nvml.shared().read())


def _me() -> str:
    import getpass

    return getpass.getuser()


def cmd_show(args: argparse.Namespace) -> int:
    if ext := _live_external(args):
        data = ext.to_dict()
        print(dumps(data, indent=1) if args.json else "\n".join(f"{k:>20}: {v}" for k, v in data.items()))
        return 0
    run = _run(args)
    current = status(run)
    data = {**current.to_dict(), "peak": _peak(run), "stall_hint": _stall_hint(current)}
    if args.json:
        print(dumps(data, indent=1))
        return 0
    for key, value in data.items():
        if key not in ("log_tail", "failure", "peak") and not (key == "stall_hint" and value is None):
            print(f"{key:>12}: {value}")
    if peak := data["peak"]:
        said = [f"{peak['reserved_gib']:.1f} GiB reserved, {peak['allocated_gib']:.1f} GiB allocated per GPU "
                f"({peak['gpu']})"] if "reserved_gib" in peak else []
        said += [f"NVML {', '.join(f'GPU {g} {v:.1f} GiB' for g, v in peak['nvml_gib'].items())}"] if peak["nvml_gib"] else []
        said += [f"predicted {peak['predicted_gib']:.1f} GiB"] if peak["predicted_gib"] is not None else []
        print(f"{'peak':>12}: {'; '.join(said)}")
    if current.failure:
        print(f"{'failure':>12}: {current.failure.get('kind')}: {current.failure.get('message')}")
    if current.log_tail:
        print("last lines of the log:")
        print("\n".join(f"  {line}" for line in current.log_tail))
    return 0


def _cell(value: object, width: int = 40) -> str:
    """An argument's value for a column: the whole of it, or its first `width` characters and a ~."""
    text = "-" if value is None else str(value)
    return text if len(text) <= width else text[:width - 1] + "~"


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def cmd_compare(args: argparse.Namespace) -> int:
    from lftop.runs.compare import compare

    if len(args.runs) < 2:
        err("lftop: compare needs two runs or more (lftop ls lists them)")
        return 1
    result = compare([rundir.find(args.home, ref) for ref in args.runs])
    if args.json:
        print(dumps(result.to_dict(), indent=1))
        return 0
    labels = [chr(ord("A") + i) if i < 26 else str(i + 1) for i in range(len(result.runs))]
    print("\n".join(f"{label}  {run}" for label, run in zip(labels, result.runs, strict=True)))
    width = max([len("ARGUMENT"), *map(len, result.args)])
    columns = [max([1, *(len(_cell(v[i])) for v in result.args.values())]) for i in range(len(labels))]
    header = "  ".join(f"{label:<{w}}" for label, w in zip(labels, columns, strict=True))
    print(f"\n{'ARGUMENT':<{width}}  {header}".rstrip())
    for key, values in result.args.items():
        print(f"{key:<{width}}  " + "  ".join(f"{_cell(v):<{w}}" for v, w in zip(values, columns, strict=True)).rstrip())
    if not result.args:
        print("(no argument differs)")
    steps = result.steps
    if not steps:
        print("\nno step logged by every run (trainer_log.jsonl in each output_dir)")
        return 0
    shown = steps if len(steps) <= 20 else [steps[round(i * (len(steps) - 1) / 19)] for i in range(20)]
    print(f"\n{'STEP':>8}  " + "  ".join(f"{'loss ' + label:>10}" for label in labels)
          + "  " + "  ".join(f"{'eval ' + label:>10}" for label in labels))
    for row in shown:
        print(f"{row['step']:>8}  " + "  ".join(f"{_loss(v):>10}" for v in row["loss"] + row["eval_loss"]))
    if len(shown) < len(steps):
        print(f"({len(shown)} of {len(steps)} common steps; --json gives all)")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from lftop.logs import scan

    path = Path(args.log)
    if not path.is_file():
        err(f"lftop: {path}: no such file")
        return 1
    history = scan.scan(path)
    if args.json:
        print(dumps(scan.to_json(history)))
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
            err(f"lftop: {s.gpus.error}")
            return 1
        if args.json:
            print(dumps({"gpus": s.gpus.to_dict(), "host": s.host.to_dict(),
                         "owners": {pid: vars(o) for pid, o in s.owners.items()}}))
        else:
            print("\n".join(report.gpu_lines(s)))
        if not args.watch:
            return 0
        sys.stdout.flush()
        time.sleep(max(0.25, args.interval or 1.0))


def cmd_doctor(args: argparse.Namespace) -> int:
    from lftop.gpu import report

    s = _sample(args)
    lines, problems = report.doctor(s.gpus, s.host.disk_free, args.python)
    print("\n".join(lines))
    print(f"{problems} problem(s)" if problems else "all good")
    return 1 if problems else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from lftop import tinymodel
    from lftop.tui import open_app

    os.environ.setdefault("LFTOP_SIMULATE", "2")
    for folder in ("tiny", "profiles", "saves"):  # in a shared home, never a folder another user made
        path = args.home / folder
        if path.exists() and (path.lstat().st_uid != os.getuid() or path.lstat().st_mode & 0o022 or path.is_symlink()):
            raise ops.Refused(f"{path} is another user's (or writable by others): run the demo with a home of your "
                              "own (--home ~/lftop-demo)")
        rundir.make_private_dir(path)
    print("building the tiny model (a few seconds)...", flush=True)
    tinymodel.build(args.home / "tiny")
    demo = args.home / "profiles" / "demo.toml"
    rundir.write_atomic(
        demo,
        "# Written by `lftop demo`: the shipped CPU demo, into a fresh output_dir.\n"
        f'[profile]\nextends = "{paths.shipped("profiles") / "demo-cpu.toml"}"\n\n'
        f'[train]\noutput_dir = "$LFTOP_HOME/saves/demo-{time.strftime("%Y%m%d-%H%M%S")}"\n'
    )
    run = ops.launch(ops.plan(load_profile(demo), gpus="0"), args.home)  # simulated GPU 0 fills while it trains
    return open_app(args.home, args.interval, args.readonly, args.theme, args.no_mouse, select=run.id)
