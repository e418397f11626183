"""The typed findings document: what `check` writes is what readers get, and reports use only it."""

from __future__ import annotations

import builtins
import io
import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from auditor.check import CheckOptions, run_check
from auditor.document import NOT_RECORDED, FindingsDocument, check_document, load_document, write_document
from auditor.findings import Severity, Status
from auditor.policy.loader import shipped_policies_dir
from auditor.report.base import RENDERERS, ReportInput, render_to_file
from auditor.scan.aws_ai import AI_OPT_OUT_POLICIES, CHECKED_ON

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fixtures" / "demo-estate.jsonl"
OLD_DOCUMENT = REPO / "tests" / "report" / "findings-1.0.json"


def pdf_text(path: Path) -> str:
    """The text of every page of a PDF report."""
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def written(options: CheckOptions) -> bytes:
    """The document `auditor check --format json` writes for `options`."""
    result = run_check(options)
    try:
        buffer = io.BytesIO()
        result.spool.write_document(buffer, result.run)
    finally:
        result.spool.close()
    return buffer.getvalue()


def test_round_trip_check_writes_reader_reads_equal(tmp_path: Path) -> None:
    data = written(CheckOptions(inventory=DEMO, params={"zone": "eu"}))
    path = tmp_path / "findings.json"
    path.write_bytes(data)
    document = load_document(path)
    assert isinstance(document, FindingsDocument)
    assert document.run.schema_version == "1.6"
    assert document == check_document(json.loads(data), "again")
    # one spelling: statuses and severities are the enums
    assert all(isinstance(f.status, Status) and isinstance(f.severity, Severity) for f in document.findings)
    # written back byte for byte
    out = io.BytesIO()
    write_document(document, out)
    assert out.getvalue() == data
    # the policy text and the zone as evaluated are in the document
    residency = next(p for p in document.run.policies if p.id == "residency.data-in-zone")
    assert residency.remediation and residency.description and residency.references is not None
    assert document.run.zone is not None and document.run.zone.id == "eu"
    assert document.run.zone.state("aws", "eu-west-1") == "in"
    assert document.run.zone.state("aws", "us-east-1") == "out"


def test_unknown_fields_of_a_later_version_are_tolerated_and_kept(tmp_path: Path) -> None:
    data = json.loads(written(CheckOptions(inventory=DEMO, params={"zone": "eu"})))
    data["run"]["schema_version"] = "1.9"
    data["run"]["future"] = {"x": 1}
    data["findings"][0]["future"] = [1, 2]
    data["future_top"] = True
    document = check_document(data, "later.json")
    out = io.BytesIO()
    write_document(document, out)
    again = json.loads(out.getvalue())
    assert again["run"]["future"] == {"x": 1} and again["findings"][0]["future"] == [1, 2]
    assert again["future_top"] is True


@pytest.fixture
def no_policy_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail any load of policies or zones, and record every file opened under a policy directory
    other than frameworks/ (the framework catalogs are not policy files)."""
    opened: list[str] = []
    real_open = builtins.open

    def tracking_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        name = str(file)
        if name.endswith((".yaml", ".yml")) and "/frameworks/" not in name:
            opened.append(name)
        return real_open(file, *args, **kwargs)

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a renderer read policy files")

    monkeypatch.setattr(builtins, "open", tracking_open)
    monkeypatch.setattr("auditor.policy.loader.load_policies", refuse)
    monkeypatch.setattr("auditor.policy.loader.load_zones", refuse)
    return opened


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_an_old_document_renders_without_reading_policy_files(
    fmt: str, tmp_path: Path, no_policy_files: list[str]
) -> None:
    document = load_document(OLD_DOCUMENT)
    assert document.run.schema_version == "1.0"
    assert all(not p.details_recorded for p in document.run.policies)
    out = tmp_path / f"report.{fmt}"
    render_to_file(fmt, ReportInput(document=document), out)
    text = pdf_text(out) if fmt == "pdf" else out.read_text()
    assert no_policy_files == []
    if fmt in ("html", "sarif", "pdf"):
        assert NOT_RECORDED in " ".join(text.split())
        assert "aws s3api" not in text  # the shipped remediation is never shown instead
    if fmt == "json":
        assert json.loads(text) == json.loads(OLD_DOCUMENT.read_text())


def test_a_1_2_document_shows_the_remediation_it_recorded(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(shipped_policies_dir(), policies, ignore=shutil.ignore_patterns("tests"))
    path = tmp_path / "findings.json"
    path.write_bytes(written(CheckOptions(inventory=DEMO, policy_paths=[policies], params={"zone": "eu"})))
    document = load_document(path)
    recorded = next(p for p in document.run.policies if p.id == "residency.data-in-zone")
    assert recorded.remediation is not None
    original = recorded.remediation["aws"].split()[0:3]
    # the policy files change after the run: a report of that run still shows what was evaluated
    for file in policies.glob("*.yaml"):
        file.write_text(file.read_text().replace("aws s3api", "CHANGED-AFTER-THE-RUN"))
    html = tmp_path / "report.html"
    render_to_file("html", ReportInput(document=document), html)
    text = html.read_text()
    assert "CHANGED-AFTER-THE-RUN" not in text and "aws s3api" in text
    assert " ".join(original) in text.replace("<code>", "").replace("</code>", "")
    assert NOT_RECORDED not in text
    sarif = tmp_path / "report.sarif"
    render_to_file("sarif", ReportInput(document=document), sarif)
    assert "CHANGED-AFTER-THE-RUN" not in sarif.read_text() and "aws s3api" in sarif.read_text()


# 1.5 adds `owner` (the owner tag) to every kind; nothing AI is added to a storage resource.
STORAGE_RESOURCE_KEYS = {"provider", "account", "id", "name", "kind", "regions", "storage_account", "owner"}


def test_storage_resources_are_written_as_before_1_5(tmp_path: Path) -> None:
    """A storage-only estate's document has the resource keys of 1.4: nothing AI is added to it."""
    storage = tmp_path / "storage.jsonl"
    lines = DEMO.read_bytes().splitlines(keepends=True)
    storage.write_bytes(b"".join(line for line in lines if b'"kind":"ai-' not in line))
    document = json.loads(written(CheckOptions(inventory=storage, params={"zone": "eu"})))
    assert document["findings"]
    for finding in document["findings"]:
        assert set(finding["resource"]) <= STORAGE_RESOURCE_KEYS, finding["resource"]


