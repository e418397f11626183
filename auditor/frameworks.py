"""Compliance frameworks (GDPR, SOC 2, ISO/IEC 27001, the laws of the residency zones, ...) and the
status of one control.

A framework is one file, `frameworks/<name>.yaml`, in a user's policy directory or among the shipped
policies (policies/frameworks/); a user's file overrides a shipped one of the same name. The
frameworks available are the files found, so adding a framework is adding a file. A policy maps
itself to a framework's controls under `controls: {<name>: [...]}`; `check_policy_controls` refuses
a framework or control id that no file defines. A law names the residency zones it governs
(`zones`), and a report shows by default the frameworks `default_frameworks` picks for the run's zone.

`control_status` decides a control's status from the findings of the policies mapped to it, for the
report's control matrix and for the period report alike; each shows the one status in its own words
(`ControlStatus.verdict`, `ControlStatus.legend`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from pydantic import Field, ValidationError, model_validator

from auditor.errors import InputError
from auditor.policy.loader import shipped_policies_dir
from auditor.policy.yamlfile import load_yaml
from auditor.strict import StrictModel

if TYPE_CHECKING:
    from auditor.policy.loader import LoadedPolicy

FRAMEWORK_DIR = "frameworks"  # beside the policy files: <policy dir>/frameworks/<name>.yaml


# --- framework files -----------------------------------------------------------------------------


HTTPS_URL = r"^https://\S+$"

# When a report shows a framework without --framework / outputs.frameworks: every time, when the
# run's zone is one of its `zones`, or only when asked for (a law that binds only some entities).
Shown = Literal["always", "in-zone", "on-request"]


class FrameworkControl(StrictModel):
    """One control (article, section, criterion, Annex A control) of a framework."""

    id: str = Field(min_length=1)
    title: str
    description: str = Field("", description="What the clause requires of storage and AI processing.")
    source: str | None = Field(
        None, pattern=HTTPS_URL, description="The clause's primary source: the official legislation site."
    )
    verified: bool | None = Field(
        None,
        description="false: the clause could not be checked against its primary source (say why in "
        "note); default: the framework's `verified`.",
    )
    note: str = Field("", description="Verification, commencement or scope notes.")
    url: str | None = Field(None, description="The link reports give for the control; default: the source.")

    @model_validator(mode="after")
    def _checked(self) -> FrameworkControl:
        if self.verified is False and not self.note:
            raise ValueError("a control with verified: false needs a note saying what could not be checked")
        if self.url is None:
            self.url = self.source
        return self


class Framework(StrictModel):
    """frameworks/<name>.yaml: a framework's controls, in reading order."""

    framework: str = Field(min_length=1, description="The framework's name: the file's name without .yaml.")
    title: str
    label: str = Field("", description="Short name in reports and tags ('SOC 2'); default: the name.")
    version: str = ""
    url: str | None = None
    order: int | None = Field(
        None, description="Place among the frameworks a report shows by default (then by name)."
    )
    zones: list[str] = Field(
        default_factory=list, description="The residency zones (zone catalog ids) whose law it is."
    )
    shown: Shown | None = Field(
        None,
        description="When a report shows it without --framework: always, in-zone (the run's zone is "
        "one of `zones`) or on-request; default: in-zone with zones, else always.",
    )
    verified: bool = Field(True, description="The default `verified` of its controls.")
    note: str = Field("", description="Who the law binds, when it applies, what was verified.")
    controls: list[FrameworkControl]

    @model_validator(mode="after")
    def _defaults(self) -> Framework:
        if not self.verified and not self.note:
            raise ValueError("a framework with verified: false needs a note saying what could not be checked")
        if not self.label:
            self.label = self.framework
        if self.shown is None:
            self.shown = "in-zone" if self.zones else "always"
        for control in self.controls:
            if control.verified is None:
                control.verified = self.verified
        return self

    @property
    def name(self) -> str:
        """The name policies map controls under (`controls: {<name>: [...]}`)."""
        return self.framework


_SHOWN_BY_DEFAULT: dict[Shown, Callable[[Framework, str | None], bool]] = {
    "always": lambda framework, zone: True,
    "in-zone": lambda framework, zone: zone in framework.zones,
    "on-request": lambda framework, zone: False,
}


