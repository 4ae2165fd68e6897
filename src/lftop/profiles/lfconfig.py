"""LLaMA-Factory's own config files (YAML or JSON) and `key=value` overrides, read as LLaMA-Factory reads them.

LLaMA-Factory 0.9.5 (`hparams/parser.py:read_args`) loads `x.yaml` with OmegaConf and merges `OmegaConf.from_cli`
overrides into it; `x.json` with `json.load`. OmegaConf's YAML loader is PyYAML's safe loader with floats such as
`2e-5` (a string in plain YAML 1.1), no timestamps and no duplicate keys; the loader below is the same. A config
becomes a `RawProfile` whose `[train]` is the config (nulls dropped: LLaMA-Factory's default applies) and whose
`[launch]` is the default one, so it is validated by the same checks as a TOML profile.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from lftop.profiles import loader, tomlfile
from lftop.profiles.problems import Problem, ProfileError, shown

SUFFIXES = (".yaml", ".yml", ".json")
# LLaMA-Factory's switches that change which [train] keys it accepts; carried from the caller's environment into
# a config's [launch] env, as `USE_MCA=1 llamafactory-cli train x.yaml` would see them.
SWITCHES = ("ALLOW_EXTRA_ARGS", "USE_MCA")
COMMAND_LINE = Path("<command line>")  # where a problem in an override is reported
_FLOAT = re.compile(r"""^(?:[-+]?[0-9]+(?:_[0-9]+)*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+)
    |\.[0-9]+(?:_[0-9]+)*(?:[eE][-+][0-9]+)?
    |[-+]?[0-9]+(?:_[0-9]+)*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)


class _Loader(yaml.SafeLoader):
    """OmegaConf's YAML loader: YAML 1.1 safe types, `1e-4` a float, no timestamps, duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value in seen:
                raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                        f"found duplicate key {key_node.value}", key_node.start_mark)
            seen.add(getattr(key_node, "value", None))
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
_Loader.yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
                                   for first, resolvers in _Loader.yaml_implicit_resolvers.items()}


def is_config(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names a LLaMA-Factory config (by its suffix, as llamafactory-cli decides)."""
    return str(path).endswith(SUFFIXES)


def value(text: str) -> object:
    """One override's value typed as OmegaConf types it: `2e-5` a float, `true`/`yes` a bool, `[a, b]` a list."""
    return yaml.load(text, Loader=_Loader)


def _key_lines(root: yaml.Node) -> dict[str, int]:
    if not isinstance(root, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in root.value if isinstance(k, yaml.ScalarNode)}


def _parse(path: Path, text: str) -> tuple[object, dict[str, int]]:
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProfileError([Problem(path, getattr(exc, "lineno", None), f"not JSON: {exc}")]) from None
        lines = {k: text[:m.start()].count("\n") + 1 for k in (data if isinstance(data, dict) else {})
                 if (m := re.search(rf'"{re.escape(json.dumps(k)[1:-1])}"\s*:', text))}
        return data, lines
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = _Loader(text).get_single_data() if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        message = " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
        raise ProfileError([Problem(path, mark.line + 1 if mark else None,
                                    f"YAML syntax error: {message or exc}")]) from None
    except RecursionError:
        raise ProfileError([Problem(path, None, "nested too deeply for the YAML parser")]) from None
    return data, _key_lines(root) if root is not None else {}


