"""A Dask cluster whose workers cannot see the host's parts directory (issue 17): parts come back
through Dask itself, or through a store URL, and the merged inventory is byte-identical."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import Result

from auditor.scale.executors import DaskExecutor, Executor, InProcessExecutor
from auditor.scale.merge import merge_parts
from auditor.scale.run import ScaleOptions, ScaleReport, run_units
from auditor.scale.units import WorkUnit
from tests.scale.conftest import ROLE, Estate
from tests.scale.faults import FixedRecords

RunCli = Callable[..., Result]
UNITS = [WorkUnit("aws", f"{n:012d}") for n in (5, 3, 1, 4, 2)]
TIMESTAMP = re.compile(rb'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"')
# The inventory's digest covers its scan times, so it differs between two scans of the same estate.
INVENTORY_DIGEST = re.compile(rb'"inventory_digest": "sha256:[0-9a-f]{64}"')


def _write_config(tmp_path: Path, name: str, estate: Estate) -> Path:
    accounts = ", ".join(f'"{a}"' for a in estate.accounts)
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: scale\n"
        f"clouds:\n  aws:\n    role: '{ROLE}'\n    accounts: [{accounts}]\n"
        f"policies: ['{estate.policies}']\n"
        f"params: {{zone: eu}}\n"
        f"outputs:\n  directory: out-{name}\n  formats: [json]\n  bundle: none\n"
    )
    return path


def _without_timings(findings: bytes, run_id: str) -> bytes:
    timeless = INVENTORY_DIGEST.sub(b'"inventory_digest": "<digest>"', TIMESTAMP.sub(b'"<time>"', findings))
    return timeless.replace(run_id.encode(), b"<run>")


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This host works in `<tmp>/host`, and gives its parts directories as relative paths."""
    home = tmp_path / "host"
    home.mkdir()
    monkeypatch.chdir(home)
    return home


def _scan(executor: Executor, parts: str, attempts: int = 3) -> tuple[ScaleReport, bytes]:
    """The made-up units through `executor`, parts handed over as `parts` into a new relative
    directory; the report and the merged inventory (empty when no unit finished)."""
    parts_dir = Path(f"parts-{uuid.uuid4().hex[:8]}")
    parts_dir.mkdir()
    with executor:
        report = run_units(
            UNITS, executor, parts_dir, ScaleOptions(attempts=attempts, parts=parts), runner=FixedRecords()
        )
    merged = parts_dir / "merged.jsonl"
    with merged.open("wb") as handle:
        merge_parts([Path(r.part) for r in report.results], handle)
    return report, merged.read_bytes()


def test_workers_that_cannot_see_the_parts_directory_return_parts_through_dask(
    host: Path, isolated_cluster: Any
) -> None:
    homes = set(isolated_cluster.run(os.getcwd).values())
    assert len(homes) == 2 and str(host) not in homes  # every worker works somewhere else

    reference, expected = _scan(InProcessExecutor(2), "directory")
    assert not reference.gaps and expected.count(b"\n") == len(UNITS) * 41

    # The shared-directory mode fails on this cluster: the workers' "parts" is not this host's.
    shared, _ = _scan(DaskExecutor(client=isolated_cluster), "directory", attempts=1)
    assert not shared.results and len(shared.gaps) == len(UNITS)
    assert all("is the parts directory shared" in gap.reason for gap in shared.gaps)

    returned, merged = _scan(DaskExecutor(client=isolated_cluster), "returned")
    assert not returned.gaps and merged == expected  # byte for byte
    worker_pids = {str(pid) for pid in isolated_cluster.run(os.getpid).values()}
    assert {r.worker.rsplit(":", 1)[1] for r in returned.results} <= worker_pids  # ran on the workers
    assert all(Path(r.part).parent.name.startswith("parts-") for r in returned.results)


def test_workers_write_parts_to_a_store_url_and_the_host_reads_them(
    host: Path, tmp_path: Path, isolated_cluster: Any
) -> None:
    store = tmp_path / "object-store"  # file:// stands in for s3:// and gs://: same fsspec calls
    _, expected = _scan(InProcessExecutor(2), "directory")
    report, merged = _scan(DaskExecutor(client=isolated_cluster), f"file://{store}/audit")
    assert not report.gaps and merged == expected
    assert all(r.part.startswith("parts-") for r in report.results)  # downloaded into the host's directory
    assert list((store / "audit").iterdir()) == []  # the run's prefix is removed


def test_an_audit_on_the_cluster_gives_the_findings_of_in_process(
    tmp_path: Path, estate: Estate, isolated_cluster: Any, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real scan of the moto estate: executor dask without a parts directory returns parts through
    # Dask, and no task names the host's directories (where the parts directory is made).
    import cloudpickle
    import distributed

    payloads: list[bytes] = []
    submit = distributed.Client.submit

    def spy(self: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
        payloads.append(cloudpickle.dumps((func, args, kwargs)))
        return submit(self, func, *args, **kwargs)

    job = _write_config(tmp_path, "job", estate)
    local = run_cli("audit", "--config", job)
    findings = tmp_path / "out-job" / "findings.json"
    local_raw = findings.read_bytes()
    monkeypatch.setattr(distributed.Client, "submit", spy)
    remote = run_cli("audit", "--config", job, "--scheduler", isolated_cluster.scheduler.address)
    assert local.exit_code == remote.exit_code == 1, remote.stderr
    assert "with the in-process executor" in local.stderr and "with the dask executor" in remote.stderr
    assert "units (dask): 4/4 done, 0 retried, 0 failed" in remote.stderr
    remote_raw = findings.read_bytes()
    documents = [_without_timings(raw, orjson.loads(raw)["run"]["id"]) for raw in (local_raw, remote_raw)]
    assert documents[0] == documents[1]  # byte-identical apart from times and the run id
    document, reference = orjson.loads(remote_raw), orjson.loads(local_raw)
    assert document["run"]["coverage"]["resources"] == estate.buckets
    assert {"pass", "fail"} <= {f["status"] for f in document["findings"]}
    accounts = [f["resource"]["account"] for f in document["findings"]]
    assert set(accounts) == set(estate.accounts) and accounts == sorted(accounts)
    assert document["run"]["audit"]["config_digest"] == reference["run"]["audit"]["config_digest"]
    assert len(payloads) == len(estate.accounts)
    assert not [p for p in payloads if str(tmp_path).encode() in p]  # no task names a host directory
