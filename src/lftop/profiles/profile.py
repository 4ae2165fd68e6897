"""A validated profile: `[profile]`, `[launch]` and `[train]`, every mistake of a file reported at once."""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from lftop.profiles import launch, lfconfig, loader, schema
from lftop.profiles.launch import Launch
from lftop.profiles.problems import Problem, ProfileError, shown

REQUIRED = ("model_name_or_path", "stage", "output_dir")
PATH_KEYS = ("model_name_or_path", "output_dir", "dataset_dir", "deepspeed", "adapter_name_or_path", "cache_dir")
_PROFILE_KEYS = {"description": launch.string}  # extends and abstract are read by the loader
_TABLES = {"profile": _PROFILE_KEYS, "launch": launch.KEYS, "train": None}


@dataclass(frozen=True)
class Profile:
    path: Path
    description: str
    launch: Launch
    train: dict[str, object]
    warnings: tuple[Problem, ...] = ()
    abstract: bool = False  # a base others extend: required keys are checked in those
    overrides: dict[str, object] = field(default_factory=dict)  # `key=value`s from the command line, applied

    @property
    def name(self) -> str:
        return self.path.stem

    def args(self) -> dict[str, object]:
        """The exact LLaMA-Factory arguments: `[train]` with `~` and `$VARS` expanded in path values."""
        return {k: _expand(v) if k in PATH_KEYS else v for k, v in self.train.items()}

    def gpu_count(self) -> int | None:
        """GPUs the profile asks for, when it says (a list or a count); None for "all" or unset."""
        if isinstance(self.launch.gpus, int):
            return self.launch.gpus
        if isinstance(self.launch.gpus, str) and self.launch.gpus not in ("", "all"):
            return len(self.launch.gpus.split(","))
        return None

    def world(self) -> int:
        """Ranks the run trains on: nodes x ranks per node on Slurm, else nproc, else one per GPU asked for."""
        if self.launch.engine == "slurm":
            return (self.launch.nodes or 1) * (self.launch.nproc_per_node or self.launch.gpus_per_node or 1)
        return self.launch.nproc or self.gpu_count() or 1

    def effective_batch(self, world: int | None = None) -> int:
        world = world or self.world()
        micro = int(self.train.get("per_device_train_batch_size", schema.default("per_device_train_batch_size")))
        accumulation = int(self.train.get("gradient_accumulation_steps", schema.default("gradient_accumulation_steps")))
        return micro * accumulation * world


def _expand(value: object) -> object:
    return os.path.expandvars(os.path.expanduser(value)) if isinstance(value, str) else value


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f", did you mean {close[0]}?" if close else ""


def _type_error(kind: str, value: object) -> str | None:
    """None when a `[train]` value has the schema's kind (bool, int, float, str or any)."""
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        "str": isinstance(value, str),
        "any": True,
    }[kind]
    if ok:
        return None
    expected = {"bool": "true or false", "int": "an integer", "float": "a finite number", "str": "a string"}[kind]
    return f"expected {expected}, got {shown(value)}"


def _extra_allowed(raw: loader.RawProfile) -> str | None:
    """The switch in `[launch] env` under which LLaMA-Factory accepts keys outside its own arguments, if any."""
    env = raw.tables.get("launch", {}).get("env")
    return next((name for name in lfconfig.SWITCHES if isinstance(env, dict)
                 and str(env.get(name, "0")).lower() in ("true", "y", "1")), None)


def _check_train(raw: loader.RawProfile, train: dict, fields: dict[str, schema.Field], partial: bool) -> list[Problem]:
    """Each key known, of its type and among its choices; the required keys too unless the profile is `partial`."""
    problems = []
    for key, value in train.items():
        path, line = raw.where("train", key)
        spec = fields.get(key)
        if spec is None:
            if not _extra_allowed(raw):
                problems.append(Problem(path, line, "unknown key" + _suggest(key, fields), key))
        elif message := _type_error(spec.kind, value):
            problems.append(Problem(path, line, message, key))
        elif spec.choices is not None and str(value) not in spec.choices:
            listed = ", ".join(spec.choices[:12]) + (", ..." if len(spec.choices) > 12 else "")
            message = f"{shown(value)} is not one of {listed}" + _suggest(str(value), spec.choices)
            problems.append(Problem(path, line, message, key))
    for key in () if partial else REQUIRED:
        if key not in train:
            path, line = raw.where("train")
            problems.append(Problem(path, line, "missing required key", key))
    return problems


