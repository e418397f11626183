"""Read a findings JSON document (docs/findings-json.md) and check its shape before any renderer sees it.

The check is structural (the fields renderers rely on, with their types); unknown fields are
kept, since the contract only ever adds fields. Documents stay plain dicts: renderers read them as-is.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from auditor.errors import InputError
from auditor.inputfile import MAX_FINDINGS_BYTES, read_input

SUPPORTED_MAJOR = "1"

SeverityName = Literal["critical", "high", "medium", "low", "info"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Tool(_Open):
    name: str
    version: str


class _RunPolicy(_Open):
    id: str
    title: str
    severity: SeverityName
    family: str
    source: str
    controls: dict[str, list[str]]
    counts: dict[str, int]


class _Counts(_Open):
    findings: int
    by_status: dict[str, int]
    by_severity: dict[str, dict[str, int]]


class _Coverage(_Open):
    resources: int
    resources_by_provider: dict[str, int]
    accounts: list[dict[str, str]]
    regions: dict[str, int]
    unknown_attributes: dict[str, dict[str, int]]
    gaps: list[dict[str, Any]]


class _Waivers(_Open):
    file: str | None
    entries: list[dict[str, Any]]


class _Gate(_Open):
    fail_on: str
    exit_code: int


class _Run(_Open):
    schema_version: str
    id: str
    tool: _Tool
    started_at: str
    finished_at: str
    inventory: str
    parameters: dict[str, Any]
    policies: list[_RunPolicy]
    counts: _Counts
    coverage: _Coverage
    waivers: _Waivers
    gate: _Gate


_STATUSES = frozenset(("pass", "fail", "error", "waived"))
_SEVERITIES = frozenset(("critical", "high", "medium", "low", "info"))
# field -> expected type(s), for the fields renderers read; checked by hand because a pydantic model
# per finding costs seconds at 100,000 findings.
_FINDING_FIELDS: dict[str, type] = {
    "policy_id": str,
    "status": str,
    "underlying_status": str,
    "severity": str,
    "resource": dict,
    "message": str,
    "observed": dict,
    "expected": str,
    "controls": dict,
    "evidence": list,
}
_RESOURCE_FIELDS: dict[str, type] = {
    "provider": str,
    "account": str,
    "id": str,
    "name": str,
    "regions": list,
}
_WAIVER_FIELDS: dict[str, type] = {
    "id": str,
    "justification": str,
    "approver": str,
    "expires": str,
    "expired": bool,
}
_TYPE_NAMES = {str: "a string", dict: "an object", list: "a list", bool: "a boolean"}


def _check_fields(value: Any, fields: dict[str, type], loc: str) -> str | None:
    if not isinstance(value, dict):
        return f"{loc}: must be an object"
    for name, kind in fields.items():
        if name not in value:
            return f"{loc}.{name}: field required"
        if not isinstance(value[name], kind):
            return f"{loc}.{name}: must be {_TYPE_NAMES.get(kind, kind.__name__)}"
    return None


def _finding_problem(finding: Any, index: int) -> str | None:
    loc = f"findings[{index}]"
    problem = _check_fields(finding, _FINDING_FIELDS, loc)
    if problem is None:
        problem = _check_fields(finding["resource"], _RESOURCE_FIELDS, f"{loc}.resource")
    if problem is None and finding.get("waiver") is not None:
        problem = _check_fields(finding["waiver"], _WAIVER_FIELDS, f"{loc}.waiver")
    if problem is not None:
        return problem
    for name in ("status", "underlying_status"):
        if finding[name] not in _STATUSES:
            return f"{loc}.{name}: {finding[name]!r} is not one of pass, fail, error, waived"
    if finding["severity"] not in _SEVERITIES:
        return f"{loc}.severity: {finding['severity']!r} is not a severity"
    if not all(isinstance(e, dict) for e in finding["evidence"]):
        return f"{loc}.evidence: every entry must be an object"
    return None


def _where(path: str, loc: tuple[Any, ...]) -> str:
    dotted = ""
    for part in loc:
        if isinstance(part, int):
            dotted += f"[{part}]"
        else:
            dotted += f".{part}" if dotted else str(part)
    return f"{path}: {dotted}"


def check_document(data: Any, where: str) -> dict[str, Any]:
    """Return `data` if it is a findings document this version can read; else raise InputError."""
    if not isinstance(data, dict) or not isinstance(data.get("run"), dict):
        raise InputError(where, "not a findings document: expected an object with 'run' and 'findings'")
    if not isinstance(data.get("findings"), list):
        raise InputError(where, "not a findings document: 'findings' must be a list")
    version = data["run"].get("schema_version")
    if not isinstance(version, str) or version.split(".", 1)[0] != SUPPORTED_MAJOR:
        raise InputError(
            f"{where}: run.schema_version",
            f"unsupported findings schema version {version!r} (this auditor reads {SUPPORTED_MAJOR}.x)",
        )
    try:
        _Run.model_validate(data["run"])
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(_where(where, ("run", *first["loc"])), first["msg"]) from exc
    for index, finding in enumerate(data["findings"]):
        problem = _finding_problem(finding, index)
        if problem is not None:
            loc, _, message = problem.partition(": ")
            raise InputError(f"{where}: {loc}", message)
    return data


def load_document(path: Path) -> dict[str, Any]:
    """Read and check the findings document at `path`; bad input raises InputError naming the file.

    Only a regular file of at most MAX_FINDINGS_BYTES (4 GiB) is read (see auditor.inputfile).
    """
    raw = read_input(path, limit=MAX_FINDINGS_BYTES, what="findings")
    # A large document is millions of objects: collecting garbage while they are made costs more
    # than the parse itself, and none of them is garbage.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(str(path), f"not valid JSON ({exc})") from exc
    finally:
        if was_enabled:
            gc.enable()
    del raw
    return check_document(data, str(path))
