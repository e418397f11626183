"""The HTML evidence report: one self-contained file for compliance officers (no scripts, no fetches).

Rendered with jinja2 with autoescape on for every template, so every value from the cloud (names, tags,
policy statements inside raw API answers) reaches the page as text. Every value printed also passes
`finalize_visible`, which writes control and bidi characters (ESC, U+202E right-to-left override, ...)
visibly as `<U+XXXX>`, so a tag value cannot reverse or hide the text around it; templates need no
per-field filter. A Content-Security-Policy that allows no script is a second fence. Charts are inline
SVG whose geometry is computed here.

The same template makes the PDF (auditor.report.pdf, `paged`): one stylesheet serves the screen (down to
phones: tables become stacked rows), browser print and paged media, whose `@page` margin boxes carry the
run id, zone, date and page number on every page (Chromium 131+ and WeasyPrint draw them).

The HTML report streams: the findings are read once, one at a time (`build_view` with a sink); what the
page shows at the top is aggregated as they pass, while each non-passing finding's row is rendered at
once (the same macro, so the same escaping) and spooled to a temporary file with its sort key, and each
passing resource's name likewise (auditor.report.spool.GroupSpool: sorted runs, merged on reading).
The page is then written in order, each policy's rows read back sorted. Memory is bounded by the
spool's buffer, not by the findings. Past COMPACT_ROWS
non-passing findings, rows are compact (each API call with only the field that decided), so a report
of a million findings stays a page Chromium opens.
"""

from __future__ import annotations

import codecs
import struct
from bisect import insort
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Protocol

import orjson
from jinja2 import Environment, PackageLoader, StrictUndefined, Template
from markupsafe import Markup, escape

from auditor.document import FindingRecord
from auditor.errors import visible
from auditor.findings import Status
from auditor.report.base import Renderer, ReportInput
from auditor.report.spool import GroupSpool
from auditor.report.undecided import UndecidedAction, gap_action
from auditor.report.view import (
    PASS_LIST_LIMIT,
    PROVIDER_LABELS,
    STATUSES,
    PolicyView,
    ProviderResidency,
    ReportView,
    build_view,
    finding_view,
    framework_labels,
    population_groups,
    region_label,
    shown_path,
    status_rank,
)

# Findings tables are split into tables of this many rows; past LARGE_ROWS listed rows the report lets
# Chromium skip layout of off-screen tables (CSS content-visibility), which keeps a 100,000-finding
# report opening in seconds instead of minutes.
CHUNK_ROWS = 100
LARGE_ROWS = 1500
# Past this many failing, undecided and waived findings, their rows are compact (each API call with only
# the field that decided): at a million findings full rows would make a page of hundreds of megabytes.
COMPACT_ROWS = 25_000
# A compact report lists this many rows per policy (fail first); the policy's other failing, undecided
# and waived resources are named, by status, cloud and account, their evidence left to the findings JSON.
COMPACT_POLICY_ROWS = 1000

STATUS_LABELS = {
    Status.PASS: "Pass",
    Status.FAIL: "Fail",
    Status.ERROR: "Error (undecided)",
    Status.WAIVED: "Waived",
}


# Chart colours, also written as SVG attributes: a PDF renderer may draw inline SVG without the page's
# CSS (WeasyPrint does), where the classes alone would leave every bar black.
FILLS = {
    "s-pass": "#1a7f37",
    "s-fail": "#c62828",
    "s-error": "#d4a017",
    "s-waived": "#0b5cad",
    "z-in": "#2e8b57",
    "z-out": "#c62828",
    "z-unknown": "#8c959f",
}
REPLICA_OPACITY = ".45"


