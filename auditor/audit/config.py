"""auditor.yaml: the audit job's configuration, validated with pydantic, errors as file:line.

Secrets never live in the file: the history database URL and the signing key can come from
$AUDITOR_DATABASE_URL and $AUDITOR_SIGNING_KEY (a key file path or the PEM text itself), cloud
credentials from each SDK's usual chain. `redacted()` is the only form ever written out.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import os
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    create_model,
    field_serializer,
    field_validator,
    model_serializer,
)

from auditor.errors import InputError, raise_all
from auditor.evaluate import PolicySelection
from auditor.findings import Severity
from auditor.frameworks import default_frameworks
from auditor.policy.loader import shipped_root
from auditor.policy.yamlfile import PathKey, YamlDocument, load_yaml
from auditor.report.base import FORMATS, unavailable
from auditor.scale.parts import AUTO as PARTS_AUTO
from auditor.scale.parts import CHOICES as PARTS_CHOICES
from auditor.scale.parts import DIRECTORY as PARTS_DIRECTORY
from auditor.scale.parts import RETURNED as PARTS_RETURNED
from auditor.scale.parts import url_problem as parts_url_problem
from auditor.sources import SourceSection, sources
from auditor.strict import StrictModel

DATABASE_URL_ENV = "AUDITOR_DATABASE_URL"
SIGNING_KEY_ENV = "AUDITOR_SIGNING_KEY"
SIGNING_PASSPHRASE_ENV = "AUDITOR_SIGNING_KEY_PASSPHRASE"
DEFAULT_CONFIG = Path("auditor.yaml")
DEFAULT_OUTPUT_DIR = Path("reports")
HISTORY_FILE = "history.db"

ExecutorName = Literal["in-process", "dask"]
# Settings of how a run executes, not of what it audits: left out of the config digest.
EXECUTION_KEYS = ("executor", "scheduler", "scale")
_SCHEDULER_URL = re.compile(r"^(tcp|tls|ws|wss|inproc|ucx)://[^\s/]+$")


def _registered_format(name: str) -> str:
    if name not in FORMATS:
        raise ValueError(f"unknown report format '{name}' (known: {', '.join(FORMATS)})")
    return name


# A format registered in auditor.report.base.FORMATS.
ReportFormat = Annotated[str, AfterValidator(_registered_format)]
DEFAULT_FORMATS: tuple[str, ...] = ("html", "sarif", "junit", "markdown")
# Formats of an optional extra that `--demo` writes when the extra is installed.
DEMO_EXTRA_FORMATS: tuple[str, ...] = ("pdf",)
# File names of the reports in the output directory (stable, so CI steps can find them).
REPORT_FILES: dict[str, str] = {name: spec.file_name for name, spec in FORMATS.items()}

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SECRET_NAME = re.compile(r"(password|passphrase|secret|token|credential|api[_-]?key)", re.IGNORECASE)
REDACTED = "<redacted>"


def parse_duration(value: Any) -> timedelta:
    """'90s', '30m', '24h', '1d', '1w' (or seconds as a number) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match and int(match.group(1)) > 0:
            return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    raise ValueError(f"expected a duration such as '24h', '1d' or '30m', got {value!r}")


def format_duration(value: timedelta) -> str:
    """The shortest exact form of `value` ('1d', '36h', '90s')."""
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


