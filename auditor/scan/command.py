"""Command-line options every `auditor scan <cloud>` command shares, and how it finishes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from auditor.scan.base import Scanner, ScanSummary, run_scan
from auditor.scan.calls import RETRY_SETTINGS, RetrySettings
from auditor.streams import progress_shown, result

F = TypeVar("F", bound=Callable[..., Any])


# Old option names, kept working with the same meaning: name -> (setting, conversion).
RETRY_ALIASES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "read_timeout": ("timeout", float),  # `auditor scan aws --read-timeout`
    "max_retries": ("max_attempts", lambda retries: int(retries) + 1),  # `auditor scan azure --max-retries`
}


def retry_options() -> list[Callable[[F], F]]:
    """The retry/timeout vocabulary every scanner shares, and the hidden old names (aliases)."""
    return [
        click.option(
            "--max-attempts",
            type=click.IntRange(1, 20),
            default=None,
            help="Attempts per API call, the first included (default: the scanner's; gcp: by deadline).",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0.1),
            default=None,
            help="Seconds to wait for each HTTP response (default: the scanner's).",
        ),
        click.option(
            "--connect-timeout",
            type=click.FloatRange(min=0.1),
            default=None,
            help="Seconds to wait for each connection (default: the scanner's).",
        ),
        click.option(
            "--retry-deadline",
            type=click.FloatRange(min=0.0),
            default=None,
            help="Seconds one call may keep retrying (gcp).",
        ),
        click.option(
            "--retry-backoff",
            type=click.FloatRange(0, 60),
            default=None,
            help="First wait of the exponential backoff, in seconds (gcp, azure).",
        ),
        click.option(
            "--retry-after-max",
            type=click.FloatRange(0, 3600),
            default=None,
            help="Longest Retry-After honoured, in seconds; a longer one ends the retries (azure).",
        ),
        click.option("--read-timeout", type=click.FloatRange(min=0.1), default=None, hidden=True),
        click.option("--max-retries", type=click.IntRange(0, 20), default=None, hidden=True),
    ]


def retry_settings(values: dict[str, Any]) -> RetrySettings:
    """The shared settings from the parsed options, old names translated (both given: exit 2)."""
    settings = {name: values.get(name) for name in RETRY_SETTINGS}
    for alias, (name, convert) in RETRY_ALIASES.items():
        value = values.get(alias)
        if value is None:
            continue
        if settings[name] is not None:
            new, old = "--" + name.replace("_", "-"), "--" + alias.replace("_", "-")
            raise click.UsageError(f"give {new} or its old name {old}, not both")
        settings[name] = convert(value)
    return RetrySettings(**settings)


def _with_retry_settings(func: F) -> F:
    names = (*RETRY_SETTINGS, *RETRY_ALIASES)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name, None) for name in names}
        return func(*args, retry=retry_settings(given), **kwargs)

    return cast(F, wrapper)


def _with_attestations_and_result(func: F) -> F:
    """Load `--attestations` before the scan (bad input: exit 2, nothing scanned or written), apply
    them to the inventory the scan wrote, and print the result on stdout: where the inventory is,
    the attestations applied, the summary (its last line says why when nothing was scanned)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from auditor.attestations import attest_inventory, load_attestations

        files: tuple[Path, ...] = kwargs.pop("attestation_files", ())
        attestations = load_attestations(files)
        summary = func(*args, **kwargs)
        output: Path = kwargs["output"]
        lines = [f"inventory written to {output}"]
        if attestations:
            applied = attest_inventory(output, attestations)
            lines.append(f"attested: {applied} values from {', '.join(map(str, files))}")
        if isinstance(summary, ScanSummary):
            for line in [*lines, summary.render()]:
                result(line)
        return summary

    return cast(F, wrapper)


def common_scan_options(func: F) -> F:
    """Add --policies, --output, --concurrency, --progress/--no-progress, --attestations and the
    retry vocabulary.

    The command receives the retry/timeout options as one `retry: RetrySettings` argument; the
    attestations are applied to its inventory after it returns (auditor.attestations), and the
    returned summary is printed on stdout.
    """
    func = _with_attestations_and_result(_with_retry_settings(func))
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
            help="Progress bar on stderr (default: only when stderr is a terminal and not --quiet).",
        ),
        click.option(
            "--attestations",
            "attestation_files",
            multiple=True,
            type=click.Path(path_type=Path, dir_okay=False),
            help="Attestation file (repeatable): values no API exposes, vouched for until a date.",
        ),
        *retry_options(),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def finish_scan(scanner: Scanner, output: Path, progress: bool | None) -> ScanSummary:
    """Run the scan, write the inventory and return its summary (the command prints it).

    The inventory is written even when every scope failed (its gaps are the record of why); the
    summary then ends with `nothing scanned: every scope failed: <first gap>`, and `scan_exit`
    (the `auditor scan` group's result callback) turns the returned summary into exit code 3.
    """
    return run_scan(scanner, output, progress=progress_shown(progress))


def scan_exit(result: Any) -> None:
    """Leave with the scan's exit code: 3 (incomplete) when nothing was scanned and a scope failed.

    Registered as the result callback of the `auditor scan` group, so every cloud's command only
    returns its `ScanSummary`; a command run directly (`command.main(standalone_mode=False)`, as
    the audit's work units do) returns the summary untouched and leaves the gate to `check`.
    """
    if isinstance(result, ScanSummary) and result.exit_code:
        raise click.exceptions.Exit(result.exit_code)
