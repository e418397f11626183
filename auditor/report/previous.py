"""A previous run as drift needs it, read one finding at a time so memory stays bounded.

`auditor report --previous` says what changed since an earlier run (`view.ChangesCollector`).
Holding the earlier document whole costs memory in proportion to its findings and their evidence
(gigabytes at a million findings); drift needs far less: each finding's status by its key (policy
id, resource id), and for the failures a later run no longer reports, the resource facts a "fixed"
or "not assessed" entry shows: those are read again, so memory grows with the number of findings
only by a digest and a status each (`auditor.drift.StatusTable`, 20 to 50 bytes a finding). Keys
are kept as 128-bit BLAKE2b digests (a collision among a billion keys has odds below 1e-20).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from auditor.document import FindingRecord, FindingsDocument, RunInfo
from auditor.drift import RecordedGap, StatusTable, key_digest
from auditor.findings import Severity, Status
from auditor.findings_stream import FindingsStream


@dataclass(frozen=True, slots=True)
class FindingFacts:
    """What a row of the changes shows of a finding: its policy and severity, its resource, and the
    resource's regions (which coverage gap of a later run hides it)."""

    policy_id: str
    severity: Severity
    provider: str
    account: str
    name: str
    resource_id: str
    regions: tuple[str, ...]

    @classmethod
    def of(cls, finding: FindingRecord) -> FindingFacts:
        """The facts of `finding`."""
        resource = finding.resource
        return cls(
            policy_id=finding.policy_id,
            severity=finding.severity,
            provider=resource.provider,
            account=resource.account,
            name=resource.name,
            resource_id=resource.id,
            regions=tuple(resource.regions),
        )


class PreviousRun:
    """What drift needs of an earlier run: its id, start, coverage gaps and the accounts it saw, and
    each finding's status by key digest (`statuses`); the facts of its failures are read again,
    for the few a later run no longer reports (`failures_among`).

    `findings` gives the run's findings, read once for the statuses and again for the facts. A run
    kept elsewhere (the audit history) leaves it out and overrides `_statuses` and `_failures`.
    """

    def __init__(self, run: RunInfo, findings: Callable[[], Iterable[FindingRecord]] | None = None) -> None:
        self.id = run.id
        self.started_at = run.started_at
        self.gaps: list[RecordedGap] = [gap.coverage_gap() for gap in run.coverage.gaps]
        self._findings = findings or (lambda: ())
        accounts = {(account.provider, account.account) for account in run.coverage.accounts}
        statuses = StatusTable(expected=run.counts.findings)
        for key, status, provider, account in self._statuses():
            accounts.add((provider, account))
            statuses[key_digest(key)] = status  # a key repeated: the last holds
        self.accounts = accounts
        self.statuses = statuses

    def failures_among(self, digests: set[int]) -> Iterator[FindingFacts]:
        """The failures whose key digest is in `digests`, in document order, with their facts."""
        facts = dict(self._failures(digests))  # a key repeated: the last holds
        statuses = self.statuses
        yield from (fact for digest, fact in facts.items() if statuses[digest] == Status.FAIL.value)

    def _statuses(self) -> Iterator[tuple[tuple[str, str], str, str, str]]:
        """Each finding's key, status, provider and account, in document order."""
        for finding in self._findings():
            resource = finding.resource
            yield finding.key, finding.status.value, resource.provider, resource.account

    def _failures(self, digests: set[int]) -> Iterator[tuple[int, FindingFacts]]:
        """The failures whose key digest is in `digests`, with that digest, in document order."""
        for finding in self._findings():
            if finding.status is Status.FAIL:
                digest = key_digest(finding.key)
                if digest in digests:
                    yield digest, FindingFacts.of(finding)

    @classmethod
    def open(cls, path: Path) -> PreviousRun:
        """The findings document at `path`, read one finding at a time (bad input: InputError)."""
        stream = FindingsStream.open(path)
        return cls(stream.run, lambda: stream.findings(as_written=True))

    @classmethod
    def of(cls, previous: PreviousRun | FindingsDocument) -> PreviousRun:
        """`previous` as a PreviousRun (a document in memory is summarised)."""
        if isinstance(previous, PreviousRun):
            return previous
        return cls(previous.run, lambda: previous.findings)
