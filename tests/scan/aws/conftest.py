"""Fixtures for the AWS scanner tests: moto in-process and moto_server over HTTP on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from auditor.policy.loader import load_zones
from auditor.policy.zones import ZoneCatalog

from .bedrock_server import BedrockServer, Estate

MOTO_SERVER = Path(sys.executable).parent / "moto_server"


def fake_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, a default region, and no user AWS config or endpoint leaking in."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(autouse=True)
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with fake credentials and no user AWS configuration."""
    fake_aws_env(monkeypatch, tmp_path)


@pytest.fixture
def aws() -> Iterator[None]:
    """moto in-process: every boto3 call in the test goes to a fresh mock."""
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def catalog() -> ZoneCatalog:
    """The shipped zone catalog."""
    return load_zones([])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not become ready in 30 s")


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    """One moto_server per test session (per xdist worker) on a free loopback port."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(url, process, time.monotonic() + 30)
        yield url
    finally:
        process.kill()
        process.wait(timeout=10)


def moto_api(url: str, path: str, body: bytes = b"", content_type: str = "application/json") -> None:
    """POST to moto's control API (reset, reset-auth)."""
    request = urllib.request.Request(
        f"{url}/moto-api/{path}", data=body, method="POST", headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


@pytest.fixture
def moto_server(moto_server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The session's moto_server, reset, with AWS_ENDPOINT_URL pointing every boto3 client at it."""
    moto_api(moto_server_url, "reset")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server_url)
    yield moto_server_url
    # Leave IAM enforcement off for the next test, whatever this one did.
    moto_api(moto_server_url, "reset-auth", b"1000000000", "text/plain")


# The per-service endpoint variables boto3 honours (over AWS_ENDPOINT_URL) for the AI services.
AI_ENDPOINT_VARIABLES = (
    "AWS_ENDPOINT_URL_BEDROCK",
    "AWS_ENDPOINT_URL_BEDROCK_AGENT",
    "AWS_ENDPOINT_URL_ORGANIZATIONS",
)


@pytest.fixture(scope="session")
def bedrock_server_session() -> Iterator[BedrockServer]:
    """One recorded Bedrock / Bedrock Agents / Organizations server per test session (per worker)."""
    server = BedrockServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bedrock(
    bedrock_server_session: BedrockServer, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> BedrockServer:
    """The recorded AI estate (tests/scan/aws/recorded/bedrock-estate.json) behind the AI services'
    endpoint variables, with moto_server answering everything else (STS, EC2, S3)."""
    bedrock_server_session.load(Estate.load("bedrock-estate"))
    for name in AI_ENDPOINT_VARIABLES:
        monkeypatch.setenv(name, bedrock_server_session.url)
    return bedrock_server_session
