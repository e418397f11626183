"""Units of work: one (cloud, account/project/subscription, region) to scan, and how a worker runs one.

A unit carries only what is not secret: which cloud, which account, and the `auditor scan <cloud>`
arguments restricted to that account (policy paths, role name, endpoints, options). The worker that
runs it gets credentials the standard way on its own host (instance role, workload identity, the
SDK's environment and files) and writes the unit's inventory part, sorted, to the parts directory.

Units are per account, project and subscription, never per region: S3 ListBuckets, GCS
buckets.list and ARM storageAccounts.list are account-wide, so a region split would repeat the
listing (and, on AWS, the region lookup of every bucket) once per region.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from auditor.atomicfile import atomic_output
from auditor.audit.config import AuditConfig, AwsCloud, AzureCloud, GcpCloud, OptionValue
from auditor.model import CoverageGap, UnknownCode

UnitRunner = Callable[["WorkUnit", str], "UnitResult"]
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class WorkUnit:
    """One account (AWS), project (GCP) or subscription (Azure) to scan, with non-secret arguments."""

    cloud: str
    account: str
    region: str | None
    args: tuple[str, ...]

    @property
    def label(self) -> str:
        """'aws:111122223333' (with ':region' when the unit is one region)."""
        return f"{self.cloud}:{self.account}" + (f":{self.region}" if self.region else "")

    @property
    def cap_key(self) -> tuple[str, str]:
        """What the per-account concurrency cap counts by: (cloud, account)."""
        return (self.cloud, self.account)

    def part_name(self) -> str:
        """File name of the unit's inventory part: readable, and unique per label."""
        digest = hashlib.sha256(self.label.encode()).hexdigest()[:10]
        return f"{_UNSAFE.sub('_', self.label)[:80]}-{digest}.jsonl"


@dataclass
class UnitResult:
    """What a worker reports back for one unit: counts and where its part is (never the records)."""

    unit: WorkUnit
    part: str
    resources: int
    gaps: int
    calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    worker: str = ""
    version: str = ""


class UnitUsageError(Exception):
    """A unit's arguments were refused (bad option, unreadable file): not retried, the run stops (exit 2)."""

    def __init__(self, cloud: str, message: str) -> None:
        super().__init__(cloud, message)
        self.cloud = cloud
        self.message = message

    def __str__(self) -> str:
        return f"clouds.{self.cloud}: {self.message}"


@dataclass
class Plan:
    """The units of a configured scan, the gaps found while planning, and the clouds covered."""

    units: list[WorkUnit] = field(default_factory=list)
    gaps: list[CoverageGap] = field(default_factory=list)
    clouds: list[str] = field(default_factory=list)


# --- planning -------------------------------------------------------------------------------------


def option_args(options: dict[str, OptionValue]) -> list[str]:
    """Config `options` as command-line arguments (`{max-attempts: 8}` -> `--max-attempts 8`)."""
    args: list[str] = []
    for name, value in options.items():
        flag = "--" + name.lstrip("-").replace("_", "-")
        if isinstance(value, bool):
            if value:
                args.append(flag)
        elif isinstance(value, list):
            for item in value:
                args.extend([flag, str(item)])
        else:
            args.extend([flag, str(value)])
    return args


def _policy_args(config: AuditConfig) -> list[str]:
    args: list[str] = []
    for path in config.policies:
        args.extend(["--policies", str(path)])
    return args


def aws_args(aws: AwsCloud, common: list[str], accounts_file: Path | None) -> list[str]:
    """`auditor scan aws` arguments for `aws`, its accounts read from `accounts_file` when given."""
    args = list(common)
    for profile in aws.profiles:
        args.extend(["--profile", profile])
    if aws.role:
        args.extend(["--role-arn", aws.role])
    if accounts_file is not None:
        args.extend(["--accounts", str(accounts_file)])
    elif aws.organization:
        args.append("--organization")
    if aws.regions:
        args.extend(["--regions", ",".join(aws.regions)])
    return args + option_args(aws.options)


