"""Write outputs whole or not at all: a temporary file beside the target, renamed on success.

A temporary file is named `.<target name>.<pid>-<host>.<random>.tmp`: the owner tag (`owner_tag`)
lets a later run tell the leftovers of a killed run from the temporary files of a run still
writing (`remove_stale`). A leftover is removed only when it is older than the cleaning run's
start and either its process is gone (same host, pid not alive) or it has not been touched for
`STALE_AFTER` (another host, where a pid cannot be checked, or a name without an owner tag).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

# Untouched this long, a temporary file is a leftover even when its owner cannot be checked.
STALE_AFTER = 3600.0
OWNER_PATTERN = r"\d+-[A-Za-z0-9-]+"  # the form of owner_tag(), for patterns of temporary names
_OWNER = re.compile(r"(?P<pid>\d+)-(?P<host>[A-Za-z0-9-]+)")


def _host() -> str:
    name = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname()).strip("-")
    return name[:40] or "host"


def owner_tag(pid: int | None = None) -> str:
    """`<pid>-<host>`: which process (default: this one) on this machine owns a temporary file."""
    return f"{os.getpid() if pid is None else pid}-{_host()}"


@contextlib.contextmanager
def atomic_output(path: Path, mode: str = "wb") -> Iterator[IO[bytes]]:
    """Open a temporary file beside `path`; rename it to `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files for CI artifacts
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def temp_pattern(target_name: str) -> re.Pattern[str]:
    """The names `atomic_output` gives temporary files of `target_name` (with or without an owner)."""
    return temp_pattern_of(re.escape(target_name))


def temp_pattern_of(name_regex: str) -> re.Pattern[str]:
    """Like `temp_pattern`, for every target whose name matches the regular expression `name_regex`."""
    return re.compile(rf"^\.(?:{name_regex})\.(?:(?P<owner>{OWNER_PATTERN})\.)?[a-z0-9_]{{8}}\.tmp$")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a process id we can check: leave it to the age rule
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _newest_mtime(path: Path) -> float:
    """The latest modification time of `path`, or of anything inside it for a directory."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in (*dirnames, *filenames):
                with contextlib.suppress(OSError):
                    newest = max(newest, (Path(dirpath) / name).lstat().st_mtime)
    return newest


def is_stale(path: Path, owner: str | None, *, started: float, now: float | None = None) -> bool:
    """True when `path` (a temporary file or directory) is the leftover of a run that is gone.

    Never anything touched since `started` (the cleaning run's start). Otherwise stale when its
    owner tag names a process of this host that is not alive (and is not this process), or when
    nothing in it changed for STALE_AFTER seconds.
    """
    try:
        newest = _newest_mtime(path)
    except OSError:
        return False
    if newest >= started:
        return False
    if owner is not None:
        match = _OWNER.fullmatch(owner)
        if match is not None and match["host"] == _host():
            pid = int(match["pid"])
            if pid != os.getpid() and not _pid_alive(pid):
                return True
    return (now if now is not None else time.time()) - newest > STALE_AFTER


def remove_stale(directory: Path, pattern: re.Pattern[str], *, started: float) -> list[Path]:
    """Remove the entries of `directory` whose names match `pattern` and that are stale.

    `pattern` may have a group `owner` (`<pid>-<host>`); entries without one are judged by age
    alone. Returns what was removed; anything that cannot be removed is left in place.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None:
            continue
        path = Path(entry.path)
        owner = match.groupdict().get("owner")
        if not is_stale(path, owner, started=started):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def remove_stale_temps(target: Path, *, started: float) -> list[Path]:
    """Remove stale temporary files `atomic_output` left beside `target` (a killed run's)."""
    return remove_stale(target.parent, temp_pattern(target.name), started=started)
