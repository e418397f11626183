"""Benchmark `auditor scan aws` against moto_server, directly and through a 40 ms latency proxy,
and compare with Cloud Custodian (c7n) running equivalent policies on the same server.

    .venv/bin/python benchmarks/scan_aws.py [--buckets 1000] [--delay-ms 40] [--skip-c7n]

Starts its own moto_server on loopback, creates an estate with a realistic mix (regions, SSE-S3 /
SSE-KMS / DSSE / none, TLS-deny policies, training tags, replication), then times each run and
prints buckets/s, API calls per bucket and client CPU seconds (of the scanning process only).
c7n is installed on first use into benchmarks/.venv-c7n (a separate virtual environment).
Everything runs on 127.0.0.1; nothing else is contacted except PyPI for the c7n install.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from latency_proxy import start_proxy

HERE = Path(__file__).resolve().parent
C7N_VENV = HERE / ".venv-c7n"
ACCOUNT = "123456789012"
REGIONS = ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-southeast-2"]
EU_REGIONS = ["eu-west-1", "eu-central-1", "eu-west-3", "eu-north-1", "eu-south-1", "EU"]
SCAN_CODE = "from auditor.scan.aws import command; command()"


@dataclass
class Run:
    """One timed scan."""

    tool: str
    path: str
    seconds: float
    cpu: float
    buckets: int
    calls: float | None

    def line(self) -> str:
        calls = f"{self.calls:.2f}" if self.calls is not None else "n/a"
        return (
            f"{self.tool:<22} {self.path:<14} {self.buckets:>6} buckets {self.seconds:>8.1f} s "
            f"{self.buckets / self.seconds:>8.1f} buckets/s  {calls:>6} calls/bucket  "
            f"{self.cpu:>7.1f} s client CPU"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("moto_server did not start")


def base_env(endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


def deny_plaintext(bucket: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


def create_estate(endpoint: str, count: int) -> dict[str, str]:
    """`count` buckets with a realistic mix; returns bucket -> region."""
    config = Config(max_pool_connections=16, retries={"mode": "standard", "total_max_attempts": 5})
    session = boto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench")
    clients = {r: session.client("s3", region_name=r, endpoint_url=endpoint, config=config) for r in REGIONS}
    keys = {
        r: session.client("kms", region_name=r, endpoint_url=endpoint).create_key()["KeyMetadata"]["Arn"]
        for r in ("eu-west-1", "eu-central-1", "us-west-2")
    }
    destinations = {"eu-central-1": "bench-replica-eu", "us-east-1": "bench-replica-us"}
    for region, name in destinations.items():
        s3 = clients[region]
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    def make(i: int) -> tuple[str, str]:
        name = f"bench-{i:05d}"
        region = REGIONS[i % len(REGIONS)]
        s3 = clients[region]
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        mix = i % 20
        default: dict[str, str] | None = None
        if mix < 8:
            default = {"SSEAlgorithm": "AES256"}
        elif mix < 13 and region in keys:
            default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": keys[region]}
        elif mix < 15:
            default = {"SSEAlgorithm": "aws:kms"}
        elif mix == 15 and region in keys:
            default = {"SSEAlgorithm": "aws:kms:dsse", "KMSMasterKeyID": keys[region]}
        if default:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": default}]
                },
            )
        if i % 2 == 0:
            s3.put_bucket_policy(Bucket=name, Policy=deny_plaintext(name))
        if i % 5 < 3:
            tags = [
                {"Key": "ai-training", "Value": "opt-out" if i % 3 else "opt-in"},
                {"Key": "team", "Value": "t"},
            ]
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags})
        if i % 10 == 0:
            target = destinations["eu-central-1" if i % 20 == 0 else "us-east-1"]
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            s3.put_bucket_replication(
                Bucket=name,
                ReplicationConfiguration={
                    "Role": f"arn:aws:iam::{ACCOUNT}:role/replication",
                    "Rules": [
                        {
                            "ID": "all",
                            "Status": "Enabled",
                            "Prefix": "",
                            "Destination": {"Bucket": f"arn:aws:s3:::{target}"},
                        }
                    ],
                },
            )
        return name, region

    with ThreadPoolExecutor(8) as pool:
        regions = dict(pool.map(make, range(count - len(destinations))))
    regions.update({name: region for region, name in destinations.items()})
    return regions


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds and CPU seconds of a child process (this process's children only)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, cpu, done


def run_auditor(endpoint: str, path: str, work: Path, concurrency: int) -> Run:
    output = work / f"inventory-{path}.jsonl"
    # The shipped policies scoped to buckets: moto has no Bedrock, and the figures are about S3.
    from tests.scan.aws.helpers import storage_policies

    policies = storage_policies(work / "storage-policies")
    command = [
        sys.executable,
        "-c",
        SCAN_CODE,
        "--policies",
        str(policies),
        "--output",
        str(output),
        "--no-progress",
        "--concurrency",
        str(concurrency),
    ]
    seconds, cpu, done = timed(command, base_env(endpoint))
    summary = re.search(r"(\d+) resources, .*\(([\d.]+) per resource\)", done.stderr)
    if summary is None:
        raise SystemExit(f"no summary in auditor output:\n{done.stderr}")
    print("    " + "\n    ".join(done.stderr.strip().splitlines()[:12]))
    return Run("auditor", path, seconds, cpu, int(summary.group(1)), float(summary.group(2)))


def ensure_c7n() -> Path:
    custodian = C7N_VENV / "bin" / "custodian"
    if not custodian.exists():
        print(f"installing c7n into {C7N_VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(C7N_VENV)], check=True)
        subprocess.run([str(C7N_VENV / "bin" / "pip"), "install", "-q", "c7n"], check=True)
    return custodian


def c7n_policies(work: Path, detect: bool) -> Path:
    """The four shipped families as c7n policies on aws.s3 (one policy per family, like auditor)."""
    # c7n's leanest equivalent: augment only what the filters read (its 'detect' mode misses the
    # bucket policy that has-statement needs and then flags every bucket, so the keys are listed).
    query = [{"augment-keys": ["Location", "Tags", "Policy", "Replication"]}] if detect else None

    def policy(name: str, filters: list[Any]) -> dict[str, Any]:
        data: dict[str, Any] = {"name": name, "resource": "aws.s3", "filters": filters}
        if query:
            data["query"] = query
        return data

    document = {
        "policies": [
            policy(
                "residency",
                [
                    {
                        "or": [
                            {
                                "type": "value",
                                "key": "Location.LocationConstraint",
                                "op": "not-in",
                                "value": EU_REGIONS,
                            },
                            {
                                "type": "value",
                                "key": "Replication.ReplicationConfiguration.Rules[].Destination.Bucket",
                                "value": "not-null",
                            },
                        ]
                    }
                ],
            ),
            policy("encryption", [{"type": "bucket-encryption", "state": False}]),
            policy(
                "transport",
                [
                    {
                        "not": [
                            {
                                "type": "has-statement",
                                "statements": [
                                    {
                                        "Effect": "Deny",
                                        "Action": "s3:*",
                                        "Principal": "*",
                                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                    }
                                ],
                            }
                        ]
                    }
                ],
            ),
            policy("training", [{"type": "value", "key": "tag:ai-training", "value": "opt-in"}]),
        ]
    }
    path = work / ("c7n-lean.json" if detect else "c7n.json")
    path.write_text(json.dumps(document))
    return path


def run_c7n(custodian: Path, endpoint: str, path: str, work: Path, buckets: int, detect: bool) -> Run:
    policies = c7n_policies(work, detect)
    out = work / f"c7n-out-{path}-{detect}"
    cache = work / f"c7n-{path}-{detect}.cache"
    command = [str(custodian), "run", "-s", str(out), "-f", str(cache), "-r", "us-east-1", str(policies)]
    seconds, cpu, _ = timed(command, base_env(endpoint))
    counts = {
        p: len(json.loads((out / p / "resources.json").read_text()))
        for p in ("residency", "encryption", "transport", "training")
    }
    print(f"    c7n matched per policy: {counts}")
    return Run("c7n" + (" (lean augment)" if detect else ""), path, seconds, cpu, buckets, None)


def proxied(upstream: str, delay_ms: float, regions: dict[str, str] | None) -> Any:
    rewrite = None
    if regions is not None:
        # Real S3's ListBuckets names each bucket's region; moto does not. Add it, as S3 would.
        def rewrite(method: str, path: str, status: int, payload: bytes) -> bytes:
            if (
                method != "GET"
                or (not path.startswith("/?") and path != "/")
                or b"<ListAllMyBucketsResult" not in payload
            ):
                return payload
            return re.sub(
                rb"<Name>([^<]+)</Name>",
                lambda m: (
                    m.group(0)
                    + b"<BucketRegion>"
                    + regions.get(m.group(1).decode(), "us-east-1").encode()
                    + b"</BucketRegion>"
                ),
                payload,
            )

    return start_proxy(upstream, delay_ms, rewrite=rewrite)


def proxy_count(proxy: Any, reset: bool = True) -> int:
    count = int(proxy.requests)
    if reset:
        with proxy.count_lock:
            proxy.requests = 0
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark auditor scan aws against moto_server and c7n.")
    parser.add_argument("--buckets", type=int, default=1000)
    parser.add_argument("--delay-ms", type=float, default=40.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--skip-c7n", action="store_true")
    args = parser.parse_args()

    moto, endpoint = start_moto()
    work = Path(tempfile.mkdtemp(prefix="bench-aws-"))
    runs: list[Run] = []
    try:
        started = time.perf_counter()
        regions = create_estate(endpoint, args.buckets)
        print(
            f"estate: {len(regions)} buckets on moto_server {endpoint} "
            f"in {time.perf_counter() - started:.1f} s"
        )

        print("auditor, direct to moto_server:")
        runs.append(run_auditor(endpoint, "direct", work, args.concurrency))
        slow = proxied(endpoint, args.delay_ms, None)
        print(f"auditor, through the {args.delay_ms:.0f} ms proxy:")
        runs.append(run_auditor(slow.url, f"{args.delay_ms:.0f}ms", work, args.concurrency))
        print(f"    requests seen by the proxy: {proxy_count(slow)}")
        listed = proxied(endpoint, args.delay_ms, regions)
        print(f"auditor, {args.delay_ms:.0f} ms proxy adding BucketRegion to ListBuckets (as real S3):")
        runs.append(run_auditor(listed.url, f"{args.delay_ms:.0f}ms+region", work, args.concurrency))
        listed.shutdown()

        if not args.skip_c7n:
            custodian = ensure_c7n()
            print("c7n, direct to moto_server:")
            runs.append(run_c7n(custodian, endpoint, "direct", work, len(regions), detect=False))
            for detect in (False, True):
                print(
                    f"c7n{' (augment-keys: the 4 used)' if detect else ''}, "
                    f"through the {args.delay_ms:.0f} ms proxy:"
                )
                run = run_c7n(custodian, slow.url, f"{args.delay_ms:.0f}ms", work, len(regions), detect)
                run.calls = proxy_count(slow) / len(regions)
                runs.append(run)
        slow.shutdown()
    finally:
        moto.kill()
        moto.wait()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"results ({len(regions)} buckets, concurrency {args.concurrency}, {os.cpu_count()} cores):")
    for run in runs:
        print("  " + run.line())
    by = {(r.tool, r.path): r for r in runs}
    for path in ("direct", f"{args.delay_ms:.0f}ms"):
        ours = by.get(("auditor", path))
        for tool in ("c7n", "c7n (lean augment)"):
            theirs = by.get((tool, path))
            if ours and theirs:
                ratio = (ours.buckets / ours.seconds) / (theirs.buckets / theirs.seconds)
                print(f"  throughput ratio auditor / {tool}, {path}: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
