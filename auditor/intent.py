"""Intent against reality: what infrastructure as code declares compared with what a live scan observed.

`auditor drift --declared iac.jsonl --observed live.jsonl` reads two inventories of the same model
(one from `auditor scan terraform|cloudformation|arm`, one from a live scan), matches their
resources, and reports per matched resource the attributes that differ (`COMPARED`, and tags key by
key), the resources only one side has, and the policies whose verdict differs: above all a
resource whose declared configuration passes a policy and whose observed one fails. Both sides run
through the same compiled policies (`auditor.check.prepare_check`, `auditor.evaluate.Evaluator`).

Matching: provider, kind and name (infrastructure-as-code sources record the real resource name
where they know it; their `id` is the code address, never the cloud's id), then account and
storage account where both sides know them. Unknown is never equal: an attribute that either side
could not read (or a value known only after apply) is "cannot compare", with the reason; a record
whose name is not known, that several records match, or that lies under a coverage gap of the other
side cannot be matched, and is never reported as missing.

Not to be confused with `auditor.drift`: how a *finding* moved between two runs of `check`.
"""

from __future__ import annotations

import fnmatch
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import click
import orjson

from auditor.check import CheckOptions, prepare_check
from auditor.cli_options import exit_codes
from auditor.drift import LaterCoverage, RecordedGap
from auditor.errors import visible
from auditor.evaluate import CompiledPolicy, Evaluator, parse_param_args
from auditor.findings import Finding, Status
from auditor.inventory import read_inventory
from auditor.model import CoverageGap, StorageResource, Unknown, normalize_tag_key
from auditor.streams import result
from auditor.versions import parse_version

# The comparison's own JSON layout (`--format json`); bumped when fields are added.
COMPARISON_VERSION = "1.0"
EXIT_OK, EXIT_DIFFERENCES, EXIT_BAD_INPUT, EXIT_INCOMPLETE = 0, 1, 2, 3

State = Literal["differs", "declared_only", "observed_only", "cannot_match", "incomplete", "same"]
STATES: tuple[State, ...] = (
    "differs",
    "declared_only",
    "observed_only",
    "cannot_match",
    "incomplete",
    "same",
)
# States that are differences (exit 1), and states that leave the comparison incomplete (exit 3).
DIFFERENT: frozenset[State] = frozenset({"differs", "declared_only", "observed_only"})
UNDECIDED: frozenset[State] = frozenset({"cannot_match", "incomplete"})
VerdictKind = Literal["regression", "fixed_outside_code", "cannot_compare"]
NOT_IN_SCOPE = "not in scope"


