"""Command-line conventions every command shares: list options (repeated or comma-separated),
`--quiet`, a group's options accepted after its subcommand too, and the exit codes each `--help`
ends with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from auditor.streams import set_quiet

F = TypeVar("F", bound=Callable[..., Any])

BAD_INPUT = "bad input or usage: `file:line: what is wrong` on stderr, nothing written"


def split_list(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """A multi-value option's values, comma-separated ones split: `--x a,b --x c` is (a, b, c)."""
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


def list_option(*param_decls: str, metavar: str, help: str, **attrs: Any) -> Callable[[F], F]:
    """An option taking several values: repeat it, comma-separate its values, or both."""
    return click.option(
        *param_decls,
        multiple=True,
        callback=split_list,
        metavar=f"{metavar}[,{metavar}...]",
        help=f"{help.rstrip('.')}; repeat or comma-separate.",
        **attrs,
    )


def _quiet_given(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    set_quiet(value is True)
    ctx.call_on_close(lambda: set_quiet(False))


def quiet_option(command: F) -> F:
    """`--quiet`/`-q`: no diagnostics or progress on stderr (errors and the result still print)."""
    return click.option(
        "--quiet",
        "-q",
        is_flag=True,
        expose_value=False,
        callback=_quiet_given,
        help="Print only the result and errors: no progress, notes or warnings on stderr.",
    )(command)


def exit_codes(meanings: Mapping[int, str]) -> str:
    """The epilog a command's --help ends with: its exit codes, 2 (bad input or usage) included."""
    lines = [f"  {code}  {text}" for code, text in sorted({**meanings, 2: BAD_INPUT}.items())]
    return "\b\nExit codes:\n" + "\n".join(lines)


SCAN_EXIT_CODES = exit_codes(
    {0: "inventory written", 3: "nothing scanned: every scope failed (still written)"}
)


class GroupOptionAfterSubcommand(click.Option):
    """A group's option repeated on its subcommand: given there, it sets the group's value.

    Click runs a group's callback before it parses the subcommand's arguments, so a group reads
    these options from its context's `params` when the subcommand runs, not in its own callback.
    """

    def __init__(self, option: click.Option) -> None:  # a copy of `option`, not a new declaration
        self.__dict__.update(option.__dict__)
        self.group_option: click.Option = (
            option.group_option if isinstance(option, GroupOptionAfterSubcommand) else option
        )
        self.expose_value = False
        self.required = False
        self.is_eager = False
        self.envvar = None  # the group read it already
        self.show_envvar = False
        self.callback = self._set_on_group

    def _set_on_group(self, ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if ctx.get_parameter_source(param.name or "") is not ParameterSource.COMMANDLINE:
            return value
        owner = ctx.parent
        while owner is not None and self.group_option not in owner.command.params:
            owner = owner.parent
        assert owner is not None, "a group option copied outside its group"
        name = self.group_option.name or ""
        if self.group_option.expose_value:
            owner.params[name] = value
            owner.set_parameter_source(name, ParameterSource.COMMANDLINE)
        if self.group_option.callback is not None:
            self.group_option.callback(owner, self.group_option, value)
        return value


def with_group_options(group: click.Group, command: click.Command) -> click.Command:
    """`command` (a copy) that also accepts `group`'s options, unless it has options of those names."""
    taken = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    inherited = [
        GroupOptionAfterSubcommand(param)
        for param in group.params
        if isinstance(param, click.Option)
        and not param.is_eager
        and not taken & {*param.opts, *param.secondary_opts}
    ]
    if not inherited:
        return command
    copied = type(command).__new__(type(command))
    copied.__dict__.update(command.__dict__)
    copied.params = [*command.params, *inherited]
    return copied
