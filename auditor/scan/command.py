"""Command-line options every `auditor scan <cloud>` command shares, and how it finishes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from auditor.scan.base import Scanner, ScanSummary, run_scan

F = TypeVar("F", bound=Callable[..., Any])


def common_scan_options(func: F) -> F:
    """Add --policies, --output, --concurrency and --progress/--no-progress."""
    options = [
        click.option(
            "--policies",
            "policy_paths",
            multiple=True,
            type=click.Path(path_type=Path),
            help="Policy files/directories whose attributes to collect (default: the shipped policies).",
        ),
        click.option(
            "--output",
            "-o",
            required=True,
            type=click.Path(path_type=Path, dir_okay=False),
            help="Inventory JSONL to write (written atomically).",
        ),
        click.option(
            "--concurrency",
            default=16,
            show_default=True,
            type=click.IntRange(1, 256),
            help="Concurrent API requests per account/project/subscription.",
        ),
        click.option(
            "--progress/--no-progress",
            default=None,
            help="Progress bar (default: only when stderr is a terminal).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def finish_scan(scanner: Scanner, output: Path, progress: bool | None) -> ScanSummary:
    """Run the scan, write the inventory, print the summary to stderr and return it.

    The inventory is written even when every scope failed (its gaps are the record of why); the
    summary then ends with `nothing scanned: every scope failed: <first gap>`, and `scan_exit`
    (the `auditor scan` group's result callback) turns the returned summary into exit code 3.
    """
    summary = run_scan(scanner, output, progress=progress)
    click.echo(f"inventory written to {output}", err=True)
    click.echo(summary.render(), err=True)
    return summary


def scan_exit(result: Any) -> None:
    """Leave with the scan's exit code: 3 (incomplete) when nothing was scanned and a scope failed.

    Registered as the result callback of the `auditor scan` group, so every cloud's command only
    returns its `ScanSummary`; a command run directly (`command.main(standalone_mode=False)`, as
    the audit's work units do) returns the summary untouched and leaves the gate to `check`.
    """
    if isinstance(result, ScanSummary) and result.exit_code:
        raise click.exceptions.Exit(result.exit_code)
