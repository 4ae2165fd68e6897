"""The `lftop` command line: parse, then open the app or run a sub-command (lftop.commands).

Sub-commands import the core only when they run, and the app imports only what its first frame needs:
a bare `lftop` opens the app with the defaults below without building the parser (importing argparse and
building its sub-parsers took about 20 ms, a tenth of a bare Textual app's start-up).
Global options are accepted before or after the sub-command.
"""

from __future__ import annotations

import math
import os
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING

from lftop import __version__, paths
from lftop.console import err
from lftop.units import MAX_INTERVAL

if TYPE_CHECKING:
    import argparse

# The top-level options' defaults: the parser's, and the arguments of a bare `lftop`.
APP_DEFAULTS = {"command": None, "home": None, "simulate": None, "readonly": False, "interval": 0.0, "theme": None,
                "no_mouse": False}


def _number(text: str, low: float, what: str, strict: bool = True, high: float = math.inf) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or (value <= low if strict else value < low) or value > high:
        bound = f"more than {low:g}" if strict else f"at least {low:g}"
        raise argparse.ArgumentTypeError(f"{what} must be a finite number, {bound}" +
                                         (f" and at most {high:g}" if high < math.inf else "") + f", not {text}")
    return value


def positive(text: str) -> float:
    return _number(text, 0, "the value")


def seconds(text: str) -> float:
    return _number(text, 0, "seconds", strict=False)


def interval(text: str) -> float:
    return _number(text, 0, "the interval", high=MAX_INTERVAL)


def count(text: str) -> int:
    import argparse

    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, not {text!r}")
    return int(text)


def simulate(text: str) -> str:
    import argparse

    from lftop.gpu.simulated import parse_spec

    try:
        parse_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """The options every command takes; below the top level they default to "not given", so a value given
    before the sub-command is kept unless the same option follows it."""
    import argparse

    kw = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("--home", help="runs and settings folder (default: $LFTOP_HOME or ~/.local/state/lftop)", **kw)
    parser.add_argument("--simulate", metavar="N", type=simulate,
                        help="simulated GPUs instead of NVML: a count, e.g. 2 (LFTOP_SIMULATE)", **kw)
    parser.add_argument("--readonly", action="store_true", help="the app watches and never controls", **kw)
    parser.add_argument("--interval", type=interval, help="refresh interval in seconds (default 1, floor 0.25)", **kw)
    parser.add_argument("--theme", help="lftop-dark, lftop-light, lftop-mono or any Textual theme", **kw)
    parser.add_argument("--no-mouse", action="store_true", help="keyboard only (no mouse reporting over SSH)", **kw)


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="lftop",
        description="Launch, watch, pause and resume LLaMA-Factory fine-tuning runs. With no command, open the app.",
    )
    parser.add_argument("--version", action="version", version=f"lftop {__version__}")
    _global_options(parser, top=True)
    parser.set_defaults(**APP_DEFAULTS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        _global_options(p, top=False)
        p.set_defaults(func=name.replace("-", "_"))
        return p

    command("demo", "build the tiny model, start it training and open the app (no GPU needed)")

    p = command("validate", "check profiles against LLaMA-Factory's arguments")
    p.add_argument("profiles", nargs="+", metavar="PROFILE")

    p = command("show-args", "print the LLaMA-Factory arguments and the command a profile runs")
    p.add_argument("profile")
    p.add_argument("--gpus", help="override [launch] gpus")

    p = command("gpus", "GPUs and the host now (like nvitop -1, gpustat --json)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--watch", action="store_true", help="repeat every --interval seconds (default 1)")

    p = command("doctor", "check driver, CUDA, GPUs, torch, llamafactory and disk before a fine-tune")
    p.add_argument("--python", help="the training interpreter to check (default: this one)")

    p = command("estimate", "predict each GPU's peak memory and what to change when it does not fit")
    p.add_argument("profile")
    p.add_argument("--gpus", type=count, help="plan for N GPUs instead of this machine's")
    p.add_argument("--gpu-mem", type=positive, metavar="GIB", help="plan for GPUs with GIB of memory each")
    p.add_argument("--no-calibration", action="store_true", help="the raw model, not corrected by measured runs")
    p.add_argument("--json", action="store_true")

    p = command("launch", "start a run from a profile or a LLaMA-Factory YAML/JSON config, detached")
    p.add_argument("profile")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override [train] values as llamafactory-cli does, e.g. learning_rate=2e-5")
    p.add_argument("--gpus", help='CUDA_VISIBLE_DEVICES for this run, e.g. "0,1"')
    p.add_argument("--force", action="store_true", help="start over where checkpoints exist; launch past an OOM verdict")
    p.add_argument("--queue", action="store_true", help="wait until it fits its GPUs, then start by itself")
    p.add_argument("--json", action="store_true")

    p = command("import", "write a LLaMA-Factory YAML/JSON config as a commented TOML profile")
    p.add_argument("config")
    p.add_argument("-o", "--output", metavar="FILE", help="the profile to write (default: print it)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")

    p = command("pause", "save a checkpoint at the next step end, then exit and free the GPUs")
    p.add_argument("run")
    p.add_argument("--wait", action="store_true", help="wait until the run has paused")
    p.add_argument("--timeout", type=positive, default=3600, help="seconds to wait with --wait")

    p = command("resume", "relaunch a run from its own newest complete checkpoint")
    p.add_argument("run")
    p.add_argument("--from", dest="source", metavar="PATH", help="resume from this checkpoint instead (any run's)")
    p.add_argument("--max-steps", type=count, help="continue to step N (a completed run too)")
    p.add_argument("--epochs", type=positive, help="continue to X epochs in all (a completed run too)")
    p.add_argument("--gpus", type=count, help="resume on N GPUs (ranks), keeping the effective batch")
    p.add_argument("--json", action="store_true")

    p = command("stop", "terminate a run's whole process tree (no checkpoint)")
    p.add_argument("run")
    p.add_argument("--grace", type=seconds, default=10.0, help="seconds between SIGTERM and SIGKILL")

    p = command("ls", "list runs")
    p.add_argument("--json", action="store_true")

    p = command("show", "one run's state, progress, checkpoints and log")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")

    p = command("compare", "the arguments that differ between runs, and their loss side by side")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--json", action="store_true")

    p = command("scan", "what a LLaMA-Factory log holds: points, evals, progress, errors")
    p.add_argument("log")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """The parsed command line; `launch`'s KEY=VALUE overrides may come before or after its options."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command == "launch" and all("=" in r and not r.startswith("-") for r in rest):
        args.overrides = [*args.overrides, *rest]
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv) if argv else SimpleNamespace(**APP_DEFAULTS)
    try:
        home = paths.home(args.home)
    except paths.HomeProblem as exc:
        err(f"lftop: {exc}")
        return 1
    os.environ["LFTOP_HOME"] = str(home)  # profiles may say $LFTOP_HOME/...; the runs inherit it
    args.home = home
    if args.simulate:
        os.environ["LFTOP_SIMULATE"] = args.simulate  # the runs' own lftop processes see it too
    if args.command is None:
        from lftop.tui import open_app

        return open_app(home, args.interval, args.readonly, args.theme, args.no_mouse)
    from lftop import commands

    return commands.run(args)
