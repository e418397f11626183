"""Fixtures for the report tests: the demo estate's findings, and a hostile estate's."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.document import FindingsDocument, check_document, load_document

REPO = Path(__file__).resolve().parents[2]
DEMO_INVENTORY = REPO / "fixtures" / "demo-estate.jsonl"
DEMO_WAIVERS = REPO / "fixtures" / "demo-waivers.yaml"

SCRIPT_TAG = "<script>alert(1)</script>"
IMG_BREAKOUT = '"><img src=x onerror=alert(1)>'
HOSTILE_NAME = "evil<svg onload=alert(1)>bucket"
HOSTILE_KEY = "<b onmouseover=alert(1)>k"


def run_check(inventory: Path, output: Path, *extra: str) -> None:
    """`auditor check ... --format json -o output`; exit 1 (violations) or 3 (incomplete) are expected."""
    result = CliRunner().invoke(
        cli,
        [
            "check",
            "--inventory",
            str(inventory),
            "--param",
            "zone=eu",
            "--format",
            "json",
            "-o",
            str(output),
            *extra,
        ],
    )
    assert result.exit_code in (0, 1, 3), result.output
    assert output.is_file()


@pytest.fixture(scope="session")
def demo_findings_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo estate's findings JSON (with the demo waivers)."""
    out = tmp_path_factory.mktemp("demo") / "findings.json"
    run_check(DEMO_INVENTORY, out, "--waivers", str(DEMO_WAIVERS), "--today", "2026-11-24")
    return out


@pytest.fixture
def demo_doc(demo_findings_path: Path) -> dict[str, Any]:
    """A fresh, checked copy of the demo findings document, as its JSON object (tests edit it;
    `typed` makes the document renderers read)."""
    load_document(demo_findings_path)
    data: dict[str, Any] = orjson.loads(demo_findings_path.read_bytes())
    return data


def typed(document: dict[str, Any]) -> FindingsDocument:
    """A findings document's JSON object as the typed document renderers read (checked)."""
    return check_document(copy.deepcopy(document), "test document")


def hostile_record() -> dict[str, Any]:
    """A demo S3 bucket renamed and tagged with markup, its evidence carrying the same values."""
    first = orjson.loads(DEMO_INVENTORY.read_bytes().splitlines()[0])
    record: dict[str, Any] = copy.deepcopy(first)
    record["name"] = HOSTILE_NAME
    record["id"] = f"arn:aws:s3:::{HOSTILE_NAME}"
    record["tags"] = {
        "ai-training": SCRIPT_TAG,
        "owner": IMG_BREAKOUT,
        "data-class": "restricted",
        HOSTILE_KEY: "bell\x07char",
    }
    for evidence in record["evidence"]:
        if evidence.get("request"):
            evidence["request"] = {"Bucket": HOSTILE_NAME}
        if evidence["call"] == "s3:GetBucketTagging":
            evidence["response"] = {"TagSet": [{"Key": k, "Value": v} for k, v in record["tags"].items()]}
    return record


@pytest.fixture(scope="session")
def hostile_paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(inventory, findings) of a one-bucket estate whose name and tags are markup."""
    base = tmp_path_factory.mktemp("hostile")
    inventory = base / "hostile.jsonl"
    inventory.write_bytes(orjson.dumps(hostile_record()) + b"\n")
    findings = base / "findings.json"
    run_check(inventory, findings)
    return inventory, findings


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian's package, driven by Playwright. Missing is a failure, not a skip."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.fail(
            "Chromium is missing: install Debian's package (apt-get install -y chromium)", pytrace=False
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "playwright is missing: pip install playwright (never `playwright install`)", pytrace=False
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()
