"""Fixtures for the GCP scanner tests: gcp-storage-emulator (a subprocess), the recorded server, and
the Org Policy + Vertex AI server with a service account whose tokens it issues.

All listen on free 127.0.0.1 ports; nothing contacts a non-loopback address.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from .recorded_server import RecordedGcsServer, load_projects
from .vertex_server import SERVICE_ACCOUNT, GoogleApiServer

REPO = Path(__file__).resolve().parents[3]
RECORDED = REPO / "fixtures" / "recorded" / "gcs"
POLICIES = Path(__file__).resolve().parent / "policies"
VERTEX_POLICIES = Path(__file__).resolve().parent / "vertex_policies"
EMULATOR_PROJECT = "p"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gcp-storage-emulator exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gcp-storage-emulator not ready at {url} after {seconds}s")


@pytest.fixture(scope="session")
def emulator_url() -> Iterator[str]:
    """gcp-storage-emulator started as a subprocess (in memory) on a free loopback port."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "gcp_storage_emulator",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    command += ["--in-memory", "-q"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# (name, labels, default KMS key, retention seconds, UBLA, public access prevention)
EMULATOR_BUCKETS: list[tuple[str, dict[str, str], str | None, int | None, bool, str | None]] = [
    ("plain-default", {}, None, None, False, None),
    (
        "cmek-in-zone",
        {"data-class": "personal"},
        "projects/p/locations/europe-west1/keyRings/storage/cryptoKeys/eu-key",
        None,
        True,
        "enforced",
    ),
    (
        "cmek-outside-zone",
        {},
        "projects/p/locations/us-central1/keyRings/storage/cryptoKeys/us-key",
        None,
        False,
        None,
    ),
    (
        "labels-dash",
        {"ai-training": "opt-in", "ai-training-consent": "dpa-2024-17", "data-class": "personal"},
        None,
        None,
        False,
        None,
    ),
    ("labels-underscore", {"ai_training": "opt-in"}, None, None, False, None),
    ("retention-locked-down", {}, None, 86400, True, "enforced"),
]


@pytest.fixture(scope="session")
def seeded_emulator(emulator_url: str) -> str:
    """The emulator holding EMULATOR_BUCKETS, set through PATCH (the only way it stores them)."""
    client = storage.Client(
        project=EMULATOR_PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": emulator_url},
    )
    for name, labels, key, retention, ubla, prevention in EMULATOR_BUCKETS:
        bucket = client.create_bucket(name)
        if labels:
            bucket.labels = labels
        if key:
            bucket.default_kms_key_name = key
        if retention:
            bucket.retention_period = retention
        if ubla:
            bucket.iam_configuration.uniform_bucket_level_access_enabled = True
        if prevention:
            bucket.iam_configuration.public_access_prevention = prevention
        bucket.patch()
    return emulator_url


@pytest.fixture(scope="session")
def recorded_session() -> Iterator[RecordedGcsServer]:
    """The recorded-JSON server, one per session."""
    with RecordedGcsServer(load_projects(RECORDED)) as server:
        yield server


@pytest.fixture
def recorded_server(recorded_session: RecordedGcsServer) -> RecordedGcsServer:
    """The recorded server with fresh fixtures (faults re-armed, counters zeroed)."""
    recorded_session.load(load_projects(RECORDED))
    return recorded_session


# --- the Org Policy / Vertex AI loopback server and the credentials that reach it -----------------


@pytest.fixture(scope="session")
def google_api_session() -> Iterator[GoogleApiServer]:
    """The Org Policy + Vertex AI server, one per session."""
    server = GoogleApiServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def google_apis(google_api_session: GoogleApiServer) -> GoogleApiServer:
    """The server with no project loaded and its counters zeroed."""
    google_api_session.load()
    return google_api_session


@pytest.fixture(scope="session")
def private_key_pem() -> str:
    """A fresh RSA key for the test service account (never written outside tmp dirs)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def service_account(google_api_session: GoogleApiServer, private_key_pem: str, tmp_path: Path) -> Path:
    """A service-account key file whose token endpoint is the loopback server's /token."""
    info = {
        "type": "service_account",
        "project_id": "loopback-project",
        "private_key_id": "0123456789abcdef",
        "private_key": private_key_pem,
        "client_email": SERVICE_ACCOUNT,
        "client_id": "100000000000000000001",
        "token_uri": f"{google_api_session.url}/token",
    }
    path = tmp_path / "credentials" / "service-account.json"
    path.parent.mkdir()
    path.write_text(json.dumps(info), encoding="utf-8")
    return path
