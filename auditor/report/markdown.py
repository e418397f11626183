"""A short Markdown summary for PR comments and CI job summaries: counts, what to fix first (and per
team, by the owner tag or `--group-by-tag`), what to do about undecided findings, failing controls, top
failures.

Cloud values are escaped (every ASCII punctuation mark that Markdown or HTML could act on, `@` included
so a bucket name cannot mention a user; control and bidi characters shown as `<U+XXXX>`) and cut short;
the summary stays well under comment limits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO, Any

from auditor.document import FindingRecord
from auditor.errors import visible
from auditor.findings import Status
from auditor.report.base import Renderer, ReportInput
from auditor.report.view import (
    FIX_NAMES_SHOWN,
    PROVIDER_LABELS,
    SEVERITIES,
    STATUSES,
    AiCollector,
    ChangesCollector,
    FixItem,
    FixPlan,
    Smallest,
    finding_places,
    finding_sort_key,
    fix_plan,
    framework_views,
    place_text,
    policy_details,
    report_frameworks,
    report_grouping,
    summarise,
    training_words,
)

TOP_FAILURES = 15
TOP_FIXES = 10
TEAMS_LISTED = 15
_SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}
_ACTIVE = re.compile(r"([\\`*_{}\[\]<>#!|~@&$])")


def _inert(text: str) -> str:
    text = _ACTIVE.sub(r"\\\1", visible(text))
    # no autolinks from cloud values: GFM links bare `scheme://` and `www.` text
    return text.replace("://", ":\\/\\/").replace("www.", "www\\.")


def md(text: Any, limit: int = 160) -> str:
    """`text` as inert Markdown on one line, cut at `limit` characters."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _inert(flat)


def md_block(text: Any) -> str:
    """`text` (several lines, e.g. a policy description) as inert Markdown, its lines kept.

    Each line is escaped like `md` and loses its leading indentation (which would start a code block);
    nothing in it can become a link, an image, HTML, a heading, a list item or a mention.
    """
    lines = (_inert(line.strip()) for line in str(text).splitlines())
    return "\n".join("\\" + line if line[:1] in ("-", "+", "=") else line for line in lines)


def _owners(item: FixItem) -> str:
    return ", ".join(
        f"{md(owner, 40)} ({n})" if len(item.owners) > 1 else md(owner, 40) for owner, n in item.owners
    )


def _targets(item: FixItem) -> str:
    names = ", ".join(md(t.name, 40) for t in item.shown[:3])
    more = item.cleared - min(3, len(item.shown))
    return f"{item.cleared}: {names}" + (f", {more} more" if more else "")


def fix_first(plan: FixPlan) -> list[str]:
    """The fix-first and undecided tables, and one line per team."""
    out: list[str] = []
    owned = plan.grouping is not None
    if plan.fixes:
        shown = plan.fixes[:TOP_FIXES]
        out += [
            f"### Fix first ({len(shown)} of {len(plan.fixes)} fixes, {plan.failing} failing findings)",
            "",
            "Most severe first, then the fix that clears the most resources.",
            "",
            "| # | Severity | Policy | Cloud | Clears |" + (" Owner |" if owned else "") + " Remediation |",
            "|---:|---|---|---|---|" + ("---|" if owned else "") + "---|",
        ]
        for index, item in enumerate(shown, 1):
            remediation = md(item.remediation, 240) if item.remediation else "(none recorded for this cloud)"
            out.append(
                f"| {index} | {item.severity} | {md(item.policy_id)} | {item.label} | {_targets(item)} |"
                + (f" {_owners(item)} |" if owned else "")
                + f" {remediation} |"
            )
        out.append("")
    if plan.undecided:
        shown = plan.undecided[:TOP_FIXES]
        out += [
            f"### Undecided: what to do ({len(shown)} of {len(plan.undecided)})",
            "",
            "| Severity | Policy | Cloud | Why | Resources | What to do |",
            "|---|---|---|---|---|---|",
        ]
        for item in shown:
            why = f"{item.code_label}: {', '.join(item.attributes)}" if item.attributes else item.code_label
            out.append(
                f"| {item.severity} | {md(item.policy_id)} | {item.label} | {md(why, 80)} "
                f"| {_targets(item)} | {md(item.remediation, 240)} |"
            )
        out.append("")
    if plan.teams and plan.grouping is not None:
        out += [f"### By {md(plan.grouping.key)}", ""]
        for team in plan.teams[:TEAMS_LISTED]:
            first = team.fixes[0] if team.fixes else (team.undecided[0] if team.undecided else None)
            lead = f"; first: {md(first.policy_id)} on {first.label} ({first.cleared})" if first else ""
            out.append(
                f"- **{md(team.name, 60)}**: {team.failing} failing, {team.unresolved} undecided{lead}"
            )
        if len(plan.teams) > TEAMS_LISTED:
            out.append(f"- ... {len(plan.teams) - TEAMS_LISTED} more in the HTML report")
        out.append("")
    return out


