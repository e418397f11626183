"""JUnit XML for CI test views (GitLab, Jenkins): one testsuite per policy (most severe first), one
testcase per resource.

`fail` is a <failure> carrying the policy's remediation for the resource's cloud, `error` (could not be
decided) an <error> carrying what lets the next run decide it (the permission to grant, the attestation
to renew, ...), `waived` a <skipped> carrying the waiver's justification. Coverage gaps (parts of the
estate not scanned) form one more suite of errors, so a pipeline cannot read an incomplete scan as green.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from typing import IO, Any

from auditor.document import FindingRecord
from auditor.errors import visible
from auditor.findings import Status
from auditor.report.base import Renderer, ReportInput
from auditor.report.undecided import UndecidedAction, gap_action, undecided_actions
from auditor.report.view import (
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


def _details(finding: FindingRecord, remediation: str | None = None) -> str:
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


def _testcase(suite: ET.Element, finding: FindingRecord, remediation: dict[str, str]) -> Status:
    resource = finding.resource
    case = ET.SubElement(
        suite,
        "testcase",
        {
            "classname": clean(f"{finding.policy_id}.{resource.provider}.{resource.account}"),
            "name": clean(resource.id),
            "time": "0",
        },
    )
    status = finding.status
    if status is Status.FAIL:
        prefix = "[baselined] " if finding.baselined else ""
        node = ET.SubElement(
            case,
            "failure",
            {"message": clean(prefix + finding.message), "type": clean(finding.severity)},
        )
        node.text = clean(_details(finding, remediation.get(resource.provider)))
    elif status is Status.ERROR:
        node = ET.SubElement(case, "error", {"message": clean(finding.message), "type": "undecided"})
        node.text = clean(_details(finding))
    elif status is Status.WAIVED:
        waiver = finding.waiver
        message = (
            f"waived by {waiver.id if waiver else None} (underlying {finding.underlying_status}): "
            f"{waiver.justification if waiver else None} "
            f"(approver {waiver.approver if waiver else None}, expires {waiver.expires if waiver else None})"
        )
        ET.SubElement(case, "skipped", {"message": clean(message)})
    return status


def junit_tree(report: ReportInput) -> ET.Element:
    """The <testsuites> element of a findings document."""
    run = report.document.run
    frameworks = report_frameworks(report)
    by_policy: dict[str, list[FindingRecord]] = defaultdict(list)
    for finding in report.document.findings:
        by_policy[finding.policy_id].append(finding)
    root = ET.Element("testsuites", {"name": clean(f"auditor run {run.id}")})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    policies = {p.id: p for p in policy_details(run)}
    for policy_id in [*policies, *(p for p in by_policy if p not in policies)]:
        findings = by_policy.get(policy_id, [])
        suite = ET.SubElement(
            root, "testsuite", {"name": clean(policy_id), "timestamp": clean(run.started_at)}
        )
        props = ET.SubElement(suite, "properties")
        policy = policies.get(policy_id)
        if policy is not None:
            ET.SubElement(props, "property", {"name": "title", "value": clean(policy.title)})
            ET.SubElement(props, "property", {"name": "severity", "value": clean(policy.severity)})
            for framework in frameworks:
                controls = policy.controls.get(framework.name, [])
                if controls:
                    ET.SubElement(
                        props,
                        "property",
                        {
                            "name": f"controls.{framework.name}",
                            "value": clean(f"{framework.label} " + ", ".join(controls)),
                        },
                    )
        counts = {"tests": len(findings), "failures": 0, "errors": 0, "skipped": 0}
        for finding in sorted(findings, key=lambda f: (f.resource.provider, f.resource.id)):
            status = _testcase(suite, finding, policy.remediation if policy is not None else {})
            key = _COUNTED.get(status)
            if key:
                counts[key] += 1
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", "0")
    gaps = run.coverage.gaps
    if gaps:
        suite = ET.SubElement(
            root,
            "testsuite",
            {
                "name": "auditor.coverage",
                "tests": str(len(gaps)),
                "failures": "0",
                "errors": str(len(gaps)),
                "skipped": "0",
                "time": "0",
            },
        )
        for gap in gaps:
            case = ET.SubElement(
                suite,
                "testcase",
                {
                    "classname": clean(f"auditor.coverage.{gap.provider}"),
                    "name": clean(f"{gap.account} {gap.scope}"),
                    "time": "0",
                },
            )
            node = ET.SubElement(
                case, "error", {"message": clean(f"not scanned: {gap.reason}"), "type": clean(gap.code)}
            )
            node.text = clean(
                f"{gap.provider} {gap.account} {gap.scope}: {gap.code}: {gap.reason}\n"
                f"what to do: {gap_action(gap)}"
            )
        totals["tests"] += len(gaps)
        totals["errors"] += len(gaps)
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", "0")
    return root


class JunitRenderer(Renderer):
    """JUnit XML (failures and errors distinct, waivers as skipped)."""

    format = "junit"
    extension = ".xml"

    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Write the XML document (UTF-8, with declaration)."""
        tree = ET.ElementTree(junit_tree(report))
        ET.indent(tree, space=" ")
        tree.write(out, encoding="utf-8", xml_declaration=True)
        out.write(b"\n")
