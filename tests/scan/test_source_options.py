"""`options:` in auditor.yaml and the flags of `auditor scan <name>` cannot drift apart.

For every registered source: each option its options model accepts is a real flag of its command
(same name, same parameter name, compatible type, same bounds and default), and each flag of the
command is either a field of its section, a shared flag that has no place in auditor.yaml, or an
option the model accepts. The commands are found as the CLI finds them, through the registry.
"""

from __future__ import annotations

import types
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

import annotated_types
import click
import pytest
from pydantic import Field
from pydantic.fields import FieldInfo

from auditor.cli import scan
from auditor.scan.command import common_scan_options
from auditor.sources import ScanOptions, SourceSection, source_names, sources

# Flags every scan command has that auditor.yaml sets elsewhere (or never): the policies and the
# output are the audit's, a progress bar makes no sense in an unattended run, and attestation files
# are the job's top-level `attestations:` (applied to the whole inventory, whatever its source).
NOT_OPTIONS = frozenset({"policy_paths", "output", "progress", "attestation_files"})

Kind = tuple[str, tuple[Any, ...]]  # ("int" | "float" | "bool" | "str" | "list" | "choice", choices)
Bounds = tuple[tuple[float | None, bool], tuple[float | None, bool]]  # (min, open), (max, open)


def scan_command(name: str) -> click.Command:
    """`auditor scan <name>`, resolved as the CLI resolves it."""
    command = scan.get_command(click.Context(scan), name)
    assert command is not None, f"auditor scan {name}: no command"
    return command


def flags(command: click.Command) -> dict[str, click.Option]:
    """The command's options by flag, `--retry-mode` -> its option (secondary `--no-x` included)."""
    return {
        flag: param
        for param in command.params
        if isinstance(param, click.Option)
        for flag in (*param.opts, *param.secondary_opts)
    }


def model_kind(annotation: Any) -> Kind:
    """What a pydantic field takes, `None` aside: int | None -> ("int", ())."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        (inner,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        return model_kind(inner)
    if origin is Literal:
        return "choice", tuple(sorted(get_args(annotation)))
    if origin is list:
        return "list", ()
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(annotation, repr(annotation)), ()


def click_kind(option: click.Option) -> Kind:
    """What a click option takes, in the same terms as `model_kind`."""
    if option.multiple:
        return "list", ()
    kind = option.type
    if option.is_flag or isinstance(kind, click.types.BoolParamType):
        return "bool", ()
    if isinstance(kind, click.Choice):
        return "choice", tuple(sorted(kind.choices))
    if isinstance(kind, click.types.IntParamType):
        return "int", ()
    if isinstance(kind, click.types.FloatParamType):
        return "float", ()
    if isinstance(kind, click.types.StringParamType):
        return "str", ()
    return kind.name, ()


def model_bounds(info: FieldInfo) -> Bounds:
    """A pydantic field's ge/gt/le/lt as ((min, open), (max, open))."""
    low: tuple[float | None, bool] = (None, False)
    high: tuple[float | None, bool] = (None, False)
    for constraint in info.metadata:
        if isinstance(constraint, annotated_types.Ge):
            low = (float(str(constraint.ge)), False)
        elif isinstance(constraint, annotated_types.Gt):
            low = (float(str(constraint.gt)), True)
        elif isinstance(constraint, annotated_types.Le):
            high = (float(str(constraint.le)), False)
        elif isinstance(constraint, annotated_types.Lt):
            high = (float(str(constraint.lt)), True)
    return low, high


def click_bounds(option: click.Option) -> Bounds:
    """A click IntRange/FloatRange as ((min, open), (max, open)); no bounds for other types."""
    kind = option.type
    if not isinstance(kind, click.IntRange | click.FloatRange):
        return (None, False), (None, False)
    low = None if kind.min is None else float(kind.min)
    high = None if kind.max is None else float(kind.max)
    return (low, bool(low is not None and kind.min_open)), (high, bool(high is not None and kind.max_open))


