"""The `auditor` command line: wiring only (scan -> check -> report / gate).

Exit codes (a public contract, see README): 0 nothing at or above the threshold failed;
1 violations; 2 bad input or usage; 3 incomplete (errors or coverage gaps, unless
--allow-incomplete; nothing evaluated, unless --allow-empty; a scan that reached nothing).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from auditor import __version__
from auditor.cli_options import SCAN_EXIT_CODES, exit_codes, list_option, quiet_option, with_group_options
from auditor.errors import InputError, one_line
from auditor.evaluate import PolicySelection, compile_policies, parse_param_args
from auditor.findings import Finding, Severity, Status
from auditor.policy.loader import load_policies, load_zones, shipped_policies_dir
from auditor.streams import diagnostic, result

if TYPE_CHECKING:
    from auditor.document import RunInfo

EXIT_OK, EXIT_VIOLATIONS, EXIT_BAD_INPUT, EXIT_INCOMPLETE = 0, 1, 2, 3


class AuditorGroup(click.Group):
    """A group that turns InputError into one clear line on stderr and exit code 2, and whose
    options are accepted after its subcommand too (`auditor history list --database URL`)."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        return name, with_group_options(self, command) if command is not None else None, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as exc:
            for line in exc.lines():  # several when a whole input was checked at once (auditor.yaml)
                click.echo(f"error: {line}", err=True)
            ctx.exit(EXIT_BAD_INPUT)


# Commands whose modules load only when used: "name" -> "module:attribute" (a click.Command).
LAZY_COMMANDS: dict[str, str] = {
    "report": "auditor.report.command:command",
    "audit": "auditor.audit.command:audit",
    "history": "auditor.audit.command:history",
    "baseline": "auditor.audit.command:baseline",
    "keygen": "auditor.audit.command:keygen",
    "verify": "auditor.audit.command:verify",
    "drift": "auditor.intent:command",  # declared (infrastructure as code) vs observed
    "permissions": "auditor.permissions:command",  # the permissions the loaded policies need
}


def _load_command(target: str) -> click.Command:
    module_name, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    assert isinstance(command, click.Command)
    return command


class RootGroup(AuditorGroup):
    """The top-level group: eager commands plus LAZY_COMMANDS whose modules exist."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [name for name, target in LAZY_COMMANDS.items() if _module_exists(target)]
        return sorted({*super().list_commands(ctx), *lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in LAZY_COMMANDS and _module_exists(LAZY_COMMANDS[name]):
            command = _load_command(LAZY_COMMANDS[name])
        return command


def _module_exists(target: str) -> bool:
    try:
        return importlib.util.find_spec(target.partition(":")[0]) is not None
    except ModuleNotFoundError:  # the parent package is absent
        return False


class ScanGroup(AuditorGroup):
    """`auditor scan <source>`: one command per registered source, its module loaded only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from auditor.sources import source_names

        return sorted(source_names())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from auditor.sources import sources

        source = sources().get(name)
        return _load_command(source.command) if source is not None else None


def _policy_paths(paths: tuple[Path, ...]) -> list[Path]:
    return list(paths) or [shipped_policies_dir()]


F = TypeVar("F", bound=Callable[..., Any])


def selection_options(command: F) -> F:
    """`--policy GLOB`, `--skip-policy GLOB` (both lists) and `--min-severity` (check, audit)."""
    for option in reversed(
        [
            list_option(
                "--policy",
                "select_policy",
                metavar="GLOB",
                help="Evaluate only the loaded policies whose id matches (a glob matching no loaded "
                "policy is exit 2)",
            ),
            list_option(
                "--skip-policy",
                "skip_policy",
                metavar="GLOB",
                help="Do not evaluate the loaded policies whose id matches",
            ),
            click.option(
                "--min-severity",
                type=click.Choice([s.value for s in Severity]),
                help="Evaluate only policies of this severity or above.",
            ),
        ]
    ):
        command = option(command)
    return command


def policy_selection(
    policy: tuple[str, ...] | list[str], skip_policy: tuple[str, ...] | list[str], min_severity: str | None
) -> PolicySelection:
    """The selection the options (or auditor.yaml's keys) give."""
    return PolicySelection(
        policy=tuple(policy),
        skip_policy=tuple(skip_policy),
        min_severity=Severity(min_severity) if min_severity is not None else None,
    )


