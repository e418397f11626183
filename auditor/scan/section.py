"""A source's section of auditor.yaml as its scanner reads it: typed options and retry settings."""

from __future__ import annotations

from typing import TypeVar

import click

from auditor.errors import InputError
from auditor.scan.calls import RetrySettings
from auditor.scan.command import retry_settings
from auditor.sources import ScanOptions, SourceSection

OptionsT = TypeVar("OptionsT", bound=ScanOptions)


def section_options(section: SourceSection, kind: type[OptionsT]) -> OptionsT:
    """The section's `options:` validated against the scanner's (InputError, exit 2, if refused)."""
    try:
        options = section.scan_options()
    except ValueError as exc:
        raise InputError("options", str(exc).removeprefix("options.")) from None
    if not isinstance(options, kind):  # pragma: no cover - a source declares its own options model
        raise TypeError(f"{type(section).__name__} options are {type(options).__name__}, not {kind.__name__}")
    return options


def options_retry(options: ScanOptions) -> RetrySettings:
    """The shared retry/timeout settings the options give (old names translated)."""
    try:
        return retry_settings(options.flags())
    except click.UsageError as exc:
        raise InputError("options", exc.format_message()) from None
