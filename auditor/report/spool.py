"""Records filed by group in temporary files and read back sorted, one group at a time: how a report
is written in an order other than the findings' without holding them all (CSV, JUnit, HTML)."""

from __future__ import annotations

import heapq
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

_RECORD_HEAD = struct.Struct(">II")  # a spooled record: its sort key's length, its data's length
SPOOL_BUFFER_BYTES = 16 << 20


G = TypeVar("G", bound=tuple[Any, ...])


class GroupSpool(Generic[G]):
    """Records (bytes) filed by group in temporary files, read back one group at a time, so a report
    can be written in an order other than the findings' without holding them all.

    Within a group, records come back in the order of their `sort_key` (bytes; records with equal
    keys in the order they were added): each group's buffer is sorted when it is spilled to the
    group's file (one sorted run per spill), and the runs are merged on reading. At most
    `buffer_bytes` (default SPOOL_BUFFER_BYTES) are held in memory, plus one record per run while
    merging.
    """

    def __init__(self, buffer_bytes: int | None = None) -> None:
        self.buffer_bytes = SPOOL_BUFFER_BYTES if buffer_bytes is None else buffer_bytes
        self._directory = tempfile.TemporaryDirectory(prefix="auditor-report-")
        self._buffers: dict[G, list[tuple[bytes, bytes]]] = {}
        self._buffered = 0
        self._files: dict[G, Path] = {}
        self._runs: dict[G, list[tuple[int, int]]] = {}  # (start, end) offsets of each run

    def add(self, group: G, data: bytes, sort_key: bytes = b"") -> None:
        """File one record under `group`."""
        self._buffers.setdefault(group, []).append((sort_key, data))
        self._buffered += len(data) + len(sort_key) + 64
        if self._buffered > self.buffer_bytes:
            self._spill()

    def groups(self) -> list[G]:
        """Every group with a record, in the order each first got one."""
        return list(self._buffers)

    def read(self, group: G) -> Iterator[bytes]:
        """The records of `group`, in sort-key order (stable)."""
        records = sorted(self._buffers.get(group, ()), key=lambda record: record[0])
        runs = self._runs.get(group, [])
        if not runs:
            yield from (data for _, data in records)
            return
        sources = [self._read_run(self._files[group], start, end) for start, end in runs]
        for _, data in heapq.merge(*sources, iter(records), key=lambda record: record[0]):
            yield data

    def close(self) -> None:
        """Remove the temporary files."""
        self._directory.cleanup()

    def __enter__(self) -> GroupSpool[G]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _spill(self) -> None:
        for group, records in self._buffers.items():
            if not records:
                continue
            records.sort(key=lambda record: record[0])
            path = self._files.get(group)
            if path is None:
                path = self._files[group] = Path(self._directory.name) / f"{len(self._files)}.spool"
            with path.open("ab") as handle:
                start = handle.tell()
                for key, data in records:
                    handle.write(_RECORD_HEAD.pack(len(key), len(data)) + key + data)
                self._runs.setdefault(group, []).append((start, handle.tell()))
            records.clear()
        self._buffered = 0

    @staticmethod
    def _read_run(path: Path, start: int, end: int) -> Iterator[tuple[bytes, bytes]]:
        with path.open("rb") as handle:
            handle.seek(start)
            position = start
            while position < end:
                key_length, data_length = _RECORD_HEAD.unpack(handle.read(_RECORD_HEAD.size))
                key = handle.read(key_length)
                yield key, handle.read(data_length)
                position += _RECORD_HEAD.size + key_length + data_length