def _has_checkpoints(out: Path) -> bool:
    try:
        return out.is_dir() and any(p.name.startswith("checkpoint-") for p in out.iterdir())
    except OSError:  # unreadable, or a name too long: nothing known to lose
        return False


def _warnings(raw: loader.RawProfile, train: dict) -> list[Problem]:
    found = []

    def warn(key: str, message: str) -> None:
        path, line = raw.where("train", key)
        found.append(Problem(path, line, message, key))

    if switch := _extra_allowed(raw):
        fields = schema.load().fields
        for key in (k for k in train if k not in fields):
            warn(key, f"not one of LLaMA-Factory's own arguments; passed on because [launch] env sets {switch}")
    if "logging_steps" not in train:
        warn("logging_steps", "unset: LLaMA-Factory then logs every 500 steps, so no loss curve for hours; try 5 or 10")
    if train.get("overwrite_output_dir") is True and "output_dir" in train:
        out = Path(str(_expand(train["output_dir"])))
        if _has_checkpoints(out):
            warn("overwrite_output_dir", f"{out} holds checkpoints: this deletes trainer_log.jsonl and disables resume")
    if train.get("save_only_model") is True:
        warn("save_only_model", "checkpoints lack optimizer and scheduler state, so no exact resume is possible")
    rank = train.get("lora_rank")
    if train.get("finetuning_type", "lora") == "lora" and isinstance(rank, int) and rank < 8:
        warn("lora_rank", f"{rank} is below 8: usually too small to learn the task; 8 to 64 is common")
    return found


def _check_tables(raw: loader.RawProfile) -> list[Problem]:
    problems = []
    for table, values in raw.tables.items():
        tpath, tline = raw.where(table)
        if table not in _TABLES:
            problems.append(Problem(tpath, tline, "unknown table" + _suggest(table, _TABLES), f"[{table}]"))
            continue
        checks = _TABLES[table]
        if checks is None:
            continue
        for key, value in values.items():
            kpath, kline = raw.where(table, key)
            check = checks.get(key)
            if check is None:
                known = [*checks, *loader.OWN] if table == "profile" else checks
                problems.append(Problem(kpath, kline, f"unknown key in [{table}]" + _suggest(key, known), key))
            elif message := check(value):
                problems.append(Problem(kpath, kline, message, key))
    return problems


def load(path: str | os.PathLike[str], overrides: list[str] = ()) -> Profile:
    """Read and validate a profile, or a LLaMA-Factory YAML/JSON config; raises ProfileError (and nothing else)
    listing every mistake found. `overrides` (`key=value`, LLaMA-Factory's syntax) change `[train]` first.

    Its ancestors' mistakes are listed too; when one cannot be read, required keys are not asked for."""
    raw = lfconfig.read(Path(path)) if lfconfig.is_config(path) else loader.read(Path(path))
    changes = lfconfig.overrides(list(overrides))
    if changes:
        raw.tables["train"] = lfconfig.merge(raw.tables.get("train", {}), changes)
        raw.origin.update({("train", key): (lfconfig.COMMAND_LINE, None) for key in changes})
    return validate(raw, changes)


def validate(raw: loader.RawProfile, changes: dict[str, object] | None = None) -> Profile:
    """The Profile of tables read from any source, checked; raises ProfileError listing every mistake."""
    train = raw.tables.get("train", {})
    problems = raw.problems + _check_tables(raw)
    problems += _check_train(raw, train, schema.load().fields, raw.abstract or raw.broken)
    if problems:
        raise ProfileError(sorted(problems, key=lambda p: (str(p.path), p.line or 0)))
    return Profile(
        path=raw.path,
        description=raw.tables.get("profile", {}).get("description", ""),
        launch=launch.build(raw.tables.get("launch", {})),
        train=dict(train),
        warnings=() if raw.abstract else tuple(_warnings(raw, train)),
        abstract=raw.abstract,
        overrides=changes or {},
    )