# The gate's exit codes (check, audit); README "Exit codes" and docs/audit.md#exit-codes say more.
GATE_EXIT_CODES = {
    EXIT_OK: "nothing at or above --fail-on failed, and something was evaluated",
    EXIT_VIOLATIONS: "violations: a fail at or above --fail-on",
    EXIT_INCOMPLETE: "incomplete: errors, coverage gaps, or nothing evaluated",
}
CHECK_EXIT_CODES = exit_codes(GATE_EXIT_CODES)


@click.group(
    cls=RootGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=exit_codes({**GATE_EXIT_CODES, EXIT_OK: "success (a gate: nothing failed)"}),
)
@click.version_option(__version__, prog_name="auditor")
@quiet_option
def cli() -> None:
    """Audit cloud storage for data residency, encryption, transport and AI-training consent.

    Results go to stdout; progress, notes, warnings and errors to stderr (--quiet: errors only).
    """


@cli.group(cls=ScanGroup, epilog=SCAN_EXIT_CODES)
def scan() -> None:
    """Inventory storage of one cloud into a JSONL snapshot."""


@scan.result_callback()
def _scan_result(summary: Any) -> None:
    from auditor.scan.command import scan_exit

    scan_exit(summary)


@cli.command(epilog=CHECK_EXIT_CODES)
@click.option(
    "--inventory",
    "inventory_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Inventory JSONL (from `auditor scan`).",
)
@click.option(
    "--policies",
    "policy_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Policy file or directory (repeatable; default: the shipped policies).",
)
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Policy parameter (repeatable).")
@click.option("--waivers", "waivers_path", type=click.Path(path_type=Path), help="Waiver file.")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option(
    "--output", "-o", type=click.Path(path_type=Path, dir_okay=False), help="Write here (atomically)."
)
@click.option(
    "--evidence",
    "evidence_form",
    type=click.Choice(["inline", "reference"]),
    default="inline",
    show_default=True,
    help="With --format json: findings copy their evidence (inline, schema 1.6), or point at it in the "
    "inventory (reference, schema 2.0: smaller; `auditor report --inventory` resolves it).",
)
@click.option(
    "--fail-on",
    type=click.Choice([s.value for s in Severity]),
    default=Severity.INFO.value,
    show_default=True,
    help="Lowest severity that fails the gate.",
)
@click.option(
    "--allow-incomplete",
    is_flag=True,
    help="Exit 0 instead of 3 when findings are `error` or accounts could not be scanned (no violations).",
)
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Exit 0 instead of 3 when no policy was evaluated on any resource (empty inventory, only "
    "coverage gaps, or nothing in scope); gaps still need --allow-incomplete.",
)
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Date for waiver and attestation expiry (default: today).",
)
@selection_options
def check(
    inventory_path: Path,
    policy_paths: tuple[Path, ...],
    params: tuple[str, ...],
    waivers_path: Path | None,
    output_format: str,
    output: Path | None,
    evidence_form: str,
    fail_on: str,
    allow_incomplete: bool,
    allow_empty: bool,
    today: datetime | None,
    select_policy: tuple[str, ...],
    skip_policy: tuple[str, ...],
    min_severity: str | None,
) -> None:
    """Evaluate policies over an inventory and gate on the result.

    All loaded policies are validated; --policy, --skip-policy and --min-severity then select the
    ones evaluated (a glob matching no loaded policy, or selecting nothing, is exit 2).
    """
    from auditor.check import CheckOptions, empty_run_hint, incomplete_reason, run_check
    from auditor.document import write_findings_document

    options = CheckOptions(
        inventory=inventory_path,
        policy_paths=list(policy_paths),
        params=parse_param_args(params),
        waivers=waivers_path,
        fail_on=Severity(fail_on),
        allow_incomplete=allow_incomplete,
        allow_empty=allow_empty,
        today=today.date() if today else None,
        selection=policy_selection(select_policy, skip_policy, min_severity),
        evidence=evidence_form,
    )
    kept: list[Finding] = []

    def keep(finding: Finding) -> None:
        if finding.status is not Status.PASS:
            kept.append(finding)

    spool_dir = output.parent if output is not None and output.parent.is_dir() else None
    # The table needs the findings as objects; the JSON document is written from shared parts.
    checked = run_check(options, on_finding=keep if output_format == "table" else None, spool_dir=spool_dir)
    run = checked.run
    try:
        if output_format == "json":
            write_findings_document(checked.spool, run, output)
        else:
            from auditor.atomicfile import atomic_output
            from auditor.report.table import render_table

            text = render_table(kept, run, color=output is None and sys.stdout.isatty())
            if output is None:
                click.echo(text, nl=False)  # the table ends with the counts and the gate line
            else:
                with atomic_output(output) as handle:
                    handle.write(text.encode())
    finally:
        checked.spool.close()
    lines = [] if output is None and output_format == "table" else _check_summary(run)  # the table has it
    if output is not None:
        lines.insert(0, f"findings written to {output}")
    reason = incomplete_reason(run)
    if reason is not None:
        lines.append(reason + empty_run_hint(run))
    for line in lines:  # beside a JSON document on stdout: on stderr, so that stdout stays JSON
        result(line, beside_document=output is None and output_format == "json")
    sys.exit(checked.exit_code)


