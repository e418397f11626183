"""Findings read one at a time: the same findings as the whole document, located errors, and the
reference form's evidence put back from the inventory it was made from."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditor.check import CheckOptions, run_check
from auditor.document import REFERENCE_SCHEMA_VERSION, load_document, plain
from auditor.errors import InputError
from auditor.findings_stream import FindingsStream, inventory_digest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fixtures" / "demo-estate.jsonl"


@pytest.fixture(scope="module")
def inline_bytes() -> bytes:
    result = run_check(CheckOptions(inventory=DEMO, params={"zone": "eu"}))
    try:
        buffer = io.BytesIO()
        result.spool.write_document(buffer, result.run)
    finally:
        result.spool.close()
    return buffer.getvalue()


def _inventory_evidence(path: Path) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    out = {}
    for line in path.read_bytes().splitlines():
        data = orjson.loads(line)
        if data.get("record", "resource") == "resource":
            out[(data["provider"], data["account"], data["id"])] = data["evidence"]
    return out


def reference_form(inline: dict[str, Any], inventory: Path) -> dict[str, Any]:
    """`inline` rewritten in the reference form by hand: refs to the inventory's items, no copies."""
    evidence = _inventory_evidence(inventory)
    findings = []
    for finding in inline["findings"]:
        items = evidence[
            (finding["resource"]["provider"], finding["resource"]["account"], finding["resource"]["id"])
        ]
        refs = [items.index(item) for item in finding["evidence"]]
        slim = {k: v for k, v in finding.items() if k not in ("evidence", "controls")}
        findings.append({**slim, "evidence_refs": refs})
    run = {
        **inline["run"],
        "schema_version": REFERENCE_SCHEMA_VERSION,
        "evidence": "reference",
        "inventory_digest": "sha256:" + hashlib.sha256(inventory.read_bytes()).hexdigest(),
    }
    return {"run": run, "findings": findings}


def auditor_layout(document: dict[str, Any]) -> bytes:
    """`document` laid out as `auditor check` writes it: the run indented, one finding per line."""
    lines = b",\n".join(orjson.dumps(f) for f in document["findings"])
    return (
        b'{"run": '
        + orjson.dumps(document["run"], option=orjson.OPT_INDENT_2)
        + (b',\n"findings": [\n' + lines + b"\n]}\n")
    )


def test_streamed_findings_equal_the_whole_document(tmp_path: Path, inline_bytes: bytes) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(inline_bytes)
    whole = load_document(path)
    stream = FindingsStream.open(path)
    assert stream.path == path  # streamed, not loaded whole
    streamed = [plain(f) for f in stream.findings()]
    assert len(streamed) == len(whole.findings) > 50
    assert streamed == [plain(f) for f in whole.findings]
    assert plain(stream.run) == plain(whole.run)
    # each pass reads the file again
    assert sum(1 for _ in stream.findings()) == len(streamed)


def test_another_layout_is_read_whole(tmp_path: Path, inline_bytes: bytes) -> None:
    path = tmp_path / "f.json"
    path.write_text(json.dumps(json.loads(inline_bytes), indent=4))  # as `jq .` would lay it out
    stream = FindingsStream.open(path)
    assert stream.path is None
    assert [plain(f) for f in stream.findings()] == [plain(f) for f in load_document(path).findings]


def test_a_bad_finding_mid_stream_is_located(tmp_path: Path, inline_bytes: bytes) -> None:
    document = orjson.loads(inline_bytes)
    document["findings"][7]["status"] = "maybe"
    path = tmp_path / "f.json"
    path.write_bytes(auditor_layout(document))
    stream = FindingsStream.open(path)  # the run is fine
    read = []
    with pytest.raises(InputError) as error:
        read.extend(stream.findings())
    assert len(read) == 7
    assert str(error.value) == f"{path}: findings[7].status: 'maybe' is not one of pass, fail, error, waived"


def test_a_cut_short_document_is_refused(tmp_path: Path, inline_bytes: bytes) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(inline_bytes[: inline_bytes.rindex(b"\n]}")])
    with pytest.raises(InputError, match="findings list is not closed"):
        list(FindingsStream.open(path).findings())


