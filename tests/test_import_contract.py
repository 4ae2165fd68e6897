"""The core never imports Textual: only src/lftop/tui/ may."""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "lftop"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_nothing_outside_tui_imports_textual():
    offenders = []
    for path in SRC.rglob("*.py"):
        if "tui" in path.relative_to(SRC).parts:
            continue
        if any(name == "textual" or name.startswith("textual.") for name in imported_modules(path)):
            offenders.append(str(path.relative_to(SRC)))
    assert offenders == []


def test_the_scan_sees_tui_imports():
    """The guard above would notice an import: the TUI itself is found by the same scan."""
    tui_imports = set().union(*(imported_modules(p) for p in (SRC / "tui").rglob("*.py")))
    assert any(name.startswith("textual") for name in tui_imports)


def test_headless_commands_do_not_load_textual():
    code = ("import sys; from lftop import cli; cli.main(['validate', sys.argv[1]]); "
            "print('textual' in sys.modules)")
    profile = SRC.parent.parent / "profiles" / "base.toml"
    out = subprocess.run([sys.executable, "-c", code, str(profile)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def test_import_linter_contracts_hold():
    """The layers and the Textual ban in pyproject.toml, imports inside functions included: a cycle fails."""
    out = subprocess.run([_tool("lint-imports")], capture_output=True, text=True, cwd=SRC.parent.parent)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "3 kept, 0 broken" in out.stdout


def test_ruff_is_clean():
    out = subprocess.run([_tool("ruff"), "check", "src", "tests", "benchmarks"], capture_output=True, text=True,
                         cwd=SRC.parent.parent)
    assert out.returncode == 0, out.stdout[-3000:]
