"""The run history: every audit run and its findings, in SQLite (default) or any SQLAlchemy database.

SQLite runs in WAL mode; each run is written in one transaction, so a run killed midway leaves
nothing behind. Findings are matched across runs by policy id + resource id (never by name).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from auditor.audit.config import redact_url
from auditor.document import (
    FindingsDocument,
    RunInfo,
    check_run,
    plain,
)
from auditor.drift import (
    SECTIONS,
    LaterCoverage,
    RecordedGap,
    StatusTable,
    classify_change,
    gap_changes,
    key_digest,
)
from auditor.errors import InputError
from auditor.findings import Severity, Status
from auditor.report.previous import FindingFacts, PreviousRun

metadata = MetaData()

runs_table = Table(
    "auditor_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("job", String(200), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True), nullable=False, index=True),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("tool_version", String(64), nullable=False),
    Column("config_digest", String(64), nullable=False),
    Column("exit_code", Integer, nullable=False),
    Column("fail_count", Integer, nullable=False),
    Column("error_count", Integer, nullable=False),
    Column("waived_count", Integer, nullable=False),
    Column("pass_count", Integer, nullable=False),
    Column("baselined_count", Integer, nullable=False),
    Column("resources", Integer, nullable=False),
    Column("bundle", Text, nullable=True),
    Column("manifest_sha256", String(64), nullable=True),
    Column("run_json", Text, nullable=False),
)

findings_table = Table(
    "auditor_findings",
    metadata,
    Column("run_id", String(64), ForeignKey("auditor_runs.id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("policy_id", String(200), nullable=False),
    Column("resource_id", Text, nullable=False),
    Column("provider", String(16), nullable=False),
    Column("account", Text, nullable=False),
    Column("resource_name", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("underlying_status", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("baselined", Boolean, nullable=False),
    Column("controls", Text, nullable=False),
    Column("data", Text, nullable=False),
)
Index("ix_auditor_findings_run", findings_table.c.run_id)

coverage_table = Table(
    "auditor_coverage",
    metadata,
    Column("run_id", String(64), ForeignKey("auditor_runs.id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("provider", String(16), nullable=False),
    Column("account", Text, nullable=False),
    Column("kind", String(16), nullable=False),  # "scanned" or "gap"
    Column("scope", Text, nullable=True),
    Column("reason", Text, nullable=True),
)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _parse_time(text: str) -> datetime:
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


@dataclass(frozen=True)
class RunSummary:
    """One recorded run, without its findings."""

    id: str
    job: str
    started_at: datetime
    finished_at: datetime
    tool_version: str
    config_digest: str
    exit_code: int
    counts: dict[str, int]
    resources: int
    bundle: str | None
    manifest_sha256: str | None

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "job": self.job,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "tool_version": self.tool_version,
            "config_digest": self.config_digest,
            "exit_code": self.exit_code,
            "counts": self.counts,
            "resources": self.resources,
            "bundle": self.bundle,
            "manifest_sha256": self.manifest_sha256,
        }


@dataclass(frozen=True)
class FindingRow:
    """The parts of a stored finding that drift and period reports need."""

    policy_id: str
    resource_id: str
    provider: str
    account: str
    resource_name: str
    status: str
    severity: str
    baselined: bool
    controls: dict[str, list[str]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """Identity across runs: policy id + resource id."""
        return (self.policy_id, self.resource_id)


@dataclass(frozen=True)
class Change:
    """One finding that moved between two runs; `before`/`after` are statuses or None if absent."""

    policy_id: str
    resource_id: str
    provider: str
    account: str
    resource_name: str
    severity: str
    before: str | None
    after: str | None
    gap: RecordedGap | None = None  # not assessed: the later run's coverage gap that hid it

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready form (`gap` only on not-assessed changes)."""
        out: dict[str, Any] = {
            "policy_id": self.policy_id,
            "resource": {
                "id": self.resource_id,
                "provider": self.provider,
                "account": self.account,
                "name": self.resource_name,
            },
            "severity": self.severity,
            "before": self.before,
            "after": self.after,
        }
        if self.gap is not None:
            out["gap"] = self.gap.to_json_dict()
        return out