def _text(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _cipher(value: Any) -> Any:  # 'AES256', 'aes-256' and 'AES_256' are one cipher
    return "".join(c for c in value.casefold() if c.isalnum()) if isinstance(value, str) else value


def _regions(value: Any) -> Any:
    return sorted({str(r).casefold() for r in value}) if isinstance(value, list) else value


def _version(value: Any) -> Any:  # 'TLS1_2' (Azure), '1.2' and 'TLSv1.2' are one version
    parsed = parse_version(value) if isinstance(value, str) else None
    return parsed if parsed is not None else value


def _as_is(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class ComparedAttribute:
    """An attribute compared between the declared and the observed record, and how its values
    are brought to one spelling before they are compared (the values shown are as recorded)."""

    path: str
    same_form: Callable[[Any], Any]


# What is compared, in report order; tags are compared key by key after these.
COMPARED: tuple[ComparedAttribute, ...] = (
    ComparedAttribute("location.primary", _text),
    ComparedAttribute("location.regions", _regions),
    ComparedAttribute("encryption.algorithm", _cipher),
    ComparedAttribute("encryption.key_management", _as_is),
    ComparedAttribute("encryption.key_location", _text),
    ComparedAttribute("transport.plaintext_refused", _as_is),
    ComparedAttribute("transport.min_tls_version", _version),
)


@dataclass(frozen=True)
class Difference:
    """An attribute whose declared and observed values differ."""

    attribute: str
    declared: Any
    observed: Any
    declared_at: str | None = None  # file:line of the declaration behind the attribute


@dataclass(frozen=True)
class CannotCompare:
    """An attribute (or a policy) that could not be compared, and why (never counted as equal)."""

    attribute: str
    reason: str


@dataclass(frozen=True)
class VerdictChange:
    """A policy whose verdict on the declared configuration differs from the one on the observed.

    `regression`: declared passes (or is out of the policy's scope), observed fails: the resource
    was deployed, or changed since, out of compliance. `fixed_outside_code`: declared fails,
    observed does not: the next apply would bring the failure back. `cannot_compare`: either side
    could not be decided.
    """

    policy_id: str
    severity: str
    kind: VerdictKind
    declared: str
    observed: str
    declared_message: str
    observed_message: str


@dataclass(frozen=True)
class Identity:
    """Who a record is: enough to report it without keeping the whole record."""

    provider: str
    kind: str
    name: str
    account: str | None  # None: not known
    storage_account: str | None
    id: str
    declared_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (storage account and declaration only when known)."""
        out: dict[str, Any] = {"id": self.id, "account": self.account}
        if self.storage_account is not None:
            out["storage_account"] = self.storage_account
        if self.declared_at is not None:
            out["declared_at"] = self.declared_at
        return out


@dataclass
class ResourceComparison:
    """One resource: matched (same, differs, incomplete), on one side only, or not matchable."""

    state: State
    declared: Identity | None
    observed: Identity | None
    differences: list[Difference] = field(default_factory=list)
    cannot_compare: list[CannotCompare] = field(default_factory=list)
    verdicts: list[VerdictChange] = field(default_factory=list)
    reason: str = ""  # declared_only / observed_only / cannot_match: why

    @property
    def identity(self) -> Identity:
        """The declared identity, else the observed one."""
        found = self.declared or self.observed
        assert found is not None
        return found

    @property
    def regressions(self) -> list[VerdictChange]:
        """Policies the declared configuration passes and the observed one fails."""
        return [v for v in self.verdicts if v.kind == "regression"]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (the `resources[]` entry of `--format json`)."""
        who = self.identity
        return {
            "state": self.state,
            "provider": who.provider,
            "kind": who.kind,
            "name": who.name,
            "declared": self.declared.to_json() if self.declared else None,
            "observed": self.observed.to_json() if self.observed else None,
            "differences": [
                {
                    "attribute": d.attribute,
                    "declared": d.declared,
                    "observed": d.observed,
                    "declared_at": d.declared_at,
                }
                for d in self.differences
            ],
            "cannot_compare": [{"attribute": c.attribute, "reason": c.reason} for c in self.cannot_compare],
            "verdicts": [
                {
                    "policy_id": v.policy_id,
                    "severity": v.severity,
                    "kind": v.kind,
                    "declared": v.declared,
                    "observed": v.observed,
                    "declared_message": v.declared_message,
                    "observed_message": v.observed_message,
                }
                for v in self.verdicts
            ],
            "reason": self.reason,
        }


@dataclass
class IntentComparison:
    """The whole comparison: every resource of either side, once."""

    declared_path: str
    observed_path: str
    compared_at: str
    policies: list[str]
    parameters: dict[str, Any]
    ignored_tags: list[str]
    resources: list[ResourceComparison]
    allow_incomplete: bool = False
    allow_empty: bool = False

    def count(self, state: State) -> int:
        """How many resources are in `state`."""
        return sum(1 for r in self.resources if r.state == state)

    @property
    def regressions(self) -> int:
        """Declared passes, observed fails: (resource, policy) pairs."""
        return sum(len(r.regressions) for r in self.resources)

    @property
    def nothing_compared(self) -> bool:
        """Neither inventory holds a resource."""
        return not self.resources

    @property
    def exit_code(self) -> int:
        """1 differences; else 3 something could not be compared or nothing was (unless allowed); 0."""
        if any(r.state in DIFFERENT for r in self.resources):
            return EXIT_DIFFERENCES
        if any(r.state in UNDECIDED for r in self.resources) and not self.allow_incomplete:
            return EXIT_INCOMPLETE
        if self.nothing_compared and not self.allow_empty:
            return EXIT_INCOMPLETE
        return EXIT_OK

    def incomplete_reason(self) -> str | None:
        """The last stderr line of an exit 3, else None."""
        if self.exit_code != EXIT_INCOMPLETE:
            return None
        if self.nothing_compared:
            return (
                "incomplete: nothing compared: neither inventory holds a resource (--allow-empty to accept)"
            )
        return (
            f"incomplete: {self.count('incomplete')} matched resource(s) with attributes that could not be "
            f"compared, {self.count('cannot_match')} resource(s) that could not be matched "
            "(--allow-incomplete to accept)"
        )

    def summary(self) -> dict[str, int]:
        """Counts per state, regressions and the exit code."""
        counts: dict[str, int] = {state: self.count(state) for state in STATES}
        matched = counts["same"] + counts["differs"] + counts["incomplete"]
        return {"matched": matched, **counts, "regressions": self.regressions, "exit_code": self.exit_code}

    def to_json(self) -> dict[str, Any]:
        """The `--format json` document."""
        return {
            "comparison": {
                "version": COMPARISON_VERSION,
                "declared": self.declared_path,
                "observed": self.observed_path,
                "compared_at": self.compared_at,
                "attributes": [a.path for a in COMPARED] + ["tags"],
                "ignored_tags": self.ignored_tags,
                "policies": self.policies,
                "parameters": self.parameters,
            },
            "summary": self.summary(),
            "resources": [r.to_json() for r in self.resources],
        }


# --- reading -------------------------------------------------------------------------------------


# What infrastructure-as-code scanners write as the account when neither the file nor an option
# names it (the model requires a string).
UNKNOWN_ACCOUNT = "unknown"


def _known(resource: StorageResource, field_name: str, value: str | None) -> str | None:
    """An identity value, or None when the record does not know it (empty, `unknown`, or listed in
    the record's `unknown`)."""
    if value is None or value.strip().casefold() in ("", UNKNOWN_ACCOUNT):
        return None
    return None if resource.unknown_reason(field_name) is not None else value


def _first_declaration(resource: StorageResource, paths: Iterable[str] | None = None) -> str | None:
    """`file:line (address)` of the record's first declaration (behind one of `paths` if given)."""
    wanted = list(paths) if paths is not None else None
    for item in resource.evidence:
        if item.location is None:
            continue
        if wanted is not None and not any(_overlaps(a, p) for a in item.attributes for p in wanted):
            continue
        place = item.location
        where = f"{place.file}:{place.line}" if place.line is not None else place.file
        return f"{where} ({place.address})" if place.address else where
    return None


def _file_line(declared_at: str | None) -> str:
    """`file:line` of a `file:line (address)` (the table leaves the address to the JSON)."""
    return (declared_at or "").split(" (", 1)[0]


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def identity(resource: StorageResource) -> Identity:
    """The identity of a record."""
    return Identity(
        provider=resource.provider,
        kind=resource.kind,
        name=resource.name,
        account=_known(resource, "account", resource.account),
        storage_account=_known(resource, "storage_account", resource.storage_account),
        id=resource.id,
        declared_at=_first_declaration(resource),
    )


@dataclass
class _Side:
    """One inventory: full records of the resources that may match, identities of the others."""

    records: list[StorageResource] = field(default_factory=list)
    others: list[Identity] = field(default_factory=list)
    gaps: list[CoverageGap] = field(default_factory=list)

    def accounts(self) -> set[tuple[str, str]]:
        found = {(r.provider, r.account) for r in self.records}
        return found | {(i.provider, i.account) for i in self.others if i.account is not None}


def _read(path: Path, keep: Callable[[StorageResource], bool] = lambda _: True) -> _Side:
    side = _Side()
    for record in read_inventory(path):
        if isinstance(record, CoverageGap):
            side.gaps.append(record)
        elif keep(record):
            side.records.append(record)
        else:
            side.others.append(identity(record))
    return side


# --- comparing -----------------------------------------------------------------------------------


def _value(resource: StorageResource, path: str) -> Any:
    group, _, leaf = path.partition(".")
    part = getattr(resource, group)
    return getattr(part, leaf) if part is not None else None


def _why(side: str, unknown: Unknown) -> str:
    known = " (partly known)" if unknown.partial is not None else ""
    return f"{side}: {unknown.code.value}: {unknown.reason}{known}"


def _unknowns(declared: StorageResource, observed: StorageResource, path: str) -> str | None:
    reasons = [
        _why(side, unknown)
        for side, unknown in (
            ("declared", declared.unknown_reason(path)),
            ("observed", observed.unknown_reason(path)),
        )
        if unknown is not None
    ]
    return "; ".join(reasons) if reasons else None


def compare_attributes(
    declared: StorageResource, observed: StorageResource, ignored_tags: Iterable[str] = ()
) -> tuple[list[Difference], list[CannotCompare]]:
    """The attributes that differ, and those that could not be compared, of one matched pair."""
    differences: list[Difference] = []
    uncompared: list[CannotCompare] = []
    for attribute in COMPARED:
        reason = _unknowns(declared, observed, attribute.path)
        if reason is not None:
            uncompared.append(CannotCompare(attribute.path, reason))
            continue
        mine, theirs = _value(declared, attribute.path), _value(observed, attribute.path)
        if attribute.same_form(mine) != attribute.same_form(theirs):
            at = _first_declaration(declared, [attribute.path])
            differences.append(Difference(attribute.path, mine, theirs, at))
    tag_differences, tag_uncompared = _compare_tags(declared, observed, [p.casefold() for p in ignored_tags])
    return differences + tag_differences, uncompared + tag_uncompared


def _compare_tags(
    declared: StorageResource, observed: StorageResource, ignored: list[str]
) -> tuple[list[Difference], list[CannotCompare]]:
    reason = _unknowns(declared, observed, "tags")
    if reason is not None:
        return [], [CannotCompare("tags", reason)]
    mine, theirs = declared.tags or {}, observed.tags or {}
    spelled: dict[str, str] = {}  # folded key -> the key as written (declared first)
    for key in [*mine, *theirs]:
        spelled.setdefault(normalize_tag_key(key), key)
    folded_mine = declared.normalized_tags or {}
    folded_theirs = observed.normalized_tags or {}
    differences: list[Difference] = []
    uncompared: list[CannotCompare] = []
    for folded, key in spelled.items():
        if any(fnmatch.fnmatchcase(key.casefold(), pattern) for pattern in ignored):
            continue
        path = f"tags.{key}"
        why = _unknowns(declared, observed, path)
        if why is not None:
            uncompared.append(CannotCompare(path, why))
            continue
        if folded_mine.get(folded) != folded_theirs.get(folded):
            at = _first_declaration(declared, [path])
            differences.append(Difference(path, folded_mine.get(folded), folded_theirs.get(folded), at))
    return differences, uncompared


def _verdicts(declared: dict[str, Finding], observed: dict[str, Finding]) -> list[VerdictChange]:
    changes: list[VerdictChange] = []
    for policy_id in dict.fromkeys([*declared, *observed]):
        mine, theirs = declared.get(policy_id), observed.get(policy_id)
        before = mine.underlying_status if mine is not None else None
        after = theirs.underlying_status if theirs is not None else None
        kind: VerdictKind
        if Status.ERROR in (before, after):
            kind = "cannot_compare"
        elif after is Status.FAIL and before is not Status.FAIL:
            kind = "regression"
        elif before is Status.FAIL and after is not Status.FAIL:
            kind = "fixed_outside_code"
        else:
            continue
        either = mine or theirs
        assert either is not None
        changes.append(
            VerdictChange(
                policy_id=policy_id,
                severity=either.severity.value,
                kind=kind,
                declared=before.value if before is not None else NOT_IN_SCOPE,
                observed=after.value if after is not None else NOT_IN_SCOPE,
                declared_message=mine.message if mine is not None else "",
                observed_message=theirs.message if theirs is not None else "",
            )
        )
    return changes


def _compatible(mine: str | None, theirs: str | None) -> bool:
    return mine is None or theirs is None or mine.casefold() == theirs.casefold()


def _matches(declared: Identity, observed: Identity) -> bool:
    return _compatible(declared.account, observed.account) and _compatible(
        declared.storage_account, observed.storage_account
    )


def _describe(candidates: list[Identity]) -> str:
    return ", ".join(f"{c.id} (account {c.account or 'unknown'})" for c in candidates)


class _GapCover:
    """Which coverage gaps of one side hide a resource the other side has."""

    def __init__(
        self, gaps: list[CoverageGap], seen: set[tuple[str, str]], known: set[tuple[str, str]]
    ) -> None:
        self.recorded = [
            RecordedGap(
                provider=g.provider, account=g.account, scope=g.scope, code=g.code.value, reason=g.reason
            )
            for g in gaps
        ]
        self.coverage = LaterCoverage(self.recorded, seen_accounts=seen, known_accounts=known)

    def over(self, who: Identity, regions: list[str] | None) -> RecordedGap | None:
        if not self.recorded:
            return None
        if who.account is not None:
            return self.coverage.gap_over(who.provider, who.account, regions)
        # account not known: any gap of the provider may hide it (unknown is never narrowed)
        return next(
            (
                g
                for g in self.recorded
                if g.provider == who.provider and (g.region is None or not regions or g.region in regions)
            ),
            None,
        )


def _named_by_address(resource: StorageResource) -> bool:
    """A declared record whose name is its own code address: the scanner did not know the real name
    (a name generated at apply, an expression it could not evaluate), so it cannot be matched."""
    return any(e.location is not None and e.location.address == resource.name for e in resource.evidence)


def _everywhere(_: Identity) -> bool:
    return True


def _declared_accounts(declared: list[Identity]) -> Callable[[Identity], bool]:
    """Whether an observed record lies in an account the declared side names (a declared record
    whose account is not known opens its whole provider)."""
    accounts = {(d.provider, d.account.casefold()) for d in declared if d.account is not None}
    open_providers = {d.provider for d in declared if d.account is None}

    def in_scope(observed: Identity) -> bool:
        if observed.provider in open_providers:
            return True
        return observed.account is not None and (observed.provider, observed.account.casefold()) in accounts

    return in_scope


def _regions_of(resource: StorageResource | None) -> list[str] | None:
    if (
        resource is None
        or resource.location is None
        or resource.unknown_reason("location.regions") is not None
    ):
        return None
    return list(resource.location.regions)


def compare(
    declared_path: Path,
    observed_path: Path,
    policies: list[CompiledPolicy],
    *,
    parameters: dict[str, Any] | None = None,
    ignored_tags: Iterable[str] = (),
    only_declared_accounts: bool = False,
    allow_incomplete: bool = False,
    allow_empty: bool = False,
) -> IntentComparison:
    """Compare the declared inventory with the observed one. Bad input raises InputError before
    anything is written."""
    ignored = list(dict.fromkeys(ignored_tags))
    declared = _read(declared_path)
    names = {(r.provider, r.kind, r.name) for r in declared.records}
    observed = _read(observed_path, keep=lambda r: (r.provider, r.kind, r.name) in names)

    evaluate_declared = Evaluator(policies)
    evaluate_observed = Evaluator(policies)
    resources: list[ResourceComparison] = []

    by_name: dict[tuple[str, str, str], list[StorageResource]] = defaultdict(list)
    for record in observed.records:
        by_name[(record.provider, record.kind, record.name)].append(record)
    observed_ids = {id(r): identity(r) for r in observed.records}
    declared_ids = {id(r): identity(r) for r in declared.records}
    declared_by_name: dict[tuple[str, str, str], list[StorageResource]] = defaultdict(list)
    for record in declared.records:
        declared_by_name[(record.provider, record.kind, record.name)].append(record)

    known_accounts = declared.accounts() | observed.accounts()
    hidden_from_observed = _GapCover(observed.gaps, observed.accounts(), known_accounts)
    hidden_from_declared = _GapCover(declared.gaps, declared.accounts(), known_accounts)
    involved: set[int] = set()  # observed records matched or part of an ambiguity

    for record in declared.records:
        who = declared_ids[id(record)]
        name_unknown = record.unknown_reason("name")
        if name_unknown is not None or not record.name.strip() or _named_by_address(record):
            why = (
                _why("declared", name_unknown)
                if name_unknown is not None
                else "declared: the record is named by its code address, the real name is not in the file"
                if record.name.strip()
                else "declared: the name is empty"
            )
            resources.append(ResourceComparison("cannot_match", who, None, reason=f"name not known ({why})"))
            continue
        key = (record.provider, record.kind, record.name)
        candidates = [o for o in by_name.get(key, []) if _matches(who, observed_ids[id(o)])]
        rivals = [
            d
            for d in declared_by_name[key]
            if any(_matches(declared_ids[id(d)], observed_ids[id(o)]) for o in candidates)
        ]
        if len(candidates) == 1 and len(rivals) == 1:
            match = candidates[0]
            involved.add(id(match))
            resources.append(
                _compare_pair(
                    record, match, who, observed_ids[id(match)], evaluate_declared, evaluate_observed, ignored
                )
            )
        elif candidates:
            involved.update(id(o) for o in candidates)
            resources.append(
                ResourceComparison(
                    "cannot_match",
                    who,
                    None,
                    reason=f"{len(rivals)} declared and {len(candidates)} observed record(s) "
                    "share this name: "
                    + _describe([observed_ids[id(o)] for o in candidates])
                    + "; give both sides the account",
                )
            )
        else:
            gap = hidden_from_observed.over(who, _regions_of(record))
            if gap is not None:
                resources.append(
                    ResourceComparison(
                        "cannot_match",
                        who,
                        None,
                        reason=f"not seen: the observed scan has a coverage gap: {gap.describe()}",
                    )
                )
            else:
                resources.append(
                    ResourceComparison(
                        "declared_only",
                        who,
                        None,
                        reason="declared, not observed: not deployed yet, or deleted",
                    )
                )

    in_scope: Callable[[Identity], bool] = _everywhere
    if only_declared_accounts:
        in_scope = _declared_accounts(list(declared_ids.values()))
    unmatched = [observed_ids[id(r)] for r in observed.records if id(r) not in involved] + observed.others
    for who in unmatched:
        if not in_scope(who):
            continue
        gap = hidden_from_declared.over(who, None)
        if gap is not None:
            resources.append(
                ResourceComparison(
                    "cannot_match",
                    None,
                    who,
                    reason=f"the declared inventory has a coverage gap: {gap.describe()}",
                )
            )
        else:
            resources.append(
                ResourceComparison("observed_only", None, who, reason="observed, not declared: not in code")
            )

    order = {state: i for i, state in enumerate(STATES)}
    resources.sort(
        key=lambda r: (
            order[r.state],
            r.identity.provider,
            r.identity.account or "",
            r.identity.name,
            r.identity.id,
        )
    )
    return IntentComparison(
        declared_path=str(declared_path),
        observed_path=str(observed_path),
        compared_at=datetime.now(UTC).isoformat(),
        policies=[p.policy.id for p in policies],
        parameters=dict(parameters or {}),
        ignored_tags=ignored,
        resources=resources,
        allow_incomplete=allow_incomplete,
        allow_empty=allow_empty,
    )


def _compare_pair(
    declared: StorageResource,
    observed: StorageResource,
    declared_who: Identity,
    observed_who: Identity,
    evaluate_declared: Evaluator,
    evaluate_observed: Evaluator,
    ignored_tags: list[str],
) -> ResourceComparison:
    differences, uncompared = compare_attributes(declared, observed, ignored_tags)
    verdicts = _verdicts(
        {f.policy_id: f for f in evaluate_declared.evaluate(declared)},
        {f.policy_id: f for f in evaluate_observed.evaluate(observed)},
    )
    undecided = [v for v in verdicts if v.kind == "cannot_compare"]
    uncompared += [
        CannotCompare(f"policy {v.policy_id}", f"declared {v.declared}, observed {v.observed}")
        for v in undecided
    ]
    state: State
    if differences or len(undecided) < len(verdicts):
        state = "differs"
    elif uncompared:
        state = "incomplete"
    else:
        state = "same"
    return ResourceComparison(state, declared_who, observed_who, differences, uncompared, verdicts)


# --- writing -------------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    if value is None:
        return "absent"
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _rows(comparison: IntentComparison) -> Iterator[tuple[str, str, str, str, str, str]]:
    """(state, resource, what, declared, observed, declared at) for every line of the table and
    Markdown: regressions first, then the other differences, then what could not be compared."""
    for resource in comparison.resources:
        who = resource.identity
        name = f"{who.provider} {who.kind} {who.name}"
        at = _file_line(resource.declared.declared_at if resource.declared else None)
        for verdict in resource.regressions:
            yield (
                "regression",
                name,
                verdict.policy_id,
                verdict.declared,
                f"{verdict.observed}: {verdict.observed_message}",
                at,
            )
    for resource in comparison.resources:
        who = resource.identity
        name = f"{who.provider} {who.kind} {who.name}"
        at = _file_line(resource.declared.declared_at if resource.declared else None)
        if resource.state in ("declared_only", "observed_only", "cannot_match"):
            yield (resource.state.replace("_", " "), name, resource.reason, "", "", at)
            continue
        for difference in resource.differences:
            yield (
                "differs",
                name,
                difference.attribute,
                _shown(difference.declared),
                _shown(difference.observed),
                _file_line(difference.declared_at) or at,
            )
        for verdict in resource.verdicts:
            if verdict.kind == "fixed_outside_code":
                yield ("fixed outside code", name, verdict.policy_id, verdict.declared, verdict.observed, at)
        for item in resource.cannot_compare:
            yield ("cannot compare", name, item.attribute, item.reason, "", at)


def _summary_line(comparison: IntentComparison) -> str:
    s = comparison.summary()
    return (
        f"{s['matched']} matched ({s['same']} same, {s['differs']} differ, {s['incomplete']} incomplete), "
        f"{s['declared_only']} declared only, {s['observed_only']} observed only, "
        f"{s['cannot_match']} could not be matched; {s['regressions']} regression(s) "
        f"(declared passes, observed fails); exit {s['exit_code']}"
    )


def render_table(comparison: IntentComparison, *, width: int = 160, color: bool = False) -> str:
    """The terminal table: every difference and what could not be compared, then the counts."""
    import io

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="declared vs observed", expand=False)
    table.add_column("state", no_wrap=True)
    for column in ("resource", "attribute / policy", "declared", "observed", "declared at"):
        table.add_column(column, overflow="fold")
    shown = 0
    for row in _rows(comparison):
        shown += 1
        table.add_row(*(Text(visible(cell)) for cell in row))
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        no_color=not color,
        highlight=False,
        markup=False,
        emoji=False,
    )
    if shown:
        console.print(table)
    console.print(Text(visible(_summary_line(comparison))))
    return buffer.getvalue()