def test_a_bad_run_is_refused_when_opened(tmp_path: Path, inline_bytes: bytes) -> None:
    document = orjson.loads(inline_bytes)
    document["run"]["schema_version"] = "9.0"
    path = tmp_path / "f.json"
    path.write_bytes(auditor_layout(document))
    with pytest.raises(InputError, match=r"run.schema_version: unsupported findings schema version '9.0'"):
        FindingsStream.open(path)


def test_reference_form_gets_its_evidence_and_controls_back(tmp_path: Path, inline_bytes: bytes) -> None:
    inline = orjson.loads(inline_bytes)
    path = tmp_path / "ref.json"
    path.write_bytes(auditor_layout(reference_form(inline, DEMO)))
    assert path.stat().st_size < len(inline_bytes) / 2

    resolved = [plain(f) for f in FindingsStream.open(path, DEMO).findings()]
    expected = inline["findings"]
    assert [f["evidence"] for f in resolved] == [f["evidence"] for f in expected]
    assert [f["controls"] for f in resolved] == [f["controls"] for f in expected]
    assert any(f["evidence"] for f in resolved)

    # without the inventory: refs kept, no evidence invented
    bare = list(FindingsStream.open(path).findings())
    assert all(f.evidence == [] and f.evidence_refs is not None for f in bare)
    assert [f.controls for f in bare] == [f["controls"] for f in expected]


def test_reference_form_out_of_inventory_order_still_resolves(tmp_path: Path, inline_bytes: bytes) -> None:
    inline = orjson.loads(inline_bytes)
    document = reference_form(inline, DEMO)
    document["findings"].reverse()
    path = tmp_path / "ref.json"
    path.write_bytes(auditor_layout(document))
    resolved = [f.evidence for f in FindingsStream.open(path, DEMO).findings()]
    assert resolved == [f["evidence"] for f in reversed(inline["findings"])]


def test_reference_form_refuses_another_inventory(tmp_path: Path, inline_bytes: bytes) -> None:
    path = tmp_path / "ref.json"
    path.write_bytes(auditor_layout(reference_form(orjson.loads(inline_bytes), DEMO)))
    other = tmp_path / "other.jsonl"
    other.write_bytes(DEMO.read_bytes() + b"\n")
    with pytest.raises(InputError) as error:
        FindingsStream.open(path, other)
    assert str(error.value).startswith(f"{other}: not the inventory these findings were made from")
    assert inventory_digest(DEMO) in str(error.value)


def test_reference_form_with_a_ref_the_inventory_lacks(tmp_path: Path, inline_bytes: bytes) -> None:
    document = reference_form(orjson.loads(inline_bytes), DEMO)
    document["findings"][3]["evidence_refs"] = [99]
    path = tmp_path / "ref.json"
    path.write_bytes(auditor_layout(document))
    with pytest.raises(InputError, match=r"holds no evidence \[99\]"):
        list(FindingsStream.open(path, DEMO).findings())


def test_reference_form_requires_refs_and_inline_requires_evidence(
    tmp_path: Path, inline_bytes: bytes
) -> None:
    inline = orjson.loads(inline_bytes)
    reference = reference_form(inline, DEMO)
    del reference["findings"][2]["evidence_refs"]
    del inline["findings"][4]["evidence"]
    for name, document, field in (
        ("r.json", reference, "findings[2].evidence_refs"),
        ("i.json", inline, "findings[4].evidence"),
    ):
        path = tmp_path / name
        path.write_bytes(auditor_layout(document))
        with pytest.raises(InputError) as error:
            list(FindingsStream.open(path).findings())
        assert str(error.value) == f"{path}: {field}: field required"


def test_a_document_in_memory_is_not_changed_by_reading_it(tmp_path: Path, inline_bytes: bytes) -> None:
    path = tmp_path / "ref.json"
    path.write_bytes(auditor_layout(reference_form(orjson.loads(inline_bytes), DEMO)))
    document = load_document(path)
    before = [plain(f) for f in document.findings]
    stream = FindingsStream.of_document(document, DEMO)
    assert any(f.evidence for f in stream.findings())
    assert [plain(f) for f in document.findings] == before
    assert [plain(f) for f in stream.findings(as_written=True)] == before
