"""Fixtures for the GCS scanner tests: gcp-storage-emulator (a subprocess) and the recorded server.

Both listen on free 127.0.0.1 ports; nothing contacts a non-loopback address.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from .recorded_server import RecordedGcsServer, load_projects

REPO = Path(__file__).resolve().parents[3]
RECORDED = REPO / "fixtures" / "recorded" / "gcs"
POLICIES = Path(__file__).resolve().parent / "policies"
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