def gcp_args(gcp: GcpCloud, common: list[str], projects: list[str]) -> list[str]:
    """`auditor scan gcp` arguments for `projects`."""
    args = list(common)
    for project in projects:
        args.extend(["--project", project])
    if gcp.api_endpoint:
        args.extend(["--api-endpoint", gcp.api_endpoint])
    if gcp.tls_policy:
        args.extend(["--tls-policy", str(gcp.tls_policy)])
    return args + option_args(gcp.options)


def azure_args(azure: AzureCloud, common: list[str], subscriptions: list[str]) -> list[str]:
    """`auditor scan azure` arguments for `subscriptions`."""
    args = list(common)
    for subscription in subscriptions:
        args.extend(["--subscription", subscription])
    if azure.arm_endpoint:
        args.extend(["--arm-endpoint", azure.arm_endpoint])
    if azure.blob_endpoint_template:
        args.extend(["--blob-endpoint-template", azure.blob_endpoint_template])
    if azure.ca_bundle:
        args.extend(["--ca-bundle", str(azure.ca_bundle)])
    if azure.blob_credential:
        args.extend(["--blob-credential", azure.blob_credential])
    return args + option_args(azure.options)


def write_accounts_file(path: Path, accounts: list[str]) -> Path:
    """An `--accounts` file (account ids are not secret; workers read it from the parts directory)."""
    path.write_text("".join(f"{a}\n" for a in accounts), encoding="utf-8")
    return path


def organization_accounts(aws: AwsCloud) -> Iterator[str | CoverageGap]:
    """The ACTIVE accounts of the organization, listed here (the planning host) with the base profile."""
    from auditor.scan.aws_accounts import AccountResolver, AccountSource, client_config
    from auditor.scan.base import CallCounter

    source = AccountSource(profiles=tuple(aws.profiles), role=aws.role, organization=True)
    resolver = AccountResolver(source, client_config(4, "standard", 5, 5.0, 30.0), CallCounter())
    return resolver.organization_account_ids()


def _aws_units(aws: AwsCloud, common: list[str], workdir: Path, plan: Plan) -> None:
    if aws.organization or aws.accounts:
        listed = aws.accounts if aws.accounts else list(organization_accounts(aws))
        if not listed:  # never a silent pass: an organization with nothing to scan is a gap
            plan.gaps.append(_empty_organization_gap())
        for account in dict.fromkeys(listed):
            if isinstance(account, CoverageGap):
                plan.gaps.append(account)
                continue
            accounts_file = write_accounts_file(workdir / f"aws-accounts-{account}.txt", [account])
            plan.units.append(WorkUnit("aws", account, None, tuple(aws_args(aws, common, accounts_file))))
        return
    if aws.role:  # one full role ARN: one account
        account = aws.role.split(":")[4] if aws.role.count(":") >= 5 else aws.role
        plan.units.append(WorkUnit("aws", account, None, tuple(aws_args(aws, common, None))))
        return
    for profile in aws.profiles or [""]:
        single = aws.model_copy(update={"profiles": [profile] if profile else []})
        plan.units.append(WorkUnit("aws", profile or "default", None, tuple(aws_args(single, common, None))))


def _empty_organization_gap() -> CoverageGap:
    from datetime import UTC, datetime

    return CoverageGap(
        provider="aws",
        account="organization",
        scope="organization",
        code=UnknownCode.ERROR,
        reason="organizations:ListAccounts listed no ACTIVE account",
        at=datetime.now(UTC),
    )


