"""`lftop import`: a LLaMA-Factory YAML/JSON config as a commented TOML profile.

The config is first validated as `lftop launch x.yaml` would validate it; the profile keeps its comments, drops its
nulls (LLaMA-Factory's defaults apply) and keeps relative paths as written: like llamafactory-cli, lftop reads them
from the directory it is started in. `overwrite_output_dir` is flagged: it deletes the loss history at every start.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

from lftop.profiles import lfconfig
from lftop.profiles.profile import PATH_KEYS, Profile, load

_BARE = re.compile(r"[A-Za-z0-9_-]+")
OVERWRITE_NOTE = ("overwrite_output_dir deletes trainer_log.jsonl (the loss history) at every start and turns off "
                  "resuming from checkpoints; lftop's resume drops it. Delete this line to keep the history.")


def toml_value(value: object) -> str:
    """A TOML value for a YAML/JSON one (strings, numbers, booleans, lists and tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")) if not math.isfinite(value) \
            else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


def toml_key(key: str) -> str:
    return key if _BARE.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _comments(text: str) -> tuple[dict[int, list[str]], dict[int, str]]:
    """The config's whole-line comments (by the line number of the line they precede) and end-of-line ones."""
    before: dict[int, list[str]] = {}
    trailing: dict[int, str] = {}
    pending: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
        elif stripped:
            if pending:
                before[number] = pending
                pending = []
            if (m := re.search(r"\s#\s*(.*)$", line)) and "'" not in line and '"' not in line:
                trailing[number] = m.group(1)
    return before, trailing


def _relative(key: str, value: object) -> bool:
    """A relative path lftop reads from the launch directory; a hub id (`org/name`) for a model is not one."""
    if key not in PATH_KEYS or not isinstance(value, str) or value.startswith(("/", "~", "$")):
        return False
    hub_id = key in ("model_name_or_path", "adapter_name_or_path") and value.count("/") == 1 \
        and not value.startswith(".") and not Path(value).exists()
    return not hub_id


def to_toml(path: Path) -> tuple[str, Profile]:
    """The TOML profile for the config at `path`, and the Profile it validated as (raises ProfileError)."""
    profile = load(path)
    text = path.read_text(encoding="utf-8") if path.suffix != ".json" else ""
    before, trailing = _comments(text)
    lines = [f"# Imported by `lftop import` from {path} on {time.strftime('%Y-%m-%d %H:%M')}.",
             "# Relative paths (and dataset_dir's default, data/) are read from the directory you run `lftop launch`",
             "# in, as llamafactory-cli reads them from its own: launch from there, or make them absolute.",
             "", "[profile]", f"description = {toml_value(f'LLaMA-Factory config {path.name}')}", "",
             "[launch]", "# gpus = \"0,1\"   # CUDA_VISIBLE_DEVICES; unset: the least-used GPUs lftop finds"]
    if profile.launch.env:
        lines.append(f"env = {toml_value(profile.launch.env)}  # LLaMA-Factory switches set when this was imported")
    lines += ["", "[train]"]
    raw_lines = _key_lines(path)
    for key, value in profile.train.items():
        line = raw_lines.get(key)
        lines += [f"# {c}" if c else "#" for c in before.get(line, [])]
        notes = [trailing[line]] if line in trailing else []
        if _relative(key, value):
            notes.append("relative to the launch directory")
        if key == "overwrite_output_dir" and value is True:
            lines += [f"# lftop: {part.strip()}." for part in OVERWRITE_NOTE.rstrip(".").split(";")]
        lines.append(f"{toml_key(key)} = {toml_value(value)}" + (f"  # {'; '.join(notes)}" if notes else ""))
    return "\n".join(lines) + "\n", profile


def _key_lines(path: Path) -> dict[str, int | None]:
    raw = lfconfig.read(path)
    return {key: where[1] for (table, key), where in raw.origin.items() if table == "train" and key}