@dataclass(frozen=True)
class Segment:
    """One coloured piece of a horizontal bar."""

    x: float
    width: float
    css: str
    label: str
    count: int

    @property
    def fill(self) -> str:
        """The colour of its first class."""
        return FILLS.get(self.css.split()[0], "#57606a")

    @property
    def opacity(self) -> str:
        """Its fill opacity: replicas are lighter."""
        return REPLICA_OPACITY if "r-replica" in self.css.split() else "1"

    @property
    def labelled(self) -> bool:
        """Wide enough to print its count inside."""
        return self.width > 7 * len(f"{self.count:,}") + 8


@dataclass(frozen=True)
class BarRow:
    """One labelled row of a bar chart."""

    y: float
    label: str
    segments: list[Segment]
    note: str


@dataclass(frozen=True)
class Chart:
    """Geometry of one horizontal bar chart."""

    width: int
    height: int
    label_width: int
    bar_height: int
    rows: list[BarRow]
    title: str


_ROW = 24
_BAR = 16
_TOP = 6


def family_chart(families: list[tuple[str, dict[Status, int]]], width: int = 960) -> Chart:
    """Status per policy family as 100% stacked bars (pass / fail / error / waived)."""
    label_width, right = 130, 380
    span = width - label_width - right
    rows = []
    for index, (family, counts) in enumerate(families):
        total = sum(counts.values())
        x = float(label_width)
        segments = []
        for status in STATUSES:
            n = counts.get(status, 0)
            if n == 0 or total == 0:
                continue
            w = span * n / total
            segments.append(Segment(x, w, f"s-{status}", STATUS_LABELS[status], n))
            x += w
        flagged = [f"{counts[s]:,} {s}" for s in (Status.FAIL, Status.ERROR, Status.WAIVED) if counts.get(s)]
        note = " · ".join([f"{total:,} findings", *flagged])
        rows.append(BarRow(_TOP + index * _ROW, family, segments, note))
    return Chart(width, _TOP * 2 + len(rows) * _ROW, label_width, _BAR, rows, "Status per policy family")


def residency_chart(view: ProviderResidency, scale: int, zone: str | None, width: int = 900) -> Chart:
    """Resources per region of one cloud, coloured by whether the region is inside the zone."""
    label_width, right = 190, 220
    span = width - label_width - right
    rows = []
    for index, bar in enumerate(view.regions):
        segments = []
        x = float(label_width)
        parts = (
            [("primary", bar.primary or 0), ("replica", bar.replica or 0)]
            if bar.primary is not None
            else [("primary", bar.resources)]
        )
        for part, n in parts:
            if n == 0:
                continue
            w = max(span * n / scale, 2.0)
            segments.append(Segment(x, w, f"z-{bar.state} r-{part}", part, n))
            x += w
        where = {"in": f"inside {zone}", "out": f"outside {zone}", "unknown": "zone unknown"}[bar.state]
        rows.append(
            BarRow(_TOP + index * _ROW, region_label(bar.region), segments, f"{bar.resources:,} · {where}")
        )
    title = f"{view.label}: resources per region"
    return Chart(width, _TOP * 2 + len(rows) * _ROW, label_width, _BAR, rows, title)


def finalize_visible(value: Any) -> Any:
    """Every `{{ value }}` of a template: markup we built passes, anything else is shown visibly.

    Jinja calls this before autoescaping, so the result is still escaped; Markup (our filters' and
    macros' output, whose parts went through here or through `visible` already) is left alone.
    """
    if isinstance(value, Markup):
        return value
    return visible(value if isinstance(value, str) else str(value))


def joined(items: Iterable[Any], separator: str = ", ") -> Markup:
    """Items joined for the page, each escaped and shown visibly (jinja's `join` would return Markup
    that `finalize_visible` no longer looks into)."""
    return Markup(escape(separator)).join(escape(visible(str(item))) for item in items)


def code_spans(text: str) -> Markup:
    """Policy text with `backtick` spans as <code>; every part is escaped first."""
    parts = visible(str(text)).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: show the text as it is
        return escape(visible(str(text)))
    return Markup("").join(
        escape(part) if index % 2 == 0 else Markup("<code>") + escape(part) + Markup("</code>")
        for index, part in enumerate(parts)
    )


