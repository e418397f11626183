"""Where the command line writes: results on stdout, diagnostics and progress on stderr.

A result is what a command was run for: its summary and gate line, a listing, a verdict, where it
wrote a file. A diagnostic is how it got there: progress, per-step notes, warnings. `--quiet`
silences diagnostics and progress, never errors or results. A command that prints a machine-readable
document on stdout writes its summary to stderr instead (`result(..., beside_document=True)`), so
that stdout holds the document alone.
"""

from __future__ import annotations

import click

# Process-wide, not per click context: scan units run in worker threads, which have no context.
_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) diagnostics and progress for the rest of the command."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    """Whether `--quiet` was given."""
    return _quiet


def result(message: str, *, beside_document: bool = False) -> None:
    """One line of a command's result: stdout, or stderr when stdout carries a document."""
    click.echo(message, err=beside_document)


def diagnostic(message: str) -> None:
    """One line about how the command is doing (stderr), unless `--quiet`."""
    if not _quiet:
        click.echo(message, err=True)


def progress_shown(progress: bool | None) -> bool | None:
    """The progress switch with `--quiet` applied: an explicit --progress/--no-progress wins, else
    quiet means no bar (None: a bar when stderr is a terminal)."""
    return False if progress is None and _quiet else progress
