"""Open user-given input files safely: regular files only, bounded reads, one clear error.

Every file a user names (inventory, policies, waivers, config, baselines, findings, keys) is opened
here. Special files are refused without blocking or reading: a FIFO would block forever, `/dev/zero`
would fill memory, a directory or a symlink loop would raise a traceback. Whole-file reads are
bounded (`MAX_TEXT_BYTES` for YAML and keys, `MAX_FINDINGS_BYTES` for findings documents), and the
JSONL reader bounds the length of one line (`MAX_LINE_BYTES`), so a huge file without newlines
cannot exhaust memory either. Every problem is an InputError: `file[:line]: what is wrong`.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from auditor.errors import InputError

MIB = 1 << 20
MAX_TEXT_BYTES = 16 * MIB  # one YAML file (policies, waivers, config, baseline, tests) or a PEM key
MAX_FINDINGS_BYTES = 4096 * MIB  # a findings document (about 3 million findings at ~1.2 KB each)
MAX_LINE_BYTES = 64 * MIB  # one inventory JSONL record

_KINDS = (
    (stat.S_ISDIR, "is a directory, not a file"),
    (stat.S_ISFIFO, "is a named pipe (FIFO), not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
    (stat.S_ISCHR, "is a character device, not a regular file"),
    (stat.S_ISBLK, "is a block device, not a regular file"),
)


def _size(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit:,} bytes"


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    for test, message in _KINDS:
        if test(mode):
            return message
    return "is not a regular file"


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links (a symlink loop?)"
    if exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return exc.strerror or str(exc)


def _prefix(what: str) -> str:
    return f"cannot read {what}: " if what else "cannot read: "


def open_input(path: Path, what: str = "") -> io.BufferedReader:
    """`path` opened for binary reading if it is a regular file; else InputError naming the file.

    `what` names the kind of input in the message ("cannot read inventory: ...").
    """
    where = str(path)
    try:
        # stat first: a device or FIFO is refused without even being opened
        problem = _not_regular(os.stat(path).st_mode)
        if problem is not None:
            raise InputError(where, _prefix(what) + problem)
        # O_NONBLOCK: if the path was swapped for a FIFO since the stat, open does not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise InputError(where, _prefix(what) + _os_reason(exc)) from exc
    except ValueError as exc:  # an embedded NUL in the name
        raise InputError(where, _prefix(what) + "invalid file name") from exc
    try:
        problem = _not_regular(os.fstat(fd).st_mode)
        if problem is not None:
            raise InputError(where, _prefix(what) + problem)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path: Path, *, limit: int = MAX_TEXT_BYTES, what: str = "") -> bytes:
    """The whole content of regular file `path`, at most `limit` bytes (else InputError)."""
    with open_input(path, what) as handle:
        too_big = InputError(str(path), f"{what or 'file'} is larger than {_size(limit)}, the limit")
        if os.fstat(handle.fileno()).st_size > limit:
            raise too_big
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise InputError(str(path), _prefix(what) + _os_reason(exc)) from exc
    if len(data) > limit:  # grew while being read, or a /proc-like file with no size
        raise too_big
    return data


def read_text_input(path: Path, *, limit: int = MAX_TEXT_BYTES, what: str = "") -> str:
    """`read_input` decoded as UTF-8 (a leading BOM is dropped); bad encoding is an InputError."""
    data = read_input(path, limit=limit, what=what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}:{line}", f"not UTF-8 text: {exc.reason}") from exc


def read_lines(handle: BinaryIO, path: Path, *, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of an open input, each line at most `limit` bytes (else InputError)."""
    number = 0
    while True:
        try:
            line = handle.readline(limit + 1)
        except OSError as exc:
            raise InputError(f"{path}:{number + 1}", f"cannot read: {_os_reason(exc)}") from exc
        if not line:
            return
        number += 1
        if len(line) > limit:
            raise InputError(f"{path}:{number}", f"line longer than {_size(limit)}, the limit")
        yield number, line