def read(path: Path, environ: Mapping[str, str] = os.environ) -> loader.RawProfile:
    """A LLaMA-Factory config as a RawProfile: [train] its keys, [launch] the default with SWITCHES from `environ`."""
    try:
        path = tomlfile.resolve(path)
        data = tomlfile.read_bytes(path)
    except tomlfile.Unreadable as exc:
        raise ProfileError([Problem(path, None, str(exc))]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ProfileError([Problem(path, line, "not UTF-8 text; save the file as UTF-8")]) from None
    config, lines = _parse(path, text)
    if not isinstance(config, dict):
        raise ProfileError([Problem(path, None, f"expected LLaMA-Factory arguments, one `key: value` a line; "
                                    f"got {shown(config) if config is not None else 'an empty file'}")])
    raw = loader.RawProfile(path, chain=[path])
    raw.origin[("train", "")] = (path, 1)
    train = raw.tables.setdefault("train", {})
    for key, item in config.items():
        line = lines.get(key) if isinstance(key, str) else None
        if not isinstance(key, str):
            raw.problems.append(Problem(path, line, f"a key must be a name, got {shown(key)}"))
        elif message := loader.bad_value(item) or _unusable(item):
            raw.problems.append(Problem(path, line, message, key))
        elif item is not None:
            train[key] = item
            raw.origin[("train", key)] = (path, line)
    env = {name: environ[name] for name in SWITCHES if name in environ}
    if env:
        raw.tables["launch"] = {"env": env}
    return raw


def from_args(args: dict, source: Path, env: dict[str, str]) -> loader.RawProfile:
    """Arguments already read (e.g. a running llamafactory-cli's) as a RawProfile, reported against `source`."""
    raw = loader.RawProfile(source, chain=[source])
    raw.tables["train"] = {k: v for k, v in args.items() if v is not None}
    raw.tables["launch"] = {"env": dict(env)}
    return raw


def command_args(argv: list[str], cwd: Path) -> tuple[Path | None, dict]:
    """The config and the arguments of `llamafactory-cli train ARGV` started in `cwd`, read as read_args reads
    them: a config file merged with `key=value` overrides, or `--key value` flags (typed as YAML types them)."""
    if argv and is_config(argv[0]):
        path = cwd / argv[0]
        try:
            config, _ = _parse(path, tomlfile.read_bytes(path).decode("utf-8"))
            changes = overrides(argv[1:])
        except (tomlfile.Unreadable, UnicodeDecodeError, ProfileError):
            return path, {}
        return path, merge(config, changes) if isinstance(config, dict) else {}
    found: dict[str, object] = {}
    pending = list(argv)
    while pending:
        word = pending.pop(0)
        if not word.startswith("--"):
            continue
        key, sep, text = word[2:].partition("=")
        if not sep:
            text = pending.pop(0) if pending and not pending[0].startswith("--") else "true"
        try:
            found[key] = value(text)
        except yaml.YAMLError:
            found[key] = text
    return None, found


def _unusable(item: object) -> str | None:
    """Why a value has no TOML form (a null inside a list or table, bytes, a non-string table key)."""
    pending = [item]
    while pending:
        current = pending.pop()
        if isinstance(current, dict):
            if any(not isinstance(k, str) for k in current):
                return "a table key must be a name"
            if any(v is None for v in current.values()):
                return "a null inside a table: leave the key out instead"
            pending += current.values()
        elif isinstance(current, list):
            if any(v is None for v in current):
                return "a null inside a list"
            pending += current
        elif not isinstance(current, (str, int, float, bool, type(None))):
            return f"{type(current).__name__} values are not LLaMA-Factory arguments"
    return None


def overrides(items: list[str]) -> dict[str, object]:
    """`key=value` overrides as `llamafactory-cli train x.yaml key=value` reads them (OmegaConf's dotlist:
    the value typed by the YAML loader above, `a.b=1` setting key b of table a); raises ProfileError."""
    found: dict[str, object] = {}
    problems = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or "[" in key:
            problems.append(Problem(COMMAND_LINE, None, f"{item!r}: expected KEY=VALUE (LLaMA-Factory's override "
                                    "syntax, e.g. learning_rate=2e-5; KEY=null returns a key to its default)"))
            continue
        try:
            parsed = value(text)
        except yaml.YAMLError as exc:
            problems.append(Problem(COMMAND_LINE, None, f"{text!r} is not a value: {getattr(exc, 'problem', exc)}",
                                    key))
            continue
        if message := loader.bad_value(parsed) or _unusable(parsed):
            problems.append(Problem(COMMAND_LINE, None, message, key))
            continue
        *parents, last = key.strip().split(".")
        target = found
        for part in parents:
            target = target.setdefault(part, {}) if isinstance(target.get(part, {}), dict) else {}
        target[last] = parsed
    if problems:
        raise ProfileError(problems)
    return found


def merge(train: dict, changes: dict) -> dict:
    """`train` with `changes` merged as OmegaConf merges: tables key by key, anything else replaced, null removed."""
    merged = dict(train)
    for key, item in changes.items():
        if isinstance(item, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], item)
        elif item is None:
            merged.pop(key, None)
        else:
            merged[key] = item
    return merged
