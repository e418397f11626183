"""How parts reach the host (`scale.parts`): shared directory, returned in the result, or a URL."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import fsspec
import pytest
from click.testing import Result

from auditor.audit.config import AuditConfig, Scale
from auditor.scale.executors import InProcessExecutor
from auditor.scale.merge import merge_parts
from auditor.scale.parts import PartsTarget
from auditor.scale.run import ScaleOptions, ScaleReport, run_units
from auditor.scale.units import UnitResult, WorkUnit
from tests.scale.faults import FixedRecords

RunCli = Callable[..., Result]
UNITS = [WorkUnit("aws", f"{n:012d}") for n in (444, 111, 333, 222)]


def _run(tmp_path: Path, parts: str, runner: Callable[..., UnitResult] | None = None) -> ScaleReport:
    parts_dir = tmp_path / f"parts-{uuid.uuid4().hex[:8]}"
    parts_dir.mkdir()
    with InProcessExecutor(2) as executor:
        options = ScaleOptions(attempts=2, parts=parts)
        return run_units(UNITS, executor, parts_dir, options, runner=runner or FixedRecords())


def _merged(report: ScaleReport) -> bytes:
    parts = [Path(r.part) for r in report.results]
    target = parts[0].parent / "merged.jsonl"
    with target.open("wb") as handle:
        merge_parts(parts, handle)
    return target.read_bytes()


def test_every_way_of_handing_parts_over_merges_to_the_same_bytes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    memory = f"memory://auditor-tests/{uuid.uuid4().hex}"
    merged: dict[str, bytes] = {}
    for parts in ("directory", "returned", f"file://{store}", memory):
        report = _run(tmp_path, parts)
        assert not report.gaps and len(report.results) == len(UNITS)
        for result in report.results:
            assert result.data is None  # returned bytes are on disk now, not held in the report
            assert Path(result.part).is_file() and result.resources == 40 and result.gaps == 1
        merged[parts] = _merged(report)
    reference = merged["directory"]
    assert reference.count(b"\n") == len(UNITS) * 41
    assert all(value == reference for value in merged.values()), [
        k for k, v in merged.items() if v != reference
    ]
    # The run's objects are removed from the store when the run ends.
    assert list(store.iterdir()) == []
    assert fsspec.filesystem("memory").ls(memory.removeprefix("memory:/")) == []


@dataclasses.dataclass
class Damaged:
    """Flips one byte of the returned part: what a damaged transfer would hand the host."""

    def __call__(self, unit: WorkUnit, parts: PartsTarget | str) -> UnitResult:
        result = FixedRecords()(unit, parts)
        assert result.data is not None
        import zlib

        raw = bytearray(zlib.decompress(result.data))
        raw[10] ^= 1
        return dataclasses.replace(result, data=zlib.compress(bytes(raw)))


def test_a_damaged_part_is_a_failed_attempt_never_a_shorter_inventory(tmp_path: Path) -> None:
    report = _run(tmp_path, "returned", Damaged())
    assert not report.results and len(report.gaps) == len(UNITS)
    assert all("arrived damaged" in gap.reason and "failed 2 attempt(s)" in gap.reason for gap in report.gaps)
    assert not list(tmp_path.glob("parts-*/*.jsonl"))  # nothing half-written was left to merge


@dataclasses.dataclass
class Unmounted:
    """Writes its part into the directory, then loses it: the host sees no file there, as when a
    worker's parts directory is its own disk and not the shared mount."""

    def __call__(self, unit: WorkUnit, parts: PartsTarget | str) -> UnitResult:
        result = FixedRecords()(unit, parts)
        Path(result.part).unlink()
        return result


def test_a_part_the_host_cannot_see_is_a_failed_attempt(tmp_path: Path) -> None:
    report = _run(tmp_path, "directory", Unmounted())
    assert not report.results and len(report.gaps) == len(UNITS)
    assert all("is the parts directory shared with every worker?" in gap.reason for gap in report.gaps)


def test_a_part_missing_from_the_store_is_a_failed_attempt(tmp_path: Path) -> None:
    @dataclasses.dataclass
    class Vanishing:
        def __call__(self, unit: WorkUnit, parts: PartsTarget | str) -> UnitResult:
            result = FixedRecords()(unit, parts)
            fsspec.core.url_to_fs(result.part)[0].rm_file(fsspec.core.url_to_fs(result.part)[1])
            return result

    report = _run(tmp_path, f"file://{tmp_path / 'store'}", Vanishing())
    assert not report.results and len(report.gaps) == len(UNITS)
    assert all("FileNotFoundError" in gap.reason for gap in report.gaps)


# --- configuration -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ("nfs", "expected auto, directory, returned or a URL such as s3://bucket/prefix"),
        ("ftp://host/parts", "unsupported storage scheme 'ftp://'"),
        ("s3://key:hunter2@bucket/parts", "holds a password"),
        ("abfs://parts@account.dfs.core.windows.net/p?sig=abc", "query or fragment"),
        ("file://relative/parts", "absolute path"),
        ("s3://", "names no bucket"),
    ],
)
def test_a_bad_parts_location_is_an_input_error_at_its_line(
    tmp_path: Path, run_cli: RunCli, parts: str, message: str
) -> None:
    config = tmp_path / "auditor.yaml"
    config.write_text(f"outputs:\n  directory: out\nscale:\n  attempts: 2\n  parts: '{parts}'\n")
    result = run_cli("audit", "--config", config)
    assert result.exit_code == 2, result.output
    assert f"{config}:5: scale.parts: " in result.stderr and message in result.stderr
    assert "hunter2" not in result.output
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_url_whose_filesystem_package_is_missing_is_an_input_error(
    tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if s3fs were not installed
    monkeypatch.delitem(importlib.import_module("fsspec.registry")._registry, "s3", raising=False)
    config = tmp_path / "auditor.yaml"
    config.write_text("outputs:\n  directory: out\nscale:\n  parts: s3://audit-scratch/parts\n")
    result = run_cli("audit", "--config", config)
    assert result.exit_code == 2, result.output
    expected = "scale.parts: s3:// needs the s3fs package on this host and every worker: pip install s3fs"
    assert f"{config}:4: {expected}" in result.stderr
    assert not (tmp_path / "out").exists()


def test_auto_returns_parts_through_dask_unless_a_parts_directory_is_set(tmp_path: Path) -> None:
    assert Scale().parts_for("in-process") == "directory"
    assert Scale().parts_for("dask") == "returned"
    shared = Scale(parts_directory=tmp_path)
    assert shared.parts_for("dask") == "directory"  # an existing shared-directory config means what it did
    assert Scale(parts="returned").parts_for("in-process") == "returned"
    url = f"file://{tmp_path}"
    assert Scale(parts=url, parts_directory=tmp_path).parts_for("dask") == url


def test_where_parts_go_is_not_in_the_digest(tmp_path: Path) -> None:
    config = AuditConfig()
    for scale in (Scale(parts="returned"), Scale(parts=f"file://{tmp_path}"), Scale(parts="directory")):
        assert config.model_copy(update={"scale": scale}).digest() == config.digest()
