"""Fixtures for scale-out: a moto_server estate over several AWS accounts and a Dask LocalCluster.

Everything listens on 127.0.0.1. The environment (fake credentials, the moto endpoint) is set in
this process before the cluster starts, so its worker processes get credentials the standard way:
from their own environment, never from a task.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.scan.aws.helpers import storage_policies

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
ACCOUNTS = ("111111111111", "222222222222", "333333333333", "444444444444")
ROLE = "arn:aws:iam::{account_id}:role/Auditor"
REGIONS = ("eu-west-1", "eu-central-1", "us-east-1")
BUCKETS_PER_ACCOUNT = 5


@dataclass(frozen=True)
class Estate:
    """The moto_server estate: its URL, accounts, and the secret the environment holds."""

    url: str
    accounts: tuple[str, ...]
    secret: str
    buckets: int
    # The shipped policies scoped to storage kinds: moto has no Bedrock or Organizations policy API,
    # and scale-out is about units of work, whatever they scan.
    policies: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto_server did not become ready in 30 s")


def _deny_plaintext(bucket: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


def _create_account_estate(account: str, index: int) -> None:
    """A mix per account: regions in and out of the EU, SSE-S3 / none, TLS-deny policies, tags."""
    sts = boto3.client("sts", region_name="us-east-1")
    creds = sts.assume_role(RoleArn=ROLE.format(account_id=account), RoleSessionName="setup")["Credentials"]
    session = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    for i in range(BUCKETS_PER_ACCOUNT):
        name = f"acct{index}-bucket-{i}"
        region = REGIONS[(i + index) % len(REGIONS)]
        s3 = session.client("s3", region_name=region)
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        if (i + index) % 3:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )
        if i % 2 == 0:
            s3.put_bucket_policy(Bucket=name, Policy=_deny_plaintext(name))
        # Training tags are absent or opt-out everywhere: the training policy alone has no violation.
        if i % 2:
            s3.put_bucket_tagging(
                Bucket=name, Tagging={"TagSet": [{"Key": "ai-training", "Value": "opt-out"}]}
            )


@pytest.fixture(scope="session")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    """moto_server with buckets in four accounts; the process environment points boto3 at it."""
    process, url = _start_moto()
    secret = "scale-secret-" + secrets.token_hex(12)
    home = tmp_path_factory.mktemp("aws-home")
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    for name in saved:
        del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=url,
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    try:
        for index, account in enumerate(ACCOUNTS):
            _create_account_estate(account, index)
        policies = storage_policies(tmp_path_factory.mktemp("storage-policies"))
        yield Estate(url, ACCOUNTS, secret, len(ACCOUNTS) * BUCKETS_PER_ACCOUNT, policies)
    finally:
        process.kill()
        process.wait(timeout=10)
        for name in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[name]
        os.environ.update(saved)


@pytest.fixture(scope="session")
def cluster(estate: Estate) -> Iterator[object]:
    """A LocalCluster of three worker processes (one thread each) on 127.0.0.1, no dashboard.

    Started after `estate` set the environment: the workers inherit it, as a host's own credentials.
    """
    from distributed import Client, LocalCluster

    local = LocalCluster(
        n_workers=3,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        # No dashboard; the scheduler's health endpoint on a free loopback port, not 8787.
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        silence_logs=40,
    )
    client = Client(local)
    try:
        yield client
    finally:
        client.close()
        local.close()


@pytest.fixture(scope="session")
def isolated_cluster(estate: Estate, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A LocalCluster of two worker processes (one thread each) that work elsewhere: each worker's
    working directory and temporary files are its own (`MoveWorkers`), so a relative parts directory
    the host hands over is not the host's. Started after `estate`, like `cluster`."""
    from distributed import Client, LocalCluster

    from tests.scale.workers import MoveWorkers

    root = tmp_path_factory.mktemp("isolated-workers")
    local = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        local_directory=str(root / "dask-space"),
        silence_logs=40,
    )
    client = Client(local)
    try:
        client.register_plugin(MoveWorkers(str(root / "home")))
        yield client
    finally:
        client.close()
        local.close()
