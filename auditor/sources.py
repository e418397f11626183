"""The sources auditor can scan, registered once: each is one module exporting `SOURCE = Source(...)`.

Every `auditor/scan/<name>_source.py` module is a source declaration, found by its name. A source
declares its name, label and listing order, the pydantic model of its section of auditor.yaml
(`clouds: {<name>: ...}`, with the scanner options it accepts), how a section splits into units
of work, where its scanner and its `auditor scan <name>` command live, how a record it produced
is normalized when an inventory is read, and the model of its section of the zone catalog.
Everything else (the CLI scan group, the audit config, the scale-out planner and workers, the zone
catalog's sections, report labels) is derived from this registry.

Loading the registry imports only the small declaration modules: the scanner and command modules,
which import cloud SDKs, are named as "module:attribute" and imported when a scan runs.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from auditor.errors import InputError
from auditor.strict import StrictModel

if TYPE_CHECKING:
    from auditor.model import CoverageGap, StorageResource
    from auditor.policy.zones import ProviderCatalog
    from auditor.scan.base import ScanSummary

# Where source declarations live: every module of this package whose name ends in DECLARATION_SUFFIX.
# Named, not imported: the package imports this module (an edge the import graph need not see).
SOURCE_PACKAGE = "auditor.scan"
DECLARATION_SUFFIX = "_source"

OptionValue = str | int | float | bool | list[str]
SOURCE_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


def option_key(name: str) -> str:
    """A config option name as the scanner option it sets: `--max_attempts` -> `max-attempts`."""
    return name.lstrip("-").replace("_", "-")


class ScanOptions(BaseModel):
    """Scanner settings a section may set under `options:` (keys as the command's flags, no --)."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=lambda name: name.replace("_", "-")
    )

    concurrency: int = Field(16, ge=1, le=256, description="Concurrent API requests per account.")
    # The retry/timeout vocabulary every scanner shares (auditor.scan.command.retry_options).
    max_attempts: int | None = Field(None, ge=1, le=20)
    timeout: float | None = Field(None, ge=0.1)
    connect_timeout: float | None = Field(None, ge=0.1)
    retry_deadline: float | None = Field(None, ge=0.0)
    retry_backoff: float | None = Field(None, ge=0, le=60)
    retry_after_max: float | None = Field(None, ge=0, le=3600)
    read_timeout: float | None = Field(None, ge=0.1, description="Old name of `timeout`.")
    max_retries: int | None = Field(None, ge=0, le=20, description="Old name of `max-attempts` - 1.")

    def flags(self) -> dict[str, Any]:
        """The settings given, by command-line parameter name (max_attempts, retry_mode, ...)."""
        return self.model_dump(exclude_unset=True)


class SourceSection(StrictModel):
    """One source's section of auditor.yaml. Credentials never live here: each SDK's chain."""

    # The scanner options this source accepts under `options:`.
    scan_options_model: ClassVar[type[ScanOptions]] = ScanOptions
    # Fields holding a file path, or a list of them: resolved relative to auditor.yaml, checked readable.
    file_fields: ClassVar[tuple[str, ...]] = ()
    # Fields added after config digests were recorded: left out of the dump while unset (None or
    # empty), so a configuration that does not use them keeps the digest it always had.
    later_fields: ClassVar[frozenset[str]] = frozenset()

    options: dict[str, OptionValue] = Field(
        default_factory=dict, description="Any other scanner option, without the leading --."
    )

    @model_serializer(mode="wrap")
    def _options_last(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # `options` is dumped after the source's own fields, where auditor.yaml examples put it.
        data: dict[str, Any] = handler(self)
        for name in self.later_fields:
            if name in data and data[name] in (None, [], {}):
                del data[name]
        if "options" in data:
            data["options"] = data.pop("options")
        return data

    def scan_options(self) -> ScanOptions:
        """`options` validated against the scanner's declared options (raises ValueError)."""
        try:
            return self.scan_options_model.model_validate({option_key(k): v for k, v in self.options.items()})
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"options.{field}: {first['msg']}") from None

    def check(self) -> None:
        """Refuse what the scanner would refuse, before anything runs (raises ValueError)."""
        self.scan_options()

    def units(self) -> Iterator[tuple[str, SourceSection] | CoverageGap]:
        """Units of work: (account, this section restricted to it), or a gap found while planning."""
        raise NotImplementedError


