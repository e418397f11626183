"""Merge sorted inventory parts into one inventory, in an order that does not depend on who ran what.

Each part is already sorted by `record_key` (provider, account, gaps first, region, resource id,
then the line itself), so the merge is a streaming k-way merge: memory holds one line per part,
and more than `fan_in` parts are merged in rounds so the open files stay bounded.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Generator
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from auditor.scale.units import record_key


def _keyed(path: Path) -> Generator[tuple[str, str, int, str, str, bytes], None, None]:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield record_key(line if line.endswith(b"\n") else line + b"\n")


def _merge_into(parts: list[Path], out: IO[bytes]) -> int:
    count = 0
    with ExitStack() as stack:
        streams = [_keyed(p) for p in parts]
        for stream in streams:
            stack.callback(stream.close)  # closes its file if the merge stops early
        for key in heapq.merge(*streams):
            out.write(key[-1])
            count += 1
    return count


def merge_parts(parts: list[Path], out: IO[bytes], *, fan_in: int = 128) -> int:
    """Write the records of sorted `parts` to `out` in merge order; returns the record count."""
    if fan_in < 2:
        raise ValueError("fan_in must be at least 2")
    rounds: list[Path] = sorted(parts)
    with tempfile.TemporaryDirectory(prefix=".merge-", dir=rounds[0].parent if rounds else None) as tmp:
        level = 0
        while len(rounds) > fan_in:
            merged: list[Path] = []
            for start in range(0, len(rounds), fan_in):
                target = Path(tmp) / f"round{level}-{start}.jsonl"
                with target.open("wb") as handle:
                    _merge_into(rounds[start : start + fan_in], handle)
                merged.append(target)
            rounds, level = merged, level + 1
        return _merge_into(rounds, out)
