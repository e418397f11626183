"""Fixtures for the audit job: a real PostgreSQL server on loopback, history backends, demo inputs."""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from auditor.policy.loader import shipped_root

PG_USER = "auditor_test"


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        pytest.fail(
            f"PostgreSQL's {name} not found: install the Debian package `postgresql` "
            "(apt-get install -y postgresql); the history tests need a real server",
            pytrace=False,
        )
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A throwaway cluster: initdb into a temp dir, listening on 127.0.0.1 only, password auth."""

    def __init__(self) -> None:
        self.initdb = _pg_bin("initdb")
        self.pg_ctl = _pg_bin("pg_ctl")
        self.root = Path(tempfile.mkdtemp(prefix="auditor-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.password = "pw-" + secrets.token_hex(12)
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0  # postgres refuses to run as root
        self._counter = 0

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        if self.as_postgres:
            args = ["runuser", "-u", "postgres", "--", *args]
        return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        init = self._run(
            [
                self.initdb,
                "-D",
                str(self.data),
                "-U",
                PG_USER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        if init.returncode != 0:
            pytest.fail(f"initdb failed:\n{init.stdout}\n{init.stderr}", pytrace=False)
        options = (
            f"-k {self.root} -h 127.0.0.1 -p {self.port} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        start = self._run(
            [self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options, "start"]
        )
        if start.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            pytest.fail(f"PostgreSQL did not start:\n{start.stdout}\n{start.stderr}\n{log}", pytrace=False)

    def stop(self) -> None:
        self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty schema, as the URL of a database whose search_path starts there."""
        import psycopg

        self._counter += 1
        schema = f"t{os.getpid()}_{self._counter}"
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=PG_USER,
            password=self.password,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        return self.url() + f"?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for this test session (fails, never skips, when it cannot start)."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh history database URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def demo_inventory() -> Path:
    """The shipped demo estate."""
    return shipped_root() / "fixtures" / "demo-estate.jsonl"


@pytest.fixture
def demo_waivers() -> Path:
    """The shipped demo waivers."""
    return shipped_root() / "fixtures" / "demo-waivers.yaml"


def read_records(path: Path) -> list[dict[str, Any]]:
    """Inventory records as dicts."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_records(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write inventory records as JSONL."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def edit_record(records: list[dict[str, Any]], name: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply `change` to the one resource called `name`."""
    hits = [r for r in records if r.get("record") == "resource" and r["name"] == name]
    assert len(hits) == 1, name
    change(hits[0])


def fix_dr_copy(record: dict[str, Any]) -> None:
    """acme-dr-copy: drop the US replica, so residency.data-in-zone passes."""
    record["location"]["regions"] = ["eu-central-1"]
    record["location"]["replicas"] = []


def break_customer_data(record: dict[str, Any]) -> None:
    """acme-customer-data-eu: move it to us-east-1, so residency.data-in-zone fails."""
    record["location"].update(raw="us-east-1", primary="us-east-1", regions=["us-east-1"])


DR_COPY = ("residency.data-in-zone", "arn:aws:s3:::acme-dr-copy")
CUSTOMER_DATA = ("residency.data-in-zone", "arn:aws:s3:::acme-customer-data-eu")


@pytest.fixture
def changed_inventory(tmp_path: Path, demo_inventory: Path) -> Path:
    """The demo estate with one failure fixed (acme-dr-copy) and one new (acme-customer-data-eu)."""
    records = read_records(demo_inventory)
    edit_record(records, "acme-dr-copy", fix_dr_copy)
    edit_record(records, "acme-customer-data-eu", break_customer_data)
    return write_records(tmp_path / "changed.jsonl", records)