@dataclass
class RunDiff:
    """What changed from run `a` to run `b`."""

    a: RunSummary
    b: RunSummary
    new_failures: list[Change] = field(default_factory=list)
    fixed: list[Change] = field(default_factory=list)
    still_failing: list[Change] = field(default_factory=list)
    newly_unknown: list[Change] = field(default_factory=list)
    newly_waived: list[Change] = field(default_factory=list)
    not_assessed: list[Change] = field(default_factory=list)
    new_gaps: list[RecordedGap] = field(default_factory=list)
    closed_gaps: list[RecordedGap] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # changes by section, listed or not

    SECTIONS = SECTIONS

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = {"from": self.a.to_json_dict(), "to": self.b.to_json_dict()}
        for name in self.SECTIONS:
            out[name] = [c.to_json_dict() for c in getattr(self, name)]
        out["coverage_gaps"] = {
            "new": [g.to_json_dict() for g in self.new_gaps],
            "closed": [g.to_json_dict() for g in self.closed_gaps],
        }
        return out

    def text_lines(self) -> list[str]:
        """The text form `auditor history diff` prints."""
        lines = [
            f"from {self.a.id} ({self.a.started_at:%Y-%m-%d %H:%M}Z)",
            f"to   {self.b.id} ({self.b.started_at:%Y-%m-%d %H:%M}Z)",
        ]
        for section in self.SECTIONS:
            changes: list[Change] = getattr(self, section)
            lines.append(f"{section.replace('_', ' ')}: {len(changes)}")
            if section == "still_failing":
                continue
            for change in changes:
                after = change.after or ("not assessed" if change.gap is not None else "absent")
                lines.append(
                    f"  {change.before or 'absent'} -> {after}  {change.severity:8} "
                    f"{change.policy_id}  {change.provider} {change.account} {change.resource_name}  "
                    f"({change.resource_id})"
                    + (
                        f"  [gap: {change.gap.provider} {change.gap.account} {change.gap.scope}]"
                        if change.gap
                        else ""
                    )
                )
        for title, gaps in (("new coverage gaps", self.new_gaps), ("closed coverage gaps", self.closed_gaps)):
            lines.append(f"{title}: {len(gaps)}")
            lines.extend(f"  {gap.describe()}" for gap in gaps)
        return lines


ChangedRow = tuple[FindingRow, str | None, str | None]


class DriftRows(dict[str, list[ChangedRow]]):
    """`diff_rows`' answer: the changed rows of each listed section, and `counts`, how many
    findings moved into each section (listed or not)."""

    counts: Counter[str]