def option_mismatches(command: click.Command, section: type[SourceSection]) -> list[str]:
    """Each option the section's `options:` accepts, checked against the command's flag of that name."""
    by_flag = flags(command)
    ctx = click.Context(command)
    problems = []
    for name, info in section.scan_options_model.model_fields.items():
        flag = f"--{info.alias or name}"
        option = by_flag.get(flag)
        if option is None:
            problems.append(f"options: {flag[2:]} is not a flag of `auditor scan {command.name}`")
            continue
        if option.name != name:  # ScanOptions.flags() hands values over by parameter name
            problems.append(f"options: {flag[2:]} sets '{name}', the flag sets '{option.name}'")
        if model_kind(info.annotation) != click_kind(option):
            problems.append(
                f"options: {flag[2:]} takes {model_kind(info.annotation)}, {flag} {click_kind(option)}"
            )
        if model_bounds(info) != click_bounds(option):
            problems.append(f"options: {flag[2:]} bounds {model_bounds(info)}, {flag} {click_bounds(option)}")
        if info.get_default() != option.get_default(ctx):
            problems.append(
                f"options: {flag[2:]} defaults to {info.get_default()!r}, {flag} {option.get_default(ctx)!r}"
            )
    return problems


def unrepresented_flags(command: click.Command, section: type[SourceSection]) -> list[str]:
    """The command's flags auditor.yaml cannot set: neither a section field, nor excluded, nor an option."""
    fields = set(section.model_fields) - {"options"}
    accepted = {f"--{info.alias or name}" for name, info in section.scan_options_model.model_fields.items()}
    problems = []
    for option in (param for param in command.params if isinstance(param, click.Option)):
        as_fields = {option.name, *(flag.lstrip("-").replace("-", "_") for flag in option.opts)}
        if option.name in NOT_OPTIONS or as_fields & fields or accepted & set(option.opts):
            continue
        problems.append(f"{option.opts[0]} of `auditor scan {command.name}` cannot be set in auditor.yaml")
    return problems


@pytest.mark.parametrize("name", source_names())
def test_every_option_is_a_flag_of_the_command(name: str) -> None:
    source = sources()[name]
    assert option_mismatches(scan_command(name), source.section) == []


@pytest.mark.parametrize("name", source_names())
def test_every_flag_can_be_set_in_the_config(name: str) -> None:
    source = sources()[name]
    assert unrepresented_flags(scan_command(name), source.section) == []


@pytest.mark.parametrize("name", source_names())
def test_a_setting_is_a_section_field_or_an_option_not_both(name: str) -> None:
    section = sources()[name].section
    assert not (set(section.model_fields) & set(section.scan_options_model.model_fields))


@pytest.mark.parametrize("name", source_names())
def test_the_excluded_flags_are_real(name: str) -> None:
    # a stale exclusion would silently wave through a flag of that name added later
    names = {param.name for param in scan_command(name).params}
    assert names >= NOT_OPTIONS


# --- the checks themselves find drift -----------------------------------------------------------


class _DriftedOptions(ScanOptions):
    page_size: int | None = Field(None, ge=1)  # the command's --page-size is IntRange(1, 100)
    mode: Literal["a", "b"] = "a"  # the command says a/c
    no_such_flag: bool = False
    fast: bool = True  # the flag defaults to off
    workers: int | None = None  # the flag takes a float
    limit: int | None = None  # the flag hands its value over as `limit_value`


class _DriftedSection(SourceSection):
    scan_options_model: ClassVar[type[ScanOptions]] = _DriftedOptions
    tenants: list[str] = []


@click.command("drifted")
@common_scan_options
@click.option("--tenant", "tenants", multiple=True)
@click.option("--page-size", type=click.IntRange(1, 100), default=None)
@click.option("--mode", type=click.Choice(["a", "c"]), default="a")
@click.option("--fast", is_flag=True)
@click.option("--workers", type=float, default=None)
@click.option("--limit", "limit_value", type=int, default=None)
@click.option("--label", "label_name", default=None)
@click.option("--batch", "batch_size", type=int, default=None)
def _drifted(**_: Any) -> None:
    """A command whose options model has drifted in every way the checks look for."""


def test_the_checks_report_drift() -> None:
    assert option_mismatches(_drifted, _DriftedSection) == [
        "options: page-size bounds ((1.0, False), (None, False)), --page-size ((1.0, False), (100.0, False))",
        "options: mode takes ('choice', ('a', 'b')), --mode ('choice', ('a', 'c'))",
        "options: no-such-flag is not a flag of `auditor scan drifted`",
        "options: fast defaults to True, --fast False",
        "options: workers takes ('int', ()), --workers ('float', ())",
        "options: limit sets 'limit', the flag sets 'limit_value'",
    ]
    assert unrepresented_flags(_drifted, _DriftedSection) == [
        "--label of `auditor scan drifted` cannot be set in auditor.yaml",
        "--batch of `auditor scan drifted` cannot be set in auditor.yaml",
    ]
