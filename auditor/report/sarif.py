"""SARIF 2.1.0 for code-scanning dashboards: rules are policies, results are failing or undecided findings.

* `fail` findings are results of kind `fail` whose level follows the policy severity.
* `error` findings (could not be decided) are kind `open`, which SARIF defines as "the tool could not
  determine whether the result was pass or fail" (SARIF 2.1.0 §3.27.9); their level must be `none`.
* `waived` findings keep the kind of their underlying status and carry an accepted external
  suppression with the waiver's justification (§3.35).
* Every result's logical location is its resource (`fullyQualifiedName` the resource id, `kind` the
  resource kind), and `partialFingerprints` hash the policy id and resource id: the identity a
  dashboard tracks a finding by across runs, whatever file or line the result shows.
* A finding whose evidence was declared in a file (infrastructure as code, an attestation file:
  evidence `location`) points there: `artifactLocation.uri` the file (relative to `%SRCROOT%`, the
  repository root, when relative) and `region.startLine` its line, so code scanning annotates the
  pull request's diff; further declarations behind the finding are `relatedLocations`.
* A finding of a live scan has no file of its own. GitHub code scanning rejects a whole log when any
  result lacks a physical location, so such a result points at the rule that decided it: the
  policy file and line (`%SRCROOT%`-relative when the policy file is inside the working directory,
  the repository checkout; `AUDITOR_POLICIES`-relative for the policies shipped with auditor; else
  a `file:` URI): stable from run to run, unlike the inventory snapshot, a file outside the
  repository whose lines move every run, which is never a location.
* An undecided finding says what to do so it can be decided (the permission to grant, the option to
  set: auditor.report.undecided), in its message and as `properties.toDecide`.
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

from auditor.document import FindingRecord, RunInfo, plain
from auditor.errors import visible
from auditor.findings import Status
from auditor.policy.loader import shipped_policies_dir
from auditor.report.base import Renderer, ReportInput
from auditor.report.markdown import md_block
from auditor.report.undecided import actions_text, undecided_actions
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
# The base of the policy files shipped with auditor (a live finding of a shipped policy points there).
SHIPPED_POLICIES_ROOT = "AUDITOR_POLICIES"
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


def finding_fingerprint(finding: FindingRecord) -> str:
    """SHA-256 (hex) of the policy id and resource id: the same finding in every run and format."""
    return hashlib.sha256(f"{finding.policy_id}\0{finding.resource.id}".encode()).hexdigest()


def _policy_place(source: str, shipped: Path) -> dict[str, Any]:
    """The physical location of a policy (`run.policies[].source`, `path:line`): the repository's
    own file when it is inside the working directory, else the shipped file, else a `file:` URI."""
    path_text, _, line_text = source.rpartition(":")
    if not (path_text and line_text.isdigit()):
        path_text, line_text = source, ""
    path = Path(path_text)
    artifact: dict[str, str]
    if not path.is_absolute():
        artifact = source_artifact(path_text)
    elif path.is_relative_to(Path.cwd()):
        artifact = source_artifact(path.relative_to(Path.cwd()).as_posix())
    elif path.is_relative_to(shipped):
        artifact = {
            "uri": quote(path.relative_to(shipped).as_posix(), safe="/"),
            "uriBaseId": SHIPPED_POLICIES_ROOT,
        }
    else:
        artifact = source_artifact(path_text)
    physical: dict[str, Any] = {"artifactLocation": artifact}
    if line_text.isdigit() and int(line_text) >= 1:
        physical["region"] = {"startLine": int(line_text)}
    return physical


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
    finding: FindingRecord, rule_index: int, rule_place: dict[str, Any], frameworks: list[str]
) -> dict[str, Any]:
    resource = finding.resource
    underlying = finding.underlying_status if finding.status is Status.WAIVED else finding.status
    decided = underlying is Status.FAIL
    places = finding_places(finding)
    # Declared in a file (infrastructure as code): the declaration; a live scan: the deciding rule.
    physical = _source_location(places[0]) if places else rule_place
    fingerprint = finding_fingerprint(finding)
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
                    {
                        "name": resource.name,
                        "fullyQualifiedName": resource.id,
                        "kind": resource.kind or "resource",
                    }
                ],
            }
        ],
        "partialFingerprints": {
            "auditorFinding/v1": fingerprint,
            # GitHub code scanning keys alerts by file, rule and this hash. Without it, upload-sarif
            # hashes the text at the result's line, the same for every resource of a rule, and tells
            # those results apart only by their order in the log.
            "primaryLocationLineHash": f"{fingerprint[:16]}:1",
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
    actions = undecided_actions(finding) if underlying is Status.ERROR else []
    if actions:  # what to do so it can be decided (the permission to grant, the option to set)
        result["message"]["text"] += f". To decide it: {actions_text(actions)}"
        result["properties"]["toDecide"] = [
            {"attribute": a.attribute, "code": a.code, "action": a.action, "permissions": list(a.permissions)}
            for a in actions
        ]
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


def _evidence_note(run: RunInfo) -> dict[str, Any]:
    """Where the evidence of reference-form results is, when the report was not given the inventory."""
    return {
        "form": "reference",
        "inventory": run.inventory,
        "inventoryDigest": run.inventory_digest,
        "note": "results carry evidenceRefs: indexes into the evidence of the resource's record in "
        "this inventory (render with --inventory to include the evidence)",
    }


class _SarifLog:
    """The parts of a SARIF log that do not depend on the results, and how to lay them out around the
    results, which are written one at a time."""

    def __init__(self, report: ReportInput) -> None:
        run = report.run
        self.run = run
        frameworks = {f.name: f.label for f in report_frameworks(report)}  # name -> label
        self.framework_names = list(frameworks)
        policies = policy_details(run)
        self.rules = [_rule(p, frameworks) for p in policies]
        self.index = {p.id: i for i, p in enumerate(policies)}
        self.shipped = shipped_policies_dir().resolve()
        self.rule_places = {p.id: _policy_place(p.source, self.shipped) for p in policies}
        # reference form without the inventory: results point at their evidence instead of naming it
        self.unresolved = report.stream.evidence_unresolved

    def result(self, finding: FindingRecord) -> dict[str, Any] | None:
        """The SARIF result of one finding, or None (a pass, or a policy the run does not list)."""
        if finding.status is Status.PASS or finding.policy_id not in self.index:
            return None
        rule_place = self.rule_places[finding.policy_id]
        result = _result(finding, self.index[finding.policy_id], rule_place, self.framework_names)
        if self.unresolved and (refs := finding.refs_only) is not None:
            properties = result["properties"]
            del properties["evidenceCalls"]
            properties["evidenceRefs"] = refs
        return result

    def envelope(self, used_bases: set[str]) -> dict[str, Any]:
        """The log with `_RESULTS_MARK` standing for the results."""
        run = self.run
        notifications = [
            {
                "level": "error",
                "message": {
                    "text": f"coverage gap: {g.provider} {g.account} {g.scope} not scanned: "
                    f"{g.code}: {g.reason}"
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
        properties: dict[str, Any] = {
            "parameters": run.parameters,
            "counts": plain(run.counts),
            "resources": run.coverage.resources,
        }
        if self.unresolved:
            properties["evidence"] = _evidence_note(run)
        sarif_run: dict[str, Any] = {
            "tool": {
                "driver": {
                    "name": run.tool.name,
                    "version": run.tool.version,
                    "semanticVersion": run.tool.version,
                    "rules": self.rules,
                }
            },
            "automationDetails": {"id": f"auditor/{run.id}"},
            "invocations": [invocation],
            "results": [_RESULTS_MARK],
            "properties": properties,
        }
        bases = {
            SOURCE_ROOT: {
                "description": {"text": "The repository root: the directory source paths are relative to."}
            },
            SHIPPED_POLICIES_ROOT: {
                "uri": self.shipped.as_uri() + "/",
                "description": {"text": f"The policies shipped with {run.tool.name} {run.tool.version}."},
            },
        }
        if used_bases:
            sarif_run["originalUriBaseIds"] = {
                name: base for name, base in bases.items() if name in used_bases
            }
        return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [sarif_run]}


# Stands for the results in the indented envelope: `"results": [` + this line + `\n      ]`.
_RESULTS_MARK = "auditor:results-go-here"
_MARK_LINE = b"\n" + b" " * 8 + orjson.dumps(_RESULTS_MARK)
_RESULT_INDENT = b" " * 8


def _envelope_parts(envelope: dict[str, Any]) -> tuple[bytes, bytes]:
    """The indented log before the results (ending `[`) and after them (starting `\\n      ]`)."""
    head, mark, tail = visible_json(envelope, orjson.OPT_INDENT_2).partition(_MARK_LINE)
    assert mark, "the results mark is where the envelope's results are"
    return head, tail


def write_sarif(report: ReportInput, out: IO[bytes]) -> int:
    """Write the SARIF log as indented JSON, results one at a time as the findings are read; every
    string free of control and bidi characters. Returns the number of results."""
    log = _SarifLog(report)
    head, _ = _envelope_parts(log.envelope(set()))
    out.write(head)
    used: set[str] = set()
    written = 0
    for finding in report.findings():
        result = log.result(finding)
        if result is None:
            continue
        used |= _base_ids(result)
        text = visible_json(result, orjson.OPT_INDENT_2)
        out.write(b",\n" if written else b"\n")
        out.write(_RESULT_INDENT + text.replace(b"\n", b"\n" + _RESULT_INDENT))
        written += 1
    _, tail = _envelope_parts(log.envelope(used))
    out.write(tail if written else tail.lstrip(b"\n "))
    out.write(b"\n")
    return written


def _base_ids(result: dict[str, Any]) -> set[str]:
    located = [*result["locations"], *result.get("relatedLocations", [])]
    return {
        base
        for loc in located
        if (base := loc.get("physicalLocation", {}).get("artifactLocation", {}).get("uriBaseId"))
    }


class SarifRenderer(Renderer):
    """SARIF 2.1.0 log (one run; rules = policies; results = fail, error and waived findings)."""

    format = "sarif"
    extension = ".sarif"

    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Write the SARIF log as indented JSON, results streamed, every string free of control and
        bidi characters."""
        write_sarif(report, out)