def diff_rows(
    a: Sequence[FindingRow] | Callable[[], Iterable[FindingRow]],
    b: Sequence[FindingRow] | Callable[[], Iterable[FindingRow]],
    coverage: LaterCoverage | None = None,
    regions: Mapping[tuple[str, str], Sequence[str] | None]
    | Callable[[set[tuple[str, str]]], Mapping[tuple[str, str], Sequence[str] | None]]
    | None = None,
    *,
    expected: int = 0,
    listed: Collection[str] = SECTIONS,
) -> DriftRows:
    """Classify findings of two runs by key: (row, status before, status after) per section.

    `a` and `b` may be functions giving their rows (streams, each read at most twice): memory then
    holds a status per key of `a` (a digest, `auditor.drift.key_digest`, in a `StatusTable`), a
    section per key that changed, and the rows of the `listed` sections only (the others are
    counted). `coverage` is the later run's blind spots: a finding absent from `b` whose resource
    lies under one of its gaps is not assessed, never fixed. `regions` gives, by key, the regions of
    rows of `a` where a region-scoped gap must decide (missing: unknown, so covered); as a function
    it is asked for those keys only. A key repeated within a run: its last row holds. `expected`:
    about how many rows `a` has (sizes the table of its statuses).
    """
    rows_a: Callable[[], Iterable[FindingRow]] = a if callable(a) else (lambda: a)
    rows_b: Callable[[], Iterable[FindingRow]] = b if callable(b) else (lambda: b)
    before = StatusTable(((key_digest(row.key), row.status) for row in rows_a()), expected=expected)
    # The section of each key of `b` that moved ("" for none, as when a later row of the key did
    # not), and of each key failing in `a` that `b` reports: the failures not in it are gone.
    moved = StatusTable()
    kept: dict[int, ChangedRow] = {}  # rows of the listed sections
    for row in rows_b():
        digest = key_digest(row.key)
        was = before.get(digest)
        section = classify_change(was, row.status)
        if section is not None or was == "fail" or digest in moved:
            moved[digest] = section or ""
        if section in listed:
            kept[digest] = (row, was, row.status)
        else:
            kept.pop(digest, None)
    gone_keys = {digest for digest, was in before.items() if was == "fail" and digest not in moved}
    gone = (
        {digest: row for row in rows_a() if (digest := key_digest(row.key)) in gone_keys} if gone_keys else {}
    )
    if callable(regions):
        need = {
            row.key for row in gone.values() if coverage and coverage.needs_regions(row.provider, row.account)
        }
        regions = regions(need)
    for digest, row in gone.items():
        assessed = True
        if coverage:
            where = (regions or {}).get(row.key)
            assessed = coverage.gap_over(row.provider, row.account, where) is None
        section = classify_change(before[digest], None, assessed=assessed)
        if section is not None:
            moved[digest] = section
            if section in listed:
                kept[digest] = (row, before[digest], None)
    out = DriftRows({name: [] for name in SECTIONS if name in listed})
    out.counts = Counter(section for _, section in moved.items() if section)
    for digest, item in kept.items():
        out[moved[digest]].append(item)
    for changed in out.values():
        changed.sort(key=lambda item: (item[0].policy_id, item[0].resource_id))
    return out


class _StoredRun(PreviousRun):
    """A run of the history as drift reads it (`History.previous_run`)."""

    def __init__(self, history: History, run_id: str) -> None:
        self._history = history
        super().__init__(history.run_info(run_id))

    def _statuses(self) -> Iterator[tuple[tuple[str, str], str, str, str]]:
        for row in self._history.iter_finding_rows(self.id):
            yield row.key, row.status, row.provider, row.account

    def _failures(self, digests: set[int]) -> Iterator[tuple[int, FindingFacts]]:
        rows = {
            digest: row
            for row in self._history.iter_finding_rows(self.id)
            if row.status == Status.FAIL.value and (digest := key_digest(row.key)) in digests
        }
        regions = self._history.finding_regions(self.id, {row.key for row in rows.values()})
        for digest, row in rows.items():
            yield (
                digest,
                FindingFacts(
                    policy_id=row.policy_id,
                    severity=Severity(row.severity),
                    provider=row.provider,
                    account=row.account,
                    name=row.resource_name,
                    resource_id=row.resource_id,
                    regions=tuple(regions.get(row.key) or ()),
                ),
            )


@dataclass
class PruneResult:
    """Which runs a prune removed and which old ones it kept as period baselines."""

    deleted: list[RunSummary]
    kept_as_baseline: list[RunSummary]


