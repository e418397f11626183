"""JUnit XML for CI test views (GitLab, Jenkins): one testsuite per policy (most severe first), one
testcase per resource.

`fail` is a <failure> carrying the policy's remediation for the resource's cloud, `error` (could not be
decided) an <error> carrying what lets the next run decide it (the permission to grant, the attestation
to renew, ...), `waived` a <skipped> carrying the waiver's justification. Coverage gaps (parts of the
estate not scanned) form one more suite of errors, so a pipeline cannot read an incomplete scan as green.

Written as it is read: one pass over the findings spools each testcase by policy (sorted by provider and
resource id within it, by merging sorted runs: auditor.report.spool.GroupSpool) and counts it, then
the suites are written with their counts. The XML is what ElementTree wrote before (its escaping, one
space of indentation a level). A reference-form finding rendered without its inventory names where its
evidence is (`evidence: items 0, 2 of the resource in inventory FILE (sha256:...)`).
"""

from __future__ import annotations

import re
from typing import IO, Any

from auditor.document import FindingRecord, GapRecord
from auditor.errors import visible
from auditor.findings import Status
from auditor.frameworks import Framework
from auditor.report.base import Renderer, ReportInput
from auditor.report.spool import GroupSpool
from auditor.report.undecided import UndecidedAction, gap_action, undecided_actions
from auditor.report.view import (
    PolicyDetails,
    attestation_note,
    display_value,
    policy_details,
    processing_text,
    report_frameworks,
    training_text,
)

_COUNTED = {Status.FAIL: "failures", Status.ERROR: "errors", Status.WAIVED: "skipped"}
# Characters XML 1.0 cannot carry at all; cloud data (tags, names) may contain them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: Any) -> str:
    """`text` as a string XML 1.0 can hold, control and bidi characters shown as `<U+XXXX>`.

    What XML still cannot carry after that (lone surrogates, U+FFFE, U+FFFF) becomes U+FFFD.
    """
    return _NOT_XML.sub("\ufffd", visible(str(text)))


def _details(finding: FindingRecord, remediation: str | None = None, evidence_at: str | None = None) -> str:
    resource = finding.resource
    attested = set(resource.attested)
    lines = [
        f"resource: {resource.id}",
        f"provider: {resource.provider}  account: {resource.account}",
        *([f"owner: {resource.owner}"] if resource.owner is not None else []),
        f"regions: {', '.join(resource.regions) or 'unknown'}",
        *([f"processing regions: {text}"] if (text := processing_text(resource)) is not None else []),
        *([f"training: {training_text(resource.training)}"] if resource.training is not None else []),
        f"message: {finding.message}",
        *(
            f"observed: {k} = {display_value(v)}" + (" (attested, not observed)" if k in attested else "")
            for k, v in finding.observed.items()
        ),
        f"expected: {finding.expected}",
        *(f"reason: {r}" for r in finding.reasons),
        *(
            f"evidence: {e.get('call')} at {e.get('at')}"
            + (f" error: {e['error']}" if e.get("error") else "")
            + (f" ({note})" if (note := attestation_note(e)) else "")
            for e in finding.evidence
        ),
        *(
            [f"evidence: items {', '.join(map(str, refs))} of the resource in {evidence_at}"]
            if evidence_at is not None and (refs := finding.refs_only) is not None
            else []
        ),
        *([f"attested: {', '.join(resource.attested)}"] if resource.attested else []),
        *([f"remediation: {remediation}"] if remediation else []),
        *(
            f"to decide {', '.join(a.attribute for a in actions)} ({actions[0].label}): {text}"
            for text, actions in _grouped_actions(finding).items()
        ),
    ]
    waiver = finding.waiver
    if waiver is not None and waiver.expired:
        lines.append(f"waiver {waiver.id} expired on {waiver.expires} (approver {waiver.approver})")
    return "\n".join(lines)


def _grouped_actions(finding: FindingRecord) -> dict[str, list[UndecidedAction]]:
    """An undecided finding's actions by their text (one line for attributes that share one)."""
    grouped: dict[str, list[UndecidedAction]] = {}
    if finding.status is Status.ERROR:
        for action in undecided_actions(finding):
            grouped.setdefault(action.action, []).append(action)
    return grouped


def _attribute(text: str) -> str:
    """An attribute value as ElementTree escapes it (so the output stays what it wrote)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return text.replace("\r", "&#13;").replace("\n", "&#10;").replace("\t", "&#09;")


def _text(text: str) -> str:
    """Character data as ElementTree escapes it."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _start(tag: str, attributes: dict[str, str]) -> str:
    return f"<{tag}" + "".join(f' {name}="{_attribute(value)}"' for name, value in attributes.items())


def _element(tag: str, attributes: dict[str, str], text: str | None = None) -> str:
    """One element without children: `<tag a="..." />`, or with its text."""
    return f"{_start(tag, attributes)}>{_text(text)}</{tag}>" if text else f"{_start(tag, attributes)} />"


def _parent(tag: str, attributes: dict[str, str], children: list[str], level: int) -> str:
    """An element with children, indented one space a level (as ElementTree.indent(space=" "))."""
    if not children:
        return _element(tag, attributes)
    inner = "\n" + " " * (level + 1)
    return f"{_start(tag, attributes)}>{inner}{inner.join(children)}\n{' ' * level}</{tag}>"


