"""Hostile text in every report: policy files with script and `javascript:` links, cloud values with
bidi overrides and terminal escapes. Nothing may become a link, markup or a live control character."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.document import GapRecord, load_document, plain
from auditor.errors import visible
from auditor.report.base import ReportInput, render_to_file
from auditor.report.html import finalize_visible
from auditor.report.markdown import md, md_block
from auditor.report.sarif import _SUSPECT, _suspect, http_url, visible_json

from .conftest import REPO, hostile_record, run_check

RLO = "\u202e"
ESC = "\x1b"
# what must never reach an output raw: C0 (not tab/newline/CR... CR included), DEL, C1, bidi marks
LIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
TERMINAL_TRICK = f"{ESC}[2J{ESC}]8;;https://e.vil{ESC}\\click{ESC}]8;;{ESC}\\\x07"
BIDI_NAME = f"invoice{RLO}fdp.exe"
JS_LINK = "javascript:alert(document.domain)"

POLICY = f"""\
policies:
  - id: custom.hostile
    title: "Owner <img src=x onerror=alert(1)> {RLO}tagged"
    description: |
      <script>alert(1)</script> [click me]({JS_LINK})
      ![pixel](https://e.vil/p.png) <a href="{JS_LINK}">x</a> @everyone
      # not a heading
    expected: "an owner tag, not \\e[31mred\\e[0m"
    severity: high
    remediation:
      aws: "<img src=x onerror=alert(2)> [fix]({JS_LINK})"
    references:
      - "{JS_LINK}"
      - "data:text/html,<script>alert(3)</script>"
      - "https://example.com/ok"
      - "https://example.com/a b<c>"
    condition:
      attribute: tags.owner
      op: equals
      value: nobody-has-this-owner
"""


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> ReportInput:
    """Findings of one bucket with a bidi name and escape-laden tags, against a hostile policy file."""
    base = tmp_path_factory.mktemp("hostile-text")
    policies = base / "policies"
    policies.mkdir()
    (policies / "hostile.yaml").write_text(POLICY)
    record: dict[str, Any] = hostile_record()
    record["name"] = BIDI_NAME
    record["id"] = f"arn:aws:s3:::{BIDI_NAME}"
    record["tags"] = {"owner": TERMINAL_TRICK, f"team{RLO}": f"a{ESC}[31mb\u2066c\u200fd\x85e"}
    inventory = base / "inv.jsonl"
    inventory.write_bytes(orjson.dumps(record) + b"\n")
    findings = base / "findings.json"
    run_check(inventory, findings, "--policies", str(REPO / "policies"), "--policies", str(policies))
    return ReportInput(document=load_document(findings), inventory_path=inventory)


def _render(name: str, report: ReportInput, tmp_path: Path) -> str:
    out = tmp_path / f"report.{name}"
    render_to_file(name, report, out)
    return out.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["html", "sarif", "junit", "markdown", "csv"])
def test_no_live_control_or_bidi_character_in_any_format(
    name: str, hostile_report: ReportInput, tmp_path: Path
) -> None:
    text = _render(name, hostile_report, tmp_path)
    assert LIVE.search(text.replace("\r\n", "\n")) is None, LIVE.findall(text)
    # the values are shown, visibly
    assert "<U+202E>" in text or "&lt;U+202E&gt;" in text or "\\<U+202E\\>" in text


def test_the_hostile_values_reached_the_findings(hostile_report: ReportInput) -> None:
    """Not vacuous: the document that is rendered does carry the raw characters."""
    raw = json.dumps(plain(hostile_report.document), ensure_ascii=False)
    assert RLO in raw and "\\u001b" in raw and "custom.hostile" in raw  # json escapes ESC


def test_sarif_links_only_http_and_escapes_policy_markdown(
    hostile_report: ReportInput, tmp_path: Path
) -> None:
    log = json.loads(_render("sarif", hostile_report, tmp_path))
    rule = next(r for r in log["runs"][0]["tool"]["driver"]["rules"] if r["id"] == "custom.hostile")
    assert rule["helpUri"] == "https://example.com/ok"
    markdown = rule["help"]["markdown"]
    assert "javascript:" not in markdown.replace("javascript:alert", "")  # only as escaped text
    assert re.search(r"(?<!\\)\]\(", markdown) is None, markdown  # no live link syntax
    assert re.search(r"(?<!\\)<(?!https://example\.com/ok>)", markdown) is None, markdown
    assert "\\<script\\>" in markdown and "\\[click me\\]" in markdown and "\\!\\[pixel\\]" in markdown
    assert "\\@everyone" in markdown and "\\# not a heading" in markdown
    assert "- <https://example.com/ok>" in markdown
    assert "<https://example.com/a b" not in markdown  # a URL with a space or <> does not link
    assert rule["help"]["text"].count("<U+001B>") == 2  # the expected text's escapes, shown


def test_html_links_only_http(hostile_report: ReportInput, tmp_path: Path) -> None:
    html = _render("html", hostile_report, tmp_path)
    assert 'href="javascript' not in html.lower() and 'href="data:text' not in html.lower()
    assert '<a href="https://example.com/ok">' in html
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "invoice&lt;U+202E&gt;fdp.exe" in html


def test_csv_and_junit_show_escapes_visibly(hostile_report: ReportInput, tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(_render("csv", hostile_report, tmp_path))))
    assert any(r["resource_name"] == "invoice<U+202E>fdp.exe" for r in rows)
    root = ET.fromstring(_render("junit", hostile_report, tmp_path).encode())
    names = [case.get("name", "") for case in root.iter("testcase")]
    assert any(name.endswith("invoice<U+202E>fdp.exe") for name in names)


def test_terminal_table_shows_escapes_and_interprets_no_markup(tmp_path: Path) -> None:
    record = hostile_record()
    record["name"] = f"[bold red]{BIDI_NAME}[/] [link=https://e.vil]x[/link] :skull: {TERMINAL_TRICK}"
    record["id"] = "arn:aws:s3:::hostile-table"
    inventory = tmp_path / "inv.jsonl"
    inventory.write_bytes(orjson.dumps(record) + b"\n")
    result = CliRunner().invoke(cli, ["check", "--inventory", str(inventory), "--format", "table"])
    assert result.exit_code in (1, 3), result.output
    out = result.stdout
    assert LIVE.search(out) is None, LIVE.findall(out)
    flat = "".join(out.split())  # the table folds long cells over lines
    assert "[boldred]invoice<U+202E>fdp.exe[/]" in flat
    assert "[link=https://e.vil]x[/link]" in flat and ":skull:" in flat
    assert "<U+001B>[2J<U+001B>]8;;https://e.vil" in flat


def test_terminal_table_in_colour_still_escapes(tmp_path: Path) -> None:
    from auditor.report.table import render_table

    run = load_document(_findings_of(tmp_path)).run
    text = render_table([], run, color=True)
    assert "resources" in text
    # a coverage gap's reason is cloud text too
    run.coverage.gaps = [
        GapRecord(
            provider="aws",
            account="1",
            scope="s3",
            reason=f"denied {ESC}[8m hidden {RLO}",
            code="x",
        )
    ]
    text = render_table([], run, color=True)
    line = next(line for line in text.splitlines() if "coverage gap" in line)
    assert "<U+001B>[8m hidden <U+202E>" in line and RLO not in line


def _findings_of(tmp_path: Path) -> Path:
    inventory = tmp_path / "one.jsonl"
    inventory.write_bytes(orjson.dumps(hostile_record()) + b"\n")
    findings = tmp_path / "one.json"
    run_check(inventory, findings)
    return findings


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://example.com/x?y=1#z", True),
        ("HTTP://EXAMPLE.COM", True),
        ("javascript:alert(1)", False),
        ("JaVaScRiPt:alert(1)", False),
        ("data:text/html,x", False),
        ("vbscript:x", False),
        ("//e.vil/x", False),
        ("https://e.vil/\u202egnp.exe", False),
        ("https://e.vil/a b", False),
        ('https://e.vil/"onmouseover=x', False),
        ("https://e.vil/<script>", False),
        (" https://e.vil", False),
    ],
)
def test_http_url(url: str, allowed: bool) -> None:
    assert (http_url(url) == url) is allowed


def test_escaping_helpers() -> None:
    assert visible(f"a{RLO}b{ESC}c\td\ne\x9bf\u2069") == "a<U+202E>b<U+001B>c\td\ne<U+009B>f<U+2069>"
    assert md(f"x{RLO}y") == "x\\<U+202E\\>y"
    assert md_block("- item\n    code\n=== \n<b>") == "\\- item\ncode\n\\===\n\\<b\\>"
    assert finalize_visible(f"a{ESC}") == "a<U+001B>" and finalize_visible(3) == "3"


_FILLER = b'{"message":"encryption.algorithm = \\"AES256\\", expected one of [\\"AES256\\"]",' * 40


@pytest.mark.parametrize(
    "marked",
    [
        b"\\u001b",  # escaped C0
        b"\\u001F",
        b"\\r",
        b"\\b",
        b"\\f",
        b"\\\\r",  # a literal backslash before r: harmless, but the pattern takes it (a walk)
        b"\x7f",  # DEL
        b"\xc2\x85",  # C1
        b"\xd8\x9c",  # Arabic letter mark
        b"\xe2\x80\x8e",  # left-to-right mark
        b"\xe2\x80\xae",  # right-to-left override
        b"\xe2\x81\xa6",  # left-to-right isolate
        b"\xe2\x80\x93",  # en dash: a lead byte, nothing hidden
        b"\xc2\xa0",  # no-break space
        b"\xd8\xa7",  # Arabic alef
        b"\\u00e9",  # an escape that is no control character
        b"\\n",  # orjson's newline escape: visible
        b"",
    ],
)
@pytest.mark.parametrize("where", ["alone", "start", "end", "beside a harmless lead byte"])
def test_the_fast_suspicion_is_the_pattern_s(marked: bytes, where: str) -> None:
    """`visible_json` walks a value only when its JSON may hide a character: the quick check
    (`_suspect`) answers exactly as the whole pattern."""
    data = {
        "alone": marked,
        "start": marked + _FILLER,
        "end": _FILLER + marked,
        "beside a harmless lead byte": _FILLER + "\u2013 and \u00a0".encode() + _FILLER + marked,
    }[where]
    assert _suspect(data) is (_SUSPECT.search(data) is not None)


def test_visible_json_writes_no_live_control_or_bidi_character() -> None:
    value = {"name": "acme\u202eexe.pdf", "tags": ["a\x1b[31mred", "\u2013 ok"], "n": 1}
    data = visible_json(value)
    assert "\u202e".encode() not in data and b"\\u001b" not in data
    assert orjson.loads(data)["tags"][1] == "\u2013 ok"
