"""What to do about an undecided (`error`) finding or a coverage gap: one action per unknown reason.

`UNKNOWN_ACTIONS` maps every unknown code to what to do. Access denied names the exact permissions:
the failed call in the finding's evidence (else the calls that feed the attribute for the resource's
kind), looked up in the source's own call table (`auditor.permissions`), never in a second list
written by hand. Not supported and expired name the attestation that may vouch for the value
(docs/attestations.md) where the attribute can be attested.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from auditor.attestations import attestable_paths
from auditor.document import FindingRecord, GapRecord
from auditor.model import UnknownCode
from auditor.permissions import ApiCall, permission_tables
from auditor.report.evidence import is_absent
from auditor.sources import source_labels

ATTESTATIONS_DOC = "docs/attestations.md"


@dataclass(frozen=True)
class CodeAction:
    """What an unknown code means, what to do about it in general, and that in a few words (`hint`,
    beside each undecided finding; the whole action is in the report's list of undecided findings)."""

    label: str
    action: str
    hint: str


# Every unknown code, with what to do (tests check that none is missing).
UNKNOWN_ACTIONS: dict[UnknownCode, CodeAction] = {
    UnknownCode.ACCESS_DENIED: CodeAction(
        "access denied",
        "grant the scanning identity the permission the call needs, then scan again",
        "grant the permission of the denied call",
    ),
    UnknownCode.NO_CREDENTIALS: CodeAction(
        "no credentials",
        "give the scan credentials for this account (the SDK's usual credential chain, or the role "
        "to assume: see the source's page in docs/scanners/), then scan again",
        "give the scan credentials for this account",
    ),
    UnknownCode.THROTTLED: CodeAction(
        "throttled",
        "the API throttled the scan past its retries: scan again with a lower `--concurrency` and a "
        "higher `--max-attempts` or a longer `--retry-deadline` (in auditor.yaml: the source's `options`)",
        "scan again more slowly (`--concurrency`, `--max-attempts`)",
    ),
    UnknownCode.TIMEOUT: CodeAction(
        "timeout",
        "the API did not answer in time: scan again with a longer `--timeout` and `--retry-deadline`, "
        "from a network that reaches the endpoint",
        "scan again with a longer `--timeout`",
    ),
    UnknownCode.NOT_SUPPORTED: CodeAction(
        "not supported",
        "no API answered this value: give the scan option or the zone catalog entry the reason names",
        "give the option or catalog entry the reason names",
    ),
    UnknownCode.NOT_COLLECTED: CodeAction(
        "not collected",
        "the scan did not read this attribute: scan again with the policies that need it loaded "
        "(a scan makes only the calls its policies need)",
        "scan again with the policies that need it",
    ),
    UnknownCode.NOT_KNOWN_UNTIL_APPLY: CodeAction(
        "known only after apply",
        "the value exists only once deployed: let the live scan of the deployed resource decide "
        "(`auditor scan` of its cloud, or `auditor drift`)",
        "let a live scan after apply decide it",
    ),
    UnknownCode.EXPIRED: CodeAction(
        "attestation expired",
        "renew the attestation: vouch for the value again with a new `attested_on` and `expires` in "
        f"the attestation file ({ATTESTATIONS_DOC})",
        "renew the attestation",
    ),
    UnknownCode.ERROR: CodeAction(
        "unreadable answer",
        "the answer was empty, garbled or an unexpected error (see the evidence): scan again, and "
        "report it if it persists",
        "scan again; report it if it persists",
    ),
}
_CODES = {code.value: code for code in UnknownCode}


@dataclass(frozen=True)
class UndecidedAction:
    """What to do so one unreadable attribute of a finding can be decided."""

    code: str
    attribute: str
    action: str
    permissions: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The code in words (`access denied`)."""
        return UNKNOWN_ACTIONS[_CODES.get(self.code, UnknownCode.ERROR)].label

    @property
    def hint(self) -> str:
        """The action in a few words: `grant s3:GetBucketTagging`, `renew the attestation`."""
        if self.permissions:
            return f"grant {', '.join(self.permissions)}"
        return UNKNOWN_ACTIONS[_CODES.get(self.code, UnknownCode.ERROR)].hint


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def unknown_causes(finding: FindingRecord) -> list[tuple[str, str]]:
    """(attribute, code) of every unreadable value that left the finding undecided: its unknown
    `observed` values, then the `path: code: reason` lines of its reasons (an unreadable scope)."""
    causes: dict[tuple[str, str], None] = {}
    for path, value in finding.observed.items():
        unknown = value.get("unknown") if isinstance(value, dict) else None
        if isinstance(unknown, dict) and isinstance(unknown.get("code"), str):
            causes[(path, unknown["code"])] = None
    for reason in finding.reasons:
        path, _, rest = reason.partition(": ")
        code = rest.partition(": ")[0]
        if code in _CODES and " " not in path:
            causes[(path, code)] = None
    return list(causes)


# A failed call of a finding's evidence: its operation and the attributes it fed.
FailedCall = tuple[str, tuple[str, ...]]


def failed_calls(provider: str, evidence: Sequence[dict[str, Any]]) -> tuple[FailedCall, ...]:
    """The calls of `evidence` that failed, a "there is none" answer (`is_absent`) not counted."""
    return tuple(
        (call, tuple(str(a) for a in item.get("attributes") or ()))
        for item in evidence
        if item.get("error") and not is_absent(provider, call := str(item.get("call")), item.get("error"))
    )


def denied_permissions(
    provider: str, kind: str, attribute: str, evidence: Sequence[dict[str, Any]]
) -> tuple[str, ...]:
    """The permissions whose absence left `attribute` unread: those of the calls that failed while
    reading it (from the finding's evidence), else of every call that feeds it for `kind`."""
    return _denied(provider, kind, attribute, failed_calls(provider, evidence))


@cache
def _denied(provider: str, kind: str, attribute: str, failed: tuple[FailedCall, ...]) -> tuple[str, ...]:
    table = permission_tables().get(provider)
    if table is None:
        return ()
    by_operation = {call.operation: call for call in table.calls}
    denied = [
        by_operation[operation]
        for operation, attributes in failed
        if operation in by_operation and any(_overlaps(a, attribute) for a in attributes)
    ]
    feeding = [
        call
        for call in table.calls
        if (not call.kinds or kind in call.kinds) and any(_overlaps(f, attribute) for f in call.feeds)
    ]
    return _permissions(denied or feeding)


def _permissions(calls: Iterable[ApiCall]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p for call in calls for p in call.permissions))


def action_for(
    code: str, attribute: str, provider: str, kind: str, evidence: Sequence[dict[str, Any]] = ()
) -> UndecidedAction:
    """What to do about one unreadable attribute of a resource of `provider` and `kind`."""
    return _action(code, attribute, provider, kind, failed_calls(provider, evidence))


@cache
def _action(
    code: str, attribute: str, provider: str, kind: str, failed: tuple[FailedCall, ...]
) -> UndecidedAction:
    known = _CODES.get(code, UnknownCode.ERROR)
    text = UNKNOWN_ACTIONS[known].action
    permissions: tuple[str, ...] = ()
    label = source_labels().get(provider, provider)
    if known is UnknownCode.ACCESS_DENIED:
        permissions = _denied(provider, kind, attribute, failed)
        if permissions:
            text = (
                f"grant {', '.join(permissions)} to the identity that scans {label} "
                f"(`auditor permissions {provider}` writes the whole role), then scan again"
            )
    elif known in (UnknownCode.NOT_SUPPORTED, UnknownCode.NOT_COLLECTED) and attribute in _attestable():
        text += f"; or have a person who knows the value attest it (source `{provider}`, {ATTESTATIONS_DOC})"
    return UndecidedAction(code, attribute, text, permissions)


@cache
def _attestable() -> frozenset[str]:
    return attestable_paths()


def undecided_actions(finding: FindingRecord) -> list[UndecidedAction]:
    """What to do so an undecided finding can be decided: one action per unreadable attribute."""
    resource = finding.resource
    failed = failed_calls(resource.provider, finding.evidence)
    return [
        _action(code, attribute, resource.provider, resource.kind, failed)
        for attribute, code in unknown_causes(finding)
    ]


def actions_text(actions: Iterable[UndecidedAction]) -> str:
    """Actions on one line: `attribute (access denied): grant ...; ...` (repeated texts once)."""
    seen: dict[str, list[str]] = {}
    for action in actions:
        seen.setdefault(action.action, []).append(f"{action.attribute} ({action.label})")
    return "; ".join(f"{', '.join(where)}: {text}" for text, where in seen.items())


def gap_action(gap: GapRecord) -> str:
    """What to do about a part of the estate that could not be scanned at all."""
    known = _CODES.get(gap.code, UnknownCode.ERROR)
    return UNKNOWN_ACTIONS[known].action
