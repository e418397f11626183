"""SARIF 2.1.0 for code-scanning dashboards: rules are policies, results are failing or undecided findings.

* `fail` findings are results of kind `fail` whose level follows the policy severity.
* `error` findings (could not be decided) are kind `open`, which SARIF defines as "the tool could not
  determine whether the result was pass or fail" (SARIF 2.1.0 §3.27.9); their level must be `none`.
* `waived` findings keep the kind of their underlying status and carry an accepted external
  suppression with the waiver's justification (§3.35).
* The resource id is the result's logical location; the physical location is the inventory snapshot
  (with the resource's line when `--inventory` is given), since dashboards expect a file.
* A finding whose evidence was declared in a file (infrastructure as code: evidence `location`)
  points there instead: `artifactLocation.uri` the file (relative to `%SRCROOT%`, the repository
  root, when relative) and `region.startLine` its line, so code scanning annotates the pull
  request's diff; further declarations behind the finding are `relatedLocations`.
* Passing findings are not results: SARIF would be as large as the estate for nothing to act on.
* Policy files are input too: `help.markdown` is escaped (no HTML, links or images from a policy's
  text), only http(s) references become links or `helpUri`, and control and bidi characters in any
  string of the log are written visibly as `<U+XXXX>`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import quote

import orjson

from auditor.document import FindingRecord, plain
from auditor.errors import InputError, visible
from auditor.findings import Status
from auditor.inputfile import open_input, read_lines
from auditor.report.base import Renderer, ReportInput
from auditor.report.markdown import md_block
from auditor.report.view import (
    PROVIDER_LABELS,
    PolicyDetails,
    SourcePlace,
    finding_places,
    policy_details,
    report_frameworks,
)

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
# The base of relative source paths (SARIF 2.1.0 §3.4.4): the repository root, which is the root
# GitHub code scanning resolves result paths against.
SOURCE_ROOT = "%SRCROOT%"
_WINDOWS_ABSOLUTE = re.compile(r"[A-Za-z]:/")

# GitHub code scanning reads `security-severity` (0.0-10.0): >= 9 critical, >= 7 high, >= 4 medium.
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}
LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}


# An http(s) URL with nothing that could end an autolink or an attribute, or hide in the text.
_HTTP_URL = re.compile(r"https?://[^\s<>\"'`\\\x00-\x1f\x7f-\x9f]+", re.IGNORECASE)


def http_url(url: Any) -> str | None:
    """`url` if it is a plain http(s) URL, else None: `javascript:`, `data:` and the like never link."""
    if isinstance(url, str) and _HTTP_URL.fullmatch(url) and visible(url) == url:
        return url
    return None


def _help(policy: PolicyDetails) -> tuple[str, str]:
    text = [policy.description or policy.title]
    markdown = [f"**{md_block(policy.title)}**", "", md_block(policy.description or "")]
    if policy.expected:
        text.append(f"Expected: {policy.expected}")
        markdown += ["", f"Expected: {md_block(policy.expected)}"]
    if not policy.recorded:
        text.append(f"Remediation: {policy.not_recorded}")
        markdown += ["", f"Remediation: {policy.not_recorded}"]
    if policy.remediation:
        text.append("Remediation:")
        markdown += ["", "Remediation:", ""]
        for provider, how in sorted(policy.remediation.items()):
            label = PROVIDER_LABELS.get(provider, provider)
            text.append(f"  {label}: {how}")
            markdown.append(f"- {md_block(label)}: {' '.join(md_block(how).splitlines())}")
    if policy.references:
        text.append("References: " + " ".join(policy.references))
        markdown += ["", "References:", ""]
        for reference in policy.references:
            url = http_url(reference)
            markdown.append(
                f"- <{url}>" if url is not None else f"- {md_block(reference)} (not an http(s) link)"
            )
    return "\n".join(text), "\n".join(markdown)


def _rule(policy: PolicyDetails, frameworks: dict[str, str]) -> dict[str, Any]:
    text, markdown = _help(policy)
    tags = ["compliance", policy.family]
    for framework in frameworks:
        tags += [f"{frameworks[framework]} {c}" for c in policy.controls.get(framework, [])]
    rule: dict[str, Any] = {
        "id": policy.id,
        "name": "".join(part.capitalize() for part in policy.id.replace("-", ".").split(".")),
        "shortDescription": {"text": policy.title},
        "fullDescription": {"text": policy.description or policy.title},
        "help": {"text": text, "markdown": markdown},
        "defaultConfiguration": {"level": LEVEL.get(policy.severity, "warning")},
        "properties": {
            "security-severity": SECURITY_SEVERITY.get(policy.severity, "5.5"),
            "severity": policy.severity,
            "precision": "very-high",
            "problem.severity": LEVEL.get(policy.severity, "warning"),
            "tags": tags,
            "controls": {f: policy.controls.get(f, []) for f in frameworks},
        },
    }
    links = [url for url in map(http_url, policy.references or []) if url is not None]
    if links:
        rule["helpUri"] = links[0]
    return rule


def _inventory_lines(path: Path | None) -> dict[str, int]:
    """Resource id -> line number in the inventory JSONL (empty without an inventory)."""
    lines: dict[str, int] = {}
    if path is None:
        return lines
    with open_input(path, "inventory") as handle:
        for number, line in read_lines(handle, path):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}", f"invalid JSON ({exc})") from exc
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                lines.setdefault(record["id"], number)
    return lines


def _artifact_uri(inventory: str) -> str:
    path = Path(inventory)
    return path.resolve().as_uri() if path.is_absolute() else path.as_posix()


def source_artifact(file: str) -> dict[str, str]:
    """The `artifactLocation` of a declaring file: a relative path against `%SRCROOT%` (percent-encoded,
    `/`-separated, no leading `./`), or an absolute `file:` URI."""
    posix = file.replace("\\", "/")
    if _WINDOWS_ABSOLUTE.match(posix) or PurePosixPath(posix).is_absolute():
        return {"uri": "file:///" + quote(posix.lstrip("/"), safe="/:")}
    parts = [part for part in PurePosixPath(posix).parts if part != "."]
    return {"uri": quote("/".join(parts), safe="/"), "uriBaseId": SOURCE_ROOT}


def _source_location(place: SourcePlace) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": source_artifact(place.file)}
    if place.line is not None:
        physical["region"] = {"startLine": place.line}
    return physical


def _result(
    finding: FindingRecord, rule_index: int, uri: str, line: int | None, frameworks: list[str]
) -> dict[str, Any]:
    resource = finding.resource
    underlying = finding.underlying_status if finding.status is Status.WAIVED else finding.status
    decided = underlying is Status.FAIL
    places = finding_places(finding)
    physical: dict[str, Any]
    if places:  # declared in a file (infrastructure as code): point at the declaration
        physical = _source_location(places[0])
    else:
        physical = {"artifactLocation": {"uri": uri}}
        if line is not None:
            physical["region"] = {"startLine": line}
    result: dict[str, Any] = {
        "ruleId": finding.policy_id,
        "ruleIndex": rule_index,
        "kind": "fail" if decided else "open",
        "level": LEVEL.get(finding.severity, "warning") if decided else "none",
        # A failure accepted into the CI baseline (auditor baseline create) existed before.
        **({"baselineState": "unchanged"} if finding.baselined else {}),
        "message": {"text": f"{resource.name} ({resource.provider} {resource.account}): {finding.message}"},
        "locations": [
            {
                "physicalLocation": physical,
                "logicalLocations": [
                    {"name": resource.name, "fullyQualifiedName": resource.id, "kind": "resource"}
                ],
            }
        ],
        "partialFingerprints": {
            "auditorFinding/v1": hashlib.sha256(f"{finding.policy_id}\0{resource.id}".encode()).hexdigest()
        },
        "properties": {
            "status": finding.status.value,
            "underlyingStatus": finding.underlying_status.value,
            "severity": finding.severity.value,
            "provider": resource.provider,
            "account": resource.account,
            "regions": resource.regions,
            "observed": finding.observed,
            "expected": finding.expected,
            "controls": {f: finding.controls.get(f, []) for f in frameworks},
            "evidenceCalls": [e.get("call") for e in finding.evidence],
        },
    }
    if places:
        result["properties"]["declaredAt"] = [str(place) for place in places]
    if len(places) > 1:
        result["relatedLocations"] = [
            {
                "id": number,
                "physicalLocation": _source_location(place),
                "message": {"text": f"also declared at {place}"},
            }
            for number, place in enumerate(places[1:], start=1)
        ]
    if finding.reasons:
        result["properties"]["reasons"] = finding.reasons
    if resource.processing_regions is not None:
        result["properties"]["processingRegions"] = resource.processing_regions
    if resource.training is not None:
        result["properties"]["training"] = plain(resource.training)
    if resource.attested:
        # values vouched for by a person (an attestation file), not read from an API
        result["properties"]["attested"] = resource.attested
    waiver = finding.waiver
    if waiver is not None and finding.status is Status.WAIVED:
        result["suppressions"] = [
            {
                "kind": "external",
                "status": "accepted",
                "justification": waiver.justification,
                "properties": {
                    "waiver": waiver.id,
                    "approver": waiver.approver,
                    "expires": waiver.expires,
                    "source": waiver.source,
                },
            }
        ]
    elif waiver is not None:
        result["properties"]["expiredWaiver"] = plain(waiver)
    return result


def sarif_log(report: ReportInput) -> dict[str, Any]:
    """The SARIF log of a findings document, as a dict."""
    run = report.document.run
    frameworks = {f.name: f.label for f in report_frameworks(report)}  # name -> label
    policies = policy_details(run)
    rules = [_rule(p, frameworks) for p in policies]
    index = {p.id: i for i, p in enumerate(policies)}
    uri = _artifact_uri(run.inventory)
    lines = _inventory_lines(report.inventory_path)
    results = []
    for finding in report.document.findings:
        if finding.status is Status.PASS or finding.policy_id not in index:
            continue
        line = lines.get(finding.resource.id)
        results.append(_result(finding, index[finding.policy_id], uri, line, list(frameworks)))
    notifications = [
        {
            "level": "error",
            "message": {
                "text": f"coverage gap: {g.provider} {g.account} {g.scope} not scanned: {g.code}: {g.reason}"
            },
            "descriptor": {"id": f"coverage-gap/{g.code}"},
        }
        for g in run.coverage.gaps
    ]
    notifications += [
        {
            "level": "warning",
            "message": {
                "text": f"attribute {path} unreadable on some resources: "
                + ", ".join(f"{code}: {n}" for code, n in codes.items())
            },
            "descriptor": {"id": "unknown-attribute"},
        }
        for path, codes in run.coverage.unknown_attributes.items()
    ]
    invocation: dict[str, Any] = {
        "executionSuccessful": True,
        "startTimeUtc": run.started_at,
        "endTimeUtc": run.finished_at,
        "exitCode": run.gate.exit_code,
    }
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    sarif_run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": run.tool.name,
                "version": run.tool.version,
                "semanticVersion": run.tool.version,
                "rules": rules,
            }
        },
        "automationDetails": {"id": f"auditor/{run.id}"},
        "invocations": [invocation],
        "results": results,
        "properties": {
            "parameters": run.parameters,
            "counts": plain(run.counts),
            "resources": run.coverage.resources,
        },
    }
    if any(_uses_source_root(result) for result in results):
        sarif_run["originalUriBaseIds"] = {
            SOURCE_ROOT: {
                "description": {"text": "The repository root: the directory source paths are relative to."}
            }
        }
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [sarif_run],
    }


def _uses_source_root(result: dict[str, Any]) -> bool:
    located = [*result["locations"], *result.get("relatedLocations", [])]
    return any(
        loc.get("physicalLocation", {}).get("artifactLocation", {}).get("uriBaseId") == SOURCE_ROOT
        for loc in located
    )


class SarifRenderer(Renderer):
    """SARIF 2.1.0 log (one run; rules = policies; results = fail, error and waived findings)."""

    format = "sarif"
    extension = ".sarif"

    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Write the SARIF log as indented JSON, every string free of control and bidi characters."""
        log = sarif_log(report)
        data = orjson.dumps(log, option=orjson.OPT_INDENT_2)
        if _SUSPECT.search(data):  # rare: walk the log only when some string may need it
            data = orjson.dumps(_visible_strings(log), option=orjson.OPT_INDENT_2)
        out.write(data)
        out.write(b"\n")


# What a control or bidi character looks like in orjson's output: C0 escaped (\u001b, \r, \b, \f),
# DEL raw, C1 and the bidi/separator marks as UTF-8. Matches some harmless text too (a literal
# backslash before `r`); that only costs a walk.
_SUSPECT = re.compile(
    rb"\\(?:u00[01][0-9a-fA-F]|[rbf])|\x7f|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]"
)


def _visible_strings(value: Any) -> Any:
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {visible(str(k)): _visible_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_visible_strings(v) for v in value]
    return value
