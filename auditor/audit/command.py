"""Click wiring for `auditor audit`, `history`, `baseline`, `keygen` and `verify` (no logic here)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from auditor.audit.config import (
    DATABASE_URL_ENV,
    DEFAULT_OUTPUT_DIR,
    DEMO_EXTRA_FORMATS,
    SIGNING_PASSPHRASE_ENV,
    AuditConfig,
    default_database_url,
    demo_config,
    load_config,
    parse_duration,
    redact_url,
    require_config_file,
    with_executor,
)
from auditor.cli import GATE_EXIT_CODES, AuditorGroup, selection_options
from auditor.cli_options import exit_codes
from auditor.errors import InputError
from auditor.findings import Severity
from auditor.report.base import unavailable
from auditor.streams import diagnostic, result

if TYPE_CHECKING:
    from auditor.audit.history import History, RunSummary

EXIT_OK, EXIT_VIOLATIONS = 0, 1


@click.command("audit", epilog=exit_codes(GATE_EXIT_CODES))
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="auditor.yaml (default: ./auditor.yaml).",
)
@click.option("--demo", is_flag=True, help="Run the whole job on the shipped demo estate (no cloud account).")
@click.option(
    "--output-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where reports, bundles and the default history go (default: outputs.directory, or reports/).",
)
@click.option("--fail-on", type=click.Choice([s.value for s in Severity]), help="Override fail_on.")
@click.option(
    "--baseline",
    "baseline_path",
    type=click.Path(path_type=Path),
    help="Only failures not in this baseline fail the gate.",
)
@click.option("--allow-incomplete", is_flag=True, default=None, help="Do not exit 3 on errors or gaps.")
@click.option(
    "--allow-empty",
    is_flag=True,
    default=None,
    help="Do not exit 3 when no policy was evaluated on any resource (gaps still need --allow-incomplete).",
)
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Date for waiver and attestation expiry (default: today).",
)
@click.option(
    "--executor",
    type=click.Choice(["in-process", "dask"]),
    help="Where scan units run (default: `executor:` in the config, else in-process).",
)
@click.option(
    "--scheduler",
    help="Dask scheduler address, e.g. tcp://HOST:8786 (implies --executor dask; see docs/scale-out.md).",
)
@selection_options
def audit(
    config_path: Path | None,
    demo: bool,
    output_dir: Path | None,
    fail_on: str | None,
    baseline_path: Path | None,
    allow_incomplete: bool | None,
    allow_empty: bool | None,
    today: datetime | None,
    executor: str | None,
    scheduler: str | None,
    select_policy: tuple[str, ...],
    skip_policy: tuple[str, ...],
    min_severity: str | None,
) -> None:
    """Scan, check, report, record the run and sign the evidence; exit with the gate's code.

    --policy, --skip-policy and --min-severity replace auditor.yaml's `policy`, `skip_policy` and
    `min_severity`.
    """
    from auditor.audit.job import run_audit, summary_lines

    if demo and config_path is not None:
        raise InputError("--demo", "use either --demo or --config, not both")
    if demo:
        config = demo_config(output_dir or DEFAULT_OUTPUT_DIR)
        for fmt in DEMO_EXTRA_FORMATS:
            if fmt not in config.outputs.formats:
                diagnostic(f"demo: no {fmt} report: {unavailable(fmt)}")
    else:
        # The file's errors are reported with everything validation finds (one run, every error).
        config = load_config(require_config_file(config_path), defer_errors=True)
        if output_dir is not None:
            config.outputs.directory = output_dir.resolve()
            config.outputs.paths = {}
    if fail_on is not None:
        config.fail_on = Severity(fail_on)
    if baseline_path is not None:
        config.baseline = baseline_path.absolute()  # not resolve(): a symlink loop is an input error
    if allow_incomplete:
        config.allow_incomplete = True
    if allow_empty:
        config.allow_empty = True
    given: set[str] = set()
    if select_policy:
        config.policy = list(select_policy)
        given.add("policy")
    if skip_policy:
        config.skip_policy = list(skip_policy)
        given.add("skip_policy")
    if min_severity is not None:
        config.min_severity = Severity(min_severity)
        given.add("min_severity")
    config.selection_from_options = frozenset(given)
    if executor is not None or scheduler is not None:
        config = with_executor(config, executor, scheduler)
    outcome = run_audit(config, demo=demo, today=today.date() if today else None)
    if outcome.public_key is not None and outcome.bundle is not None:
        diagnostic(
            f"demo bundle signed with a throwaway key; check it with: "
            f"auditor verify {outcome.bundle} --public-key {outcome.public_key}"
        )
    for line in summary_lines(config, outcome):  # the gate line, then why the run is incomplete
        result(line)
    sys.exit(outcome.exit_code)


# --- history -------------------------------------------------------------------------------------


@dataclass
class HistoryContext:
    """What the `history` subcommands share."""

    url: str
    config: AuditConfig | None


HISTORY_READ = exit_codes({EXIT_OK: "printed"})


@click.group(
    "history",
    cls=AuditorGroup,
    epilog=exit_codes({EXIT_OK: "done (nothing in history gates: read a run's exit code from it)"}),
)
@click.option(
    "--database",
    "database",
    envvar=DATABASE_URL_ENV,
    show_envvar=True,
    help="SQLAlchemy URL or SQLite file (default: from --config, else reports/history.db).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="auditor.yaml to take the database URL, job name and schedule from.",
)
def history(database: str | None, config_path: Path | None) -> None:
    """Recorded runs: list, show, diff, prune, and the period report.

    --database and --config are accepted after the subcommand too (`history list --database URL`).
    """


def _history_context(ctx: click.Context) -> HistoryContext:
    """The database and config the `history` group's options name, given before or after the
    subcommand (read here, when the subcommand runs: click parses its options after the group's)."""
    params = ctx.parent.params if ctx.parent is not None else {}
    database: str | None = params.get("database")
    config_path: Path | None = params.get("config_path")
    config = load_config(config_path) if config_path is not None else None
    if database:
        url = database if "://" in database else f"sqlite:///{Path(database).resolve()}"
    elif config is not None:
        url = config.database_url()
    else:
        url = default_database_url(DEFAULT_OUTPUT_DIR)
    return HistoryContext(url=url, config=config)


def _open(ctx: click.Context, obj: HistoryContext | None = None) -> Any:
    from auditor.audit.history import History

    obj = obj or _history_context(ctx)
    if obj.url.startswith("sqlite:///") and not Path(obj.url.removeprefix("sqlite:///")).exists():
        raise InputError(redact_url(obj.url), "no history database here yet (run `auditor audit` first)")
    return History(obj.url)


def _echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@history.command("list", epilog=HISTORY_READ)
@click.option("--job", help="Only runs of this job.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def history_list(ctx: click.Context, job: str | None, limit: int, output_format: str) -> None:
    """Recorded runs, newest first."""
    with _open(ctx) as store:
        runs = store.list_runs(job=job, limit=limit)
    if output_format == "json":
        _echo_json([r.to_json_dict() for r in runs])
        return
    if not runs:
        click.echo("no runs recorded")
        return
    click.echo(f"{'run':36}  {'started (UTC)':19}  {'job':12}  exit  fail  base  err  waived  pass")
    for r in runs:
        c = r.counts
        click.echo(
            f"{r.id:36}  {r.started_at:%Y-%m-%d %H:%M:%S}  {r.job[:12]:12}  {r.exit_code:>4}  "
            f"{c['fail']:>4}  {c['baselined']:>4}  {c['error']:>3}  {c['waived']:>6}  {c['pass']:>4}"
        )


@history.command("show", epilog=HISTORY_READ)
@click.argument("run_ref", metavar="RUN")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
@click.option("--all", "show_all", is_flag=True, help="Include passing findings.")
@click.pass_context
def history_show(ctx: click.Context, run_ref: str, output_format: str, show_all: bool) -> None:
    """One run (id, unique prefix, `latest` or `latest~N`): its summary and non-pass findings."""
    with _open(ctx) as store:
        run = store.resolve(run_ref)
        if output_format == "json":  # the findings document, streamed as stored
            from auditor.document import write_document_texts

            texts = (text.encode() for text in store.iter_finding_texts(run.id))
            write_document_texts(store.run_object(run.id), texts, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        _show_run(run, store, show_all)


def _show_run(run: RunSummary, store: History, show_all: bool) -> None:
    """`history show` as text: the run, its coverage gaps and its findings, one row at a time."""
    coverage = store.coverage(run.id)
    c = run.counts
    click.echo(f"run {run.id} (job {run.job})")
    click.echo(f"  started {run.started_at.isoformat()}  finished {run.finished_at.isoformat()}")
    click.echo(f"  auditor {run.tool_version}  config {run.config_digest[:16]}  exit {run.exit_code}")
    click.echo(
        f"  {run.resources} resources: {c['fail']} fail ({c['baselined']} baselined), {c['error']} error, "
        f"{c['waived']} waived, {c['pass']} pass"
    )
    for item in coverage:
        if item["kind"] == "gap":
            click.echo(
                f"  coverage gap: {item['provider']} {item['account']} {item['scope']}: {item['reason']}"
            )
    if run.bundle:
        click.echo(f"  bundle {run.bundle} (manifest sha256 {run.manifest_sha256})")
    for row in store.iter_finding_rows(run.id):
        if row.status == "pass" and not show_all:
            continue
        mark = " (baselined)" if row.baselined else ""
        click.echo(
            f"  {row.status}{mark:12} {row.severity:8} {row.policy_id:32} {row.provider} {row.account} "
            f"{row.resource_name}"
        )


@history.command("diff", epilog=HISTORY_READ)
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def history_diff(ctx: click.Context, run_a: str, run_b: str, output_format: str) -> None:
    """What changed from RUN_A to RUN_B: new failures, fixed, still failing, newly unknown, not assessed
    (absent under a coverage gap of RUN_B, never counted as fixed), and coverage gaps opened or closed."""
    with _open(ctx) as store:
        diff = store.diff(store.resolve(run_a), store.resolve(run_b))
    if output_format == "json":
        _echo_json(diff.to_json_dict())
        return
    for line in diff.text_lines():
        click.echo(line)


@history.command("prune", epilog=exit_codes({EXIT_OK: "deleted (or, with --dry-run, listed)"}))
@click.option("--keep-days", type=click.IntRange(1), required=True, help="Delete runs older than this.")
@click.option(
    "--protect-from",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Keep every run from this date on (an open audit period); default: history.protect_from.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be deleted.")
@click.pass_context
def history_prune(ctx: click.Context, keep_days: int, protect_from: datetime | None, dry_run: bool) -> None:
    """Delete old runs, keeping per job the last one before the window (the period baseline)."""
    obj = _history_context(ctx)
    protect: date | None = protect_from.date() if protect_from else None
    if protect is None and obj.config is not None and obj.config.history.protect_from:
        protect = date.fromisoformat(obj.config.history.protect_from)
    with _open(ctx, obj) as store:
        pruned = store.prune(keep_days, protect_from=protect, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {len(pruned.deleted)} run(s)")
    for run in pruned.deleted:
        click.echo(f"  {run.id}  {run.started_at:%Y-%m-%d %H:%M}Z  {run.job}")
    for run in pruned.kept_as_baseline:
        click.echo(f"kept {run.id} ({run.started_at:%Y-%m-%d}) as the period baseline of job {run.job}")


@history.command("period", epilog=exit_codes({EXIT_OK: "report printed (or written with -o)"}))
@click.option("--from", "start", type=click.DateTime(formats=["%Y-%m-%d"]), required=True)
@click.option("--to", "end", type=click.DateTime(formats=["%Y-%m-%d"]), required=True, help="Inclusive.")
@click.option(
    "--framework",
    default="soc2",
    show_default=True,
    help="A framework file's name (policies/frameworks/*.yaml or your policy directories' frameworks/).",
)
@click.option(
    "--format", "output_format", type=click.Choice(["html", "json"]), default="html", show_default=True
)
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), help="Default: stdout.")
@click.option("--interval", help="Schedule interval, e.g. 24h (default: schedule.interval, else 1d).")
@click.option("--grace", help="Lateness tolerated before a gap, e.g. 1h (default: schedule.grace).")
@click.option("--job", help="Job name (needed when several jobs share the history).")
@click.pass_context
def history_period(
    ctx: click.Context,
    start: datetime,
    end: datetime,
    framework: str,
    output_format: str,
    output: Path | None,
    interval: str | None,
    grace: str | None,
    job: str | None,
) -> None:
    """The period report: every control's status in every run, effectiveness share and gaps."""
    from auditor.atomicfile import atomic_output
    from auditor.audit.period import build_period_report, render_period_html

    obj = _history_context(ctx)
    config = obj.config
    try:
        every = parse_duration(interval) if interval else (config.schedule.interval if config else None)
        slack = parse_duration(grace) if grace else (config.schedule.grace if config else None)
    except ValueError as exc:
        raise InputError("--interval/--grace", str(exc)) from exc
    defaults = AuditConfig().schedule
    with _open(ctx, obj) as store:
        report = build_period_report(
            store,
            start.date(),
            end.date(),
            framework=framework,
            interval=every or defaults.interval,
            grace=slack if slack is not None else defaults.grace,
            job=job or (config.name if config else None),
            policy_paths=list(config.policies) if config else None,
        )
    text = (
        render_period_html(report)
        if output_format == "html"
        else orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n"
    )
    if output is None:
        click.echo(text, nl=False)
    else:
        with atomic_output(output) as handle:
            handle.write(text.encode())
        result(f"period report written to {output}")


# --- baseline, keys, verify ----------------------------------------------------------------------


@click.group("baseline", epilog=exit_codes({EXIT_OK: "written"}))
def baseline() -> None:
    """Accept today's failures so the gate fails only on new ones."""


@baseline.command("create", epilog=exit_codes({EXIT_OK: "written"}))
@click.option(
    "--findings",
    "findings_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Findings JSON (from `auditor check --format json` or `auditor audit`).",
)
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path, dir_okay=False))
def baseline_create(findings_path: Path, output: Path) -> None:
    """Write every current failure (policy id + resource id) to a baseline file."""
    from auditor.audit.baseline import baseline_from_findings, write_baseline
    from auditor.findings_stream import FindingsStream

    stream = FindingsStream.open(findings_path)  # bounded read, checked shape, one-line errors
    result = baseline_from_findings(stream.run, stream.findings(as_written=True))
    write_baseline(result, output)
    click.echo(f"baseline of {len(result.entries)} failure(s) written to {output}")


@click.command("keygen", epilog=exit_codes({EXIT_OK: "written"}))
@click.option("--private-key", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--public-key", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def keygen(private_key: Path, public_key: Path, force: bool) -> None:
    """Make an Ed25519 key pair for signing bundles (encrypted if $AUDITOR_SIGNING_KEY_PASSPHRASE is set)."""
    from auditor.audit.bundle import write_keypair

    passphrase = os.environ.get(SIGNING_PASSPHRASE_ENV, "").encode() or None
    kid = write_keypair(private_key, public_key, passphrase=passphrase, force=force)
    click.echo(f"key {kid}: private key {private_key} (mode 0600, keep it secret), public key {public_key}")


@click.command(
    "verify",
    epilog=exit_codes(
        {EXIT_OK: "every hash (and the signature) checks out", EXIT_VIOLATIONS: "it does not (FAILED)"}
    ),
)
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(path_type=Path),
    help="Require a signature by this key (without it, the key named in the manifest is used).",
)
def verify(bundle_path: Path, public_key: Path | None) -> None:
    """Check a bundle's signature, every file's SHA-256, and that no file was added."""
    from auditor.audit.bundle import load_public_key, verify_bundle

    key = load_public_key(public_key) if public_key is not None else None
    verdict = verify_bundle(bundle_path, key)
    if not verdict.ok:  # the verdict is the result: stdout, as OK is
        result(f"FAILED {bundle_path}: {verdict.problems[0]}")
        for problem in verdict.problems[1:]:
            result(f"  also: {problem}")
        sys.exit(EXIT_VIOLATIONS)
    if verdict.signed and verdict.key_pinned:
        signature = f"signed by {verdict.key_id} (the given public key)"
    elif verdict.signed:
        signature = (
            f"signed by key {verdict.key_id} named in the manifest; "
            "pass --public-key to check it is the key you trust"
        )
    else:
        signature = "UNSIGNED: hashes only prove integrity against the manifest itself"
    result(f"OK {bundle_path}: {verdict.files_checked} files match the manifest; {signature}")
    sys.exit(EXIT_OK)
