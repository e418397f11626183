"""`auditor report`: render a findings document (with its inventory and a previous run) in one format."""

from __future__ import annotations

import gc
from pathlib import Path

import click

from auditor.cli_options import exit_codes, list_option
from auditor.findings_stream import FindingsStream
from auditor.inputfile import open_input
from auditor.report.base import RENDERERS, ReportInput, render_to_file
from auditor.report.previous import PreviousRun
from auditor.report.view import check_grouping, report_frameworks
from auditor.streams import result

# Inputs are checked when read (auditor.inputfile): a directory, FIFO or device is one error line
# `file: what is wrong` with exit 2, not click's usage block.
_INPUT = click.Path(path_type=Path)
_FILE = click.Path(path_type=Path, dir_okay=False)


@click.command("report", epilog=exit_codes({0: "written"}))
@click.option(
    "--findings",
    "findings_path",
    required=True,
    type=_INPUT,
    help="Findings JSON (`auditor check --format json`).",
)
@click.option(
    "--inventory",
    "inventory_path",
    type=_INPUT,
    help="The inventory JSONL the findings came from (adds replica and key detail).",
)
@click.option(
    "--previous", "previous_path", type=_INPUT, help="A previous run's findings JSON: report what changed."
)
@click.option(
    "--format", "output_format", required=True, type=click.Choice(sorted(RENDERERS)), help="Output format."
)
@list_option(
    "--framework",
    "frameworks",
    metavar="NAME",
    help="Framework to report on: a frameworks/NAME.yaml beside the run's policies or shipped "
    "(default: every framework file found)",
)
@click.option(
    "--group-by-tag",
    "group_by_tag",
    metavar="KEY",
    help="Give each team its section (HTML, Markdown; CSV: the `group` column) by this resource tag "
    "(default: owner, when a resource has one; another tag needs --inventory).",
)
@click.option("--output", "-o", required=True, type=_FILE, help="Write the report here (atomically).")
def command(
    findings_path: Path,
    inventory_path: Path | None,
    previous_path: Path | None,
    output_format: str,
    frameworks: tuple[str, ...],
    group_by_tag: str | None,
    output: Path,
) -> None:
    """Write an evidence report in one of the registered formats (see --format) from a findings document."""
    if inventory_path is not None:  # read later, while rendering: refuse a bad one before any work
        open_input(inventory_path, "inventory").close()
    report = ReportInput(
        stream=FindingsStream.open(findings_path, inventory_path),
        inventory_path=inventory_path,
        previous=PreviousRun.open(previous_path) if previous_path is not None else None,
        frameworks=list(dict.fromkeys(frameworks)),
        group_by_tag=group_by_tag,
    )
    report_frameworks(report)  # an unknown or invalid framework: exit 2 before any output
    check_grouping(report)  # a tag the findings do not hold, and no inventory: exit 2
    # the documents live until exit: keep the collector from walking their millions of objects again
    gc.freeze()
    render_to_file(output_format, report, output)
    result(f"{output_format} report written to {output}")