def visible_json(value: Any, option: int = 0) -> bytes:
    """`value` as JSON (orjson `option`), every string free of control and bidi characters."""
    data = orjson.dumps(value, option=option)
    if _suspect(data):  # rare: walk the value only when some string may need it
        data = orjson.dumps(_visible_strings(value), option=option)
    return data


def _suspect(data: bytes) -> bool:
    """`_SUSPECT.search(data)`, faster: `re` finds the escapes at once (a literal backslash leads
    them) but would test the raw characters' lead bytes at every position, several times slower than
    orjson wrote the JSON; `in` looks for those bytes first."""
    if b"\xe2" in data or b"\xc2" in data or b"\x7f" in data or b"\xd8" in data:
        return _SUSPECT.search(data) is not None
    return _SUSPECT_ESCAPE.search(data) is not None


# What a control or bidi character looks like in orjson's output: C0 escaped (\u001b, \r, \b, \f),
# DEL raw, C1 and the bidi/separator marks as UTF-8. Matches some harmless text too (a literal
# backslash before `r`); that only costs a walk.
_ESCAPED = rb"\\(?:u00[01][0-9a-fA-F]|[rbf])"
# Their lead bytes (\x7f, \xc2, \xd8, \xe2) are what `_suspect` looks for before the pattern runs.
_RAW = rb"\x7f|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]"
_SUSPECT = re.compile(_ESCAPED + b"|" + _RAW)
_SUSPECT_ESCAPE = re.compile(_ESCAPED)


def _visible_strings(value: Any) -> Any:
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {visible(str(k)): _visible_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_visible_strings(v) for v in value]
    return value