def ai_resources(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(provider, name or id) -> the `resource` object of the demo's AI findings."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for finding in document["findings"]:
        resource = finding["resource"]
        if resource["kind"].startswith("ai-"):
            found[(resource["provider"], resource["name"])] = resource
            found[(resource["provider"], resource["id"])] = resource
    return found


def test_ai_resources_carry_processing_training_and_attested_values() -> None:
    document = json.loads(
        written(CheckOptions(inventory=DEMO, params={"zone": "eu"}, today=date(2026, 11, 24)))
    )
    ai = ai_resources(document)
    # processing beside the at-rest regions; '*' is any region; unknown spelled as observed values are
    global_deployment = ai[("azure", "gpt-4o-global")]
    assert global_deployment["processing_regions"] == ["*"] and global_deployment["regions"] == []
    project = ai[("openai", "eu-support-assistant")]
    assert "ch" in project["regions"] and "ch" in project["processing_regions"] and "training" not in project
    unknown_sku = ai[("azure", "gpt-next-preview")]["processing_regions"]
    assert (
        unknown_sku["unknown"]["code"] == "not_supported"
        and "DataZoneFutureThing" in unknown_sku["unknown"]["reason"]
    )
    # training: what decided it, with the documented default's source and date
    assert ai[("aws", "aws:organizations::444455556666:effective-policy/AISERVICES_OPT_OUT_POLICY")][
        "training"
    ] == {
        "provider_may_train": True,
        "decided_by": "provider-default",
        "source": AI_OPT_OUT_POLICIES,
        "as_of": CHECKED_ON.isoformat(),
    }
    # a kind without processing or training (invocation logging) carries neither key
    log = ai[("aws", "model-invocation-logging/eu-west-1")]
    assert set(log) <= STORAGE_RESOURCE_KEYS
    # attested values are named; an attestation that expired before the check vouches for nothing
    attested = ai[("openai", "openai:organization/org-AcmeDemo7Q2x/settings")]
    assert "training.provider_may_train" in attested["attested"]
    assert attested["training"]["decided_by"] == "attestation"
    lapsed = ai[("openai", "openai:organization/org-AcmeLabs3k9P/settings")]
    assert (
        "attested" not in lapsed and lapsed["training"]["provider_may_train"]["unknown"]["code"] == "expired"
    )


def test_a_1_4_document_without_ai_fields_still_loads_and_renders(tmp_path: Path) -> None:
    data = json.loads(written(CheckOptions(inventory=DEMO, params={"zone": "eu"})))
    data["run"]["schema_version"] = "1.4"
    for finding in data["findings"]:
        for key in ("processing_regions", "training", "attested", "owner"):
            finding["resource"].pop(key, None)
    document = check_document(data, "old.json")
    assert all(f.resource.processing_regions is None and not f.resource.attested for f in document.findings)
    for fmt in RENDERERS:
        render_to_file(fmt, ReportInput(document=document), tmp_path / f"report.{fmt}")
    out = io.BytesIO()
    write_document(document, out)
    assert json.loads(out.getvalue()) == data