def framework_dirs(policy_paths: Iterable[Path] = ()) -> list[Path]:
    """`frameworks/` of each user policy directory that has one, in order, then the shipped one."""
    shipped = shipped_policies_dir() / FRAMEWORK_DIR
    dirs: list[Path] = []
    for path in policy_paths:
        candidate = path / FRAMEWORK_DIR
        if candidate.is_dir() and candidate.resolve() != shipped.resolve() and candidate not in dirs:
            dirs.append(candidate)
    return [*dirs, shipped]


def framework_files(policy_paths: Iterable[Path] = ()) -> dict[str, Path]:
    """Name -> file of every framework found; a user's file wins over a shipped one of its name."""
    files: dict[str, Path] = {}
    for directory in framework_dirs(policy_paths):
        for file in sorted(directory.glob("*.yaml")):
            files.setdefault(file.stem, file)
    return files


def read_framework(path: Path) -> Framework:
    """Parse and validate one framework file; every error is an InputError naming file:line."""
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise doc.error((), "a framework file is a mapping with 'framework:', 'title:' and 'controls:'")
    try:
        framework = Framework.model_validate(doc.data)
    except ValidationError as exc:
        raise doc.validation_error(exc) from exc
    if framework.framework != path.stem:
        raise doc.error(
            ("framework",), f"framework '{framework.framework}' must be named like its file ('{path.stem}')"
        )
    first: dict[str, int] = {}
    for index, control in enumerate(framework.controls):
        if control.id in first:
            line = doc.line_of(("controls", first[control.id], "id"))
            raise doc.error(
                ("controls", index, "id"), f"duplicate control id '{control.id}' (first at line {line})"
            )
        first[control.id] = index
    return framework


def load_framework(name: str, policy_paths: Iterable[Path] = (), *, where: str = "--framework") -> Framework:
    """Framework `name`, from the user's policy directories first, then the shipped ones.

    An unknown name is an InputError at `where` that lists the frameworks found.
    """
    files = framework_files(policy_paths)
    if name not in files:
        known = ", ".join(sorted(files)) or "none"
        raise InputError(where, f"unknown framework '{name}' (known: {known})")
    return read_framework(files[name])


def available_frameworks(policy_paths: Iterable[Path] = ()) -> list[Framework]:
    """Every framework found, by `order`, then by name."""
    frameworks = [read_framework(file) for file in framework_files(policy_paths).values()]
    return sorted(frameworks, key=lambda f: (f.order is None, f.order or 0, f.name))


def default_frameworks(policy_paths: Iterable[Path] = (), zone: str | None = None) -> list[Framework]:
    """The frameworks a report shows when none is asked for: those shown always (GDPR, SOC 2,
    ISO/IEC 27001, a user's own) and the laws of the run's `zone`, in `available_frameworks` order."""
    return [
        framework
        for framework in available_frameworks(policy_paths)
        if _SHOWN_BY_DEFAULT[framework.shown or "always"](framework, zone)
    ]


def check_policy_controls(loaded: Iterable[LoadedPolicy]) -> None:
    """Every framework a policy's `controls:` names has a file beside the policies (or shipped), and
    every control id listed is in that file; otherwise an InputError at the policy's file:line.

    For the callers of `load_policies` (auditor.policy may not import this module: it imports
    auditor.policy)."""
    entries = list(loaded)
    dirs = list(dict.fromkeys(entry.doc.path.parent for entry in entries))
    files = framework_files(dirs)
    catalogs: dict[str, set[str]] = {}
    for entry in entries:
        for name, ids in entry.policy.controls.items():
            loc = (*entry.loc, "controls", name)
            if name not in files:
                known = ", ".join(sorted(files)) or "none"
                raise entry.doc.error(loc, f"controls: unknown framework '{name}' (known: {known})")
            if name not in catalogs:
                catalogs[name] = {control.id for control in read_framework(files[name]).controls}
            for index, control_id in enumerate(ids):
                if control_id not in catalogs[name]:
                    raise entry.doc.error(
                        (*loc, index), f"controls: '{control_id}' is not a control of {name} ({files[name]})"
                    )


