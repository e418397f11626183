"""Inventory snapshots as JSONL: one `StorageResource` (or `CoverageGap`) per line, streamed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import orjson
from pydantic import ValidationError

from auditor.atomicfile import atomic_output
from auditor.errors import InputError
from auditor.model import CoverageGap, StorageResource

InventoryRecord = StorageResource | CoverageGap


def parse_record(line: bytes | str, where: str) -> InventoryRecord:
    """One JSONL line as a record; a bad line raises InputError naming `where`."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InputError(where, f"invalid JSON ({exc}); is the line truncated?") from exc
    if not isinstance(data, dict):
        raise InputError(where, "each line must be a JSON object")
    try:
        if data.get("record", "resource") == "gap":
            return CoverageGap.model_validate(data)
        resource = StorageResource.model_validate(data)
        resource.keep_evidence_json(data.get("evidence") or [])
        return resource
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "record"
        raise InputError(where, f"{field}: {first['msg']}") from exc


def read_inventory(path: Path) -> Iterator[InventoryRecord]:
    """Stream the records of a JSONL inventory; blank lines are skipped."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(str(path), f"cannot read inventory: {exc.strerror or exc}") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield parse_record(line, f"{path}:{number}")


def dump_record(record: InventoryRecord) -> bytes:
    """One record as a JSONL line (with the trailing newline)."""
    return orjson.dumps(record.model_dump(mode="json", exclude_none=False)) + b"\n"


def write_records(handle: IO[bytes], records: Iterable[InventoryRecord]) -> int:
    """Write records to an open binary handle; returns how many."""
    count = 0
    for record in records:
        handle.write(dump_record(record))
        count += 1
    return count


def write_inventory(path: Path, records: Iterable[InventoryRecord]) -> int:
    """Write a whole inventory atomically; returns the number of records."""
    with atomic_output(path) as handle:
        return write_records(handle, records)
