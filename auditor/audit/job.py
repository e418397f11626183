"""The audit job: scan -> check -> baseline -> findings + reports -> bundle (+sign) -> history -> exit code.

One function, `run_audit`, used by `auditor audit`; bad input raises InputError before anything is
written, and a run that fails midway leaves no bundle and no history entry.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from auditor.atomicfile import OWNER_PATTERN, atomic_output, owner_tag, remove_stale, remove_stale_temps
from auditor.attestations import attest_inventory, load_attestations
from auditor.audit.baseline import (
    BaselineFile,
    BaselineMarks,
    apply_baseline_gate,
    find_baselined,
    load_baseline,
    mark_baselined,
)
from auditor.audit.bundle import (
    BundleWriter,
    generate_key,
    key_id,
    load_private_key,
    public_key_pem,
    remove_stale_bundle_temps,
    staging_directory,
)
from auditor.audit.config import SIGNING_KEY_ENV, SIGNING_PASSPHRASE_ENV, AuditConfig, redact_url
from auditor.audit.history import History, RunDiff
from auditor.check import CheckOptions, empty_run_exit_code, incomplete_reason, prepare_check, run_check
from auditor.document import AuditInfo, RunInfo, plain
from auditor.errors import InputError, each_error, raise_all
from auditor.findings import Status
from auditor.findings_stream import FindingsStream
from auditor.frameworks import available_frameworks, load_framework
from auditor.inputfile import open_input
from auditor.policy.loader import load_waivers, shipped_policies_dir
from auditor.policy.yamlfile import PathKey
from auditor.report.previous import PreviousRun
from auditor.scale import Executor, ScaledScan, ScaleOptions, make_executor, scan_sources
from auditor.scale.units import UnitRunner, run_unit
from auditor.scan.calls import RETRY_OLD_NAMES, RETRY_SETTINGS
from auditor.sources import ScanOptions, SourceSection, option_key
from auditor.streams import diagnostic, progress_shown

Log = Callable[[str], None]
FINDINGS_FILE = "findings.json"
DEMO_PUBLIC_KEY = "demo-signing.pub"
NOTHING_TO_AUDIT = "nothing to audit: configure clouds (or inventories), or use --demo"
# Temporary names of a run: its scan parts directory (`.scans-<pid>-<host>.<random>`) and the
# findings spool (`.findings.<random>.spool`, no owner tag: judged by age only).
_SCANS_PATTERN = re.compile(rf"^\.scans-(?:(?P<owner>{OWNER_PATTERN})\.)?[a-z0-9_]{{8}}$")
_SPOOL_PATTERN = re.compile(r"^\.findings\.[a-z0-9_]{8}\.spool$")


@dataclass
class AuditOutcome:
    """What a run produced, and the exit code to leave with."""

    exit_code: int
    run_id: str
    findings_path: Path
    reports: dict[str, Path] = field(default_factory=dict)
    bundle: Path | None = None
    manifest_sha256: str | None = None
    previous_run: str | None = None
    diff: RunDiff | None = None
    baselined: int = 0
    public_key: Path | None = None
    run: RunInfo | None = None
    incomplete_reason: str | None = None


def _signing_key(config: AuditConfig, demo: bool) -> tuple[Ed25519PrivateKey | None, bool]:
    """The configured key, or for --demo a throwaway one (its private half is never stored)."""
    passphrase = os.environ.get(SIGNING_PASSPHRASE_ENV, "").encode() or None
    if config.signing_key_pem is not None:
        return load_private_key(config.signing_key_pem, passphrase), False
    if config.signing.private_key is not None:
        return load_private_key(config.signing.private_key, passphrase), False
    if demo:
        return generate_key(), True
    return None, False


def run_audit(
    config: AuditConfig,
    *,
    demo: bool = False,
    today: date | None = None,
    log: Log = diagnostic,
) -> AuditOutcome:
    """Run the whole job once; returns the outcome (its exit_code is the gate's, after baseline).

    Everything the configuration names is validated before any directory or database is created;
    an input error found later (a bad inventory line, a scanner refusing its options) removes the
    directories and the SQLite history this run created, so exit 2 leaves nothing behind.
    """
    started = time.time()
    out = config.outputs.directory
    validate_config(config)
    baseline: BaselineFile | None = load_baseline(config.baseline) if config.baseline else None
    key, ephemeral = _signing_key(config, demo)
    created = _Created.before(config)
    history: History | None = None
    try:
        history = History(config.database_url())
        out.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(config, started, log)
        writer = BundleWriter(staging_directory(out))
        try:
            outcome = _run(config, history, writer, baseline, key, today, log)
        except BaseException:
            writer.discard()
            raise
        if ephemeral and key is not None:
            public_path = out / DEMO_PUBLIC_KEY
            with atomic_output(public_path) as handle:
                handle.write(public_key_pem(key.public_key()))
            outcome.public_key = public_path
        if config.history.keep_days:
            protect = date.fromisoformat(config.history.protect_from) if config.history.protect_from else None
            pruned = history.prune(config.history.keep_days, protect_from=protect)
            if pruned.deleted:
                log(
                    f"history: pruned {len(pruned.deleted)} run(s) older than {config.history.keep_days} days"
                )
        return outcome
    except InputError:
        if history is not None:
            history.close()
            history = None
        created.remove()
        raise
    finally:
        if history is not None:
            history.close()


@dataclass
class _Created:
    """What a run is about to create (directories, a SQLite file), to undo it on bad input."""

    directories: list[Path] = field(default_factory=list)
    database: Path | None = None

    @classmethod
    def before(cls, config: AuditConfig) -> _Created:
        created = cls()
        wanted = [config.outputs.directory, *(p.parent for p in config.report_paths().values())]
        if config.scale.parts_directory is not None:
            wanted.append(config.scale.parts_directory)
        url = config.database_url()
        if url.startswith("sqlite:///"):
            database = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
            if database.name and not database.exists():
                created.database = database
                wanted.append(database.parent)
        for directory in wanted:
            top = _first_missing(directory)
            if top is not None and top not in created.directories:
                created.directories.append(top)
        return created

    def remove(self) -> None:
        if self.database is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.database}{suffix}").unlink(missing_ok=True)
        for directory in self.directories:
            shutil.rmtree(directory, ignore_errors=True)


def _first_missing(directory: Path) -> Path | None:
    """The outermost ancestor of `directory` (itself included) that does not exist yet."""
    missing: Path | None = None
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def validate_config(config: AuditConfig) -> None:
    """Check the configuration and everything it names, writing nothing and calling no cloud.

    Every problem is found in one pass and raised together (InputErrors, exit 2), each at
    auditor.yaml's line of its key (or at the option, variable or file it came from): the file's
    own errors, the inventories and every file it names (waivers, baseline, signing key,
    attestations, each source's files) readable and loading, the policies loading and compiling
    with `params`, the report formats installed, the frameworks known, something to audit, and each
    configured source's options and settings as its scanner would take them.
    """
    problems = _Problems(config)
    problems.found.extend(config.file_problems())
    sections = config.clouds.configured()
    if not config.inventories and not sections and not problems.found:
        problems.key(("clouds",), NOTHING_TO_AUDIT, InputError("auditor.yaml", NOTHING_TO_AUDIT))
    for index, inventory in enumerate(config.inventories):
        problems.readable(("inventories", index), inventory, "inventory file")
    waivers = config.waivers
    if waivers is not None and problems.readable(("waivers",), waivers, "waivers file"):
        with problems.catching():
            load_waivers(waivers)
    if config.baseline is not None and problems.readable(("baseline",), config.baseline, "baseline file"):
        with problems.catching():
            load_baseline(config.baseline)
    _check_signing_key(config, problems)
    for source, section in sections.items():
        for name in section.file_fields:
            value = getattr(section, name)
            for index, path in enumerate(_as_paths(value)):
                loc = ("clouds", source, name, index) if isinstance(value, list) else ("clouds", source, name)
                if path is not None:
                    problems.readable(loc, path, "file", fallback_what=f"clouds.{source}.{name}")
    for index, path in enumerate(config.attestations):
        if problems.readable(("attestations", index), path, "attestations file"):
            with problems.catching():
                load_attestations([path])
    policies_found = True
    for index, path in enumerate(config.policies):
        if not path.exists():
            policies_found = False
            message = "policy file or directory not found"
            problems.key(
                ("policies", index),
                f"{message}: {config.written(('policies', index))}",
                InputError(str(path), message),
            )
    directories: dict[PathKey, Path | None] = {
        ("outputs", "directory"): config.outputs.directory,
        ("scale", "parts_directory"): config.scale.parts_directory,
    }
    for place, directory in directories.items():
        if directory is not None and directory.exists() and not directory.is_dir():
            problems.key(
                place,
                f"not a directory: {config.written(place)}",
                InputError(str(directory), "not a directory"),
            )
    _check_formats(config, problems)
    _check_frameworks(config, problems)
    if policies_found:  # a missing policy would make every parameter it declares look unknown
        _check_policies(config, problems)
    for source, section in sections.items():
        _check_section(config, problems, source, section)
    raise_all(problems.in_file_order())


@dataclass
class _Problems:
    """The problems a validation found, each located at auditor.yaml's line of its key."""

    config: AuditConfig
    found: list[InputError] = field(default_factory=list)

    def key(self, loc: PathKey, message: str, fallback: InputError) -> None:
        """A problem of the key at `loc`: at its line, labelled with the key, when the file set the
        value there; else `fallback` (naming the option, variable or path it came from)."""
        where = self.config.located(loc)
        self.found.append(InputError(where, f"{_label(loc)}: {message}") if where else fallback)

    @contextmanager
    def catching(self, relocate: Mapping[str, tuple[PathKey, str]] | None = None) -> Iterator[None]:
        """Collect the InputErrors raised inside; one whose `where` is in `relocate` is moved to the
        line of its key there, its message prefixed with the label given."""
        try:
            yield
        except InputError as exc:
            self.add(each_error(exc), relocate)

    def add(
        self, errors: list[InputError], relocate: Mapping[str, tuple[PathKey, str]] | None = None
    ) -> None:
        """Add `errors`, moving those `relocate` names (see `catching`)."""
        for error in errors:
            loc, label = (relocate or {}).get(error.where, ((), ""))
            where = self.config.located(loc) if loc else None
            self.found.append(InputError(where, f"{label}: {error.message}") if where else error)

    def in_file_order(self) -> list[InputError]:
        """The problems at auditor.yaml's lines, top to bottom, then the others as found."""
        source = str(self.config.source_file())

        def line(error: InputError) -> int:
            file, _, number = error.where.rpartition(":")
            return int(number) if file == source and number.isdigit() else sys.maxsize

        return sorted(self.found, key=line)

    def readable(self, loc: PathKey, path: Path, what: str, *, fallback_what: str | None = None) -> bool:
        """Whether `path` (the value at `loc`) is a readable regular file; if not, a problem."""
        if not path.exists() and not path.is_symlink():
            missing = f"{fallback_what or what} not found"
            self.key(loc, f"{what} not found: {self.config.written(loc)}", InputError(str(path), missing))
            return False
        with self.catching({str(path): (loc, f"{_label(loc)}: {self.config.written(loc)}")}):
            open_input(path, what).close()  # refuses special files and symlink loops without blocking
            return True
        return False


def _label(loc: PathKey) -> str:
    """A key's name in messages: `clouds.gcp.tls_policy`, list indexes left out (the line says which)."""
    return ".".join(str(part) for part in loc if not isinstance(part, int))


def _as_paths(value: Path | list[Path] | None) -> list[Path | None]:
    """A file field's paths: one path, or each of a list of files."""
    return list(value) if isinstance(value, list) else [value]


def _check_signing_key(config: AuditConfig, problems: _Problems) -> None:
    """The signing key exists and loads (with $AUDITOR_SIGNING_KEY_PASSPHRASE), from the file or
    the environment; the key's text is never echoed."""
    key = config.signing.private_key
    if config.signing_key_from_env and key is not None and not key.is_file():
        # Never echo the value: it may be key text pasted without its PEM header.
        problems.found.append(
            InputError(
                f"${SIGNING_KEY_ENV}",
                "neither PEM text (-----BEGIN ...) nor the path of an existing key file",
            )
        )
        return
    if key is not None and not problems.readable(("signing", "private_key"), key, "signing key"):
        return
    loc = ("signing", "private_key")
    with problems.catching({str(key): (loc, f"{_label(loc)}: {config.written(loc)}")}):
        _signing_key(config, demo=False)


def _check_formats(config: AuditConfig, problems: _Problems) -> None:
    """Every report format (and json, the findings) is installed."""
    from auditor.report.base import unavailable

    for index, fmt in [(None, "json"), *enumerate(config.outputs.formats)]:
        message = unavailable(fmt)  # its module, or an optional extra it needs (pdf), is missing
        if message is not None:
            loc = ("outputs", "formats") if index is None else ("outputs", "formats", index)
            problems.key(loc, message, InputError("outputs.formats", message))


def _check_frameworks(config: AuditConfig, problems: _Problems) -> None:
    """Every framework the reports will show is known and reads (before anything is written)."""
    for index, name in enumerate(config.outputs.frameworks):
        loc = ("outputs", "frameworks", index)
        with problems.catching({"outputs.frameworks": (loc, "outputs.frameworks")}):
            load_framework(name, config.policies, where="outputs.frameworks")
    if not config.outputs.frameworks:
        with problems.catching():
            available_frameworks(config.policies)


def _check_policies(config: AuditConfig, problems: _Problems) -> None:
    """The policies load and compile with `params` (every bad parameter at its key), and the policy
    selection keeps some of them."""
    relocate: dict[str, tuple[PathKey, str]] = {
        f"params.{name}": (("params", name), f"params.{name}") for name in config.params
    }
    for key in ("policy", "skip_policy"):
        if key not in config.selection_from_options:
            for index, glob in enumerate(getattr(config, key)):
                relocate[f"{key} {glob}"] = ((key, index), f"{key} {glob}")
    chosen = [k for k in ("policy", "skip_policy", "min_severity") if k not in config.selection_from_options]
    written = [k for k in chosen if getattr(config, k)]
    if written:
        relocate["policy selection"] = ((written[0],), "policy selection")
    params = config.check_params()
    while True:  # after refused parameters, again without them: the policies and selection are checked too
        try:
            prepare_check(
                CheckOptions(
                    inventory=Path(os.devnull),
                    policy_paths=list(config.policies),
                    params=params,
                    selection=config.selection(),
                    param_where=lambda name: f"params.{name}",
                )
            )
            return
        except InputError as exc:
            errors = each_error(exc)
            problems.add(errors, relocate)
            refused = {name for name in params if any(e.where == f"params.{name}" for e in errors)}
            if not refused:
                return
            params = {name: value for name, value in params.items() if name not in refused}


def _check_section(config: AuditConfig, problems: _Problems, source: str, section: SourceSection) -> None:
    """One source's section as its scanner would take it: each option (unknown, out of range, not
    used by this scanner) at its key, then the section's own settings (account ids, regions)."""
    base: PathKey = ("clouds", source)
    written: dict[str, str] = {}  # option name -> the key as written
    for key in section.options:
        name = option_key(key)
        if name in written:
            message = f"given twice (also as '{written[name]}')"
            problems.key(
                (*base, "options", key), message, InputError(f"clouds.{source}", f"options.{key}: {message}")
            )
        written[name] = key
    model = section.scan_options_model
    try:
        model.model_validate({option_key(k): v for k, v in section.options.items()})
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            key = written.get(name, name)
            message = str(error["msg"])
            if error["type"] == "extra_forbidden":
                message = f"`auditor scan {source}` has no option --{name}"
                close = difflib.get_close_matches(name, _option_names(model), n=1)
                if close:
                    message += f" (did you mean '{close[0]}'?)"
            loc = (*base, "options", key) if key else (*base, "options")
            problems.key(loc, message, InputError(f"clouds.{source}", f"options.{key}: {message}"))
    try:
        section.model_copy(update={"options": {}}).check()
    except ValueError as exc:
        text = str(exc)
        name, sep, rest = text.partition(": ")
        if sep and name in type(section).model_fields:
            problems.key((*base, name), rest, InputError(f"clouds.{source}", text))
        else:
            problems.key(base, text, InputError(f"clouds.{source}", text))


def _option_names(model: type[ScanOptions]) -> list[str]:
    """The options a scanner takes under `options:`, as written (no old names, no unused settings)."""
    used = getattr(model, "retry_used", None)
    return [
        option_key(name)
        for name in model.model_fields
        if name not in RETRY_OLD_NAMES and (used is None or name not in RETRY_SETTINGS or name in used)
    ]


def _remove_leftovers(config: AuditConfig, started: float, log: Log) -> None:
    """Remove temporary files and directories this job's killed runs left in its output places."""
    out = config.outputs.directory
    targets = [out / FINDINGS_FILE, out / DEMO_PUBLIC_KEY, *config.report_paths().values()]
    removed: list[Path] = []
    for target in dict.fromkeys(targets):
        removed += remove_stale_temps(target, started=started)
    removed += remove_stale_bundle_temps(out, started=started)
    removed += remove_stale(out, _SPOOL_PATTERN, started=started)
    removed += remove_stale(config.scale.parts_directory or out, _SCANS_PATTERN, started=started)
    if removed:
        names = ", ".join(p.name for p in removed[:5]) + (", ..." if len(removed) > 5 else "")
        log(f"removed {len(removed)} temporary file(s) left by killed runs: {names}")


def _run(
    config: AuditConfig,
    history: History,
    writer: BundleWriter,
    baseline: BaselineFile | None,
    key: Ed25519PrivateKey | None,
    today: date | None,
    log: Log,
) -> AuditOutcome:
    out = config.outputs.directory
    staging = writer.staging
    inventory = staging / "inventory.jsonl"
    sources = _collect_inventory(config, inventory, log)

    result = run_check(
        CheckOptions(
            inventory=inventory,
            policy_paths=list(config.policies),
            params=config.check_params(),
            waivers=config.waivers,
            fail_on=config.fail_on,
            allow_incomplete=config.allow_incomplete,
            allow_empty=config.allow_empty,
            today=today,
            selection=config.selection(),
            evidence=config.outputs.evidence,
        ),
        spool_dir=out,
    )
    spool = result.spool
    try:
        run = result.run
        run.inventory = "inventory.jsonl"
        marks = BaselineMarks()
        if baseline is not None and config.baseline is not None:
            marks = find_baselined(spool.texts(), baseline, run)
            apply_baseline_gate(run, marks, baseline, source=config.baseline.name)
            gate = run.gate  # the baseline recomputes the gate; nothing evaluated stays incomplete
            gate.exit_code = empty_run_exit_code(gate.exit_code, gate.nothing_evaluated, config.allow_empty)
        baselined = len(marks.positions)
        started = datetime.fromisoformat(run.started_at).astimezone(UTC)
        bundle_name = f"{started:%Y%m%dT%H%M%SZ}-{run.id[:8]}"
        run.audit = AuditInfo(
            job=config.name,
            config_digest=config.digest(),
            inventory_sources=sources,
            bundle=None if config.outputs.bundle == "none" else bundle_name,
            signed_by=key_id(key.public_key()) if key is not None else None,
        )

        def findings() -> Iterator[bytes]:
            """Each finding's JSON as the document holds it (read from the spool on each call)."""
            return mark_baselined(spool.texts(), marks) if marks.positions else spool.texts()

        findings_path = out / FINDINGS_FILE
        with atomic_output(findings_path) as handle:
            spool.write_document(handle, run, None if not marks.positions else findings())
        writer.add_file(findings_path, FINDINGS_FILE)

        previous = history.last_run(config.name)
        compared = history.previous_run(previous.id) if previous is not None else None
        reports = _render_reports(config, findings_path, inventory, compared)
        for path in reports.values():
            writer.add_file(path, f"reports/{path.name}")
        writer.add_bytes("config.json", orjson.dumps(config.redacted(), option=orjson.OPT_INDENT_2) + b"\n")
        _add_inputs(config, writer)

        bundle_path: Path | None = None
        manifest_digest: str | None = None
        meta = {
            "id": run.id,
            "job": config.name,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "exit_code": run.gate.exit_code,
            "fail_on": run.gate.fail_on.value,
            "counts": plain(run.counts)["by_status"],
            "baselined": baselined,
            "config_digest": run.audit.config_digest,
            "previous_run": previous.id if previous is not None else None,
        }
        if config.outputs.bundle != "none":
            bundle_path, manifest_digest = writer.seal(
                out / "bundles" / bundle_name, meta, key=key, archive=config.outputs.bundle == "tar.gz"
            )
        else:
            writer.discard()

        current = history.record_texts(
            plain(run),
            findings(),
            job=config.name,
            config_digest=run.audit.config_digest,
            bundle=str(bundle_path) if bundle_path is not None else None,
            manifest_sha256=manifest_digest,
        )
    finally:
        spool.close()
    # The summary prints how many findings moved, not which: no section's changes are held.
    diff = history.diff(previous, current, listed=()) if previous is not None else None
    outcome = AuditOutcome(
        exit_code=run.gate.exit_code,
        run_id=run.id,
        findings_path=findings_path,
        reports=reports,
        bundle=bundle_path,
        manifest_sha256=manifest_digest,
        previous_run=previous.id if previous is not None else None,
        diff=diff,
        baselined=baselined,
        run=run,
        incomplete_reason=incomplete_reason(run),
    )
    return outcome


def _collect_inventory(config: AuditConfig, target: Path, log: Log) -> list[str]:
    """Scan the configured clouds (unit by unit, through the configured executor) and join every
    inventory into `target`: the given inventories first, then the merged, sorted scan parts."""
    from auditor.scale.merge import merge_parts

    sources = [f"file:{p.name}" for p in config.inventories]
    if not config.inventories and not config.clouds.configured():
        raise InputError("auditor.yaml", NOTHING_TO_AUDIT)
    parts_root = config.scale.parts_directory or config.outputs.directory
    parts_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".scans-{owner_tag()}.", dir=parts_root) as tmp:
        scanned = scan_configured(config, Path(tmp), progress=progress_shown(None), log=log)
        sources.extend(f"scan:{source}" for source in scanned.plan.sources)
        with atomic_output(target) as handle:
            for part in config.inventories:
                with part.open("rb") as source:
                    last = b"\n"
                    while chunk := source.read(1 << 20):
                        handle.write(chunk)
                        last = chunk[-1:]
                    if last != b"\n":
                        handle.write(b"\n")
            merge_parts(scanned.parts, handle)
    if config.attestations:
        applied = attest_inventory(target, load_attestations(config.attestations))
        log(f"attested: {applied} values from {len(config.attestations)} attestation file(s)")
    return sources


def scan_configured(
    config: AuditConfig,
    parts_dir: Path,
    *,
    executor: Executor | None = None,
    runner: UnitRunner = run_unit,
    progress: bool | None = None,
    log: Log | None = None,
) -> ScaledScan:
    """Scan the configured sources unit by unit through the configured (or given) executor."""
    chosen = executor or make_executor(
        config.executor,
        scheduler=config.scheduler,
        threads=config.scale.threads,
        local_workers=config.scale.local_workers,
    )
    options = ScaleOptions(
        attempts=config.scale.attempts,
        units_per_account=config.scale.units_per_account,
        progress=progress,
        parts=config.scale.parts_for(chosen.name),
    )
    return scan_sources(
        config.clouds.configured(),
        parts_dir,
        chosen,
        policies=config.policies,
        options=options,
        runner=runner,
        log=log,
    )


def _render_reports(
    config: AuditConfig, findings: Path, inventory: Path, previous: PreviousRun | None
) -> dict[str, Path]:
    """The configured reports of the findings document at `findings`, read one finding at a time."""
    from auditor.report.base import ReportInput, render_to_file

    report = ReportInput(
        stream=FindingsStream.open(findings, inventory, written_here=True),
        inventory_path=inventory,
        previous=previous,
        frameworks=list(config.outputs.frameworks),
    )
    written: dict[str, Path] = {}
    for fmt, path in config.report_paths().items():
        try:
            render_to_file(fmt, report, path)
        except ModuleNotFoundError as exc:
            raise InputError("outputs.formats", f"report format '{fmt}' is not available: {exc}") from exc
        written[fmt] = path
    return written


def _add_inputs(config: AuditConfig, writer: BundleWriter) -> None:
    """The policies, waivers and baseline the run used, copied into the bundle."""
    policy_paths = list(config.policies) or [shipped_policies_dir()]
    for index, path in enumerate(policy_paths):
        label = "shipped" if not config.policies else f"{index + 1}-{path.stem}"
        if path.is_file():
            writer.add_file(path, f"policies/{label}/{path.name}")
            continue
        for file in sorted(path.rglob("*")):
            rel = file.relative_to(path)
            if file.is_file() and file.suffix in (".yaml", ".yml") and "tests" not in rel.parts[:-1]:
                writer.add_file(file, f"policies/{label}/{rel.as_posix()}")
    if config.waivers is not None:
        writer.add_file(config.waivers, f"waivers/{config.waivers.name}")
    for index, path in enumerate(config.attestations):
        writer.add_file(path, f"attestations/{index + 1}-{path.name}")
    if config.baseline is not None:
        writer.add_file(config.baseline, f"baseline/{config.baseline.name}")


def summary_lines(config: AuditConfig, outcome: AuditOutcome) -> list[str]:
    """The run's result as `auditor audit` prints it (stdout): counts, drift since the previous run,
    what was written where, the gate line, and the reason when the run is incomplete (last)."""
    run = outcome.run
    assert run is not None
    counts = run.counts.by_status
    lines = [
        f"run {outcome.run_id}: {run.coverage.resources} resources, "
        f"{counts[Status.FAIL]} fail ({outcome.baselined} baselined), {counts[Status.ERROR]} error, "
        f"{counts[Status.WAIVED]} waived, {counts[Status.PASS]} pass"
    ]
    if outcome.diff is not None:
        d = outcome.diff
        moved = d.counts
        lines.append(
            f"since run {d.a.id[:8]} ({d.a.started_at:%Y-%m-%d %H:%M}Z): "
            f"{moved['new_failures']} new failure(s), {moved['fixed']} fixed, "
            f"{moved['still_failing']} still failing, {moved['newly_unknown']} newly unknown, "
            f"{moved['not_assessed']} not assessed, "
            f"coverage gaps {len(d.new_gaps)} new / {len(d.closed_gaps)} closed"
        )
    lines.append(f"findings: {outcome.findings_path}")
    lines.extend(f"report ({fmt}): {path}" for fmt, path in outcome.reports.items())
    if outcome.bundle is not None:
        lines.append(f"evidence bundle: {outcome.bundle} (manifest sha256 {outcome.manifest_sha256})")
    lines.append(f"history: {redact_url(config.database_url())}")
    lines.append(f"gate (fail-on {run.gate.fail_on}): exit {run.gate.exit_code}")
    if outcome.incomplete_reason is not None:
        lines.append(outcome.incomplete_reason)
    return lines