# --- the status of a control ---------------------------------------------------------------------

# The report's control matrix groups the statuses into three verdicts.
Verdict = Literal["effective", "not effective", "not assessed"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)


class ControlStatus(StrEnum):
    """A control's status in one run. The values are the period report's (JSON and CSS classes)."""

    EFFECTIVE = "effective"
    EXCEPTIONS = "exceptions"
    FAILING = "failing"
    UNKNOWN = "unknown"
    NOT_TESTED = "not_tested"
    INCOMPLETE = "incomplete"
    NOTHING_EVALUATED = "nothing_evaluated"

    @property
    def verdict(self) -> Verdict:
        """The verdict of the report's control matrix."""
        return _WORDS[self][0]

    @property
    def legend(self) -> str:
        """The status in words, as the period report's legend gives it."""
        return _WORDS[self][1]

    @property
    def effective(self) -> bool:
        """Counts as effective (closes an open failure, counts towards the effective share)."""
        return self.verdict == "effective"


# status -> (the control matrix's verdict, the period report's legend): the one table of display words
_WORDS: dict[ControlStatus, tuple[Verdict, str]] = {
    ControlStatus.EFFECTIVE: ("effective", "effective"),
    ControlStatus.EXCEPTIONS: ("effective", "effective with waived exceptions"),
    ControlStatus.FAILING: ("not effective", "failing"),
    ControlStatus.UNKNOWN: ("not assessed", "unknown (could not be read)"),
    ControlStatus.NOT_TESTED: ("not assessed", "not tested"),
    ControlStatus.INCOMPLETE: ("not assessed", "incomplete (coverage gaps)"),
    ControlStatus.NOTHING_EVALUATED: ("not assessed", "nothing evaluated"),
}


@dataclass(frozen=True)
class ControlAssessment:
    """A control's status and the reason for it in words."""

    status: ControlStatus
    reason: str


def control_status(
    counts: Mapping[str, int],
    *,
    policies: int | None = None,
    incomplete: bool = False,
    nothing_evaluated: bool = False,
) -> ControlAssessment:
    """A control's status from the status counts (pass, fail, error, waived) of the findings of the
    policies mapped to it; `policies`: how many policies map to it, when known.

    `nothing_evaluated`: the run evaluated no resource, so it tested nothing. A failing finding is
    conclusive; otherwise any `error` leaves the control unknown, because an unreadable resource may
    be the one that fails. `incomplete`: the run's coverage gaps hide resources of unknown number
    and kind, so passing findings do not make the control effective. Waived findings are accepted
    exceptions.
    """
    if nothing_evaluated:
        return ControlAssessment(ControlStatus.NOTHING_EVALUATED, "the run evaluated no resource")
    if policies == 0:
        return ControlAssessment(ControlStatus.NOT_TESTED, "no policy evidences this control")
    failed, errors = counts.get("fail", 0), counts.get("error", 0)
    if failed:
        return ControlAssessment(ControlStatus.FAILING, f"{failed} failing finding(s)")
    if errors:
        return ControlAssessment(ControlStatus.UNKNOWN, f"{errors} finding(s) could not be decided (errors)")
    if incomplete:
        return ControlAssessment(
            ControlStatus.INCOMPLETE, "coverage gaps: parts of the estate were not scanned"
        )
    passed, waived = counts.get("pass", 0), counts.get("waived", 0)
    if passed + waived == 0:
        return ControlAssessment(ControlStatus.NOT_TESTED, "no resource in scope of its policies")
    if waived:
        return ControlAssessment(
            ControlStatus.EXCEPTIONS, f"{passed} pass, {waived} waived (accepted exceptions)"
        )
    return ControlAssessment(ControlStatus.EFFECTIVE, f"all {passed} finding(s) pass")


def control_verdict(counts: Mapping[str, int], policies: int) -> tuple[Verdict, str]:
    """`control_status` in the words of the report's control matrix: (verdict, reason)."""
    assessed = control_status(counts, policies=policies)
    return assessed.status.verdict, assessed.reason
