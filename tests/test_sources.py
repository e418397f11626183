"""The source registry: declarations found by their module name, their order, their zone catalog section."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import auditor.scan
from auditor import sources
from auditor.errors import InputError
from auditor.policy.zones import ProviderCatalog, ZoneCatalog, load_zone_catalog
from tests.conftest import SHIPPED_POLICIES

SHIPPED_CATALOG = SHIPPED_POLICIES / "zones" / "catalog.yaml"

# A source as a new module would declare it: its own catalog section model with a field of its own.
EXAMPLE_SOURCE = """
from pydantic import Field

from auditor.policy.zones import ProviderCatalog
from auditor.sources import Source, SourceSection


class ExampleSection(SourceSection):
    tenants: list[str] = Field(default_factory=list)


class ExampleCatalog(ProviderCatalog):
    residency_endpoints: dict[str, str] = Field(default_factory=dict)

    def reference_errors(self):
        yield from super().reference_errors()
        for endpoint, region in self.residency_endpoints.items():
            if region not in self.regions:
                yield f"endpoint '{endpoint}' names unknown region '{region}'"


SOURCE = Source(
    name="example",
    label="Example AI",
    section=ExampleSection,
    scan="tests.never_imported:scan_section",
    command="tests.never_imported:command",
    order=20,
    catalog=ExampleCatalog,
)
"""

# A source with no catalog model of its own: its section is optional and holds `regions:` only.
PLAIN_SOURCE = """
from auditor.sources import Source, SourceSection

SOURCE = Source(
    name="plain",
    label="Plain",
    section=SourceSection,
    scan="tests.never_imported:scan_section",
    command="tests.never_imported:command",
)
"""

EXAMPLE_SECTION = """\
example:
  regions:
    eu-1: {country: DE}
    us-1: {country: US}
  residency_endpoints:
    eu.api.example.com: eu-1
"""


def _forget(prefix: str) -> None:
    for name in [m for m in sys.modules if m == prefix or m.startswith(f"{prefix}.")]:
        del sys.modules[name]


@pytest.fixture
def new_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two new declaration modules in a directory added to the `auditor.scan` package."""
    folder = tmp_path / "scan"
    folder.mkdir()
    (folder / "testonly_example_source.py").write_text(EXAMPLE_SOURCE)
    (folder / "testonly_plain_source.py").write_text(PLAIN_SOURCE)
    (folder / "testonly_helpers.py").write_text("raise AssertionError('not a declaration module')\n")
    monkeypatch.setattr(auditor.scan, "__path__", [*auditor.scan.__path__, str(folder)])
    importlib.invalidate_caches()
    sources._sources.cache_clear()
    yield
    sources._sources.cache_clear()
    for name in ("testonly_example_source", "testonly_plain_source", "testonly_helpers"):
        _forget(f"auditor.scan.{name}")


def test_the_shipped_sources_in_their_order() -> None:
    registered = sources.sources()
    assert list(registered)[:3] == ["aws", "gcp", "azure"]
    assert [registered[name].order for name in ("aws", "gcp", "azure")] == [10, 20, 30]
    assert all(registered[name].catalog is not None for name in ("aws", "gcp", "azure"))


def test_discovery_picks_up_a_new_declaration_module(new_sources: None) -> None:
    assert sources.declaration_modules()[-2:] == [
        "auditor.scan.testonly_example_source",
        "auditor.scan.testonly_plain_source",
    ]
    # Ordered by `order`, ties by name: example (20) before gcp (20); plain has the default order.
    names = sources.source_names()
    assert [n for n in names if n in {"aws", "example", "gcp", "azure", "plain"}] == [
        "aws",
        "example",
        "gcp",
        "azure",
        "plain",
    ]
    assert names[-1] == "plain"  # the default order (100) comes after every shipped source
    assert sources.label_of("example") == "Example AI"
    assert "auditor.scan.testonly_helpers" not in sys.modules


def test_a_new_source_catalog_section_is_validated_with_its_model(new_sources: None, tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(SHIPPED_CATALOG.read_text() + EXAMPLE_SECTION)
    catalog = load_zone_catalog([path])
    model = sources.get_source("example").catalog
    assert model is not None and model.__name__ == "ExampleCatalog"
    section = catalog.section("example", model)
    assert section.model_dump()["residency_endpoints"] == {"eu.api.example.com": "eu-1"}
    assert list(catalog.providers) == [
        "aws",
        "example",
        "gcp",
        "azure",
        "openai",
    ]  # no `plain:` section: optional
    assert catalog.regions_in_zone("eu", "example") == {"eu-1"}
    assert catalog.zones_of("example", "US-1") == ["us"]


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        pytest.param("", None, "example: Field required", id="declared-section-missing"),
        pytest.param(
            EXAMPLE_SECTION.replace("  residency_endpoints:", "  colour: red\n  residency_endpoints:"),
            5,
            "example.colour: Extra inputs are not permitted",
            id="field-not-in-the-source-model",
        ),
        pytest.param(
            EXAMPLE_SECTION.replace("eu-1\n", "eu-9\n"),
            None,
            "example endpoint 'eu.api.example.com' names unknown region 'eu-9'",
            id="source-reference-check",
        ),
        pytest.param(
            EXAMPLE_SECTION + "plain:\n  regions: {p-1: {country: FR}}\n  colour: red\n",
            9,
            "plain.colour: Extra inputs are not permitted",
            id="no-model-means-regions-only",
        ),
    ],
)
def test_a_new_source_catalog_section_errors_name_file_and_line(
    new_sources: None, tmp_path: Path, section: str, line: int | None, message: str
) -> None:
    """`line` counts from the first line of the appended section; None: the document's own line."""
    text = SHIPPED_CATALOG.read_text()
    path = tmp_path / "catalog.yaml"
    path.write_text(text + section)
    with pytest.raises(InputError) as caught:
        load_zone_catalog([path])
    document_line = next(i for i, row in enumerate(text.splitlines(), 1) if row and not row.startswith("#"))
    expected = document_line if line is None else text.count("\n") + line
    assert str(caught.value).startswith(f"{path}:{expected}: ")
    assert message in str(caught.value)


def test_a_source_without_a_catalog_model_may_have_a_plain_section(new_sources: None, tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(
        SHIPPED_CATALOG.read_text() + EXAMPLE_SECTION + "plain:\n  regions: {p-1: {country: FR}}\n"
    )
    catalog = load_zone_catalog([path])
    assert type(catalog.providers["plain"]) is ProviderCatalog
    assert catalog.section("plain", ProviderCatalog).regions["p-1"].country == "FR"
    assert catalog.regions_in_zone("eu", "plain") == {"p-1"}


def test_a_declaration_module_without_a_valid_source_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "testonly_declarations"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "broken_source.py").write_text("SOURCE = 'not a Source'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(
            RuntimeError, match=r"testonly_declarations\.broken_source\.SOURCE is not a valid"
        ):
            sources.discover("testonly_declarations")
    finally:
        _forget("testonly_declarations")


def test_a_catalog_section_asked_for_as_the_wrong_model_is_a_type_error() -> None:
    from auditor.policy.loader import load_zones
    from auditor.scan.aws_source import AwsCatalog
    from auditor.scan.gcp_source import GcpCatalog

    catalog: ZoneCatalog = load_zones([SHIPPED_POLICIES])
    assert isinstance(catalog.section("aws", AwsCatalog), AwsCatalog)
    with pytest.raises(TypeError, match="aws section is a AwsCatalog, not a GcpCatalog"):
        catalog.section("aws", GcpCatalog)
