"""The period report (SOC 2 Type 2 style): each control's status in every run of a window.

For each control of a framework: a timeline of its status per run, the share of runs in which it
was effective, when it first failed and when it was fixed, and the gaps: stretches longer than
the schedule interval (plus grace) with no run. A missed run is a gap, never compliant.

Control status in one run, from the findings of the policies mapped to it (`control_status` of
auditor.frameworks, the same function as the report's control matrix): failing (any fail,
baselined included) > unknown (any error) > exceptions (waived) > effective (all pass) >
not_tested (no policy maps to it).

Coverage decides whether a run is a test at all. Unknown is never compliant:

- nothing_evaluated: the run evaluated no resource (no credentials, every account a gap). It is
  no test of any control, whatever its findings say.
- incomplete: the run had coverage gaps (an account, subscription, project, region or listing it
  could not scan) and the control would otherwise be effective, effective with exceptions or
  untested. A gap hides resources of unknown number and kind, so a run with any gap is an
  incomplete test of every control that one of the run's policies maps to (without a policy list,
  of every control its findings name; with neither, of every control). A failure or an error seen
  in such a run still counts as failing or unknown.

Neither is effective, so neither closes an open failure nor counts towards the effective share;
the summary is `complete` only when no run in the window was missed, had a gap or evaluated nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from auditor import __version__
from auditor.audit.config import format_duration
from auditor.audit.history import History, RunSummary
from auditor.drift import RecordedGap
from auditor.errors import InputError
from auditor.frameworks import ControlStatus, control_status, load_framework
from auditor.report.html import finalize_visible


@dataclass(frozen=True)
class Gap:
    """A stretch of the window with no run for longer than interval + grace."""

    start: datetime
    end: datetime
    missed_runs: int

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "hours": round((self.end - self.start).total_seconds() / 3600, 1),
            "missed_runs": self.missed_runs,
        }


def find_gaps(
    times: list[datetime], start: datetime, end: datetime, interval: timedelta, grace: timedelta
) -> list[Gap]:
    """Gaps between window start, each run, and window end longer than interval + grace."""
    points = [start, *sorted(times), end]
    gaps: list[Gap] = []
    for i in range(len(points) - 1):
        a, b = points[i], points[i + 1]
        span = b - a
        if span <= interval + grace:
            continue
        whole = math.floor(span / interval)
        boundary = i == 0 or i == len(points) - 2  # window edge: no run at the edge itself
        missed = max(1, whole if boundary else whole - 1)
        gaps.append(Gap(a, b, missed))
    return gaps


def _job_of_window(history: History, job: str | None, since: datetime, until: datetime) -> str | None:
    if job is not None:
        return job
    jobs = sorted({r.job for r in history.list_runs(since=since, until=until)})
    if len(jobs) > 1:
        raise InputError(
            "--job", f"the history holds several jobs in this window ({', '.join(jobs)}): pick one"
        )
    return jobs[0] if jobs else None


def build_period_report(
    history: History,
    start: date,
    end: date,
    *,
    framework: str = "soc2",
    interval: timedelta = timedelta(days=1),
    grace: timedelta = timedelta(hours=1),
    job: str | None = None,
    policy_paths: list[Path] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The period report as a JSON-ready dict (`render_period_html` turns it into HTML)."""
    if end < start:
        raise InputError("--to", "must not be before --from")
    window_start = datetime.combine(start, time.min, tzinfo=UTC)
    window_end = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    current = now or datetime.now(UTC)
    observed_end = min(window_end, current)
    definition = load_framework(framework, policy_paths or [])
    catalog = definition.controls
    chosen_job = _job_of_window(history, job, window_start, window_end)
    runs = history.list_runs(job=chosen_job, since=window_start, until=window_end, newest_first=False)
    before = history.list_runs(job=chosen_job, until=window_start, limit=1) if chosen_job else []
    gaps = find_gaps([r.started_at for r in runs], window_start, observed_end, interval, grace)

    control_ids = [c.id for c in catalog]
    per_run: list[tuple[RunSummary, dict[str, dict[str, int]]]] = []
    coverage: dict[str, RunCoverage] = {}
    for run in runs:
        counts = _control_counts(history, run.id, framework, control_ids)
        per_run.append((run, counts))
        coverage[run.id] = _run_coverage(history, run, framework, counts)
    start_state: dict[str, str] = {}
    if before:
        counts = _control_counts(history, before[0].id, framework, control_ids)
        start_state = {cid: control_status(c).status.value for cid, c in counts.items()}
    extra = sorted({cid for _, counts in per_run for cid in counts} - set(control_ids))
    titles = {c.id: c.title for c in catalog}

    controls: list[dict[str, Any]] = []
    for cid in control_ids + extra:
        controls.append(
            _control_entry(cid, titles.get(cid, ""), per_run, gaps, start_state.get(cid), coverage)
        )
    expected = len(runs) + sum(g.missed_runs for g in gaps)
    with_gaps = [r.id for r in runs if coverage[r.id].gaps]
    empty = [r.id for r in runs if coverage[r.id].nothing_evaluated]
    return {
        "report": "period",
        "tool": {"name": "auditor", "version": __version__},
        "generated_at": current.isoformat(),
        "framework": {"id": framework, "title": definition.title},
        "job": chosen_job,
        "window": {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "observed_until": observed_end.isoformat(),
        },
        "schedule": {"interval": format_duration(interval), "grace": format_duration(grace)},
        "runs": [
            {
                "id": r.id,
                "started_at": r.started_at.isoformat(),
                "exit_code": r.exit_code,
                "counts": r.counts,
                "resources": r.resources,
                "coverage_gaps": [g.to_json_dict() for g in coverage[r.id].gaps],
                "complete": coverage[r.id].complete,
            }
            for r in runs
        ],
        "run_before_window": before[0].id if before else None,
        "gaps": [g.to_json_dict() for g in gaps],
        "coverage": {
            "complete_runs": sum(1 for r in runs if coverage[r.id].complete),
            "runs_with_coverage_gaps": len(with_gaps),
            "runs_with_nothing_evaluated": len(empty),
            "incomplete_runs": sorted(set(with_gaps) | set(empty), key=[r.id for r in runs].index),
        },
        "summary": {
            "runs": len(runs),
            "missed_runs": sum(g.missed_runs for g in gaps),
            "expected_runs": expected,
            "controls": len(controls),
            "controls_effective_in_every_run": sum(
                1 for c in controls if runs and c["effective_runs"] == len(runs)
            ),
            "complete": not gaps and bool(runs) and not with_gaps and not empty,
        },
        "controls": controls,
    }


