"""`auditor permissions <source>`: exactly the permissions the loaded policies need.

The single source is each scanner's call table: its declaration module
(`auditor/scan/<name>_source.py`) holds `CALLS`, one `CallSpec` per API call the scanner makes (the
attribute paths it feeds, when it is made, the permissions it needs), and `PERMISSION_FORMATS`, how
that source writes a role for them (IAM policy, CloudFormation, Terraform, custom role). A call is
needed when a loaded policy reads what it feeds (`AttributeNeeds.wants`, the test the scanners make)
or it is always made; the permissions are the union over the needed calls. The docs' permission
tables are `--all --format markdown` of the same table (tests/test_permissions.py keeps them equal),
and tests check the table against the AWS scanner's calls and against moto's IAM enforcement.

The declaration modules import nothing from here at run time (the data is plain dicts typed by
`CallSpec`), so the registry stays free of this command and of an import cycle.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, NotRequired, Protocol, TypedDict

import click

from auditor.cli_options import exit_codes, list_option
from auditor.errors import InputError
from auditor.scan.base import AttributeNeeds, default_policy_paths
from auditor.sources import declaration_modules, sources

# Who holds a permission: the identity that reads the storage (the read role in every account), or
# the identity that runs the scan and assumes the read role into each account.
Holder = Literal["reader", "caller"]
HOLDERS: tuple[Holder, ...] = ("reader", "caller")
MARKDOWN = "markdown"


class CallSpec(TypedDict):
    """One row of a source's call table, as its declaration module writes it."""

    operation: str  # as the scanner counts and evidences it, e.g. "s3:GetBucketEncryption"
    permissions: tuple[str, ...]  # () when the call needs none
    when: str  # when the scanner makes it (docs)
    feeds: NotRequired[tuple[str, ...]]  # attribute paths/groups: made when a policy reads one
    always: NotRequired[bool]  # made by every scan (listings, identity)
    options: NotRequired[tuple[str, ...]]  # scan options that make it too (`--scan-option`)
    holder: NotRequired[Holder]  # default "reader"
    note: NotRequired[str]  # a quirk of the permission, with its source (docs)
    kinds: NotRequired[tuple[str, ...]]  # resource kinds it serves: made only when a policy is scoped to one


class Needs(Protocol):
    """What the loaded policies read (`AttributeNeeds`)."""

    def wants(self, path: str) -> bool: ...

    def wants_kind(self, kind: str) -> bool: ...

    def for_kinds(self, *kinds: str) -> Needs: ...


@dataclass(frozen=True)
class ApiCall:
    """One API call a scanner makes, what it feeds and the permissions it needs."""

    operation: str
    permissions: tuple[str, ...]
    when: str
    feeds: tuple[str, ...] = ()
    always: bool = False
    options: tuple[str, ...] = ()
    holder: Holder = "reader"
    note: str = ""
    kinds: tuple[str, ...] = ()  # () serves every kind (identity, account listing)

    def needed(self, needs: Needs, options: Iterable[str] = ()) -> bool:
        """True if a scan with these needs and scan options makes this call.

        A call that serves some resource kinds is made only when a policy is scoped to one of them,
        and then only if it is always made for them or feeds a path such a policy reads.
        """
        if self.kinds:
            if not any(needs.wants_kind(kind) for kind in self.kinds):
                return False
            needs = needs.for_kinds(*self.kinds)
        return (
            self.always
            or any(needs.wants(path) for path in self.feeds)
            or any(option in self.options for option in options)
        )


@dataclass(frozen=True)
class Grant:
    """The calls a scan needs (in table order), and the whole table they were chosen from."""

    source: str
    calls: tuple[ApiCall, ...]
    table: tuple[ApiCall, ...]

    def permissions(self, holder: Holder = "reader") -> list[str]:
        """The permissions `holder` needs, sorted and without repeats."""
        return sorted({p for call in self.calls if call.holder == holder for p in call.permissions})

    def operations(self) -> list[str]:
        """The API calls the scan may make, sorted."""
        return sorted({call.operation for call in self.calls})

    def caller_duties(self) -> list[str]:
        """What the identity that runs auditor needs besides the read role: `permission (--option)`."""
        return [
            f"{permission} (--{' / --'.join(call.options)})" if call.options else permission
            for call in self.table
            if call.holder == "caller"
            for permission in call.permissions
        ]


# A source's renderer: the grant as a role document in one format.
Renderer = Callable[[Grant], str]