class ScanFunction(Protocol):
    """Runs one source's scan of `section` into `output` and returns the summary."""

    def __call__(
        self, section: Any, policy_paths: list[Path], output: Path, progress: bool | None
    ) -> ScanSummary: ...


@dataclass(frozen=True)
class Source:
    """What one source module registers."""

    name: str
    label: str
    section: type[SourceSection]
    scan: str  # "module:function", a ScanFunction (the module may import the cloud's SDK)
    command: str  # "module:attribute", the click command `auditor scan <name>`
    normalize: Callable[[StorageResource], None] | None = None
    # Where the source comes when sources are listed, planned and reported (lowest first, ties by name).
    order: int = 100
    # The model of the source's section of the zone catalog (the top-level key named after the
    # source); None: the base ProviderCatalog (`regions:` only), and the section is optional.
    catalog: type[ProviderCatalog] | None = None
    # True: the source's name is the `provider` of the records it writes (a cloud's live scan).
    # False: its records describe resources of other sources' providers (infrastructure as code:
    # a Terraform plan's S3 bucket is a record of provider "aws", with `origin` "terraform").
    provider: bool = True
    # True only for the sources whose unconfigured section (`null`) config digests always hashed;
    # any other source is left out of the digest while unconfigured (auditor.audit.config).
    hashed_when_unset: bool = False

    def load_scan(self) -> ScanFunction:
        """The scan function (imports the scanner module)."""
        function: ScanFunction = _load(self.scan)
        return function

    def parse(self, data: Mapping[str, Any]) -> SourceSection:
        """A section from its JSON form (as a unit carries it)."""
        return self.section.model_validate(data)


def _load(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def declaration_modules(package: str = SOURCE_PACKAGE) -> list[str]:
    """The source declaration modules of `package`: every `<name>_source` module in it."""
    path = importlib.import_module(package).__path__
    return sorted(
        f"{package}.{info.name}"
        for info in pkgutil.iter_modules(path)
        if info.name.endswith(DECLARATION_SUFFIX) and not info.ispkg
    )


def discover(package: str = SOURCE_PACKAGE) -> dict[str, Source]:
    """Import every declaration module of `package` and return its sources by name, in order."""
    found: dict[str, Source] = {}
    for module_name in declaration_modules(package):
        source = getattr(importlib.import_module(module_name), "SOURCE", None)
        if not isinstance(source, Source) or not SOURCE_NAME.match(source.name) or source.name in found:
            raise RuntimeError(f"{module_name}.SOURCE is not a valid, unique Source")
        found[source.name] = source
    return {source.name: source for source in sorted(found.values(), key=lambda s: (s.order, s.name))}


@cache
def _sources() -> dict[str, Source]:
    return discover()


def sources() -> dict[str, Source]:
    """Every registered source by name, in order (`Source.order`, then name)."""
    return dict(_sources())


def source_names() -> tuple[str, ...]:
    """The registered source names (the `provider` of inventory records), in order."""
    return tuple(_sources())


def provider_names() -> tuple[str, ...]:
    """The `provider` values inventory records may carry (sources that are providers), in order."""
    return tuple(name for name, source in _sources().items() if source.provider)


def get_source(name: str) -> Source:
    """The source called `name` (KeyError if none is registered)."""
    return _sources()[name]


def source_labels() -> dict[str, str]:
    """Source name -> display label ('aws' -> 'AWS'), for reports."""
    return {name: source.label for name, source in _sources().items()}


def label_of(name: str) -> str:
    """The display label of a source ('AWS', 'Google Cloud'), or the name itself if unknown."""
    source = _sources().get(name)
    return source.label if source is not None else name


def normalize_record(record: StorageResource, where: str) -> StorageResource:
    """Apply the record's source hook (derived fields); an unregistered provider is bad input."""
    check_provider(record.provider, where)
    source = _sources()[record.provider]
    if source.normalize is not None:
        source.normalize(record)
    return record


def check_provider(provider: str, where: str) -> None:
    """Raise InputError if `provider` is not a registered source."""
    source = _sources().get(provider)
    if source is None or not source.provider:
        known = ", ".join(provider_names())
        raise InputError(where, f"provider: unknown source '{provider}' (expected one of {known})")
