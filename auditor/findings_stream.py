"""A findings document read one finding at a time, so a renderer's memory does not grow with the run.

`auditor check` writes `{"run": ...,\\n"findings": [\\n` and then one finding per line
(docs/findings-json.md); a document in that layout is streamed: the run is read and checked when it
is opened, each finding when it is reached (a bad finding is an InputError naming `findings[i]`,
raised while rendering, and the report is then not written). Any other layout of valid JSON (a
document re-indented by another tool) is read whole, as `load_document` reads it.

In the reference form (schema 2.0) findings point at their evidence in the inventory. Given that
inventory, the stream puts the evidence items back in each finding, after checking the inventory is
the one the findings were made from (`run.inventory_digest`). Without it, findings keep their
`evidence_refs` and an empty `evidence`, and reports say where the evidence is. Either way a
finding's `controls` are filled from `run.policies` where the finding leaves them out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from auditor.document import (
    FindingRecord,
    FindingsDocument,
    RunInfo,
    check_finding,
    check_run,
    load_document,
)
from auditor.errors import InputError
from auditor.inputfile import MAX_FINDINGS_BYTES, MAX_LINE_BYTES, open_input, read_lines

_RUN_START = b'{"run": '
_FINDINGS_START = b'"findings": [\n'


def inventory_digest(path: Path) -> str:
    """`sha256:<hex>` of the inventory file's bytes, as `run.inventory_digest` records it."""
    with open_input(path, "inventory") as handle:
        return f"sha256:{hashlib.file_digest(handle, 'sha256').hexdigest()}"


ResourceKey = tuple[str, str, str]


class InventoryEvidence:
    """The evidence items of each inventory resource, looked up by (provider, account, id).

    Findings come in inventory order, so a forward cursor answers nearly every lookup; the first
    lookup behind the cursor builds an index of line offsets (one entry per resource), and later ones
    seek. Only the evidence of one resource is held at a time.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = open_input(path, "inventory")
        self._lines = read_lines(self._handle, path, limit=MAX_LINE_BYTES)
        self._current: tuple[ResourceKey, list[dict[str, Any]]] | None = None
        self._offsets: dict[ResourceKey, tuple[int, int]] | None = None

    def close(self) -> None:
        """Close the inventory file."""
        self._handle.close()

    def _parse(self, line: bytes, number: int) -> tuple[ResourceKey, list[dict[str, Any]]] | None:
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{self.path}:{number}", f"invalid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("record", "resource") != "resource":
            return None
        key = (str(data.get("provider")), str(data.get("account")), str(data.get("id")))
        evidence = data.get("evidence")
        return key, evidence if isinstance(evidence, list) else []

    def _next(self) -> tuple[ResourceKey, list[dict[str, Any]]] | None:
        for number, line in self._lines:
            if line.strip():
                parsed = self._parse(line, number)
                if parsed is not None:
                    return parsed
        return None

    def _index(self) -> dict[ResourceKey, tuple[int, int]]:
        offsets: dict[ResourceKey, tuple[int, int]] = {}
        self._handle.seek(0)
        offset = 0
        for number, line in read_lines(self._handle, self.path, limit=MAX_LINE_BYTES):
            if line.strip():
                parsed = self._parse(line, number)
                if parsed is not None:
                    offsets.setdefault(parsed[0], (offset, number))
            offset += len(line)
        return offsets

    def evidence(self, key: ResourceKey) -> list[dict[str, Any]] | None:
        """The resource's evidence items, or None if the inventory has no such resource."""
        if self._current is not None and self._current[0] == key:
            return self._current[1]
        if self._offsets is None:
            while (found := self._next()) is not None:
                self._current = found
                if found[0] == key:
                    return found[1]
            self._offsets = self._index()
        place = self._offsets.get(key)
        if place is None:
            return None
        offset, number = place
        self._handle.seek(offset)
        line = self._handle.readline(MAX_LINE_BYTES + 1)
        self._current = self._parse(line, number)
        return self._current[1] if self._current is not None else None


