"""Benchmark scale-out: the in-process executor vs a Dask LocalCluster of 2, 4 and 8 worker processes.

    .venv/bin/python benchmarks/scale_out.py [--accounts 20] [--buckets 250] [--delay-ms 40]
        [--workers 2,4,8] [--no-shared-directory [--parts returned|URL]]

Starts moto_server on loopback, creates `--buckets` buckets in each of `--accounts` accounts (moto
serves one state per account id; the scan assumes `arn:aws:iam::{account_id}:role/Auditor` into
each), and puts the latency proxy (benchmarks/latency_proxy.py, `--delay-ms` per request) in front
of it. Each run is one `scan_configured` of the whole estate (plan, units, merge of the parts),
timed without the cluster's start-up. Prints wall time, speed-up over the sequential in-process
run, and the requests the proxy saw (which must be the same for every executor). Loopback only.

The LocalCluster rows hand parts over through a directory both sides see (`scale.parts: directory`).
With `--no-shared-directory` each cluster size runs a second time with workers that work elsewhere:
every worker process moves into a working directory (and temporary directory) of its own when it
starts, this host gives its parts directory as a relative path, and parts come back through Dask
(`--parts returned`, the default) or through a store URL (`--parts file:///...`). Every row says
whether its merged inventory is byte-identical to the first in-process run's once scan times are
blanked (each scan stamps its own times).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config
from distributed.diagnostics.plugin import WorkerPlugin

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from latency_proxy import start_proxy  # noqa: E402
from scan_aws import deny_plaintext, start_moto  # noqa: E402

from auditor.audit.config import AuditConfig, Clouds, Scale  # noqa: E402
from auditor.audit.job import scan_configured  # noqa: E402
from auditor.scale.executors import DaskExecutor, Executor, InProcessExecutor  # noqa: E402
from auditor.scale.merge import merge_parts  # noqa: E402
from auditor.scan.aws_source import AwsCloud  # noqa: E402

ROLE = "arn:aws:iam::{account_id}:role/Auditor"
REGIONS = ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2"]


def account_ids(count: int) -> list[str]:
    return [f"{100000000000 + i * 1111:012d}" for i in range(1, count + 1)]


def create_account(endpoint: str, account: str, buckets: int) -> None:
    """`buckets` buckets in `account`: regions, SSE-S3 or none, TLS-deny policies, training tags."""
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=endpoint)
    creds = sts.assume_role(RoleArn=ROLE.format(account_id=account), RoleSessionName="setup")["Credentials"]
    session = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    config = Config(max_pool_connections=8, retries={"mode": "standard", "total_max_attempts": 5})
    clients = {r: session.client("s3", region_name=r, endpoint_url=endpoint, config=config) for r in REGIONS}
    for i in range(buckets):
        name = f"b{account}-{i:04d}"
        region = REGIONS[i % len(REGIONS)]
        s3 = clients[region]
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        if i % 3:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )
        if i % 2 == 0:
            s3.put_bucket_policy(Bucket=name, Policy=deny_plaintext(name))
        if i % 5 < 2:
            s3.put_bucket_tagging(
                Bucket=name, Tagging={"TagSet": [{"Key": "ai-training", "Value": "opt-out"}]}
            )


class MoveWorkers(WorkerPlugin):
    """Each worker works in `<root>/<its name>` (cwd and temporary files): it sees no host directory
    by the relative path the host uses."""

    def __init__(self, root: str) -> None:
        self.root = root

    def setup(self, worker: object) -> None:
        import re as _re

        home = Path(self.root) / _re.sub(r"[^A-Za-z0-9_.-]+", "_", str(getattr(worker, "name", "w")))
        home.mkdir(parents=True, exist_ok=True)
        os.chdir(home)
        tempfile.tempdir = str(home)


def timed_scan(
    executor: Executor, config: AuditConfig, proxy: object, *, relative: bool = False
) -> tuple[float, int, int, bytes]:
    """Seconds, requests seen by the proxy, resources, and the merged inventory (for comparison).
    `relative`: work in a fresh directory and name the parts directory relative to it."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        home = os.getcwd()
        if relative:
            os.chdir(tmp)
        parts = Path("parts") if relative else Path(tmp)
        parts.mkdir(exist_ok=True)
        with proxy.count_lock:  # type: ignore[attr-defined]
            proxy.requests = 0  # type: ignore[attr-defined]
        try:
            started = time.perf_counter()
            scanned = scan_configured(config, parts, executor=executor, progress=False)
            merged = Path(tmp) / "inventory.jsonl"
            with merged.open("wb") as handle:
                merge_parts(scanned.parts, handle)
            seconds = time.perf_counter() - started
        finally:
            os.chdir(home)
        if scanned.report.gaps:
            raise SystemExit(f"unexpected gaps: {scanned.report.gaps}")
        resources = sum(r.resources for r in scanned.report.results)
        return seconds, int(proxy.requests), resources, merged.read_bytes()  # type: ignore[attr-defined]


