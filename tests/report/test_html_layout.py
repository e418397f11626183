"""The HTML report's layout in real headless Chromium: desktop and phone widths without sideways scroll,
badges that never break, the fix-first list present and in order, and Chromium's print to PDF with a
running header and footer on every page and no heading left at the bottom of a page."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from auditor.findings import Severity
from auditor.permissions import permission_table
from auditor.report.base import ReportInput, render_to_file

from .conftest import DEMO_INVENTORY, typed
from .pdf_pages import heading_lines, page_lines, page_texts, squashed, stranded_headings

WIDTHS = (1400, 390)
SEVERITY_RANK = {s.value: i for i, s in enumerate(Severity)}


@pytest.fixture
def demo_html(demo_doc: dict[str, Any], tmp_path: Path) -> Path:
    html = tmp_path / "report.html"
    render_to_file("html", ReportInput(document=typed(demo_doc), inventory_path=DEMO_INVENTORY), html)
    return html


def open_page(browser: Any, html: Path, width: int) -> tuple[Any, list[str]]:
    """The report at `width` CSS pixels, and the console errors and page errors it logged."""
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(html.as_uri(), wait_until="load")
    return page, errors


# Elements that must stay on one line: severity and status badges, verdicts, region names, dates and
# "expired". A wrapped inline element has several boxes; a wrapped inline-block is taller than a line.
UNBROKEN = """() => [...document.querySelectorAll('.sev, .st, .verdict, .rg, .nowrap, .badge')]
    .filter(e => e.offsetParent !== null)
    .filter(e => e.getClientRects().length > 1
        || e.getBoundingClientRect().height > 1.9 * parseFloat(getComputedStyle(e).fontSize))
    .map(e => e.textContent)"""


@pytest.mark.parametrize("width", WIDTHS)
def test_no_sideways_scroll_no_errors_and_nothing_breaks_mid_word(
    browser: Any, demo_html: Path, tmp_path: Path, width: int
) -> None:
    page, errors = open_page(browser, demo_html, width)
    try:
        assert errors == []
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll <= inner, f"{scroll - inner} px of sideways scroll at {width} px"
        assert page.evaluate(UNBROKEN) == []
        # every verdict of the control matrix is on the screen (at 390 px the matrix is stacked rows)
        right = page.evaluate(
            "Math.max(...[...document.querySelectorAll('.verdict')].map(e => e.getBoundingClientRect().right))"
        )
        assert 0 < right <= inner
        assert page.locator("#controls .verdict").count() > 30
        if width < 700:
            assert (
                page.locator("table.matrix > thead").first.evaluate("e => getComputedStyle(e).display")
                == "none"
            )
            assert (
                page.locator("table.findings td").first.evaluate("e => getComputedStyle(e).display")
                == "block"
            )
        shot = tmp_path / f"report-{width}.png"
        page.screenshot(path=str(shot), full_page=False)
        assert shot.stat().st_size > 10_000
    finally:
        page.context.close()


def test_the_old_layout_would_scroll_sideways_at_390(browser: Any, tmp_path: Path) -> None:
    """The overflow check sees a too-wide table: it is not vacuous."""
    html = tmp_path / "wide.html"
    html.write_text("<!DOCTYPE html><table><tr><td>" + "x" * 300 + "</td></tr></table>")
    page, _ = open_page(browser, html, 390)
    try:
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll > inner
    finally:
        page.context.close()


def test_fix_first_is_at_the_top_and_ordered(browser: Any, demo_html: Path, demo_doc: dict[str, Any]) -> None:
    page, errors = open_page(browser, demo_html, 1400)
    try:
        assert errors == []
        # right after the status banner: the first section of the page
        first = page.evaluate("document.querySelector('main > section').id")
        assert first == "fix-first"
        assert page.evaluate("document.querySelector('main').firstElementChild.className").startswith(
            "overall"
        )
        rows = page.locator("#fix-first table.fix:not(.undecided) > tbody > tr")
        shown = [
            (
                row.locator(".sev").inner_text(),
                row.locator(".rid").inner_text(),
                int(row.locator("td").nth(4).locator("b").inner_text()),
                row.locator("td").nth(3).inner_text(),
            )
            for row in rows.all()
        ]
        # one fix per policy and cloud with failures, each clearing exactly its failing resources
        failing = Counter(
            (f["severity"], f["policy_id"], f["resource"]["provider"])
            for f in demo_doc["findings"]
            if f["status"] == "fail"
        )
        assert sum(n for *_, n, _ in shown) == sum(failing.values())
        assert len(shown) == len(failing)
        keys = [(SEVERITY_RANK[sev], -cleared) for sev, _, cleared, _ in shown]
        assert keys == sorted(keys)  # most severe first, then the fix that clears most
        top = min(failing.items(), key=lambda item: (SEVERITY_RANK[item[0][0]], -item[1]))
        assert (shown[0][0], shown[0][2]) == (top[0][0], top[1])
        # each fix carries its cloud's remediation, from the policy as the run recorded it
        policies = {p["id"]: p for p in demo_doc["run"]["policies"]}
        first_row = rows.first.inner_text()
        policy_id = shown[0][1]
        provider = next(k[2] for k in failing if k[1] == policy_id and failing[k] == shown[0][2])
        assert " ".join(
            policies[policy_id]["remediation"][provider].replace("`", "").split()[:4]
        ) in " ".join(first_row.split())
        # undecided findings come with what to do: the permission of the failed call, from the call table
        undecided = page.locator("#fix-first table.undecided").inner_text()
        tagging = next(c for c in permission_table("aws").calls if c.operation == "s3:GetBucketTagging")
        assert f"grant {', '.join(tagging.permissions)} to the identity that scans AWS" in undecided
        assert "renew the attestation" in undecided
    finally:
        page.context.close()


def test_chromium_print_has_a_running_header_and_no_stranded_heading(
    browser: Any, demo_html: Path, tmp_path: Path, demo_doc: dict[str, Any]
) -> None:
    page, errors = open_page(browser, demo_html, 1400)
    try:
        headings = page.evaluate(
            "[...document.querySelectorAll('h1, h2, h3, h4')].map(h => h.innerText.trim())"
        )
        pdf = tmp_path / "printed.pdf"
        page.pdf(path=str(pdf), format="A4")
        assert errors == []
    finally:
        page.context.close()
    texts = page_texts(pdf)
    run_id = demo_doc["run"]["id"]
    assert len(texts) > 10
    for number, text in enumerate(texts, 1):
        assert f"Run {run_id}" in text, f"page {number} has no run id"
        assert f"page {number} of {len(texts)}" in text
        assert "zone eu" in text
    pages = page_lines(pdf)
    assert heading_lines(pages, headings) > 30  # the check below sees the headings it judges
    assert stranded_headings(pages, headings) == []
    # print lists every passing resource: nothing is left to "open the HTML file"
    body = squashed("\n".join(texts))
    assert "open the HTML file" not in body
    passing = {f["resource"]["name"] for f in demo_doc["findings"] if f["status"] == "pass"}
    assert [name for name in sorted(passing) if name not in body] == []


def test_the_stranded_heading_check_sees_one(browser: Any, tmp_path: Path) -> None:
    """A heading pushed to the bottom of a page, its content on the next: the check finds it."""
    html = tmp_path / "stranded.html"
    html.write_text(
        "<!DOCTYPE html><style>@page { size: A4; margin: 16mm 12mm 14mm; }</style>"
        '<div style="height: 245mm"></div><h3 style="font-size: 16px">Stranded heading</h3>'
        '<div style="height: 200mm; break-inside: avoid; border: 1px solid">content</div>'
    )
    page, _ = open_page(browser, html, 1400)
    try:
        pdf = tmp_path / "stranded.pdf"
        page.pdf(path=str(pdf), format="A4")
    finally:
        page.context.close()
    assert stranded_headings(page_lines(pdf), ["Stranded heading"]) == [(1, "Stranded heading")]