def when(stamp: str) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM:SS UTC' (unchanged if it does not parse)."""
    try:
        parsed = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return str(stamp)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if parsed.tzinfo is not None else "")


def css_string(text: str) -> Markup:
    """`text` as a quoted CSS string for a `<style>` element: every character but letters, digits,
    space and `.:-_` written as a CSS escape, so no value can end the string or the element."""
    kept = (
        ch if ch.isascii() and (ch.isalnum() or ch in " .:-_") else f"\\{ord(ch):x} " for ch in visible(text)
    )
    return Markup('"' + "".join(kept) + '"')


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("auditor.report", "templates"),
        autoescape=True,  # every template, whatever its name: all cloud data is untrusted
        undefined=StrictUndefined,
        finalize=finalize_visible,  # control and bidi characters in any value are shown, not obeyed
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        code_spans=code_spans,
        when=when,
        n="{:,}".format,
        region_label=region_label,
        path=shown_path,
        join=joined,  # replaces jinja's: every joined value is shown visibly too
    )
    env.globals.update(
        STATUSES=STATUSES, STATUS_LABELS=STATUS_LABELS, PROVIDER_LABELS=PROVIDER_LABELS, gap_action=gap_action
    )
    return env


def running_header(view: ReportView) -> dict[str, Markup]:
    """The texts of the printed pages' margin boxes, as CSS strings: run id; zone and run date."""
    zone = f"zone {view.zone} · " if view.zone else ""
    return {
        "run": css_string(f"Run {view.run.id}"),
        "meta": css_string(f"{zone}{view.summary.started_at[:10]}"),
    }


class PolicyDetail(Protocol):
    """The per-policy detail the template lays out: non-passing rows (rendered) and passing names."""

    def rows(self, policy: PolicyView) -> Iterable[Markup]:
        """The policy's failing, undecided and waived rows, in report order."""

    def more(self, policy: PolicyView) -> Iterable[tuple[str, str, str, int, Markup]]:
        """(status, cloud label, account, count, names joined) of rows named but not listed."""

    def population(self, policy: PolicyView) -> Iterable[tuple[str, str, int, Markup | None]]:
        """(cloud label, account, count, names joined or None) of the policy's passing resources."""


RowMacro = Callable[..., str]


def row_macros() -> tuple[RowMacro, RowMacro]:
    """The template's macros for one finding's row: full, and compact."""
    module = _environment().get_template("macros.html.j2").module
    return module.finding_row, module.compact_row  # type: ignore[attr-defined]


@dataclass
class MemoryDetail:
    """The detail of a view that holds every row (`build_view` without a sink: the PDF, tests)."""

    digest: str = ""
    row: RowMacro = field(default_factory=lambda: row_macros()[0])

    def rows(self, policy: PolicyView) -> Iterator[Markup]:
        """The policy's rows, rendered one at a time."""
        for finding in policy.non_pass:
            yield Markup(self.row(finding, True, self.digest))

    def more(self, policy: PolicyView) -> list[tuple[str, str, str, int, Markup]]:
        """Every row is listed in full: nothing more."""
        return []

    def population(self, policy: PolicyView) -> list[tuple[str, str, int, Markup | None]]:
        """The passing resources by cloud and account, names sorted."""
        return [
            (label, account, len(names), joined(names)) for label, account, names in policy.population_groups
        ]


_LENGTH = struct.Struct(">I")  # a spooled row: the length of its head (status, cloud, account, name)
SpooledGroup = tuple[str] | tuple[str, str, str]  # (policy id,) rows; (policy id, cloud, account) names