def markdown_summary(report: ReportInput) -> str:
    """The Markdown text of the summary, from one pass over the findings (and, for the owner grouping,
    the start of another)."""
    run = report.run
    s = summarise(run)
    zone = run.parameters.get("zone")
    out = [f"## auditor: {s.overall.upper()}", ""]
    estate = ", ".join(f"{label} {n}" for _, label, n, _, _ in s.providers)
    out.append(
        f"Run {md(run.id)} started {md(s.started_at)}: {s.resources} resources ({estate})"
        + (f", residency zone **{md(zone)}**" if isinstance(zone, str) else "")
        + f". {md(s.overall_reason)}."
    )
    out += ["", "| pass | fail | error (undecided) | waived | findings |", "|---:|---:|---:|---:|---:|"]
    out.append("| " + " | ".join(str(s.by_status[k]) for k in STATUSES) + f" | {s.findings} |")
    out.append("")
    if s.gaps:
        out.append(f"**Coverage gaps ({len(s.gaps)})**: not scanned, so not covered by any verdict:")
        out += [
            f"- {md(g.provider)} {md(g.account)} {md(g.scope)}: {md(g.code)}: {md(g.reason)}" for g in s.gaps
        ]
        out.append("")
    if s.unknown_attributes:
        parts = [f"{md(path)} ({md(codes)})" for path, codes in s.unknown_attributes]
        out += [f"**Unreadable attributes**: {', '.join(parts)}", ""]
    expired = [w for w in s.waivers if w.expired]
    if expired:
        out += [
            f"**Expired waivers**: {', '.join(md(w.id) + ' (' + md(w.expires) + ')' for w in expired)}",
            "",
        ]

    details = policy_details(run)
    previous = report.previous
    collector = ChangesCollector(run, previous, limit=TOP_FAILURES) if previous is not None else None
    failures: Smallest[FindingRecord] = Smallest(TOP_FAILURES, finding_sort_key)
    ai = AiCollector(run.zone if run.zone is not None and run.zone.id == zone else None)

    def counted() -> Iterator[FindingRecord]:
        """Every finding, counted for the other sections on its way to the fix plan."""
        for finding in report.findings():
            if collector is not None:
                collector.add(finding)
            if finding.status is Status.FAIL:
                failures.add(finding)
            ai.add(finding)
            yield finding

    out += fix_first(fix_plan(counted(), details, report_grouping(report), keep=FIX_NAMES_SHOWN))
    failing = [
        (fw, c)
        for fw in framework_views(details, report_frameworks(report))
        for c in fw.controls
        if c.verdict == "not effective" or (c.verdict == "not assessed" and c.policies)
    ]
    if failing:
        out += [
            "### Controls not effective or not assessed",
            "",
            "| Framework | Control | Verdict | fail | error |",
            "|---|---|---|---:|---:|",
        ]
        for fw, c in failing:
            out.append(
                f"| {fw.label} | {md(c.id)} {md(c.title, 60)} | {c.verdict} "
                f"| {c.counts['fail']} | {c.counts['error']} |"
            )
        out.append("")

    if collector is not None:
        changes = collector.result()
        counts = changes.counts
        out += [
            "### Since the previous run",
            "",
            f"{counts['new_failures']} new failure(s), {counts['fixed']} fixed, "
            f"{counts['still_failing']} still failing, {counts['newly_unknown']} newly undecided, "
            f"{counts['not_assessed']} not assessed; {len(changes.new_gaps)} new coverage gap(s), "
            f"{len(changes.closed_gaps)} closed (previous run {md(changes.previous_id)}).",
            "",
        ]
        if counts["not_assessed"]:
            out += [
                f"**Not assessed ({counts['not_assessed']})**: failures of the previous run whose "
                "resources lie under a coverage gap of this run; not seen, so not counted as fixed.",
                "",
            ]
        for title, gaps in (
            ("New coverage gaps", changes.new_gaps),
            ("Closed coverage gaps", changes.closed_gaps),
        ):
            if gaps:
                out.append(f"**{title} ({len(gaps)})**:")
                out += [
                    f"- {md(g.provider)} {md(g.account)} {md(g.scope)}: {md(g.describe_reason())}"
                    for g in gaps
                ]
                out.append("")
        for change in changes.new_failures:
            out.append(
                f"- new: **{md(change.severity)}** {md(change.policy_id)} {md(change.name)} "
                f"({md(change.provider)} {md(change.account)})"
            )
        for change in changes.not_assessed:
            out.append(
                f"- not assessed: **{md(change.severity)}** {md(change.policy_id)} {md(change.name)} "
                f"({md(change.provider)} {md(change.account)})"
            )
        if counts["new_failures"] or counts["not_assessed"]:
            out.append("")

    ai_rows = ai.result()
    if ai_rows.total:
        shown_ai = ai_rows.rows[:TOP_FAILURES]
        out += [
            f"### AI services ({len(shown_ai)} of {ai_rows.total}, worst first)",
            "",
            "At rest and processing side by side (*any region*: wherever the provider operates); training: "
            "observed from the API, a documented provider default, or attested by a person.",
            "",
            "| Resource | Status | At rest | Processing | Training |",
            "|---|---|---|---|---|",
        ]
        where = zone if isinstance(zone, str) else None
        for row in shown_ai:
            label = PROVIDER_LABELS.get(row.provider, md(row.provider))
            out.append(
                f"| {md(row.name, 60)} ({label} {md(row.kind)}) "
                f"| {md(row.status)} | {md(place_text(row.at_rest, where), 120)} "
                f"| {md(place_text(row.processing, where), 120)} | {md(training_words(row.training), 120)} |"
            )
        out.append("")

    if failures.total:
        shown = failures.items
        out += [
            f"### Top failures ({len(shown)} of {failures.total})",
            "",
            "| Severity | Policy | Resource | Cloud | Finding |",
            "|---|---|---|---|---|",
        ]
        for f in shown:
            r = f.resource
            places = finding_places(f)
            where = f" at {md(places[0].file_line, 80)}" if places else ""
            attested = " (attested)" if any(path in r.attested for path in f.observed) else ""
            out.append(
                f"| {f.severity} | {md(f.policy_id)} | {md(r.name, 60)}{where} | "
                f"{PROVIDER_LABELS.get(r.provider, md(r.provider))} {md(r.account, 40)} "
                f"| {'(baselined) ' if f.baselined else ''}{md(f.message)}{attested} |"
            )
        out.append("")
    gate = run.gate
    out.append(f"Gate: fail on {md(gate.fail_on)} and above, exit code {gate.exit_code}.")
    return "\n".join(out) + "\n"


class MarkdownRenderer(Renderer):
    """Short Markdown summary."""

    format = "markdown"
    extension = ".md"

    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Write the summary as UTF-8."""
        out.write(markdown_summary(report).encode())
