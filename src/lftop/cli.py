"""The `lftop` command line: parse, then open the app or run a sub-command (lftop.commands).

Sub-commands import the core only when they run, and the app imports only what its first frame needs:
a bare `lftop` opens the app with the defaults below without building the parser (importing argparse and
building its sub-parsers took about 20 ms, a tenth of a bare Textual app's start-up).
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING

from lftop import __version__, paths

if TYPE_CHECKING:
    import argparse

# The top-level options' defaults: the parser's, and the arguments of a bare `lftop`.
APP_DEFAULTS = {"command": None, "home": None, "simulate": None, "readonly": False, "interval": 0.0, "theme": None,
                "no_mouse": False}


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def open_app(args: argparse.Namespace, select: str | None = None) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        _err("lftop: the app needs a terminal; without one use the sub-commands (lftop --help), e.g. lftop ls")
        return 2
    import gc

    gc.disable()  # start-up allocates much and frees little; the app collects again after its first frame
    from lftop.tui.app import LftopApp

    app = LftopApp(args.home, args.interval, args.readonly, args.theme, select)
    message = app.run(mouse=not args.no_mouse)
    if message:
        print(message)
    return 0


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="lftop",
        description="Launch, watch, pause and resume LLaMA-Factory fine-tuning runs. With no command, open the app.",
    )
    parser.add_argument("--version", action="version", version=f"lftop {__version__}")
    parser.add_argument("--home", help="runs and settings folder (default: $LFTOP_HOME or ~/.local/state/lftop)")
    parser.add_argument("--simulate", metavar="N", help="simulated GPUs instead of NVML: a count, e.g. 2 (LFTOP_SIMULATE)")
    parser.add_argument("--readonly", action="store_true", help="the app watches and never controls")
    parser.add_argument("--interval", type=float, help="refresh interval in seconds (default 1, floor 0.25)")
    parser.add_argument("--theme", help="lftop-dark, lftop-light, lftop-mono or any Textual theme")
    parser.add_argument("--no-mouse", action="store_true", help="keyboard only (no mouse reporting over SSH)")
    parser.set_defaults(**APP_DEFAULTS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="build the tiny model, start it training and open the app (no GPU needed)")
    p.set_defaults(func="demo")

    p = sub.add_parser("validate", help="check profiles against LLaMA-Factory's arguments")
    p.add_argument("profiles", nargs="+", metavar="PROFILE")
    p.set_defaults(func="validate")

    p = sub.add_parser("show-args", help="print the LLaMA-Factory arguments and the command a profile runs")
    p.add_argument("profile")
    p.add_argument("--gpus", help="override [launch] gpus")
    p.set_defaults(func="show_args")

    p = sub.add_parser("gpus", help="GPUs and the host now (like nvitop -1, gpustat --json)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--watch", action="store_true", help="repeat every --interval seconds")
    p.add_argument("--interval", type=float, default=1.0)
    p.set_defaults(func="gpus")

    p = sub.add_parser("doctor", help="check driver, CUDA, GPUs, torch, llamafactory and disk before a fine-tune")
    p.add_argument("--python", help="the training interpreter to check (default: this one)")
    p.set_defaults(func="doctor")

    p = sub.add_parser("estimate", help="predict each GPU's peak memory and what to change when it does not fit")
    p.add_argument("profile")
    p.add_argument("--gpus", type=int, help="plan for N GPUs instead of this machine's")
    p.add_argument("--gpu-mem", type=float, metavar="GIB", help="plan for GPUs with GIB of memory each")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="estimate")

    p = sub.add_parser("launch", help="start a run from a profile, detached")
    p.add_argument("profile")
    p.add_argument("--gpus", help='CUDA_VISIBLE_DEVICES for this run, e.g. "0,1"')
    p.add_argument("--force", action="store_true", help="start over where checkpoints exist; launch past an OOM verdict")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="launch")

    p = sub.add_parser("pause", help="save a checkpoint at the next step end, then exit and free the GPUs")
    p.add_argument("run")
    p.add_argument("--wait", action="store_true", help="wait until the run has paused")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait with --wait")
    p.set_defaults(func="pause")

    p = sub.add_parser("resume", help="relaunch a run from its newest complete checkpoint")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="resume")

    p = sub.add_parser("stop", help="terminate a run's whole process tree (no checkpoint)")
    p.add_argument("run")
    p.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL")
    p.set_defaults(func="stop")

    p = sub.add_parser("ls", help="list runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="ls")

    p = sub.add_parser("show", help="one run's state, progress, checkpoints and log")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="show")

    p = sub.add_parser("scan", help="what a LLaMA-Factory log holds: points, evals, progress, errors")
    p.add_argument("log")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    p.set_defaults(func="scan")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv) if argv else SimpleNamespace(**APP_DEFAULTS)
    home = paths.home(args.home)
    os.environ["LFTOP_HOME"] = str(home)  # profiles may say $LFTOP_HOME/...; the runs inherit it
    args.home = home
    if args.simulate:
        os.environ["LFTOP_SIMULATE"] = args.simulate  # the runs' own lftop processes see it too
    if args.command is None:
        return open_app(args)
    from lftop import commands
    from lftop.gpu.nvml import NvmlUnavailable
    from lftop.profiles import ProfileError
    from lftop.runs import launcher, rundir

    try:
        return getattr(commands, f"cmd_{args.func}")(args)
    except ProfileError as exc:
        for problem in exc.problems:
            _err(str(problem))
        return 1
    except (launcher.LaunchRefused, rundir.RunNotFound, rundir.RunLocked, NvmlUnavailable) as exc:
        _err(f"lftop: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