@dataclass(frozen=True)
class RunCoverage:
    """What one run could test: its coverage gaps, whether it evaluated anything, and which
    controls of the framework its gaps make incomplete (None: every control)."""

    resources: int
    gaps: list[RecordedGap]
    gap_controls: frozenset[str] | None

    @property
    def nothing_evaluated(self) -> bool:
        """The run evaluated no resource: no test of anything."""
        return self.resources == 0

    @property
    def complete(self) -> bool:
        """No gap, and something evaluated."""
        return not self.gaps and not self.nothing_evaluated

    def incomplete_for(self, cid: str) -> bool:
        """Whether the run's coverage gaps make it an incomplete test of control `cid`."""
        return bool(self.gaps) and (self.gap_controls is None or cid in self.gap_controls)


def _run_coverage(
    history: History, run: RunSummary, framework: str, counts: dict[str, dict[str, int]]
) -> RunCoverage:
    gaps = history.coverage_gaps(run.id)
    mapped: frozenset[str] | None = None
    if gaps:
        policies = history.run_object(run.id).get("policies")
        if isinstance(policies, list):
            mapped = frozenset(
                str(cid)
                for p in policies
                if isinstance(p, dict)
                for cid in (p.get("controls") or {}).get(framework, [])
            )
        else:  # an old or hand-made run without its policy list: what its findings name
            named = frozenset(cid for cid, c in counts.items() if any(c.values()))
            mapped = named or None
    return RunCoverage(resources=run.resources, gaps=gaps, gap_controls=mapped)


def _run_status(cid: str, counts: dict[str, int], coverage: RunCoverage | None) -> ControlStatus:
    """A control's status in one run, its coverage (when known) taken into account."""
    if coverage is None:
        return control_status(counts).status
    return control_status(
        counts, incomplete=coverage.incomplete_for(cid), nothing_evaluated=coverage.nothing_evaluated
    ).status