def _testcase(finding: FindingRecord, remediation: dict[str, str], evidence_at: str | None = None) -> str:
    """The <testcase> of one finding (at the level of a suite's children)."""
    resource = finding.resource
    attributes = {
        "classname": clean(f"{finding.policy_id}.{resource.provider}.{resource.account}"),
        "name": clean(resource.id),
        "time": "0",
    }
    status = finding.status
    child: str | None = None
    if status is Status.FAIL:
        prefix = "[baselined] " if finding.baselined else ""
        child = _element(
            "failure",
            {"message": clean(prefix + finding.message), "type": clean(finding.severity)},
            clean(_details(finding, remediation.get(resource.provider), evidence_at)),
        )
    elif status is Status.ERROR:
        child = _element(
            "error",
            {"message": clean(finding.message), "type": "undecided"},
            clean(_details(finding, None, evidence_at)),
        )
    elif status is Status.WAIVED:
        waiver = finding.waiver
        message = (
            f"waived by {waiver.id if waiver else None} (underlying {finding.underlying_status}): "
            f"{waiver.justification if waiver else None} "
            f"(approver {waiver.approver if waiver else None}, expires {waiver.expires if waiver else None})"
        )
        child = _element("skipped", {"message": clean(message)})
    return _parent("testcase", attributes, [child] if child else [], _CASE_LEVEL)


_CASE_LEVEL = 2  # testsuites > testsuite > testcase


def _case_order(finding: FindingRecord) -> bytes:
    """The order of testcases in a suite, (provider, resource id), as bytes that sort the same way
    (UTF-8 keeps code point order; NUL sorts before any character)."""
    resource = finding.resource
    return f"{resource.provider}\0{resource.id}".encode(errors="surrogatepass")


def _properties(policy: PolicyDetails | None, frameworks: list[Framework]) -> str:
    properties: list[str] = []
    if policy is not None:
        properties.append(_element("property", {"name": "title", "value": clean(policy.title)}))
        properties.append(_element("property", {"name": "severity", "value": clean(policy.severity)}))
        for framework in frameworks:
            controls = policy.controls.get(framework.name, [])
            if controls:
                value = clean(f"{framework.label} " + ", ".join(controls))
                properties.append(
                    _element("property", {"name": f"controls.{framework.name}", "value": value})
                )
    return _parent("properties", {}, properties, _CASE_LEVEL)


def _gap_suite(gaps: list[GapRecord]) -> str:
    cases = []
    for gap in gaps:
        error = _element(
            "error",
            {"message": clean(f"not scanned: {gap.reason}"), "type": clean(gap.code)},
            clean(
                f"{gap.provider} {gap.account} {gap.scope}: {gap.code}: {gap.reason}\n"
                f"what to do: {gap_action(gap)}"
            ),
        )
        attributes = {
            "classname": clean(f"auditor.coverage.{gap.provider}"),
            "name": clean(f"{gap.account} {gap.scope}"),
            "time": "0",
        }
        cases.append(_parent("testcase", attributes, [error], _CASE_LEVEL))
    attributes = {
        "name": "auditor.coverage",
        "tests": str(len(gaps)),
        "failures": "0",
        "errors": str(len(gaps)),
        "skipped": "0",
        "time": "0",
    }
    return _parent("testsuite", attributes, cases, 1)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "xmlcharrefreplace")


def write_junit(report: ReportInput, out: IO[bytes]) -> None:
    """Write the JUnit XML of `report`: one pass over the findings files each testcase by policy
    (sorted by provider and resource id within it, bounded memory: auditor.report.spool.GroupSpool)
    and counts it; then the suites are written in order, each with its counts."""
    run = report.run
    frameworks = report_frameworks(report)
    policies = {p.id: p for p in policy_details(run)}
    # reference form without the inventory: say where each finding's evidence is
    unresolved = report.stream.evidence_unresolved
    evidence_at = f"inventory {run.inventory} ({run.inventory_digest})" if unresolved else None
    counts: dict[str, dict[str, int]] = {}
    with GroupSpool[tuple[str]]() as spool:
        for finding in report.findings():
            policy = policies.get(finding.policy_id)
            case = _testcase(finding, policy.remediation if policy is not None else {}, evidence_at)
            spool.add((finding.policy_id,), _encode(case), _case_order(finding))
            tally = counts.get(finding.policy_id)
            if tally is None:
                tally = counts[finding.policy_id] = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
            tally["tests"] += 1
            key = _COUNTED.get(finding.status)
            if key:
                tally[key] += 1
        order = [*policies, *(p for p in counts if p not in policies)]
        totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for policy_id in order:
            for key, value in counts.get(policy_id, {}).items():
                totals[key] += value
        gaps = run.coverage.gaps
        if gaps:
            totals["tests"] += len(gaps)
            totals["errors"] += len(gaps)
        root = {"name": clean(f"auditor run {run.id}"), **{k: str(v) for k, v in totals.items()}, "time": "0"}
        out.write(b"<?xml version='1.0' encoding='utf-8'?>\n")
        if not order and not gaps:
            out.write(_encode(_element("testsuites", root)) + b"\n")
            return
        out.write(_encode(_start("testsuites", root) + ">"))
        for policy_id in order:
            tally = counts.get(policy_id) or {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
            attributes = {
                "name": clean(policy_id),
                "timestamp": clean(run.started_at),
                **{k: str(v) for k, v in tally.items()},
                "time": "0",
            }
            out.write(_encode("\n " + _start("testsuite", attributes) + ">\n  "))
            out.write(_encode(_properties(policies.get(policy_id), frameworks)))
            for data in spool.read((policy_id,)):
                out.write(b"\n  " + data)
            out.write(b"\n </testsuite>")
        if gaps:
            out.write(_encode("\n " + _gap_suite(gaps)))
        out.write(b"\n</testsuites>\n")


class JunitRenderer(Renderer):
    """JUnit XML (failures and errors distinct, waivers as skipped)."""

    format = "junit"
    extension = ".xml"

    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Write the XML document (UTF-8, with declaration), testcases streamed through a spool."""
        write_junit(report, out)
