"""Build hook: compiles auditor/_unambiguous.c, the one-pass proof `auditor.fast_decode` uses to read
inventory lines faster, with the compiler and flags this Python builds its own extensions with.

Without a C compiler (or Python's headers) the build goes on without it and says so: auditor then
runs the same proofs in Python, slower, with the same verdicts. The module is written beside its
source (an editable install imports it from there) and into the wheel, which is then tagged for
this interpreter and platform.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("auditor") / "_unambiguous.c"


class CompileUnambiguous(BuildHookInterface):  # type: ignore[type-arg]
    """Compiles `SOURCE` for wheel and editable builds; skips (with a warning) where it cannot."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        target = root / SOURCE.with_name(f"_unambiguous{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}")
        problem = compile_extension(root / SOURCE, target)
        if problem:
            print(
                f"auditor: building without auditor._unambiguous ({problem}); lines are then proven "
                "in Python, slower, with the same verdicts",
                file=sys.stderr,
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(target)] = str(target.relative_to(root))


def compile_extension(source: Path, target: Path) -> str | None:
    """Compile `source` into the extension module `target`; None on success, else why not."""
    linker = sysconfig.get_config_var("LDSHARED")
    include = sysconfig.get_paths()["include"]
    if not linker:
        return "this Python does not say how it builds extensions (LDSHARED)"
    if not (Path(include) / "Python.h").is_file():
        return f"no Python.h in {include} (Debian: apt install python3-dev)"
    shared = shlex.split(sysconfig.get_config_var("CCSHARED") or "")
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    flags = [*shared, "-O2", "-std=c99", f"-I{include}"]
    command = [*shlex.split(linker), *flags, str(source), "-o", str(partial)]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=600)
    except FileNotFoundError:
        return f"no C compiler ({command[0]})"
    except subprocess.CalledProcessError as exc:
        partial.unlink(missing_ok=True)
        detail = exc.stderr.decode(errors="replace").strip().splitlines()
        return f"{command[0]} failed: {detail[-1] if detail else exc.returncode}"
    except (OSError, subprocess.SubprocessError) as exc:
        partial.unlink(missing_ok=True)
        return f"{command[0]}: {exc}"
    os.replace(partial, target)
    return None
