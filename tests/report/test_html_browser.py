"""The HTML report in real headless Chromium: it renders cleanly, shows its matrix and charts, prints,
and a hostile inventory (markup in names and tags) executes nothing.

The reports and screenshots go to a temporary directory, or to $AUDITOR_TEST_ARTIFACTS to keep them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from auditor.document import load_document
from auditor.report.base import ReportInput, render_to_file

from .conftest import DEMO_INVENTORY, HOSTILE_NAME, IMG_BREAKOUT, SCRIPT_TAG, typed

ARTIFACTS_ENV = "AUDITOR_TEST_ARTIFACTS"


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where the rendered reports and screenshots go: $AUDITOR_TEST_ARTIFACTS if set, else tmp_path."""
    chosen = os.environ.get(ARTIFACTS_ENV)
    if not chosen:
        return tmp_path
    directory = Path(chosen)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def open_report(browser: Any, html: Path, **context: Any) -> tuple[Any, list[str], list[str]]:
    """The page, the console errors / page errors it logged, and the dialogs it opened."""
    page = browser.new_context(viewport={"width": 1300, "height": 900}, **context).new_page()
    errors: list[str] = []
    dialogs: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error":
            errors.append(message.text)

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    def on_request(request: Any) -> None:
        if request.url != html.as_uri():
            errors.append(f"fetch {request.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", on_dialog)
    page.on("request", on_request)
    page.goto(html.as_uri(), wait_until="load")
    return page, errors, dialogs


def test_demo_report_in_chromium(browser: Any, demo_doc: dict[str, Any], artifacts: Path) -> None:
    html = artifacts / "demo-report.html"
    render_to_file("html", ReportInput(document=typed(demo_doc), inventory_path=DEMO_INVENTORY), html)
    page, errors, dialogs = open_report(browser, html, java_script_enabled=False)
    try:
        assert errors == [] and dialogs == []
        assert "NOT COMPLIANT" in page.locator(".overall").inner_text()
        # the control matrix: one row per catalogued control, each with a verdict
        for framework in ("gdpr", "soc2", "iso27001"):
            rows = page.locator(f"#fw-{framework} table.matrix tbody tr")
            assert rows.count() >= 12
            assert page.locator(f"#fw-{framework} .verdict").count() == rows.count()
        assert page.locator("#fw-gdpr tr.v-not-effective").count() > 0
        # charts: status per family and the residency map, drawn (non-zero size) with labelled bars
        families = {p["family"] for p in demo_doc["run"]["policies"]}
        assert page.locator("#family-chart g.row").count() == len(families)
        assert page.locator("#family-chart").bounding_box()["height"] > 50
        for provider in ("aws", "gcp", "azure"):
            chart = page.locator(f"#residency-{provider}")
            assert chart.locator("rect.z-in").count() > 0 and chart.locator("rect.z-out").count() > 0
        assert page.locator("#residency-aws text.lbl", has_text="us-east-1").count() == 1
        # AI services: one row per AI resource (the archived project from the inventory too), at rest and
        # processing side by side, '*' drawn as "any region", attested training marked
        ai_ids = {
            f["resource"]["id"] for f in demo_doc["findings"] if f["resource"]["kind"].startswith("ai-")
        }
        assert page.locator("#ai-residency tbody tr").count() == len(ai_ids) + 1
        assert page.locator("#ai-residency td.place-processing", has_text="any region").count() >= 2
        assert page.locator("#ai-residency .badge.att").first.is_visible()
        assert page.locator("#residency-openai text.lbl", has_text="any region").count() == 1
        # evidence and waivers of a policy
        policy = page.locator('[id="policy-residency.key-in-zone"]')
        assert policy.locator("tr.r-waived").count() == 1
        assert "security-architecture@acme.example" in policy.inner_text()
        assert page.locator("table.findings .ev").count() > 50
        page.screenshot(path=str(artifacts / "demo-report.png"), full_page=True)
        # print: navigation hidden, sections on their own pages
        page.emulate_media(media="print")
        assert page.locator("nav").is_hidden()
        assert page.locator("#controls").evaluate("e => getComputedStyle(e).breakBefore") == "page"
    finally:
        page.context.close()


def test_hostile_inventory_executes_nothing(
    browser: Any, hostile_paths: tuple[Path, Path], artifacts: Path
) -> None:
    inventory, findings = hostile_paths
    html = artifacts / "hostile-report.html"
    render_to_file("html", ReportInput(document=load_document(findings), inventory_path=inventory), html)
    source = html.read_text()
    assert "<script" not in source.lower() and "<img" not in source and "<svg onload" not in source

    page, errors, dialogs = open_report(browser, html)
    try:
        page.wait_for_timeout(300)  # give an injected handler the chance to fire
        assert dialogs == []
        assert errors == []  # a Content-Security-Policy violation would be logged here
        injected = page.evaluate(
            """() => ({
                scripts: document.scripts.length,
                imgs: document.images.length,
                handlers: [...document.querySelectorAll('*')].filter(
                    e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
                bold: [...document.querySelectorAll('b')].filter(b => b.textContent === 'k').length,
            })"""
        )
        assert injected == {"scripts": 0, "imgs": 0, "handlers": 0, "bold": 0}
        # the values are shown, as text
        body = page.locator("body").inner_text()
        assert SCRIPT_TAG in body and IMG_BREAKOUT.strip('"') in body and HOSTILE_NAME in body
        page.screenshot(path=str(artifacts / "hostile-report.png"))
    finally:
        page.context.close()