class FindingsStream:
    """A findings document's `run`, and its findings one at a time (`findings()`, re-readable)."""

    def __init__(
        self,
        run: RunInfo,
        *,
        path: Path | None = None,
        document: FindingsDocument | None = None,
        inventory: Path | None = None,
    ) -> None:
        self.run = run
        self.path = path
        self.inventory = inventory
        self._document = document
        self._controls = {policy.id: policy.controls for policy in run.policies}

    @classmethod
    def of_document(cls, document: FindingsDocument, inventory: Path | None = None) -> FindingsStream:
        """A document already in memory, as a stream."""
        stream = cls(document.run, document=document, inventory=inventory)
        stream.check_inventory()
        return stream

    @classmethod
    def open(cls, path: Path, inventory: Path | None = None, *, written_here: bool = False) -> FindingsStream:
        """The document at `path`: its run read and checked now, its findings when iterated.

        Only a regular file of at most MAX_FINDINGS_BYTES is read, unless the document was
        `written_here` (by this process: the audit job's own, read one finding at a time however
        large it is); bad input raises InputError.
        """
        with open_input(path, "findings") as handle:
            size = handle.seek(0, 2)
            handle.seek(0)
            if size > MAX_FINDINGS_BYTES and not written_here:
                raise InputError(str(path), "findings is larger than 4 GiB, the limit")
            run_data = _read_run(handle, path)
        if run_data is None:  # not the layout auditor writes: read it whole
            document = load_document(path)
            stream = cls(document.run, document=document, inventory=inventory)
        else:
            stream = cls(check_run(run_data, str(path)), path=path, inventory=inventory)
        stream.check_inventory()
        return stream

    @property
    def reference_form(self) -> bool:
        """Whether findings point at inventory evidence instead of carrying it."""
        return self.run.evidence_form == "reference"

    @property
    def evidence_unresolved(self) -> bool:
        """Whether findings point at evidence in an inventory this stream was not given: reports
        then say where each finding's evidence is (`FindingRecord.refs_only`)."""
        return self.reference_form and self.inventory is None

    def check_inventory(self) -> None:
        """Refuse an inventory that is not the one a reference-form document was made from."""
        if self.inventory is None or not self.reference_form or self.run.inventory_digest is None:
            return
        actual = inventory_digest(self.inventory)
        if actual != self.run.inventory_digest:
            raise InputError(
                str(self.inventory),
                f"not the inventory these findings were made from ({actual}; "
                f"the findings' run.inventory_digest is {self.run.inventory_digest})",
            )

    def findings(self, *, as_written: bool = False) -> Iterator[FindingRecord]:
        """Every finding in document order, checked; evidence put back where the inventory is given.

        `as_written`: each finding exactly as the document holds it (no controls filled in, no
        evidence put back), for writing the document out again.
        """
        if as_written:
            yield from self._records()
            return
        resolver = (
            InventoryEvidence(self.inventory) if self.inventory is not None and self.reference_form else None
        )
        try:
            for record in self._records():
                fill = not record.controls and "controls" not in record.model_fields_set
                resolve = resolver is not None and record.evidence_refs is not None
                # a document held in memory is the caller's: change copies of its findings
                finding = record.model_copy() if (fill or resolve) and self._document is not None else record
                if fill:
                    finding.controls = self._controls.get(finding.policy_id, {})
                if resolver is not None and resolve:
                    finding.evidence = self._resolve(resolver, finding)
                yield finding
        finally:
            if resolver is not None:
                resolver.close()

    @property
    def extra(self) -> dict[str, Any]:
        """Top-level fields besides `run` and `findings` (a later version's; only a document read
        whole keeps them)."""
        return dict(self._document.model_extra or {}) if self._document is not None else {}

    def document(self) -> FindingsDocument:
        """The whole document in memory (for renderers that need every finding at once)."""
        if self._document is not None and self.inventory is None:
            return self._document
        return FindingsDocument.model_construct(run=self.run, findings=list(self.findings()))

    def _resolve(self, resolver: InventoryEvidence, finding: FindingRecord) -> list[dict[str, Any]]:
        resource = finding.resource
        items = resolver.evidence((resource.provider, resource.account, resource.id))
        refs = finding.evidence_refs or []
        if items is None or any(not 0 <= ref < len(items) for ref in refs):
            raise InputError(
                str(self.inventory),
                f"holds no evidence {refs} for {resource.provider} {resource.account} {resource.id} "
                f"(policy {finding.policy_id})",
            )
        return [items[ref] for ref in refs]

    def _records(self) -> Iterator[FindingRecord]:
        if self._document is not None:
            yield from self._document.findings
            return
        assert self.path is not None
        where = str(self.path)
        with open_input(self.path, "findings") as handle:
            if _read_run(handle, self.path) is None:  # pragma: no cover - the file changed since open
                raise InputError(where, "the findings file changed while it was read")
            index = 0
            for number, line in read_lines(handle, self.path, limit=MAX_FINDINGS_BYTES):
                text = line.strip()
                if text.endswith(b","):
                    text = text[:-1]
                if not text:
                    continue
                if text.startswith(b"]"):
                    return
                try:
                    data = orjson.loads(text)
                except orjson.JSONDecodeError as exc:
                    raise InputError(f"{where}:{number}", f"not valid JSON ({exc})") from None
                yield check_finding(data, where, index, self.run)
                index += 1
            raise InputError(
                where, "not valid JSON (the findings list is not closed: is the file truncated?)"
            )


def _read_run(handle: Any, path: Path) -> dict[str, Any] | None:
    """The `run` object of a document in auditor's layout, the handle left at the first finding;
    None if the document is laid out otherwise (the handle is then rewound)."""
    start = handle.read(len(_RUN_START))
    if start != _RUN_START:
        handle.seek(0)
        return None
    lines: list[bytes] = []
    for _, line in read_lines(handle, path, limit=MAX_FINDINGS_BYTES):
        if line == _FINDINGS_START:
            break
        lines.append(line)
    else:
        handle.seek(0)
        return None
    text = b"".join(lines).rstrip()
    if not text.endswith(b","):
        handle.seek(0)
        return None
    try:
        run = orjson.loads(text[:-1])
    except orjson.JSONDecodeError:
        handle.seek(0)
        return None
    if not isinstance(run, dict):
        raise InputError(str(path), "not a findings document: expected an object with 'run' and 'findings'")
    return run