def _check_summary(run: RunInfo) -> list[str]:
    """The counts and gate lines `check` prints when its table is not on the terminal."""
    counts = run.counts.by_status
    return [
        f"{run.coverage.resources} resources, {run.counts.findings} findings: {counts[Status.PASS]} pass, "
        f"{counts[Status.FAIL]} fail, {counts[Status.ERROR]} error, {counts[Status.WAIVED]} waived",
        f"gate (fail-on {run.gate.fail_on}): exit {run.gate.exit_code}",
    ]


@cli.group(
    cls=AuditorGroup, epilog=exit_codes({EXIT_OK: "done", EXIT_VIOLATIONS: "a policy test case failed"})
)
def policy() -> None:
    """List, validate and test policies."""


@policy.command("list", epilog=exit_codes({EXIT_OK: "printed"}))
@click.option(
    "--policies",
    "policy_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Policy file or directory (repeatable; default: the shipped policies).",
)
@click.option(
    "--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def policy_list(policy_paths: tuple[Path, ...], output_format: str) -> None:
    """The loaded policies: id, title, severity, providers in scope, frameworks (most severe first)."""
    loaded = load_policies(_policy_paths(policy_paths))
    rows = [
        {
            "id": entry.policy.id,
            "title": entry.policy.title,
            "severity": entry.policy.severity.value,
            "providers": list(entry.policy.scope.providers),
            "frameworks": sorted(entry.policy.controls),
        }
        for entry in sorted(loaded, key=lambda e: (-e.policy.severity.rank, e.policy.id))
    ]
    if output_format == "json":
        import orjson

        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    header = {"id": "id", "severity": "severity", "providers": "providers", "frameworks": "frameworks"}
    cells = [header] + [
        {
            "id": one_line(str(r["id"])),
            "severity": str(r["severity"]),
            "providers": ",".join(r["providers"]),
            "frameworks": ",".join(r["frameworks"]),
        }
        for r in rows
    ]
    widths = {key: max(len(c[key]) for c in cells) for key in header}
    titles = ["title"] + [one_line(str(r["title"])) for r in rows]  # text from policy files
    for cell, title in zip(cells, titles, strict=True):
        click.echo("  ".join(cell[key].ljust(widths[key]) for key in header) + "  " + title)


@policy.command("validate", epilog=exit_codes({EXIT_OK: "every policy is valid"}))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def policy_validate(paths: tuple[Path, ...]) -> None:
    """Check that policy files load, compile and reference known attributes, zones, operators and
    framework controls."""
    from auditor.frameworks import check_policy_controls

    loaded = load_policies(paths)
    catalog = load_zones(list(paths))
    compile_policies(loaded, catalog, {})
    check_policy_controls(loaded)
    click.echo(f"{len(loaded)} policies valid in {', '.join(str(p) for p in paths)}")


@policy.command("test", epilog=exit_codes({EXIT_OK: "every case passed", EXIT_VIOLATIONS: "a case failed"}))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False))
def policy_test(paths: tuple[Path, ...]) -> None:
    """Run the YAML test cases in each directory's tests/ against its policies."""
    from auditor.policy_testing import run_policy_tests

    passed = failed = 0
    for path in paths:
        run = run_policy_tests(path)
        for case in run.cases:
            if case.passed:
                passed += 1
                click.echo(f"PASS {case.name}")
            else:
                failed += 1
                click.echo(f"FAIL {case.name} ({case.file})")
                for failure in case.failures:
                    click.echo(f"     {failure}")
        if run.untested_policies:
            diagnostic(f"warning: no test case exercises: {', '.join(run.untested_policies)}")
    click.echo(f"{passed} cases passed, {failed} failed")
    sys.exit(EXIT_VIOLATIONS if failed else EXIT_OK)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="auditor")


if __name__ == "__main__":
    main()
