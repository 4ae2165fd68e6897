"""A validated profile: `[profile]`, `[launch]` and `[train]`, every mistake of a file reported at once."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

from lftop.profiles import loader, schema
from lftop.profiles.problems import Problem, ProfileError

REQUIRED = ("model_name_or_path", "stage", "output_dir")
PATH_KEYS = ("model_name_or_path", "output_dir", "dataset_dir", "deepspeed", "adapter_name_or_path", "cache_dir")
_TABLES = {
    "profile": {"description": "str", "extends": "str", "abstract": "bool"},
    "launch": {"gpus": "gpus", "python": "str", "env": "env", "nproc": "int", "engine": "str"},
    "train": None,
}


@dataclass(frozen=True)
class Launch:
    gpus: str | int | None = None  # CUDA_VISIBLE_DEVICES, "all", or a count of least-used GPUs
    python: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    nproc: int | None = None
    engine: str = "local"  # where the run executes: lftop.runs.engines


@dataclass(frozen=True)
class Profile:
    path: Path
    description: str
    launch: Launch
    train: dict[str, object]
    warnings: tuple[Problem, ...] = ()
    abstract: bool = False  # a base others extend: required keys are checked in those

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

    def effective_batch(self, world: int | None = None) -> int:
        world = world or self.launch.nproc or self.gpu_count() or 1
        micro = int(self.train.get("per_device_train_batch_size", 8))  # HF default
        accumulation = int(self.train.get("gradient_accumulation_steps", 1))
        return micro * accumulation * world


def _expand(value: object) -> object:
    return os.path.expandvars(os.path.expanduser(value)) if isinstance(value, str) else value


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f", did you mean {close[0]}?" if close else ""


def _type_error(kind: str, value: object) -> str | None:
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "env": isinstance(value, dict) and all(isinstance(v, str) for v in value.values()),
        "gpus": isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool) and value > 0),
        "any": True,
    }[kind]
    if ok:
        return None
    expected = {
        "bool": "true or false",
        "int": "an integer",
        "float": "a number",
        "str": "a string",
        "env": "a table of strings",
        "gpus": 'a device list like "0,1", "all", or a positive count',
    }[kind]
    return f"expected {expected}, got {value!r}"


def _check_train(raw: loader.RawProfile, train: dict, fields: dict[str, schema.Field], abstract: bool) -> list[Problem]:
    problems = []
    for key, value in train.items():
        path, line = raw.where("train", key)
        spec = fields.get(key)
        if spec is None:
            problems.append(Problem(path, line, "unknown key" + _suggest(key, fields), key))
        elif message := _type_error(spec.kind, value):
            problems.append(Problem(path, line, message, key))
        elif spec.choices is not None and str(value) not in spec.choices:
            shown = ", ".join(spec.choices[:12]) + (", ..." if len(spec.choices) > 12 else "")
            problems.append(Problem(path, line, f"{value!r} is not one of {shown}" + _suggest(str(value), spec.choices), key))
    for key in () if abstract else REQUIRED:
        if key not in train:
            path, line = raw.where("train")
            problems.append(Problem(path, line, "missing required key", key))
    return problems


def _warnings(raw: loader.RawProfile, train: dict) -> list[Problem]:
    found = []

    def warn(key: str, message: str) -> None:
        path, line = raw.where("train", key)
        found.append(Problem(path, line, message, key))

    if "logging_steps" not in train:
        warn("logging_steps", "unset: LLaMA-Factory then logs every 500 steps, so no loss curve for hours; try 5 or 10")
    if train.get("overwrite_output_dir") is True and "output_dir" in train:
        out = Path(str(_expand(train["output_dir"])))
        if out.is_dir() and any(p.name.startswith("checkpoint-") for p in out.iterdir()):
            warn("overwrite_output_dir", f"{out} holds checkpoints: this deletes trainer_log.jsonl and disables resume")
    if train.get("save_only_model") is True:
        warn("save_only_model", "checkpoints lack optimizer and scheduler state, so no exact resume is possible")
    if train.get("finetuning_type", "lora") == "lora" and isinstance(train.get("lora_rank"), int) and train["lora_rank"] < 8:
        warn("lora_rank", f"{train['lora_rank']} is below 8: usually too small to learn the task; 8 to 64 is common")
    return found


def load(path: str | os.PathLike[str]) -> Profile:
    """Read and validate a profile; raises ProfileError listing every mistake found."""
    raw = loader.read(Path(path))
    problems: list[Problem] = []
    for table, values in raw.tables.items():
        tpath, tline = raw.where(table)
        if table not in _TABLES:
            problems.append(Problem(tpath, tline, "unknown table" + _suggest(table, _TABLES), f"[{table}]"))
            continue
        if not isinstance(values, dict):
            problems.append(Problem(tpath, tline, "expected a table", table))
            continue
        if _TABLES[table] is None:
            continue
        for key, value in values.items():
            kpath, kline = raw.where(table, key)
            kind = _TABLES[table].get(key)
            if kind is None:
                problems.append(Problem(kpath, kline, f"unknown key in [{table}]" + _suggest(key, _TABLES[table]), key))
            elif message := _type_error(kind, value):
                problems.append(Problem(kpath, kline, message, key))
    train = raw.tables.get("train", {}) if isinstance(raw.tables.get("train"), dict) else {}
    abstract = raw.abstract
    problems += _check_train(raw, train, schema.load().fields, abstract)
    launch = raw.tables.get("launch", {}) if isinstance(raw.tables.get("launch"), dict) else {}
    if isinstance(launch.get("nproc"), int) and launch["nproc"] < 1:
        problems.append(Problem(*raw.where("launch", "nproc"), "must be at least 1", "nproc"))
    if problems:
        raise ProfileError(sorted(problems, key=lambda p: (str(p.path), p.line or 0)))
    meta = raw.tables.get("profile", {})
    return Profile(
        path=raw.path,
        description=str(meta.get("description", "")),
        launch=Launch(
            gpus=launch.get("gpus"),
            python=launch.get("python"),
            env=dict(launch.get("env", {})),
            nproc=launch.get("nproc"),
        ),
        train=dict(train),
        warnings=() if abstract else tuple(_warnings(raw, train)),
        abstract=abstract,
    )