def normalize_url(url: str) -> str:
    """SQLAlchemy URL with the psycopg (3) driver for plain postgresql:// URLs."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: e.g. a port that is not a number
        raise InputError("--database", f"not a SQLAlchemy database URL: {redact_url(url)}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class History:
    """The run store. Open with a SQLAlchemy URL; tables are created on first use."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = create_engine(self.url, future=True)
        except (NoSuchModuleError, ImportError) as exc:
            raise InputError("--database", f"no driver for {redact_url(url)}: {exc}") from exc
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(self.engine)
        except OperationalError as exc:
            raise InputError(redact_url(url), f"cannot open the history database: {exc.orig or exc}") from exc

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------------------

    def record(
        self,
        document: FindingsDocument | Mapping[str, Any],
        *,
        job: str,
        config_digest: str,
        bundle: str | None = None,
        manifest_sha256: str | None = None,
    ) -> RunSummary:
        """Store one run and all its findings in one transaction.

        `document` is the typed findings document, or its JSON object (as `document` returns it);
        the history keeps the JSON form.
        """
        if isinstance(document, FindingsDocument):
            run = plain(document.run)
            texts: Iterable[bytes] = (orjson.dumps(plain(f)) for f in document.findings)
        else:
            run = document["run"]
            texts = (orjson.dumps(f) for f in document["findings"])
        return self.record_texts(
            run, texts, job=job, config_digest=config_digest, bundle=bundle, manifest_sha256=manifest_sha256
        )

    def record_texts(
        self,
        run: Mapping[str, Any],
        findings: Iterable[bytes],
        *,
        job: str,
        config_digest: str,
        bundle: str | None = None,
        manifest_sha256: str | None = None,
    ) -> RunSummary:
        """`record` from the run's JSON object and each finding's JSON text, read one at a time (a
        stream: memory stays flat however many findings there are)."""
        by_status = run["counts"]["by_status"]
        row = {
            "id": run["id"],
            "job": job,
            "started_at": _parse_time(run["started_at"]),
            "finished_at": _parse_time(run["finished_at"]),
            "tool_version": run["tool"]["version"],
            "config_digest": config_digest,
            "exit_code": int(run["gate"]["exit_code"]),
            "fail_count": int(by_status.get("fail", 0)),
            "error_count": int(by_status.get("error", 0)),
            "waived_count": int(by_status.get("waived", 0)),
            "pass_count": int(by_status.get("pass", 0)),
            "baselined_count": 0,  # counted as the findings are stored
            "resources": int(run["coverage"]["resources"]),
            "bundle": bundle,
            "manifest_sha256": manifest_sha256,
            "run_json": orjson.dumps(run).decode(),
        }
        coverage = run["coverage"]
        coverage_rows = [
            {
                "provider": a["provider"],
                "account": a["account"],
                "kind": "scanned",
                "scope": None,
                "reason": None,
            }
            for a in coverage.get("accounts", [])
        ] + [
            {
                "provider": g.get("provider", ""),
                "account": g.get("account", ""),
                "kind": "gap",
                "scope": g.get("scope"),
                "reason": f"{g.get('code', '')}: {g.get('reason', '')}",
            }
            for g in coverage.get("gaps", [])
        ]
        baselined = 0
        with self.engine.begin() as conn:
            conn.execute(insert(runs_table), [row])
            batch: list[dict[str, Any]] = []
            for seq, text in enumerate(findings):
                finding_row = _finding_row(run["id"], seq, text)
                baselined += finding_row["baselined"]
                batch.append(finding_row)
                if len(batch) >= 1000:
                    conn.execute(insert(findings_table), batch)
                    batch = []
            if batch:
                conn.execute(insert(findings_table), batch)
            if baselined:
                conn.execute(
                    update(runs_table).where(runs_table.c.id == run["id"]).values(baselined_count=baselined)
                )
            if coverage_rows:
                conn.execute(
                    insert(coverage_table),
                    [{"run_id": run["id"], "seq": i, **c} for i, c in enumerate(coverage_rows)],
                )
        return self.get(run["id"])

    # --- reading -------------------------------------------------------------------------------

    def list_runs(
        self,
        *,
        job: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[RunSummary]:
        """Runs, newest first by default, optionally of one job and inside [since, until)."""
        query = select(runs_table)
        if job is not None:
            query = query.where(runs_table.c.job == job)
        if since is not None:
            query = query.where(runs_table.c.started_at >= since)
        if until is not None:
            query = query.where(runs_table.c.started_at < until)
        order = runs_table.c.started_at.desc() if newest_first else runs_table.c.started_at.asc()
        query = query.order_by(order, runs_table.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_summary(r._mapping) for r in conn.execute(query)]

    def jobs(self) -> list[str]:
        """The job names that have runs."""
        with self.engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(select(runs_table.c.job).distinct()))

    def get(self, run_id: str) -> RunSummary:
        """One run by exact id."""
        with self.engine.connect() as conn:
            found = conn.execute(select(runs_table).where(runs_table.c.id == run_id)).first()
        if found is None:
            raise InputError(run_id, "no such run in the history")
        return _summary(found._mapping)

    def resolve(self, ref: str, *, job: str | None = None) -> RunSummary:
        """A run by id, unique id prefix, `latest` or `latest~N` (N runs before the latest)."""
        if ref == "latest" or ref.startswith("latest~"):
            back = 0
            if ref != "latest":
                try:
                    back = int(ref.partition("~")[2])
                except ValueError as exc:
                    raise InputError(ref, "expected latest~N with a number N") from exc
            runs = self.list_runs(job=job, limit=back + 1)
            if len(runs) <= back:
                raise InputError(ref, f"the history has only {len(runs)} run(s)")
            return runs[back]
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(runs_table).where(runs_table.c.id.startswith(ref, autoescape=True)).limit(2)
            ).all()
        if not rows:
            raise InputError(ref, "no such run in the history (see `auditor history list`)")
        if len(rows) > 1:
            raise InputError(ref, "ambiguous run id prefix: give more characters")
        return _summary(rows[0]._mapping)

    def last_run(self, job: str) -> RunSummary | None:
        """The newest run of `job`, if any."""
        runs = self.list_runs(job=job, limit=1)
        return runs[0] if runs else None

    def iter_finding_dicts(self, run_id: str) -> Iterator[dict[str, Any]]:
        """The run's findings, as findings-JSON dicts, in their original order."""
        for text in self.iter_finding_texts(run_id):
            yield orjson.loads(text)

    def iter_finding_texts(self, run_id: str) -> Iterator[str]:
        """The run's findings as stored (each one's JSON text), in their original order, one at a time."""
        query = (
            select(findings_table.c.data)
            .where(findings_table.c.run_id == run_id)
            .order_by(findings_table.c.seq)
        )
        with self.engine.connect().execution_options(stream_results=True, yield_per=1000) as conn:
            for (data,) in conn.execute(query):
                yield data

    def run_info(self, run_id: str) -> RunInfo:
        """The run's `run` object, typed and checked like a findings file's."""
        return check_run(self.run_object(run_id), f"history run {run_id}")

    def previous_run(self, run_id: str) -> PreviousRun:
        """The run as the reports' changes read an earlier run: from the findings' columns, one
        finding at a time, without reading their JSON (but for the regions of failures)."""
        return _StoredRun(self, run_id)

    def document(self, run_id: str) -> dict[str, Any]:
        """The run's findings JSON document as a JSON object (`{"run": ..., "findings": [...]}`)."""
        return {"run": self.run_object(run_id), "findings": list(self.iter_finding_dicts(run_id))}

    def iter_finding_rows(self, run_id: str, *, controls: bool = False) -> Iterator[FindingRow]:
        """The run's findings without their evidence, one at a time (`controls`: with them)."""
        c = findings_table.c
        columns = [c.policy_id, c.resource_id, c.provider, c.account, c.resource_name, c.status, c.severity]
        query = select(*columns, c.baselined, c.controls if controls else c.seq).where(c.run_id == run_id)
        with self.engine.connect().execution_options(stream_results=True, yield_per=1000) as conn:
            for r in conn.execute(query.order_by(c.seq)):
                yield FindingRow(*r[:7], bool(r[7]), orjson.loads(r[8]) if controls else {})

    def finding_accounts(self, run_id: str) -> set[tuple[str, str]]:
        """(provider, account) of every finding of the run."""
        c = findings_table.c
        query = select(c.provider, c.account).where(c.run_id == run_id).distinct()
        with self.engine.connect() as conn:
            return {(r.provider, r.account) for r in conn.execute(query)}

    def coverage(self, run_id: str) -> list[dict[str, Any]]:
        """Accounts scanned and coverage gaps of a run."""
        c = coverage_table.c
        query = (
            select(c.provider, c.account, c.kind, c.scope, c.reason).where(c.run_id == run_id).order_by(c.seq)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def count_findings(self, run_id: str) -> int:
        """How many findings the run stored."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(findings_table).where(findings_table.c.run_id == run_id)
                ).scalar_one()
            )

    def coverage_gaps(self, run_id: str) -> list[RecordedGap]:
        """The run's coverage gaps (from `auditor_coverage`, where `reason` is `code: reason`)."""
        gaps = []
        for item in self.coverage(run_id):
            if item["kind"] != "gap":
                continue
            code, sep, reason = (item["reason"] or "").partition(": ")
            gaps.append(
                RecordedGap(
                    provider=item["provider"],
                    account=item["account"],
                    scope=item["scope"] or "account",
                    code=code if sep else "",
                    reason=reason if sep else code,
                )
            )
        return gaps

    def scanned_accounts(self, run_id: str) -> set[tuple[str, str]]:
        """(provider, account) of every account the run has a resource in."""
        return {(c["provider"], c["account"]) for c in self.coverage(run_id) if c["kind"] == "scanned"}

    def run_object(self, run_id: str) -> dict[str, Any]:
        """The run's `run` object of the findings JSON (without the findings)."""
        with self.engine.connect() as conn:
            found = conn.execute(select(runs_table.c.run_json).where(runs_table.c.id == run_id)).first()
        if found is None:
            raise InputError(run_id, "no such run in the history")
        return dict(orjson.loads(found[0]))

    def finding_regions(self, run_id: str, keys: set[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
        """`resource.regions` of the run's findings with these keys (policy id, resource id)."""
        out: dict[tuple[str, str], list[str]] = {}
        if not keys:
            return out
        c = findings_table.c
        resources = sorted({rid for _, rid in keys})
        with self.engine.connect() as conn:
            for start in range(0, len(resources), 500):
                query = select(c.policy_id, c.resource_id, c.data).where(
                    c.run_id == run_id, c.resource_id.in_(resources[start : start + 500])
                )
                for row in conn.execute(query):
                    if (row.policy_id, row.resource_id) in keys:
                        regions = orjson.loads(row.data).get("resource", {}).get("regions")
                        out[(row.policy_id, row.resource_id)] = [str(r) for r in regions or []]
        return out

    def diff(self, a: RunSummary, b: RunSummary, *, listed: Collection[str] = SECTIONS) -> RunDiff:
        """New failures, fixed, still failing, newly unknown, newly waived, and not assessed from
        `a` to `b`, and the coverage gaps opened and closed between them.

        A failure absent from `b` whose resource lies under a coverage gap of `b` is not assessed,
        never fixed (see `auditor.drift`). Only the `listed` sections list their changes (memory
        holds each one); every section is counted (`RunDiff.counts`).
        """
        result = RunDiff(a=a, b=b)
        gaps_a, gaps_b = self.coverage_gaps(a.id), self.coverage_gaps(b.id)
        seen_b = self.scanned_accounts(b.id) | self.finding_accounts(b.id)
        known = self.scanned_accounts(a.id) | self.finding_accounts(a.id)
        coverage = LaterCoverage(gaps_b, seen_accounts=seen_b, known_accounts=known)
        regions: dict[tuple[str, str], list[str]] = {}

        def regions_of(keys: set[tuple[str, str]]) -> Mapping[tuple[str, str], Sequence[str] | None]:
            regions.update(self.finding_regions(a.id, keys))
            return regions

        rows = diff_rows(
            lambda: self.iter_finding_rows(a.id),
            lambda: self.iter_finding_rows(b.id),
            coverage,
            regions_of if coverage else None,
            expected=sum(n for status, n in a.counts.items() if status != "baselined"),
            listed=listed,
        )
        result.counts = {section: rows.counts[section] for section in SECTIONS}
        for section, changed in rows.items():
            getattr(result, section).extend(
                Change(
                    policy_id=row.policy_id,
                    resource_id=row.resource_id,
                    provider=row.provider,
                    account=row.account,
                    resource_name=row.resource_name,
                    severity=row.severity,
                    before=was,
                    after=now,
                    gap=coverage.gap_over(row.provider, row.account, regions.get(row.key))
                    if section == "not_assessed"
                    else None,
                )
                for row, was, now in changed
            )
        result.new_gaps, result.closed_gaps = gap_changes(gaps_a, gaps_b)
        return result

    # --- retention -----------------------------------------------------------------------------

    def prune(
        self,
        keep_days: int,
        *,
        protect_from: date | None = None,
        now: datetime | None = None,
        dry_run: bool = False,
    ) -> PruneResult:
        """Delete runs older than `keep_days`, never those a period report needs.

        Kept regardless of age: every run on or after `protect_from` (an open audit period), and,
        per job, the newest run before the retained window: it is the state the window starts
        from, so a period report can tell "failing since before the period" from "first failed".
        """
        if keep_days < 1:
            raise InputError("--keep-days", "must be at least 1")
        current = _utc(now or datetime.now(UTC))
        boundary = current - timedelta(days=keep_days)
        if protect_from is not None:
            boundary = min(boundary, datetime.combine(protect_from, time.min, tzinfo=UTC))
        old = self.list_runs(until=boundary, newest_first=True)
        keep: dict[str, RunSummary] = {}
        deleted: list[RunSummary] = []
        for run in old:
            if run.job not in keep:
                keep[run.job] = run
            else:
                deleted.append(run)
        if deleted and not dry_run:
            ids = [r.id for r in deleted]
            with self.engine.begin() as conn:
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    conn.execute(delete(findings_table).where(findings_table.c.run_id.in_(chunk)))
                    conn.execute(delete(coverage_table).where(coverage_table.c.run_id.in_(chunk)))
                    conn.execute(delete(runs_table).where(runs_table.c.id.in_(chunk)))
        return PruneResult(deleted=deleted, kept_as_baseline=sorted(keep.values(), key=lambda r: r.job))


def _finding_row(run_id: str, seq: int, text: bytes) -> dict[str, Any]:
    """The row of one finding, from its JSON text (kept as `data`)."""
    finding = orjson.loads(text)
    resource = finding["resource"]
    return {
        "run_id": run_id,
        "seq": seq,
        "policy_id": finding["policy_id"],
        "resource_id": resource["id"],
        "provider": resource["provider"],
        "account": resource["account"],
        "resource_name": resource["name"],
        "status": finding["status"],
        "underlying_status": finding.get("underlying_status", finding["status"]),
        "severity": finding["severity"],
        "baselined": bool(finding.get("baselined", False)),
        "controls": orjson.dumps(finding.get("controls", {})).decode(),
        "data": text.decode(),
    }


def _summary(row: Any) -> RunSummary:
    return RunSummary(
        id=row["id"],
        job=row["job"],
        started_at=_utc(row["started_at"]),
        finished_at=_utc(row["finished_at"]),
        tool_version=row["tool_version"],
        config_digest=row["config_digest"],
        exit_code=row["exit_code"],
        counts={
            "fail": row["fail_count"],
            "error": row["error_count"],
            "waived": row["waived_count"],
            "pass": row["pass_count"],
            "baselined": row["baselined_count"],
        },
        resources=row["resources"],
        bundle=row["bundle"],
        manifest_sha256=row["manifest_sha256"],
    )