@dataclass(frozen=True)
class PermissionTable:
    """One source's call table and the formats it writes roles in."""

    source: str
    calls: tuple[ApiCall, ...]
    formats: Mapping[str, Renderer]

    @property
    def options(self) -> list[str]:
        """Scan options that make more calls (`--scan-option`), sorted."""
        return sorted({option for call in self.calls for option in call.options})

    def grant(self, needs: Needs, options: Iterable[str] = ()) -> Grant:
        """The calls (and so the permissions) a scan with these needs and options makes."""
        chosen = tuple(options)
        return Grant(self.source, tuple(c for c in self.calls if c.needed(needs, chosen)), self.calls)

    def everything(self) -> Grant:
        """Every call of the table, whatever the policies read (the docs table)."""
        return Grant(self.source, self.calls, self.calls)

    def render(self, grant: Grant, output_format: str) -> str:
        """`grant` in `output_format` ("markdown" or one of the source's formats)."""
        if output_format == MARKDOWN:
            return calls_markdown(grant.calls)
        renderer = self.formats.get(output_format)
        if renderer is None:
            known = ", ".join([*sorted(self.formats), MARKDOWN])
            raise InputError("--format", f"{self.source} writes {known}, not '{output_format}'")
        text = renderer(grant)
        return text if text.endswith("\n") else text + "\n"


def _call(spec: CallSpec) -> ApiCall:
    return ApiCall(
        operation=spec["operation"],
        permissions=tuple(spec["permissions"]),
        when=spec["when"],
        feeds=tuple(spec.get("feeds", ())),
        always=spec.get("always", False),
        options=tuple(spec.get("options", ())),
        holder=spec.get("holder", "reader"),
        note=spec.get("note", ""),
        kinds=tuple(spec.get("kinds", ())),
    )


@cache
def permission_tables() -> dict[str, PermissionTable]:
    """Every registered source that declares a call table, by name, in registry order."""
    found: dict[str, PermissionTable] = {}
    for module_name in declaration_modules():
        module = importlib.import_module(module_name)
        source = getattr(module, "SOURCE", None)
        specs = getattr(module, "CALLS", None)
        if source is None or specs is None:
            continue  # a source that makes no cloud call (infrastructure as code) needs no permission
        found[source.name] = PermissionTable(
            source.name, tuple(_call(spec) for spec in specs), dict(getattr(module, "PERMISSION_FORMATS", {}))
        )
    return {name: found[name] for name in sources() if name in found}


def permission_table(name: str) -> PermissionTable:
    """The call table of source `name` (InputError if it has none)."""
    tables = permission_tables()
    if name not in tables:
        raise InputError("SOURCE", f"'{name}' makes no cloud API calls (one of {', '.join(tables)})")
    return tables[name]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def calls_markdown(calls: Sequence[ApiCall]) -> str:
    """A Markdown table of calls: the permissions, who holds them, when the call is needed, how often."""
    lines = [
        "| API call | permission | held by | needed when | made |",
        "|---|---|---|---|---|",
    ]
    for call in calls:
        granted = ", ".join(f"`{p}`" for p in call.permissions) or "none"
        if call.note:
            granted = f"{granted} ({call.note})"
        needed = ["every scan"] if call.always else []
        if call.kinds and call.always:
            needed = [f"a policy is scoped to {', '.join(f'`{kind}`' for kind in call.kinds)}"]
        if call.feeds:
            scoped = f" scoped to {', '.join(f'`{kind}`' for kind in call.kinds)}" if call.kinds else ""
            needed.append(f"a policy{scoped} reads {', '.join(f'`{path}`' for path in call.feeds)}")
        needed += [f"`--{option}`" for option in call.options]
        holder = "read role" if call.holder == "reader" else "caller"
        cells = [f"`{call.operation}`", granted, holder, " or ".join(needed), call.when]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def needs_of(policy_paths: Sequence[Path]) -> AttributeNeeds:
    """What the policies in `policy_paths` read (default: the shipped policies)."""
    return AttributeNeeds.from_policy_paths(default_policy_paths(list(policy_paths)))


@click.command("permissions", epilog=exit_codes({0: "printed"}))
@click.argument("source_name", metavar="SOURCE")
@click.option(
    "--policies",
    "policy_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Policy file or directory (repeatable; default: the shipped policies).",
)
@click.option(
    "--format",
    "output_format",
    default="json",
    show_default=True,
    help="json, markdown, or a format of the source: aws cloudformation|terraform, gcp and azure terraform.",
)
@list_option(
    "--scan-option",
    "scan_options",
    metavar="NAME",
    help="A scan option the scans will use that makes more calls (aws: regions, role-arn, organization)",
)
@click.option(
    "--all", "every_call", is_flag=True, help="Every call of the table, whatever the policies read."
)
def command(
    source_name: str,
    policy_paths: tuple[Path, ...],
    output_format: str,
    scan_options: tuple[str, ...],
    every_call: bool,
) -> None:
    """Print exactly the permissions the loaded policies need for `auditor scan SOURCE`.

    The permissions come from the scanner's own call table (auditor/scan/<source>_source.py); an
    unknown source, format or option, or a policy error, is bad input.
    """
    table = permission_table(source_name)
    unknown = [option for option in scan_options if option not in table.options]
    if unknown:
        known = ", ".join(table.options) or "none"
        raise InputError("--scan-option", f"{source_name} has no option '{unknown[0]}' (known: {known})")
    grant = table.everything() if every_call else table.grant(needs_of(policy_paths), scan_options)
    click.echo(table.render(grant, output_format), nl=False)