def shape(inventory: bytes) -> list[bytes]:
    """Inventory lines without their timestamps."""
    import re

    return [re.sub(rb'"\d{4}-\d\d-\d\dT[^"]*"', b'""', line) for line in inventory.splitlines()]


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the scale-out executors on moto_server.")
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--buckets", type=int, default=250, help="per account")
    parser.add_argument("--delay-ms", type=float, default=40.0)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight per unit")
    parser.add_argument("--workers", default="2,4,8", help="LocalCluster sizes")
    parser.add_argument(
        "--no-shared-directory",
        action="store_true",
        help="also run each cluster size with workers in working directories of their own",
    )
    parser.add_argument("--parts", default="returned", help="with --no-shared-directory: returned or a URL")
    args = parser.parse_args()

    moto, endpoint = start_moto()
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    accounts = account_ids(args.accounts)
    rows: list[tuple[str, float, int, int, str, str]] = []
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda a: create_account(endpoint, a, args.buckets), accounts))
        print(
            f"estate: {args.accounts} accounts x {args.buckets} buckets on {endpoint} "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        proxy = start_proxy(endpoint, args.delay_ms)
        # Set before any LocalCluster starts: its workers inherit it, as a host's own configuration.
        os.environ["AWS_ENDPOINT_URL"] = proxy.url
        config = AuditConfig(
            clouds=Clouds.model_validate(
                {"aws": AwsCloud(role=ROLE, accounts=accounts, options={"concurrency": args.concurrency})}
            ),
            scale=Scale(attempts=1, parts="directory"),
        )
        elsewhere = config.model_copy(update={"scale": Scale(attempts=1, parts=args.parts)})
        # (label, executor, config, workers elsewhere)
        runs: list[tuple[str, Executor, AuditConfig, bool]] = [
            ("in-process, 1 unit at a time", InProcessExecutor(1), config, False),
            ("in-process, 4 units (default)", InProcessExecutor(4), config, False),
        ]
        for n in args.workers.split(","):
            shared = DaskExecutor(local_workers=int(n))
            runs.append((f"dask LocalCluster, {n} workers", shared, config, False))
            if args.no_shared_directory:
                label = f"dask, {n} workers, no shared dir"
                runs.append((label, DaskExecutor(local_workers=int(n)), elsewhere, True))
        reference: list[bytes] | None = None
        homes = tempfile.mkdtemp(prefix="bench-workers-")
        for label, executor, chosen, moved in runs:
            executor.start()  # cluster start-up is not timed
            try:
                if moved:
                    client = executor.client  # type: ignore[attr-defined]
                    client.register_plugin(MoveWorkers(homes))
                    cwds = set(client.run(os.getcwd).values())
                    assert os.getcwd() not in cwds and all(c.startswith(homes) for c in cwds), cwds
                seconds, requests, resources, inventory = timed_scan(executor, chosen, proxy, relative=moved)
            finally:
                executor.close()
            lines = shape(inventory)
            reference = reference or lines
            same = "yes" if lines == reference else "NO"
            parts = chosen.scale.parts_for(executor.name)
            rows.append((label, seconds, requests, resources, parts, same))
            print(
                f"  {label:<34} {seconds:>7.1f} s  {requests:>6} requests  {resources} buckets  "
                f"parts: {parts}  byte-identical to in-process (times blanked): {same}",
                flush=True,
            )
        shutil.rmtree(homes, ignore_errors=True)
        proxy.shutdown()
    finally:
        moto.kill()
        moto.wait()
        shutil.rmtree(Path(tempfile.gettempdir()) / "dask-scratch-space", ignore_errors=True)

    base = rows[0][1]
    print()
    print(
        f"results: {args.accounts} accounts x {args.buckets} buckets, {args.delay_ms:.0f} ms per request, "
        f"--concurrency {args.concurrency} per unit, {os.cpu_count()} cores"
    )
    print(f"  {'executor':<34} {'wall s':>7} {'speed-up':>9} {'requests':>9}  {'parts':<9} identical")
    for label, seconds, requests, _, parts, same in rows:
        print(f"  {label:<34} {seconds:>7.1f} {base / seconds:>8.1f}x {requests:>9}  {parts:<9} {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
