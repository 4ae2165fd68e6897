"""Build hook: compile lftop's one C module, the log scanner (src/lftop/logs/_fastlog.c).

Optional by design: without a C compiler lftop installs as pure Python and parses logs in Python
(the same records, slower on multi-gigabyte logs); the build says so and goes on.
An editable install puts the module next to its source, a wheel carries it in lftop/logs/.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src/lftop/logs/_fastlog.c")


def compile_module(root: Path, out: Path) -> str | None:
    """Compile the module to `out`; None when it worked, else why not."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    flags = ["-O2", "-shared", "-fPIC", "-I" + sysconfig.get_paths()["include"]]
    if sys.platform == "darwin":
        flags += ["-undefined", "dynamic_lookup"]
    try:
        done = subprocess.run([*cc, *flags, str(root / SOURCE), "-o", str(out)], capture_output=True, text=True)
    except OSError as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[-1]


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        name = "_fastlog" + sysconfig.get_config_var("EXT_SUFFIX")
        if version == "editable":
            out = root / SOURCE.parent / name
        else:
            out = Path(tempfile.mkdtemp()) / name
        why = compile_module(root, out)
        if why is not None:
            print(f"lftop: the C log scanner was not built ({why}); logs are parsed in Python", file=sys.stderr)
            return
        if version != "editable":
            build_data["force_include"][str(out)] = f"lftop/logs/{name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
