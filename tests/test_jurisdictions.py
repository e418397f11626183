"""The laws of the ten residency zones as framework catalogs: every file loads through the framework
loader, every clause names its primary source, each of the ten zones has its law, the shipped
policies evidence each law, and a report shows the law of the run's zone by default."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from auditor.frameworks import Framework, available_frameworks, default_frameworks, load_framework
from auditor.policy.loader import load_policies, load_zones

from .conftest import DEMO_INVENTORY, SHIPPED_POLICIES

RunCli = Callable[..., Result]
TEN_ZONES = ["eu", "uk", "us", "ca", "jp", "kr", "sg", "in", "au", "ae"]
ALWAYS = ["gdpr", "soc2", "iso27001"]
LAWS = [f for f in available_frameworks() if f.zones]  # the frameworks that are a zone's law


def matrix(page: str, framework: str) -> dict[str, str]:
    """Control id -> verdict of one framework's control matrix in the HTML report."""
    section = page.split(f'id="fw-{framework}"', 1)[1].split("</article>", 1)[0]
    return {
        cid: verdict.replace("-", " ")
        for verdict, cid in re.findall(r'<tr class="v-([a-z-]+)">\s*<td><b>([^<]+)</b>', section)
    }


def test_every_framework_file_loads_through_the_loader() -> None:
    files = sorted((SHIPPED_POLICIES / "frameworks").glob("*.yaml"))
    assert len(files) >= 13 + len(ALWAYS)
    for file in files:
        framework = load_framework(file.stem)
        assert framework.name == file.stem and framework.controls
        assert len({c.id for c in framework.controls}) == len(framework.controls)


@pytest.mark.parametrize("law", LAWS, ids=lambda f: f.name)
def test_every_clause_of_a_law_names_its_primary_source(law: Framework) -> None:
    assert law.url and law.url.startswith("https://")
    for control in law.controls:
        assert control.source and re.fullmatch(r"https://\S+", control.source), control.id
        assert control.url == control.source  # the link a report gives is the source
        assert control.description and control.title
        # an unverified clause says what could not be checked (its own note or the framework's)
        assert control.verified is not None
        assert control.verified or control.note or law.note, control.id


def test_each_of_the_ten_zones_has_its_law() -> None:
    zones = set(load_zones([]).zones)  # the shipped zone catalog
    assert set(TEN_ZONES) <= zones
    for law in LAWS:
        assert set(law.zones) <= zones, (law.name, law.zones)  # only zones the catalog knows
    for zone in TEN_ZONES:
        shown = [f for f in default_frameworks((), zone) if zone in f.zones]
        assert shown, f"zone {zone}: no law shown by default"
    # the laws that bind only some entities are there, on request
    assert {f.name for f in LAWS if f.shown == "on-request"} == {"dora", "nis2", "eu-data-act", "difc-dpl"}


def test_the_shipped_policies_evidence_every_law() -> None:
    policies = {entry.policy.id: entry.policy for entry in load_policies([SHIPPED_POLICIES])}
    for law in LAWS:
        mapped = {cid for p in policies.values() for cid in p.controls.get(law.name, [])}
        assert mapped, f"{law.name}: no shipped policy evidences it"
        assert mapped <= {c.id for c in law.controls}
    # each family maps to the laws shown by default, except where the law has no such clause
    gaps = {
        "residency.data-in-zone": {"ccpa"},  # no US rule restricts storage abroad
        "encryption.at-rest-aes256": {"quebec-law25"},  # s. 17 only (communication outside Québec)
        "transport.tls-minimum": {"quebec-law25"},
        "training.ai-training-consent": {"quebec-law25"},
    }
    for policy_id, missing in gaps.items():
        for law in LAWS:
            if law.shown == "in-zone" and law.name not in missing:
                assert policies[policy_id].controls.get(law.name), (policy_id, law.name)


def check_and_report(run_cli: RunCli, tmp_path: Path, zone: str, *report_args: str) -> tuple[str, str]:
    """`auditor check` of the demo estate for `zone`, then its HTML and Markdown reports."""
    findings = tmp_path / f"findings-{zone}.json"
    result = run_cli(
        "check", "--inventory", DEMO_INVENTORY, "--param", f"zone={zone}", "--format", "json", "-o", findings
    )
    assert result.exit_code in (0, 1, 3), result.output
    pages = []
    for fmt, suffix in (("html", "html"), ("markdown", "md")):
        out = tmp_path / f"report-{zone}.{suffix}"
        result = run_cli("report", "--findings", findings, "--format", fmt, "-o", out, *report_args)
        assert result.exit_code == 0, result.output
        pages.append(out.read_text())
    return pages[0], pages[1]


def test_the_report_for_zone_jp_shows_appi(run_cli: RunCli, tmp_path: Path) -> None:
    page, markdown = check_and_report(run_cli, tmp_path, "jp")
    assert [name for name in re.findall(r'id="fw-([a-z0-9-]+)"', page)] == [*ALWAYS, "appi"]
    assert "APPI: Act on the Protection of Personal Information (Japan)" in page
    verdicts = matrix(page, "appi")
    assert list(verdicts) == ["Art.18", "Art.23", "Art.28"]
    # the demo estate keeps its data in the EU and the US: provision abroad is not effective in jp
    assert verdicts["Art.28"] == "not effective"
    assert re.search(
        r"^\| APPI \| Art\.28 Restriction on provision to a third party .*\| not effective \|", markdown, re.M
    )
    section = page.split('id="fw-appi"', 1)[1].split("</article>", 1)[0]
    assert "residency.data-in-zone" in section and "encryption.at-rest-aes256" in section


def test_the_report_for_zone_eu_shows_gdpr_soc2_iso_but_not_appi(run_cli: RunCli, tmp_path: Path) -> None:
    page, markdown = check_and_report(run_cli, tmp_path, "eu")
    assert re.findall(r'id="fw-([a-z0-9-]+)"', page) == ALWAYS
    assert "APPI" not in markdown and 'id="fw-appi"' not in page
    # --framework still selects explicitly, a law of another zone or one shown on request
    page, _ = check_and_report(run_cli, tmp_path, "eu", "--framework", "dora", "--framework", "appi")
    assert re.findall(r'id="fw-([a-z0-9-]+)"', page) == ["dora", "appi"]
    assert matrix(page, "dora")["Art.30(2)(b)"] == "not effective"


def test_the_docs_list_every_law() -> None:
    section = (SHIPPED_POLICIES.parent / "docs" / "reports.md").read_text().split("## Frameworks", 1)[1]
    for law in LAWS:
        row = next((line for line in section.splitlines() if f"| `{law.name}` |" in line), None)
        assert row is not None, f"docs/reports.md#frameworks does not list {law.name}"
        assert ("on request" in row) == (law.shown == "on-request"), law.name
