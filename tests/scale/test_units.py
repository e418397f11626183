"""Planning, merging, the scheduling loop in-process, config and the optional Dask import."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from click.testing import Result
from moto import mock_aws

from auditor.audit.config import AuditConfig, Clouds, with_executor
from auditor.errors import InputError
from auditor.inventory import write_inventory
from auditor.model import CoverageGap, StorageResource, UnknownCode
from auditor.scale.executors import InProcessExecutor
from auditor.scale.merge import merge_parts
from auditor.scale.parts import PartsTarget
from auditor.scale.run import ScaleOptions, run_units
from auditor.scale.units import Plan, UnitResult, WorkUnit, plan_units, sort_part
from auditor.scan.aws_source import AwsCloud
from auditor.scan.azure_source import AzureCloud
from auditor.scan.gcp_source import GcpCloud
from tests.scale.faults import RecordSpans

RunCli = Callable[..., Result]


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """moto in-process with fake credentials (and no endpoint left over from the estate fixture)."""
    for name in [n for n in __import__("os").environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    with mock_aws():
        yield


# --- planning ---------------------------------------------------------------------------------------


def _plan(config: AuditConfig) -> Plan:
    return plan_units(config.clouds.configured(), config.policies)


def test_one_unit_per_account_project_and_subscription(tmp_path: Path) -> None:
    config = AuditConfig(
        policies=[tmp_path / "p.yaml"],
        clouds=Clouds(
            aws=AwsCloud(role="Auditor", accounts=["111111111111", "222222222222"], regions=["eu-west-1"]),
            gcp=GcpCloud(projects=["alpha", "beta", "alpha"], options={"timeout": 5}),
            azure=AzureCloud(subscriptions=["sub-1"]),
        ),
    )
    plan = _plan(config)
    assert [u.label for u in plan.units] == [
        "aws:111111111111",
        "aws:222222222222",
        "gcp:alpha",
        "gcp:beta",
        "azure:sub-1",
    ]
    assert plan.sources == ["aws", "gcp", "azure"] and not plan.gaps
    aws = plan.units[1]
    assert aws.policies == (str(tmp_path / "p.yaml"),)
    assert aws.settings()["role"] == "Auditor" and aws.settings()["regions"] == ["eu-west-1"]
    assert aws.settings()["accounts"] == ["222222222222"]  # the unit's own account only
    gcp = plan.units[3].settings()
    assert gcp["projects"] == ["beta"] and gcp["options"] == {"timeout": 5}
    assert all(u.region is None for u in plan.units)  # listings are account-wide: no region split
    assert len({u.part_name() for u in plan.units}) == len(plan.units)


def test_profiles_without_a_role_are_one_unit_each(tmp_path: Path) -> None:
    plan = _plan(AuditConfig(clouds=Clouds(aws=AwsCloud(profiles=["prod", "dev"]))))
    assert [(u.account, u.settings()["profiles"]) for u in plan.units] == [
        ("prod", ["prod"]),
        ("dev", ["dev"]),
    ]
    default = _plan(AuditConfig(clouds=Clouds(aws=AwsCloud())))
    assert [(u.account, u.settings()["profiles"]) for u in default.units] == [("default", [])]


def test_organization_accounts_are_listed_when_planning(tmp_path: Path, fake_aws: None) -> None:
    org = boto3.client("organizations", region_name="us-east-1")
    org.create_organization(FeatureSet="ALL")
    member = org.create_account(AccountName="m", Email="m@example.com")["CreateAccountStatus"]["AccountId"]
    config = AuditConfig(clouds=Clouds(aws=AwsCloud(role="OrganizationAccountAccessRole", organization=True)))
    plan = _plan(config)
    assert {u.account for u in plan.units} == {"123456789012", member} and not plan.gaps
    assert all(u.settings()["organization"] is False for u in plan.units)


def test_an_organization_with_no_account_listed_is_a_gap(tmp_path: Path, fake_aws: None) -> None:
    config = AuditConfig(clouds=Clouds(aws=AwsCloud(role="Auditor", organization=True)))
    plan = _plan(config)
    (gap,) = plan.gaps
    # moto lists no account where AWS refuses (AWSOrganizationsNotInUseException): a gap either way.
    assert plan.units == [] and gap.scope == "organization" and "ListAccounts" in gap.reason


# --- merging ----------------------------------------------------------------------------------------


def _bucket(account: str, name: str) -> StorageResource:
    return StorageResource(
        provider="aws", kind="bucket", account=account, name=name, id=f"arn:aws:s3:::{name}"
    )


def test_merge_order_does_not_depend_on_part_order_or_fan_in(tmp_path: Path) -> None:
    gap = CoverageGap(provider="aws", account="2", scope="unit", code=UnknownCode.ERROR, reason="lost")
    groups = [[_bucket(a, f"b{a}-{i}") for i in random.sample(range(9), 9)] for a in "1234"] + [[gap]]
    parts = []
    for index, records in enumerate(groups):
        write_inventory(tmp_path / f"raw{index}", records)
        parts.append(tmp_path / f"part{index}.jsonl")
        sort_part(tmp_path / f"raw{index}", parts[-1])
    outputs = []
    for fan_in, order in ((128, parts), (2, list(reversed(parts))), (3, random.sample(parts, len(parts)))):
        target = tmp_path / f"merged-{fan_in}.jsonl"
        with target.open("wb") as handle:
            assert merge_parts(order, handle, fan_in=fan_in) == 37
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    lines = outputs[0].splitlines()
    assert b'"record":"gap"' in lines[9]  # account 2's gap comes first in account 2
    assert b'"account":"1"' in lines[0] and b'"account":"4"' in lines[-1]


# --- the loop ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [1, 2])
def test_the_per_account_cap_in_process(tmp_path: Path, cap: int) -> None:
    units = [WorkUnit("gcp", p, r) for p in ("p1", "p2") for r in ("r1", "r2", "r3", "r4")]
    with InProcessExecutor(threads=8) as executor:
        report = run_units(
            units,
            executor,
            tmp_path,
            ScaleOptions(units_per_account=cap),
            runner=RecordSpans(str(tmp_path), 0.05),
        )
    assert len(report.results) == 8 and report.peak_per_account == cap and report.peak_in_flight == 2 * cap


class FlakyOnce:
    """Fails the first attempt of every unit, then succeeds."""

    def __init__(self, parts: Path) -> None:
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.record = RecordSpans(str(parts), 0.0)

    def __call__(self, unit: WorkUnit, parts_dir: PartsTarget | str) -> UnitResult:
        with self.lock:
            first = unit.label not in self.seen
            self.seen.add(unit.label)
        if first:
            raise ConnectionResetError("worker connection lost")
        return self.record(unit, parts_dir)


def test_a_failed_attempt_is_retried_and_counted(tmp_path: Path) -> None:
    units = [WorkUnit("azure", s) for s in ("s1", "s2")]
    logged: list[str] = []
    with InProcessExecutor(2) as executor:
        report = run_units(units, executor, tmp_path, runner=FlakyOnce(tmp_path), log=logged.append)
    assert len(report.results) == 2 and not report.gaps and report.retried == 2
    assert report.attempts == {"azure:s1": 2, "azure:s2": 2}
    assert any("attempt 1/3 failed: ConnectionResetError" in line for line in logged)


def test_refused_arguments_stop_the_run_without_retries(tmp_path: Path) -> None:
    section = AwsCloud(role="Auditor", accounts=["111111111111"], options={"no-such-option": True})
    units = [WorkUnit("aws", "111111111111", None, section.model_dump_json())]
    with (
        InProcessExecutor(1) as executor,
        pytest.raises(InputError, match=r"clouds\.aws: .*no-such-option"),
    ):
        run_units(units, executor, tmp_path)


# --- config, CLI and the optional dependency --------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "where", "message"),
    [
        ("executor: spark\n", ":1", "executor"),
        ("scheduler: tcp://h:8786\n", ":1", "needs executor: dask"),
        ("executor: dask\nscheduler: http://h:8786\n", ":2", "tcp://HOST:8786"),
        ("scale:\n  attempts: 0\n", ":2", "attempts"),
    ],
)
def test_scale_settings_are_validated(
    tmp_path: Path, run_cli: RunCli, content: str, where: str, message: str
) -> None:
    config = tmp_path / "auditor.yaml"
    config.write_text(content)
    result = run_cli("audit", "--config", config)
    assert result.exit_code == 2 and f"{config}{where}" in result.stderr and message in result.stderr


def test_scheduler_flag_implies_dask_and_execution_is_not_in_the_digest() -> None:
    config = AuditConfig()
    dask = with_executor(config, None, "tcp://10.0.0.5:8786")
    assert (dask.executor, dask.scheduler) == ("dask", "tcp://10.0.0.5:8786")
    assert dask.digest() == config.digest()
    with pytest.raises(InputError, match="--scheduler"):
        with_executor(config, "dask", "10.0.0.5:8786")
    assert with_executor(dask, "in-process", None).scheduler is None


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_the_default_install_never_imports_dask() -> None:
    done = _python(
        "import sys\n"
        "import auditor.scale.executors, auditor.scale, auditor.audit.job, auditor.cli\n"
        "from auditor.scale.executors import make_executor\n"
        "with make_executor('in-process'):\n    pass\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "assert not loaded, loaded\n"
    )
    assert done.returncode == 0, done.stderr


def test_executor_dask_without_dask_installed_is_an_input_error() -> None:
    done = _python(
        "import sys\n"
        "sys.modules['distributed'] = None  # as if the extra were not installed\n"
        "from auditor.errors import InputError\n"
        "from auditor.scale.executors import make_executor\n"
        "try:\n    make_executor('dask').start()\n"
        "except InputError as exc:\n    print(exc)\n"
    )
    assert done.returncode == 0 and "pip install '.[dask]' from an auditor checkout" in done.stdout, (
        done.stderr
    )
