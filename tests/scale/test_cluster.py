"""Scale-out on a real Dask LocalCluster of worker processes against a multi-account moto_server."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from auditor.audit.config import AuditConfig, Clouds, Scale
from auditor.audit.job import scan_configured
from auditor.inventory import read_inventory
from auditor.model import CoverageGap, StorageResource
from auditor.scale.executors import DaskExecutor, InProcessExecutor
from auditor.scale.merge import merge_parts
from auditor.scale.run import ScaleOptions, run_units
from auditor.scale.units import WorkUnit
from auditor.scan.aws_source import AwsCloud
from tests.scale.conftest import ROLE, Estate
from tests.scale.faults import AlwaysRefused, KillWorkerOnce, RecordSpans

REPO = Path(__file__).resolve().parents[2]
RunCli = Callable[..., Result]


def _aws_config(estate: Estate, attempts: int = 3) -> AuditConfig:
    return AuditConfig(
        clouds=Clouds(aws=AwsCloud(role=ROLE, accounts=list(estate.accounts))),
        policies=[estate.policies],
        scale=Scale(attempts=attempts),
    )


def _merged(scanned: Any, target: Path) -> list[dict[str, Any]]:
    with target.open("wb") as handle:
        merge_parts(scanned.parts, handle)
    records = []
    for record in read_inventory(target):
        data = record.model_dump(mode="json", exclude={"at", "scanned_at"})
        for evidence in data.get("evidence") or []:
            evidence.pop("at", None)
        records.append(data)
    return records


# An audit on a cluster gives the findings of in-process: tests/scale/test_no_shared_directory.py, on a
# cluster whose workers cannot see this host's directories.


def test_a_killed_worker_has_its_unit_retried_on_another_worker(
    tmp_path: Path, estate: Estate, cluster: Any
) -> None:
    victim = estate.accounts[1]
    markers = tmp_path / "markers"
    markers.mkdir()
    (tmp_path / "dask").mkdir()
    (tmp_path / "local").mkdir()
    config = _aws_config(estate)
    scanned = scan_configured(
        config,
        tmp_path / "dask",
        executor=DaskExecutor(client=cluster),
        runner=KillWorkerOnce(str(markers), victim),
    )
    killed_pid = (markers / f"killed-{victim}").read_text()
    assert killed_pid  # the worker running the victim's unit did die
    by_account = {r.unit.account: r for r in scanned.report.results}
    assert set(by_account) == set(estate.accounts) and not scanned.report.gaps
    assert by_account[victim].worker.rsplit(":", 1)[1] != killed_pid  # finished on another worker process
    assert by_account[victim].resources == estate.buckets // len(estate.accounts)

    reference = scan_configured(config, tmp_path / "local", executor=InProcessExecutor(2))
    assert _merged(scanned, tmp_path / "dask.jsonl") == _merged(reference, tmp_path / "local.jsonl")
    # Requests do not depend on where units ran: the same API calls, operation by operation.
    assert scanned.report.calls == reference.report.calls


def test_a_unit_that_always_fails_becomes_a_gap_and_the_gate_reports_incomplete(
    tmp_path: Path, estate: Estate, cluster: Any, run_cli: RunCli
) -> None:
    refused = estate.accounts[2]
    parts = tmp_path / "parts"
    parts.mkdir()
    scanned = scan_configured(
        _aws_config(estate, attempts=2),
        parts,
        executor=DaskExecutor(client=cluster),
        runner=AlwaysRefused(refused),
    )
    (gap,) = scanned.report.gaps
    assert (gap.provider, gap.account, gap.scope) == ("aws", refused, "unit")
    assert "failed 2 attempt(s)" in gap.reason and "PermissionError: credentials refused" in gap.reason
    assert scanned.report.attempts[f"aws:{refused}"] == 2
    assert len(scanned.report.results) == len(estate.accounts) - 1

    inventory = tmp_path / "inventory.jsonl"
    with inventory.open("wb") as handle:
        merge_parts(scanned.parts, handle)
    records = list(read_inventory(inventory))
    assert [r for r in records if isinstance(r, CoverageGap)] == [gap]
    assert refused not in {r.account for r in records if isinstance(r, StorageResource)}

    training = REPO / "policies" / "training.yaml"  # no violation in this estate
    check = ("check", "--inventory", inventory, "--policies", training)
    incomplete = run_cli(*check)
    assert incomplete.exit_code == 3, incomplete.output
    allowed = run_cli(*check, "--allow-incomplete")
    assert allowed.exit_code == 0, allowed.output


def test_no_secret_is_serialised_into_a_task(
    tmp_path: Path, estate: Estate, cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cloudpickle
    import distributed

    payloads: list[bytes] = []
    submit = distributed.Client.submit

    def spy(self: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
        payloads.append(cloudpickle.dumps((func, args, kwargs)))
        return submit(self, func, *args, **kwargs)

    monkeypatch.setattr(distributed.Client, "submit", spy)
    scanned = scan_configured(_aws_config(estate), tmp_path, executor=DaskExecutor(client=cluster))
    assert len(scanned.report.results) == len(estate.accounts)
    assert len(payloads) == len(estate.accounts)
    secrets = {estate.secret} | {
        value
        for name, value in os.environ.items()
        if re.search(r"SECRET|TOKEN|PASSWORD|PASSPHRASE|KEY$", name) and len(value) >= 8
    }
    for payload in payloads:
        assert b"auditor.scale.units" in payload  # the runner goes by reference, not a closure
        for secret in secrets:
            assert secret.encode() not in payload
    # The workers hold the secret, from their own environment.
    assert set(cluster.run(lambda: os.environ["AWS_SECRET_ACCESS_KEY"]).values()) == {estate.secret}


def test_the_per_account_cap_holds_across_workers(tmp_path: Path, cluster: Any) -> None:
    units = [WorkUnit("aws", account, region) for account in ("a1", "a2") for region in ("r1", "r2", "r3")]
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()
    report = run_units(
        units,
        DaskExecutor(client=cluster),
        tmp_path,
        ScaleOptions(units_per_account=1),
        runner=RecordSpans(str(spans_dir)),
    )
    assert len(report.results) == 6 and report.peak_per_account == 1 and report.peak_in_flight == 2
    spans: dict[str, list[tuple[int, int]]] = {}
    for path in spans_dir.iterdir():
        _, account, start, end, _ = path.read_text().split()
        spans.setdefault(account, []).append((int(start), int(end)))
    for account, intervals in spans.items():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert end <= start, f"two units of {account} overlapped"