def _control_counts(
    history: History, run_id: str, framework: str, control_ids: list[str]
) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {
        cid: {"fail": 0, "error": 0, "waived": 0, "pass": 0} for cid in control_ids
    }
    for row in history.iter_finding_rows(run_id, controls=True):
        for cid in row.controls.get(framework, []):
            bucket = counts.setdefault(cid, {"fail": 0, "error": 0, "waived": 0, "pass": 0})
            if row.status in bucket:
                bucket[row.status] += 1
    return counts


def _control_entry(
    cid: str,
    title: str,
    per_run: list[tuple[RunSummary, dict[str, dict[str, int]]]],
    gaps: list[Gap],
    start_status: str | None,
    coverage: dict[str, RunCoverage] | None = None,
) -> dict[str, Any]:
    timeline: list[dict[str, Any]] = []
    incidents: list[dict[str, Any]] = []
    open_incident: dict[str, Any] | None = None
    if start_status == "failing":
        open_incident = {"failed_at": None, "failing_before_window": True, "fixed_at": None}
        incidents.append(open_incident)
    effective = 0
    with_gaps = 0
    nothing = 0
    by_status: dict[str, int] = {}
    for run, counts in per_run:
        c = counts.get(cid, {"fail": 0, "error": 0, "waived": 0, "pass": 0})
        cov = (coverage or {}).get(run.id)
        status = _run_status(cid, c, cov)
        by_status[status.value] = by_status.get(status.value, 0) + 1
        if cov is not None and cov.incomplete_for(cid):
            with_gaps += 1
        if cov is not None and cov.nothing_evaluated:
            nothing += 1
        timeline.append({"run": run.id, "at": run.started_at.isoformat(), "status": status.value, **c})
        if status.effective:
            effective += 1
            if open_incident is not None:
                open_incident["fixed_at"] = run.started_at.isoformat()
                open_incident = None
        elif status is ControlStatus.FAILING and open_incident is None:
            open_incident = {
                "failed_at": run.started_at.isoformat(),
                "failing_before_window": False,
                "fixed_at": None,
            }
            incidents.append(open_incident)
    for gap in gaps:
        timeline.append({"gap": True, "status": "gap", "at": gap.start.isoformat(), **gap.to_json_dict()})
    timeline.sort(key=lambda e: (e["at"], 1 if e.get("gap") else 0))  # a gap starts at a run
    runs = len(per_run)
    missed = sum(g.missed_runs for g in gaps)
    fixes = [i["fixed_at"] for i in incidents if i["fixed_at"]]
    return {
        "id": cid,
        "title": title,
        "runs": runs,
        "effective_runs": effective,
        "runs_with_coverage_gaps": with_gaps,
        "runs_with_nothing_evaluated": nothing,
        "runs_by_status": dict(sorted(by_status.items())),
        "effective_share": round(effective / runs, 4) if runs else None,
        "effective_share_of_expected": round(effective / (runs + missed), 4) if runs + missed else None,
        "status_at_start": start_status,
        "status_at_end": timeline_status_at_end(timeline),
        "first_failure": next((i["failed_at"] or "before window" for i in incidents), None),
        "last_fix": fixes[-1] if fixes else None,
        "failing_at_end": open_incident is not None,
        "incidents": incidents,
        "timeline": timeline,
    }


def timeline_status_at_end(timeline: list[dict[str, Any]]) -> str | None:
    """The status of the last run in a control's timeline (gaps skipped)."""
    for entry in reversed(timeline):
        if not entry.get("gap"):
            return str(entry["status"])
    return None


def render_period_html(report: dict[str, Any]) -> str:
    """The period report as one self-contained HTML page (autoescaped; no external assets)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("auditor.audit", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=finalize_visible,  # control and bidi characters from cloud values shown, not obeyed
    )
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{v * 100:.0f}%"
    env.filters["day"] = lambda v: "" if not v else str(v)[:16].replace("T", " ")
    return env.get_template("period.html.j2").render(report=report, statuses=list(ControlStatus))