class SpooledDetail:
    """A `DetailSink` for `build_view` and the template's `PolicyDetail`: every non-passing finding's
    row rendered as it is read and spooled with its sort key (status, cloud, account, name, id); every
    passing resource counted in its (cloud, account) group and, with `names`, its name spooled there
    (GroupSpool). Read back sorted, one policy at a time. With `rows_limit`, a policy's rows past the
    first `rows_limit` are named only (`more`), by status, cloud and account, and a row is rendered
    only while it can still be among the first."""

    def __init__(
        self,
        spool: GroupSpool[SpooledGroup],
        row: RowMacro,
        digest: str = "",
        *,
        names: bool = True,
        rows_limit: int | None = None,
    ) -> None:
        self.spool = spool
        self.row = row
        self.digest = digest
        self.names = names
        self.rows_limit = rows_limit
        self.groups: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
        self._first: dict[str, list[bytes]] = defaultdict(list)  # with rows_limit: the first keys
        self._seq = 0

    def non_pass(self, policy_id: str, finding: FindingRecord, actions: list[UndecidedAction] | None) -> None:
        """Keep the finding's sort key and place; render its row now unless `rows_limit` rows of the
        policy that sort before it were seen already (then it can only be named, never listed)."""
        resource = finding.resource
        fields = (resource.provider, resource.account, resource.name, resource.id)
        self._seq += 1
        key = bytes([status_rank(finding.status)]) + "\0".join(fields).encode() + b"\0"
        key += self._seq.to_bytes(8, "big")
        html = b""
        if self._may_list(policy_id, key):
            row = finding_view(finding, actions)
            html = str(self.row(row, True, self.digest)).encode()
        head = orjson.dumps([finding.status.value, resource.provider, resource.account, resource.name])
        self.spool.add((policy_id,), _LENGTH.pack(len(head)) + head + html, key)

    def _may_list(self, policy_id: str, key: bytes) -> bool:
        """Whether `key` is among the first `rows_limit` keys of the policy seen so far (the first
        `rows_limit` at the end were, each when it came)."""
        if self.rows_limit is None:
            return True
        first = self._first[policy_id]
        if len(first) >= self.rows_limit and key >= first[-1]:
            return False
        insort(first, key)
        if len(first) > self.rows_limit:
            first.pop()
        return True

    def passing(self, policy_id: str, group: tuple[str, str], entry: str) -> None:
        """Count a passing resource in its group (and keep its name)."""
        self.groups[policy_id][group] += 1
        if self.names:
            name = entry.encode()  # UTF-8 bytes sort as their code points do
            self.spool.add((policy_id, *group), name, name)

    def _entries(self, policy: PolicyView) -> Iterator[tuple[bytes, bytes]]:
        """(head, row) of the policy's rows in report order (ties in the order they were read)."""
        for blob in self.spool.read((policy.details.id,)):
            (size,) = _LENGTH.unpack_from(blob)
            yield blob[_LENGTH.size : _LENGTH.size + size], blob[_LENGTH.size + size :]

    def rows(self, policy: PolicyView) -> Iterator[Markup]:
        """The policy's rows in report order, the first `rows_limit` of them."""
        for index, (_, row) in enumerate(self._entries(policy)):
            if self.rows_limit is not None and index >= self.rows_limit:
                return
            yield Markup(row.decode())

    def more(self, policy: PolicyView) -> Iterator[tuple[str, str, str, int, Markup]]:
        """(status, cloud label, account, count, names joined) of the rows past `rows_limit`."""
        if self.rows_limit is None:
            return
        group: tuple[str, str, str] | None = None
        names: list[str] = []
        for index, (head, _) in enumerate(self._entries(policy)):
            if index < self.rows_limit:
                continue
            status, provider, account, name = orjson.loads(head)
            if group is not None and group != (status, provider, account):
                yield group[0], PROVIDER_LABELS.get(group[1], group[1]), group[2], len(names), joined(names)
                names = []
            group = (status, provider, account)
            names.append(name)
        if group is not None:
            yield group[0], PROVIDER_LABELS.get(group[1], group[1]), group[2], len(names), joined(names)

    def population(self, policy: PolicyView) -> Iterator[tuple[str, str, int, Markup | None]]:
        """The passing resources by cloud and account, names sorted; one group in memory at a time."""
        counts = self.groups.get(policy.details.id, Counter())
        for provider, account in population_groups(counts):
            label = PROVIDER_LABELS.get(provider, provider)
            if not self.names:
                yield label, account, counts[(provider, account)], None
                continue
            names = [item.decode() for item in self.spool.read((policy.details.id, provider, account))]
            yield label, account, len(names), joined(names)