def render_markdown(comparison: IntentComparison) -> str:
    """A Markdown summary for pull-request comments; cloud values escaped as in the reports."""
    from auditor.report.markdown import md

    s = comparison.summary()
    verdict = (
        "NO DIFFERENCES"
        if s["exit_code"] == EXIT_OK
        else "DIFFERENCES"
        if s["exit_code"] == EXIT_DIFFERENCES
        else "INCOMPLETE"
    )
    out = [f"## auditor drift: {verdict}", "", md(_summary_line(comparison), 400) + ".", ""]
    rows = list(_rows(comparison))
    regressions = [r for r in rows if r[0] == "regression"]
    if regressions:
        out += [
            f"### Declared compliant, observed failing ({len(regressions)})",
            "",
            "| Resource | Policy | Declared | Observed | Declared at |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| {md(r[1], 80)} | {md(r[2])} | {md(r[3])} | {md(r[4], 200)} | {md(r[5], 100)} |"
            for r in regressions
        ]
        out.append("")
    others = [r for r in rows if r[0] != "regression"]
    if others:
        out += [
            f"### Differences and gaps ({len(others)})",
            "",
            "| State | Resource | Attribute / policy | Declared | Observed | Declared at |",
            "|---|---|---|---|---|---|",
        ]
        out += [
            f"| {md(r[0])} | {md(r[1], 80)} | {md(r[2], 200)} | {md(r[3], 200)} | {md(r[4], 200)} "
            f"| {md(r[5], 100)} |"
            for r in others
        ]
        out.append("")
    return "\n".join(out)


