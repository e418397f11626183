"""The `auditor` command line: wiring only (scan -> check -> report / gate).

Exit codes (a public contract, see README): 0 nothing at or above the threshold failed;
1 violations; 2 bad input or usage; 3 incomplete (errors or coverage gaps) unless allowed.
"""

from __future__ import annotations

import importlib
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from auditor import __version__
from auditor.errors import InputError
from auditor.evaluate import Evaluator, WaiverBook, compile_policies, gate_exit_code, parse_param_args
from auditor.findings import Finding, Severity, Status
from auditor.inventory import read_inventory
from auditor.policy.loader import load_policies, load_waivers, load_zones, shipped_policies_dir
from auditor.scan import SCANNER_COMMANDS

EXIT_OK, EXIT_VIOLATIONS, EXIT_BAD_INPUT, EXIT_INCOMPLETE = 0, 1, 2, 3


class AuditorGroup(click.Group):
    """A group that turns InputError into one clear line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_BAD_INPUT)


class ScanGroup(AuditorGroup):
    """`auditor scan <cloud>`: loads the cloud's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SCANNER_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = SCANNER_COMMANDS.get(name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command


def _policy_paths(paths: tuple[Path, ...]) -> list[Path]:
    return list(paths) or [shipped_policies_dir()]


@click.group(cls=AuditorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="auditor")
def cli() -> None:
    """Audit cloud storage for data residency, encryption, transport and AI-training consent."""


@cli.group(cls=ScanGroup)
def scan() -> None:
    """Inventory storage of one cloud into a JSONL snapshot."""


@cli.command()
@click.option(
    "--inventory",
    "inventory_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
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
@click.option(
    "--waivers", "waivers_path", type=click.Path(path_type=Path, dir_okay=False), help="Waiver file."
)
@click.option(
    "--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option(
    "--output", "-o", type=click.Path(path_type=Path, dir_okay=False), help="Write here (atomically)."
)
@click.option(
    "--fail-on",
    type=click.Choice([s.value for s in Severity]),
    default=Severity.INFO.value,
    show_default=True,
    help="Lowest severity that fails the gate.",
)
@click.option("--allow-incomplete", is_flag=True, help="Do not exit 3 when some findings are `error`.")
@click.option(
    "--today", type=click.DateTime(formats=["%Y-%m-%d"]), help="Date for waiver expiry (default: today)."
)
def check(
    inventory_path: Path,
    policy_paths: tuple[Path, ...],
    params: tuple[str, ...],
    waivers_path: Path | None,
    output_format: str,
    output: Path | None,
    fail_on: str,
    allow_incomplete: bool,
    today: datetime | None,
) -> None:
    """Evaluate policies over an inventory and gate on the result."""
    from auditor.report.findings_json import FindingsSpool, run_info, write_findings_document

    started = datetime.now(UTC)
    paths = _policy_paths(policy_paths)
    loaded = load_policies(paths)
    catalog = load_zones(paths)
    cli_params = parse_param_args(params)
    compiled = compile_policies(loaded, catalog, cli_params)
    waivers = (
        WaiverBook(load_waivers(waivers_path), today.date() if today else date.today())
        if waivers_path
        else None
    )
    threshold = Severity(fail_on)
    evaluator = Evaluator(compiled, waivers, threshold)
    spool = FindingsSpool(output.parent if output and output.parent.is_dir() else None)
    kept: list[Finding] = []
    try:
        for finding in evaluator.run(read_inventory(inventory_path)):
            spool.add(finding)
            if output_format == "table" and finding.status is not Status.PASS:
                kept.append(finding)
        exit_code = gate_exit_code(evaluator.totals, allow_incomplete)
        effective = {name: value for c in compiled for name, value in c.parameters.items()}
        run = run_info(
            run_id=str(uuid.uuid4()),
            started_at=started,
            inventory=str(inventory_path),
            policies=compiled,
            parameters=effective,
            totals=evaluator.totals,
            waivers=waivers,
            waivers_file=str(waivers_path) if waivers_path else None,
            fail_on=fail_on,
            allow_incomplete=allow_incomplete,
            exit_code=exit_code,
        )
        if output_format == "json":
            write_findings_document(spool, run, output)
        else:
            from auditor.atomicfile import atomic_output
            from auditor.report.table import render_table

            text = render_table(kept, run, color=output is None and sys.stdout.isatty())
            if output is None:
                click.echo(text, nl=False)
            else:
                with atomic_output(output) as handle:
                    handle.write(text.encode())
    finally:
        spool.close()
    sys.exit(exit_code)


@cli.group(cls=AuditorGroup)
def policy() -> None:
    """Validate and test policies."""


@policy.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def policy_validate(paths: tuple[Path, ...]) -> None:
    """Check that policy files load, compile and reference known attributes, zones and operators."""
    loaded = load_policies(paths)
    catalog = load_zones(list(paths))
    compile_policies(loaded, catalog, {})
    click.echo(f"{len(loaded)} policies valid in {', '.join(str(p) for p in paths)}")


@policy.command("test")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False))
def policy_test(paths: tuple[Path, ...]) -> None:
    """Run the YAML test cases in each directory's tests/ against its policies."""
    from auditor.policy.testing import run_policy_tests

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
            click.echo(f"warning: no test case exercises: {', '.join(run.untested_policies)}", err=True)
    click.echo(f"{passed} cases passed, {failed} failed")
    sys.exit(EXIT_VIOLATIONS if failed else EXIT_OK)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="auditor")