class SourceSections(StrictModel):
    """The sources to scan (`clouds:`), one optional section per registered source; leave one out
    to skip it. The concrete model, `Clouds`, is built from the source registry."""

    def configured(self) -> dict[str, SourceSection]:
        """The sections given, by source name, in registry order."""
        return {name: value for name in type(self).model_fields if (value := getattr(self, name)) is not None}

    @model_serializer(mode="wrap")
    def _omit_unused_later_sources(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The config digest hashes this form. A source added after digests were recorded appears
        # only when configured, so adding one leaves every existing digest as it was.
        data: dict[str, Any] = handler(self)
        registered = sources()
        for name in list(data):
            if data[name] is None and name in registered and not registered[name].hashed_when_unset:
                del data[name]
        return data


def _clouds_model() -> type[SourceSections]:
    fields: dict[str, Any] = {name: (source.section | None, None) for name, source in sources().items()}
    return create_model("Clouds", __base__=SourceSections, __doc__=SourceSections.__doc__, **fields)


if TYPE_CHECKING:
    Clouds = SourceSections
else:
    Clouds = _clouds_model()


class Outputs(StrictModel):
    """Where reports and bundles go, and in which formats."""

    directory: Path = DEFAULT_OUTPUT_DIR
    formats: list[ReportFormat] = Field(default_factory=lambda: list(DEFAULT_FORMATS))
    paths: dict[ReportFormat, Path] = Field(
        default_factory=dict, description="Per-format path overriding <directory>/<default name>."
    )
    frameworks: list[str] = Field(
        default_factory=list,
        description="Frameworks the reports map findings to. Default: every frameworks/<name>.yaml found "
        "(the policy directories', then the shipped ones).",
    )
    bundle: Literal["directory", "tar.gz", "none"] = "directory"
    evidence: Literal["inline", "reference"] = Field(
        "inline",
        description="Findings copy their evidence (inline, findings schema 1.6) or point at it in the "
        "bundle's inventory (reference, schema 2.0; docs/findings-json.md).",
    )

    @field_serializer("frameworks")
    def _frameworks(self, value: list[str]) -> list[str]:
        # Unset, the effective configuration (and its digest) names the shipped frameworks, as it did
        # when the default was their list: runs recorded before keep comparing equal.
        return value or [f.name for f in default_frameworks()]


class HistorySettings(StrictModel):
    """The run history database (SQLAlchemy URL) and retention."""

    database_url: str | None = Field(None, description="Default: sqlite under the output directory.")
    keep_days: int | None = Field(None, ge=1, description="Prune older runs after each audit.")
    protect_from: str | None = Field(
        None, description="YYYY-MM-DD: never prune runs from this date on (an open audit period)."
    )

    @field_validator("protect_from")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        if value is not None:
            date.fromisoformat(value)  # raises ValueError, reported with file:line
        return value


class Signing(StrictModel):
    """Ed25519 key that signs each bundle's manifest (or $AUDITOR_SIGNING_KEY)."""

    private_key: Path | None = None


class Schedule(StrictModel):
    """How often the job is meant to run: a longer pause is a gap in the period report."""

    interval: timedelta = timedelta(days=1)
    grace: timedelta = timedelta(hours=1)

    @field_validator("interval", "grace", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class Scale(StrictModel):
    """How the units of a scan run (see docs/scale-out.md): retries, the per-account cap, parts."""

    parts: str = Field(
        PARTS_AUTO,
        description="How units hand their inventory parts to this host: directory (written into "
        "parts_directory, shared by every worker), returned (through Dask itself, no shared storage) or "
        "a URL (s3://, gs://, abfs://, file:///; fsspec). Default auto: returned for executor dask "
        "without a parts_directory, else directory.",
    )
    parts_directory: Path | None = Field(
        None,
        description="Where parts are kept on this host; with parts: directory and executor dask, a path "
        "every worker and this host share. Default: a temporary directory under outputs.directory.",
    )
    attempts: int = Field(3, ge=1, le=10, description="Tries per unit before it becomes a coverage gap.")
    units_per_account: int = Field(
        1, ge=1, le=64, description="Units of one account/project/subscription running at once, cluster-wide."
    )
    threads: int = Field(4, ge=1, le=256, description="In-process executor: units running at once.")
    local_workers: int = Field(
        2, ge=1, le=64, description="Executor dask without a scheduler: worker processes of a LocalCluster."
    )

    @field_validator("parts")
    @classmethod
    def _parts(cls, value: str) -> str:
        if value in PARTS_CHOICES:
            return value
        if "://" not in value:
            choices = ", ".join(PARTS_CHOICES)
            raise ValueError(f"expected {choices} or a URL such as s3://bucket/prefix, got {value!r}")
        problem = parts_url_problem(value)  # before any network call: scheme, secrets, package
        if problem is not None:
            raise ValueError(problem)
        return value

    def parts_for(self, executor: str) -> str:
        """`parts` with `auto` resolved for `executor`: a Dask run without a parts_directory returns
        its parts through Dask (no shared storage needed); everything else keeps the directory."""
        if self.parts != PARTS_AUTO:
            return self.parts
        return PARTS_RETURNED if executor == "dask" and self.parts_directory is None else PARTS_DIRECTORY


class AuditConfig(StrictModel):
    """auditor.yaml (see docs/audit.md)."""

    version: Literal[1] = 1
    name: str = Field("default", min_length=1, description="Job name: runs compare to this job's last.")
    clouds: Clouds = Field(default_factory=Clouds)
    inventories: list[Path] = Field(
        default_factory=list, description="Inventory JSONL files to check in addition to the scans."
    )
    policies: list[Path] = Field(default_factory=list)
    params: dict[str, str | int | bool | list[str]] = Field(default_factory=dict)
    waivers: Path | None = None
    attestations: list[Path] = Field(
        default_factory=list,
        description="Attestation files: values no API exposes, applied to every scanned inventory.",
    )
    fail_on: Severity = Severity.INFO
    allow_incomplete: bool = False
    allow_empty: bool = Field(
        False, description="Exit 0, not 3, when no policy was evaluated on any resource (--allow-empty)."
    )
    policy: list[str] = Field(
        default_factory=list, description="Evaluate only the policies whose id matches a glob (--policy)."
    )
    skip_policy: list[str] = Field(
        default_factory=list, description="Skip the policies whose id matches a glob (--skip-policy)."
    )
    min_severity: Severity | None = Field(
        None, description="Evaluate only policies of this severity or above (--min-severity)."
    )
    baseline: Path | None = None
    outputs: Outputs = Field(default_factory=Outputs)
    history: HistorySettings = Field(default_factory=HistorySettings)
    signing: Signing = Field(default_factory=Signing)
    schedule: Schedule = Field(default_factory=Schedule)
    executor: ExecutorName = Field("in-process", description="Where scan units run (--executor).")
    scheduler: str | None = Field(None, description="Dask scheduler address, tcp://HOST:8786 (--scheduler).")
    scale: Scale = Field(default_factory=Scale)

    # Not from the file: where secrets came from, for the redacted form.
    signing_key_pem: bytes | None = Field(None, exclude=True, repr=False)
    database_url_from_env: bool = Field(False, exclude=True)
    signing_key_from_env: bool = Field(False, exclude=True)
    # Not from the file: the selection keys the command line set (its errors name the options).
    selection_from_options: frozenset[str] = Field(frozenset(), exclude=True)
    # Not from the file: the file it was read from, for errors at its lines (load_config).
    _source: ConfigSource | None = PrivateAttr(None)

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("executor") != "dask":
            raise ValueError("a scheduler needs executor: dask")
        if not _SCHEDULER_URL.match(value):
            raise ValueError(f"expected a Dask scheduler address such as tcp://HOST:8786, got {value!r}")
        return value

    def located(self, loc: PathKey) -> str | None:
        """'auditor.yaml:LINE' of the key at `loc` (or of its nearest written parent) while the value
        there is the one the file gave; None for a value the command line or environment replaced,
        or a configuration not read from a file."""
        source = self._source
        if source is None or _value_at(self, loc) != _value_at(source.as_loaded, loc):
            return None
        return source.document.where(loc)

    def written(self, loc: PathKey) -> Any:
        """The value at `loc` as auditor.yaml spells it (a path relative to the file, as written),
        else as this configuration holds it."""
        if self._source is not None and self.located(loc) is not None:
            raw = _value_at(self._source.document.data, loc)
            if raw is not _MISSING:
                return raw
        return _value_at(self, loc)

    def source_file(self) -> Path | None:
        """The auditor.yaml this configuration was read from, as its path was given."""
        return self._source.document.path if self._source is not None else None

    def file_problems(self) -> list[InputError]:
        """The file's own errors that `load_config(..., defer_errors=True)` kept for validation."""
        return list(self._source.problems) if self._source is not None else []

    def check_params(self) -> dict[str, str]:
        """Parameters as `auditor check --param` strings."""
        out: dict[str, str] = {}
        for name, value in self.params.items():
            if isinstance(value, bool):
                out[name] = "true" if value else "false"
            elif isinstance(value, list):
                out[name] = ",".join(value)
            else:
                out[name] = str(value)
        return out

    def selection(self) -> PolicySelection:
        """The policy selection (`policy`, `skip_policy`, `min_severity`), its errors named as the
        command-line options for the keys those set, else as the config keys."""
        labels = tuple(
            f"--{key.replace('_', '-')}" if key in self.selection_from_options else key
            for key in ("policy", "skip_policy", "min_severity")
        )
        return PolicySelection(
            policy=tuple(self.policy),
            skip_policy=tuple(self.skip_policy),
            min_severity=self.min_severity,
            labels=(labels[0], labels[1], labels[2]),
        )

    def database_url(self) -> str:
        """The history URL: configured, from the environment, or sqlite in the output directory."""
        return self.history.database_url or default_database_url(self.outputs.directory)

    def report_paths(self) -> dict[str, Path]:
        """Format -> the path its report is written to."""
        return {
            fmt: self.outputs.paths.get(fmt, self.outputs.directory / REPORT_FILES[fmt])
            for fmt in self.outputs.formats
        }

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with every secret removed: safe for bundles and logs."""
        data = self.model_dump(mode="json")
        data["history"]["database_url"] = redact_url(self.database_url())
        if self.database_url_from_env:
            data["history"]["database_url_source"] = f"${DATABASE_URL_ENV}"
        if self.signing_key_pem is not None and self.signing.private_key is None:
            data["signing"]["private_key"] = f"<from ${SIGNING_KEY_ENV}>"
        data["schedule"] = {
            "interval": format_duration(self.schedule.interval),
            "grace": format_duration(self.schedule.grace),
        }
        for cloud in data["clouds"].values():
            if isinstance(cloud, dict):
                cloud["options"] = {
                    k: (REDACTED if _SECRET_NAME.search(k) else v) for k, v in cloud["options"].items()
                }
        return data

    def digest(self) -> str:
        """SHA-256 of the redacted effective configuration (stable key order).

        Execution settings (executor, scheduler, scale) are left out: the same audit run in-process
        or on a cluster has the same digest.
        """
        audited = {k: v for k, v in self.redacted().items() if k not in EXECUTION_KEYS}
        # Added later: unset, the digest is the one it always was.
        for key in ("allow_empty", "policy", "skip_policy", "min_severity", "attestations"):
            if not audited.get(key):
                audited.pop(key, None)
        if audited["outputs"].get("evidence") == "inline":  # the default, as before it could be chosen
            del audited["outputs"]["evidence"]
        return hashlib.sha256(orjson.dumps(audited, option=orjson.OPT_SORT_KEYS)).hexdigest()


def default_database_url(directory: Path) -> str:
    """sqlite file `history.db` in `directory`."""
    return f"sqlite:///{(directory / HISTORY_FILE).resolve()}"


def redact_url(url: str) -> str:
    """`url` with any password replaced by ***."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL may still hold a secret: show nothing of it
        return REDACTED


def _resolve(base: Path, path: Path | None) -> Path | None:
    if path is None:
        return None
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def _resolve_paths(config: AuditConfig, base: Path) -> None:
    config.inventories = [p for p in (_resolve(base, p) for p in config.inventories) if p is not None]
    config.policies = [p for p in (_resolve(base, p) for p in config.policies) if p is not None]
    config.waivers = _resolve(base, config.waivers)
    config.attestations = [p for p in (_resolve(base, p) for p in config.attestations) if p is not None]
    config.baseline = _resolve(base, config.baseline)
    config.outputs.directory = _resolve(base, config.outputs.directory) or base
    config.outputs.paths = {k: p for k, v in config.outputs.paths.items() if (p := _resolve(base, v))}
    config.signing.private_key = _resolve(base, config.signing.private_key)
    config.scale.parts_directory = _resolve(base, config.scale.parts_directory)
    for section in config.clouds.configured().values():
        for name in section.file_fields:
            value = getattr(section, name)
            if isinstance(value, list):  # a list of files (plans, templates)
                setattr(section, name, [p for p in (_resolve(base, v) for v in value) if p is not None])
            else:
                setattr(section, name, _resolve(base, value))


def apply_environment(config: AuditConfig, environ: dict[str, str] | None = None) -> AuditConfig:
    """Let $AUDITOR_DATABASE_URL and $AUDITOR_SIGNING_KEY override the file."""
    env = os.environ if environ is None else environ
    url = env.get(DATABASE_URL_ENV, "").strip()
    if url:
        config.history.database_url = url
        config.database_url_from_env = True
    key = env.get(SIGNING_KEY_ENV, "").strip()
    if key.startswith("-----BEGIN"):
        config.signing_key_pem = key.encode()
        config.signing.private_key = None
    elif key:
        config.signing.private_key = Path(key).expanduser()
        config.signing_key_from_env = True
    return config


@dataclass
class ConfigSource:
    """Where a configuration was read from: the YAML with the line of every key, the values as the
    file gave them (so a value replaced later is not blamed on the file), and the file's errors."""

    document: YamlDocument
    as_loaded: AuditConfig
    problems: list[InputError] = field(default_factory=list)


# Fields the program sets, never the file.
_INTERNAL_FIELDS = (
    "signing_key_pem",
    "database_url_from_env",
    "signing_key_from_env",
    "selection_from_options",
)
# Rounds of dropping refused values to reach a configuration the rest can be checked on.
_PRUNE_ROUNDS = 50
_MISSING = object()


def load_config(
    path: Path, *, environ: dict[str, str] | None = None, defer_errors: bool = False
) -> AuditConfig:
    """Read and validate auditor.yaml; relative paths are relative to the file's directory.

    Every error of the file is found, each at its line, and raised together (InputErrors); with
    `defer_errors`, a configuration without the refused values is returned instead, its errors
    kept for `validate_config` to report with the problems of everything the file names.
    """
    doc = load_yaml(path)
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise doc.error((), "auditor.yaml is a mapping (see docs/audit.md)")
    config, problems = _validated(doc)
    if config is None or (problems and not defer_errors):
        raise_all(problems)
    assert config is not None
    _resolve_paths(config, path.resolve().parent)
    config._source = ConfigSource(doc, config.model_copy(deep=True), problems)
    return apply_environment(config, environ)


def _validated(doc: YamlDocument) -> tuple[AuditConfig | None, list[InputError]]:
    """The configuration and every error of the file; refused values are left out (back to their
    defaults, or their section dropped) so the rest can still be checked. None: nothing usable."""
    data = copy.deepcopy(doc.data)
    problems: list[InputError] = []
    for name in _INTERNAL_FIELDS:
        if name in data:
            problems.append(doc.error((name,), f"{name}: extra inputs are not permitted"))
            del data[name]
    config: AuditConfig | None = None
    try:
        config = AuditConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_located_error(doc, error) for error in exc.errors())
        config = _without_refused(data, exc)
    if config is not None and config.history.database_url is not None:
        problem = _database_url_problem(config.history.database_url)
        if problem is not None:
            problems.append(doc.error(("history", "database_url"), problem))
            config.history.database_url = None  # never used, never shown
    return config, sorted(problems, key=lambda error: int(error.where.rpartition(":")[2]))


def _database_url_problem(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(url).password
    except ArgumentError:
        return "history.database_url: not a SQLAlchemy database URL"
    if password:
        return f"history.database_url holds a password: put the URL in ${DATABASE_URL_ENV} instead"
    return None


def _located_error(doc: YamlDocument, error: Any) -> InputError:
    """One pydantic error at its line; an unknown key names the close match, if there is one."""
    loc = tuple(error["loc"])
    label = ".".join(str(p) for p in loc) or "document"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden" and loc:
        model = _model_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1) if model else []
        if close:
            message += f" (did you mean '{close[0]}'?)"
    return doc.error(loc, f"{label}: {message}")


def _model_at(loc: PathKey) -> type[BaseModel] | None:
    """The model of the mapping at `loc` in auditor.yaml, if it is one (not a list, not a dict)."""
    model: type[BaseModel] = AuditConfig
    for part in loc:
        info = model.model_fields.get(str(part))
        nested = _model_in(info.annotation) if info is not None else None
        if nested is None:
            return None
        model = nested
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model `annotation` holds, itself or as `Model | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    models = [arg for arg in get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)]
    return models[0] if len(models) == 1 and type(None) in get_args(annotation) else None


def _without_refused(data: dict[str, Any], exc: ValidationError) -> AuditConfig | None:
    """`data` validated once every value pydantic refuses is dropped; None if that leaves nothing."""
    for _ in range(_PRUNE_ROUNDS):
        if not any([_drop(data, tuple(error["loc"])) for error in exc.errors()]):
            return None
        try:
            return AuditConfig.model_validate(data)
        except ValidationError as again:
            exc = again
    return None


def _drop(data: dict[str, Any], loc: PathKey) -> bool:
    """Remove the key an error at `loc` is about (a whole list for an item; the enclosing mapping
    when the key is missing, e.g. a required field). False when nothing is left to remove."""
    path: list[str] = []
    for part in loc:
        if not isinstance(part, str) or part == "[key]":
            break
        path.append(part)
    while path:
        parent = _value_at(data, tuple(path[:-1]))
        if isinstance(parent, dict) and path[-1] in parent:
            del parent[path[-1]]
            return True
        path.pop()
    return False


def _value_at(root: Any, loc: PathKey) -> Any:
    """The value at `loc` in a model, mapping or list (attributes, keys, indexes), or _MISSING."""
    value = root
    for part in loc:
        if isinstance(value, BaseModel) and isinstance(part, str):
            value = getattr(value, part, _MISSING)
        elif isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
        else:
            return _MISSING
    return value


def demo_config(output_dir: Path, *, environ: dict[str, str] | None = None) -> AuditConfig:
    """The `--demo` job: the shipped demo estate and waivers, zone eu, everything under output_dir."""
    fixtures = shipped_root() / "fixtures"
    inventory = fixtures / "demo-estate.jsonl"
    waivers = fixtures / "demo-waivers.yaml"
    for needed in (inventory, waivers):
        if not needed.is_file():
            raise InputError(str(needed), "shipped demo file missing: reinstall auditor")
    config = AuditConfig(
        name="demo",
        inventories=[inventory],
        params={"zone": "eu"},
        waivers=waivers,
        # the demo shows every kind of output: the defaults, the CSV and the OCSF events, and the PDF
        # where the `pdf` extra is installed (`auditor audit --demo` says so when it is not)
        outputs=Outputs(
            directory=output_dir.resolve(),
            formats=[
                *DEFAULT_FORMATS,
                "csv",
                "ocsf",
                *[f for f in DEMO_EXTRA_FORMATS if unavailable(f) is None],
            ],
        ),
    )
    return apply_environment(config, environ)


def with_executor(config: AuditConfig, executor: str | None, scheduler: str | None) -> AuditConfig:
    """`config` with --executor / --scheduler applied (validated like the file; --scheduler implies dask)."""
    data = {
        "executor": executor or ("dask" if scheduler else config.executor),
        "scheduler": scheduler if scheduler is not None else config.scheduler,
    }
    if data["executor"] == "in-process":
        data["scheduler"] = None
    try:
        checked = AuditConfig.model_validate({"executor": data["executor"], "scheduler": data["scheduler"]})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"--{first['loc'][0] if first['loc'] else 'executor'}", first["msg"]) from exc
    return config.model_copy(update={"executor": checked.executor, "scheduler": checked.scheduler})


def require_config_file(path: Path | None) -> Path:
    """`path`, or ./auditor.yaml; an input error when neither exists."""
    chosen = path or DEFAULT_CONFIG
    if not chosen.is_file():
        hint = "" if path else " (give --config FILE, or --demo to try the shipped demo estate)"
        raise InputError(str(chosen), f"no such config file{hint}")
    return chosen