RENDER: dict[str, Callable[[IntentComparison], bytes]] = {
    "json": lambda c: orjson.dumps(c.to_json(), option=orjson.OPT_INDENT_2) + b"\n",
    "markdown": lambda c: render_markdown(c).encode(),
    "table": lambda c: render_table(c).encode(),
}


# --- command -------------------------------------------------------------------------------------

_INPUT = click.Path(path_type=Path)


@click.command(
    "drift",
    epilog=exit_codes(
        {
            EXIT_OK: "nothing differs",
            EXIT_DIFFERENCES: "differences: an attribute, a policy verdict, a resource on one side only",
            EXIT_INCOMPLETE: "nothing differs, but something could not be compared",
        }
    ),
)
@click.option(
    "--declared",
    "declared_path",
    required=True,
    type=_INPUT,
    help="Inventory of what the code declares (`auditor scan terraform|cloudformation|arm`).",
)
@click.option(
    "--observed",
    "observed_path",
    required=True,
    type=_INPUT,
    help="Inventory of a live scan (`auditor scan aws|gcp|azure`).",
)
@click.option(
    "--policies",
    "policy_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Policy file or directory (repeatable; default: the shipped policies).",
)
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Policy parameter (repeatable).")
@click.option(
    "--ignore-tag",
    "ignored_tags",
    multiple=True,
    metavar="GLOB",
    help="Tag keys not compared (repeatable, case-insensitive glob), e.g. tags the cloud adds itself.",
)
@click.option(
    "--only-declared-accounts",
    is_flag=True,
    help="Report observed-only resources only in the accounts the declared inventory names.",
)
@click.option(
    "--format", "output_format", type=click.Choice(sorted(RENDER)), default="table", show_default=True
)
@click.option(
    "--output", "-o", type=click.Path(path_type=Path, dir_okay=False), help="Write here (atomically)."
)
@click.option(
    "--allow-incomplete", is_flag=True, help="Exit 0 instead of 3 when something could not be compared."
)
@click.option(
    "--allow-empty", is_flag=True, help="Exit 0 instead of 3 when neither inventory holds a resource."
)
def command(
    declared_path: Path,
    observed_path: Path,
    policy_paths: tuple[Path, ...],
    params: tuple[str, ...],
    ignored_tags: tuple[str, ...],
    only_declared_accounts: bool,
    output_format: str,
    output: Path | None,
    allow_incomplete: bool,
    allow_empty: bool,
) -> None:
    """Compare what infrastructure as code declares with what a live scan observed."""
    from auditor.atomicfile import atomic_output

    parameters = parse_param_args(params)
    policies = prepare_check(
        CheckOptions(inventory=declared_path, policy_paths=list(policy_paths), params=parameters)
    )[0]
    comparison = compare(
        declared_path,
        observed_path,
        policies,
        parameters=parameters,
        ignored_tags=ignored_tags,
        only_declared_accounts=only_declared_accounts,
        allow_incomplete=allow_incomplete,
        allow_empty=allow_empty,
    )
    if output_format == "table":
        data = render_table(comparison, color=output is None and sys.stdout.isatty()).encode()
    else:
        data = RENDER[output_format](comparison)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        with atomic_output(output) as handle:
            handle.write(data)
    document_on_stdout = output is None and output_format != "table"  # json, markdown
    lines = [] if output is None and output_format == "table" else [_summary_line(comparison)]
    if output is not None:
        lines.insert(0, f"drift written to {output}")
    reason = comparison.incomplete_reason()
    if reason is not None:
        lines.append(reason)
    for line in lines:  # the table ends with the summary line; beside a document, stderr
        result(line, beside_document=document_on_stdout)
    sys.exit(comparison.exit_code)