def plan_units(config: AuditConfig, workdir: Path) -> Plan:
    """Split the configured scans into units: one per AWS account, GCP project, Azure subscription.

    `workdir` is the parts directory; AWS `--accounts` files are written there for the workers.
    """
    plan = Plan()
    common = _policy_args(config)
    clouds = config.clouds
    if clouds.aws is not None:
        plan.clouds.append("aws")
        _aws_units(clouds.aws, common, workdir, plan)
    if clouds.gcp is not None:
        plan.clouds.append("gcp")
        for project in dict.fromkeys(clouds.gcp.projects):
            args = gcp_args(clouds.gcp, common, [project])
            plan.units.append(WorkUnit("gcp", project, None, tuple(args)))
    if clouds.azure is not None:
        plan.clouds.append("azure")
        for subscription in dict.fromkeys(clouds.azure.subscriptions):
            args = azure_args(clouds.azure, common, [subscription])
            plan.units.append(WorkUnit("azure", subscription, None, tuple(args)))
    return plan


# --- running one unit (on a worker) ---------------------------------------------------------------


def invoke_scanner(cloud: str, args: list[str]) -> Any:
    """Run `auditor scan <cloud> ARGS` in this process; returns the command's ScanSummary (if any)."""
    import importlib

    import click

    from auditor.errors import InputError
    from auditor.scan import SCANNER_COMMANDS

    module_name, _, attribute = SCANNER_COMMANDS[cloud].partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    try:
        return command.main(args=args, prog_name=f"auditor scan {cloud}", standalone_mode=False)
    except click.UsageError as exc:
        raise UnitUsageError(cloud, exc.format_message()) from None
    except InputError as exc:  # InputError does not survive pickling: send a plain one back
        raise UnitUsageError(cloud, str(exc)) from None
    except click.exceptions.Exit as exc:
        if exc.exit_code:
            raise UnitUsageError(cloud, f"scan exited {exc.exit_code}") from None
        return None


def record_key(line: bytes) -> tuple[str, str, int, str, str, bytes]:
    """Merge order of one inventory line: provider, account, gaps first, region, resource id."""
    data = orjson.loads(line)
    provider, account = str(data.get("provider", "")), str(data.get("account", ""))
    if data.get("record") == "gap":
        ident = f"{data.get('scope', '')}\x00{data.get('code', '')}\x00{data.get('reason', '')}"
        return (provider, account, 0, "", ident, line)
    location = data.get("location") or {}
    region = str(location.get("primary") or "")
    return (provider, account, 1, region, str(data.get("id", "")), line)


def sort_part(source: Path, target: Path) -> tuple[int, int]:
    """Write `source`'s records to `target` in merge order; returns (resources, gaps)."""
    with source.open("rb") as handle:
        lines = [line if line.endswith(b"\n") else line + b"\n" for line in handle if line.strip()]
    keyed = sorted(record_key(line) for line in lines)
    with atomic_output(target) as out:
        for key in keyed:
            out.write(key[-1])
    gaps = sum(1 for key in keyed if key[2] == 0)
    return len(keyed) - gaps, gaps


def run_unit(unit: WorkUnit, parts_dir: str) -> UnitResult:
    """Scan one unit with its cloud's scanner and write its sorted part into `parts_dir`."""
    from auditor import __version__
    from auditor.scan.base import ScanSummary

    started = time.perf_counter()
    part = Path(parts_dir) / unit.part_name()
    raw = part.with_name(part.name + f".{os.getpid()}.unsorted")
    try:
        summary = invoke_scanner(unit.cloud, [*unit.args, "--output", str(raw), "--no-progress"])
        resources, gaps = sort_part(raw, part)
    finally:
        raw.unlink(missing_ok=True)
    return UnitResult(
        unit=unit,
        part=str(part),
        resources=resources,
        gaps=gaps,
        calls=dict(summary.calls) if isinstance(summary, ScanSummary) else {},
        seconds=time.perf_counter() - started,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        version=__version__,
    )


def failed_unit_gap(unit: WorkUnit, attempts: int, reason: str) -> CoverageGap:
    """The coverage gap recorded for a unit that failed every attempt."""
    from datetime import UTC, datetime

    return CoverageGap(
        provider=unit.cloud,
        account=unit.account,
        scope="unit" if unit.region is None else f"unit:{unit.region}",
        code=UnknownCode.ERROR,
        reason=f"unit {unit.label} failed {attempts} attempt(s): {reason}",
        at=datetime.now(UTC),
    )
