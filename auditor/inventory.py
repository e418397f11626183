"""Inventory snapshots as JSONL: one `StorageResource` (or `CoverageGap`) per line, streamed.

Reading refuses what would be ambiguous or unbounded: a line longer than `MAX_LINE_BYTES` (64 MiB),
a special file (FIFO, device, directory), and an object with a duplicate key (JSON parsers disagree
on which value wins, so a reviewer and auditor could read different records).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import ValidationError

from auditor.atomicfile import atomic_output
from auditor.errors import InputError
from auditor.fast_decode import RecordDecoder, colons_agree
from auditor.inputfile import MAX_LINE_BYTES, open_input, read_lines
from auditor.model import CoverageGap, StorageResource, Transport
from auditor.sources import check_provider, normalize_record

InventoryRecord = StorageResource | CoverageGap


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKeyError(key)
        seen[key] = value
    return seen


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def proves_no_duplicate_keys(text: bytes, value: Any) -> bool:
    """True when JSON `text` (parsed by orjson into `value`) provably repeats no key.

    orjson keeps the last of duplicate keys silently, so `value` has lost every repeated pair.
    Proof 1: re-serialising `value` gives `text` back byte for byte (orjson writes each object
    from a dict, whose keys are distinct). Proof 2: the colon counts agree (`colons_agree`).
    False means "not proven", not "has duplicates": the caller then runs the exact check.
    """
    dumped = orjson.dumps(value)
    return dumped == text or colons_agree(text, dumped)


def check_duplicate_keys(line: bytes, data: Any, where: str) -> None:
    """Raise InputError if the JSON text `line` (parsed by orjson into `data`) repeats a key.

    orjson keeps the last of duplicate keys silently. The cheap proof that nothing was dropped
    (`proves_no_duplicate_keys`: one re-serialisation) settles nearly every line; a line it
    cannot settle (a colon spelled `\\u003a`, or colon counts that differ) is re-parsed by the
    exact, slower check, which also names the key.
    """
    if proves_no_duplicate_keys(line.rstrip(b"\n"), data):
        return
    import json

    try:
        json.loads(line, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKeyError as exc:
        raise InputError(where, f'duplicate key "{exc.key}"') from None
    except ValueError:  # pragma: no cover - orjson accepted it; the stdlib parser should too
        return


# Struct records for evaluation (see auditor.fast_decode): the S3 transport analysis asks whether a
# record gave `transport.bucket_policy`.
_FAST_RESOURCE = RecordDecoder(StorageResource, texts_of="evidence", track_given=frozenset({Transport}))


_ATTESTATION = operator.attrgetter("attestation")


def parse_record(
    line: bytes | str, where: str, *, fast: bool = False, evidence_texts: bool = True
) -> InventoryRecord:
    """One JSONL line as a record; a bad line raises InputError naming `where`.

    `fast`: a resource line may come back as the struct mirroring `StorageResource` that
    `auditor.fast_decode` reads, for evaluation only (it has the model's fields and methods, not
    pydantic's API). A line it does not accept, and a resource with attested evidence (which
    `auditor.attestations` may rewrite), is read by pydantic as without `fast`. Such a struct keeps
    its evidence items' texts (for findings that copy them) unless `evidence_texts` is False.
    """
    if fast and isinstance(line, bytes) and line.startswith(b'{"record":"resource"'):
        resource = _FAST_RESOURCE.decode(line, texts=evidence_texts)
        if resource is not None and not any(map(_ATTESTATION, resource.evidence)):
            return normalize_record(resource, where)
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InputError(where, f"invalid JSON ({exc}); is the line truncated?") from exc
    if not isinstance(data, dict):
        raise InputError(where, "each line must be a JSON object")
    check_duplicate_keys(line if isinstance(line, bytes) else line.encode(), data, where)
    try:
        if data.get("record", "resource") == "gap":
            gap = CoverageGap.model_validate(data)
            check_provider(gap.provider, where)
            return gap
        resource = normalize_record(StorageResource.model_validate(data), where)
        resource.keep_evidence_json(data.get("evidence") or [])
        return resource
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "record"
        raise InputError(where, f"{field}: {first['msg']}") from exc


def read_inventory(
    path: Path, *, digest: Any = None, fast: bool = False, evidence_texts: bool = True
) -> Iterator[InventoryRecord]:
    """Stream the records of a JSONL inventory; blank lines are skipped.

    Only a regular file is read, and no line may exceed MAX_LINE_BYTES (see auditor.inputfile).
    `digest` (a hashlib object), when given, is fed every byte read, in the same pass, so it is the
    digest of exactly the bytes evaluated. `fast`, `evidence_texts`: see `parse_record`.
    """
    where = f"{path}:"
    with open_input(path, "inventory") as handle:
        for number, line in read_lines(handle, path, limit=MAX_LINE_BYTES):
            if digest is not None:
                digest.update(line)
            if not line.isspace():  # (a line is never empty; isspace stops at the first "{")
                yield parse_record(line, f"{where}{number}", fast=fast, evidence_texts=evidence_texts)


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