def template_context(
    view: ReportView,
    *,
    paged: bool = False,
    detail: PolicyDetail | None = None,
    large: bool | None = None,
    compact: bool = False,
    evidence_elsewhere: bool | None = None,
) -> dict[str, Any]:
    """The variables the template sees (`paged`: for the PDF, without the screen-only parts;
    `detail`: where the policies' rows come from, by default the view's own lists;
    `evidence_elsewhere`: reference-form findings read without their inventory)."""
    scale = max((bar.resources for p in view.residency for bar in p.regions), default=1) or 1
    if large is None:
        large = sum(p.non_pass_total + len(p.passing) for p in view.policies) > LARGE_ROWS
    return {
        "view": view,
        "paged": paged,
        "running": running_header(view),
        "large": large,
        "compact": compact,
        "evidence_elsewhere": evidence_elsewhere
        if evidence_elsewhere is not None
        else view.run.evidence_form == "reference" and not view.inventory_used,
        "detail": detail if detail is not None else MemoryDetail(view.run.inventory_digest or ""),
        "CHUNK_ROWS": CHUNK_ROWS,
        "s": view.summary,
        "framework_labels": framework_labels(view.run),
        "family_chart": family_chart(view.families),
        "residency_charts": [(p, residency_chart(p, scale, view.zone)) for p in view.residency],
    }


def report_template() -> Template:
    """The report's template (shared by the HTML and PDF formats)."""
    return _environment().get_template("report.html.j2")


def report_size(report: ReportInput) -> tuple[bool, bool]:
    """(large, compact) from the run's counts, before any finding is read: large past LARGE_ROWS listed
    rows (the page lets Chromium skip off-screen layout, passing evidence is not listed), compact past
    COMPACT_ROWS non-passing findings."""
    counts = report.run.counts.by_status
    non_pass = sum(counts.get(status, 0) for status in STATUSES if status is not Status.PASS)
    passing = sum(min(policy.counts.get(Status.PASS, 0), PASS_LIST_LIMIT) for policy in report.run.policies)
    return non_pass + passing > LARGE_ROWS, non_pass > COMPACT_ROWS


class HtmlRenderer(Renderer):
    """Self-contained HTML evidence report (readable without JavaScript, printable to PDF)."""

    format = "html"
    extension = ".html"

    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Read the findings once, then stream the report to `out` as UTF-8."""
        large, compact = report_size(report)
        full, short = row_macros()
        spool = GroupSpool[SpooledGroup]()
        try:
            digest = report.run.inventory_digest or ""
            detail = SpooledDetail(
                spool,
                short if compact else full,
                digest,
                names=not compact,
                rows_limit=COMPACT_POLICY_ROWS if compact else None,
            )
            view = build_view(report, pass_limit=0 if large else PASS_LIST_LIMIT, sink=detail)
            elsewhere = report.stream.reference_form and report.stream.inventory is None
            context = template_context(
                view, detail=detail, large=large, compact=compact, evidence_elsewhere=elsewhere
            )
            encoder = codecs.getincrementalencoder("utf-8")()
            buffer: list[str] = []
            size = 0
            for chunk in report_template().generate(context):
                buffer.append(chunk)
                size += len(chunk)
                if size > 1 << 16:
                    out.write(encoder.encode("".join(buffer)))
                    buffer, size = [], 0
            out.write(encoder.encode("".join(buffer), final=True))
        finally:
            spool.close()
