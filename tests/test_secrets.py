"""Secrets never leave: every secret-bearing variable set to a unique value, every command that reads it
run (its error paths too), and stdout, stderr and every file written searched for the value.

Each command runs as a real process (`python -m auditor.cli`) with a clean environment, so nothing of
the test runner's environment or of click's in-process runner hides or adds output. Every network
address is loopback: unreachable ports for databases and clouds, so error paths are exercised.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# unique values: if one of these shows up anywhere, it leaked
PASSPHRASE = "pp-7Qx2LmV9Zr4Kw8Ns"
DB_PASSWORD = "dbpw-3Hy6TfR1Mj5Wc0Bq"
AWS_SECRET = "awssecret-9Pk4Dz2Xv7Ln1Gh5Ra8Ue3Yt6Ws"
AWS_TOKEN = "awstoken-5Jm8Qc2Vb6Nx1Zp4Kd7Hf0Ls3Tw"
AZURE_TOKEN = "aztoken-8Rw3Kn6Yq1Bv5Mz9Hc2Dx4Jf7Lt"
AZURE_KEY = base64.b64encode(b"azkey-6Fh1Vp8Wq3Zk5Nm2Tr9Cx4Bj7Gd").decode()
GCP_KEY_ID = "gcpkid-2Ts7Hv4Ny9Qw1Lk6Bz3Mr8Xc5Pd"

LOOPBACK_DOWN = "127.0.0.1:9"  # discard port: nothing listens there in the test environment


@dataclass
class Run:
    returncode: int
    stdout: bytes
    stderr: bytes


def _base_env(home: Path) -> dict[str, str]:
    """A clean environment: no credentials, config or proxies of the machine the tests run on."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "NO_PROXY": "*",
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "GCE_METADATA_HOST": LOOPBACK_DOWN,
        "GCE_METADATA_IP": LOOPBACK_DOWN,
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
    }
    return env


def _auditor(cwd: Path, *args: str | Path, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
    done = subprocess.run(
        [sys.executable, "-m", "auditor.cli", *(str(a) for a in args)],
        cwd=cwd,
        env={**_base_env(cwd), **(env or {})},
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def _contents(root: Path) -> list[tuple[str, bytes]]:
    """(name, bytes) of every file under `root`, archives opened (tar.gz members, gzip content)."""
    found: list[tuple[str, bytes]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        found.append((str(path), data))
        if path.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
                for member in tar.getmembers():
                    handle = tar.extractfile(member) if member.isfile() else None
                    if handle is not None:
                        found.append((f"{path}!{member.name}", handle.read()))
        elif path.name.endswith(".gz"):
            found.append((f"{path}!gunzip", gzip.decompress(data)))
    return found


def _forms(secret: str) -> list[bytes]:
    """The ways a secret could appear: as is, and for PEM text each line of its body."""
    if "-----BEGIN" in secret:
        return [line.encode() for line in secret.splitlines() if line and not line.startswith("-----")]
    return [secret.encode()]


def assert_no_leak(run: Run, root: Path, *secrets: str, inputs: tuple[Path, ...] = ()) -> None:
    """No secret in stdout, stderr or any file under `root` (except the `inputs` the test wrote)."""
    places = [("stdout", run.stdout), ("stderr", run.stderr)]
    places += [(name, data) for name, data in _contents(root) if Path(name.split("!")[0]) not in inputs]
    for secret in secrets:
        for form in _forms(secret):
            for name, data in places:
                assert form not in data, f"secret {form[:12]!r}... leaked into {name}"


def _stderr_line(run: Run) -> str:
    lines = [line for line in run.stderr.decode(errors="replace").splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr.decode(errors="replace")
    return lines[0]


# --- signing key and passphrase -----------------------------------------------------------------


def _signing_pem(passphrase: str | None) -> str:
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def test_signing_key_and_passphrase_stay_out_of_a_whole_audit(tmp_path: Path) -> None:
    pem = _signing_pem(PASSPHRASE)
    env = {"AUDITOR_SIGNING_KEY": pem, "AUDITOR_SIGNING_KEY_PASSPHRASE": PASSPHRASE}
    run = _auditor(tmp_path, "audit", "--demo", "--output-dir", tmp_path / "out", env=env)
    assert run.returncode == 1, run.stderr.decode()  # the demo estate has violations
    bundles = list((tmp_path / "out").rglob("*.tar.gz")) + list((tmp_path / "out").rglob("manifest.sig"))
    assert bundles, "the run must have sealed a signed bundle"
    assert_no_leak(run, tmp_path, pem, PASSPHRASE)


@pytest.mark.parametrize(
    ("key", "passphrase", "what"),
    [
        pytest.param("wrong", "pp-wrong-1Zx8Kq4Vn7Bt2Lm", "wrong passphrase", id="wrong-passphrase"),
        pytest.param("encrypted", None, "encrypted", id="missing-passphrase"),
        pytest.param("plain", PASSPHRASE, "not encrypted", id="passphrase-for-plain-key"),
        pytest.param("truncated", PASSPHRASE, "not a PEM private key", id="truncated-pem"),
        pytest.param("rsa", None, "Ed25519", id="not-ed25519"),
    ],
)
def test_bad_signing_key_is_one_line_without_the_key(
    tmp_path: Path, key: str, passphrase: str | None, what: str
) -> None:
    if key in ("wrong", "encrypted", "truncated"):
        pem = _signing_pem(PASSPHRASE)
    elif key == "plain":
        pem = _signing_pem(None)
    else:
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    if key == "truncated":
        lines = pem.splitlines()
        pem = "\n".join([*lines[:2], lines[-1]])  # header, one body line, footer
    env = {"AUDITOR_SIGNING_KEY": pem}
    secrets = [pem]
    if passphrase is not None:
        env["AUDITOR_SIGNING_KEY_PASSPHRASE"] = passphrase
        secrets.append(passphrase)
    run = _auditor(tmp_path, "audit", "--demo", "--output-dir", tmp_path / "out", env=env)
    assert run.returncode == 2, run.stderr.decode()
    line = _stderr_line(run)
    assert "AUDITOR_SIGNING_KEY" in line and what in line, line
    assert_no_leak(run, tmp_path, *secrets)


def test_signing_key_without_pem_header_is_not_echoed_as_a_file_name(tmp_path: Path) -> None:
    """Someone pastes only the key's body (no -----BEGIN line): it must not be echoed as a path."""
    body = "".join(_signing_pem(None).splitlines()[1:-1])
    run = _auditor(
        tmp_path, "audit", "--demo", "--output-dir", tmp_path / "out", env={"AUDITOR_SIGNING_KEY": body}
    )
    assert run.returncode == 2, run.stderr.decode()
    _stderr_line(run)
    assert_no_leak(run, tmp_path, body)


def test_signing_key_file_and_passphrase_stay_out_of_keygen_and_verify(tmp_path: Path) -> None:
    env = {"AUDITOR_SIGNING_KEY_PASSPHRASE": PASSPHRASE}
    private, public = tmp_path / "keys" / "signing.pem", tmp_path / "keys" / "signing.pub"
    run = _auditor(tmp_path, "keygen", "--private-key", private, "--public-key", public, env=env)
    assert run.returncode == 0, run.stderr.decode()
    pem = private.read_text()
    assert "ENCRYPTED" in pem
    assert_no_leak(run, tmp_path, PASSPHRASE, pem, inputs=(private,))
    # the key file, used with a wrong passphrase: one line naming the file, neither secret shown
    env = {"AUDITOR_SIGNING_KEY": str(private), "AUDITOR_SIGNING_KEY_PASSPHRASE": "pp-wrong-5Gd2Wq9Ls"}
    run = _auditor(tmp_path, "audit", "--demo", "--output-dir", tmp_path / "out", env=env)
    assert run.returncode == 2 and str(private) in _stderr_line(run), run.stderr.decode()
    assert_no_leak(run, tmp_path, PASSPHRASE, pem, "pp-wrong-5Gd2Wq9Ls", inputs=(private,))


# --- history database URL -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"postgresql+psycopg://auditor:{DB_PASSWORD}@{LOOPBACK_DOWN}/auditor", id="unreachable"),
        pytest.param(f"postgresql+psycopg://auditor:{DB_PASSWORD}@127.0.0.1:notaport/auditor", id="bad-port"),
        pytest.param(f"nosuchdriver://auditor:{DB_PASSWORD}@127.0.0.1/auditor", id="unknown-driver"),
    ],
)
@pytest.mark.parametrize("command", ["history", "audit"])
def test_database_password_never_shown(tmp_path: Path, url: str, command: str) -> None:
    env = {"AUDITOR_DATABASE_URL": url}
    if command == "history":
        run = _auditor(tmp_path, "history", "list", env=env, timeout=60)
    else:
        run = _auditor(tmp_path, "audit", "--demo", "--output-dir", tmp_path / "out", env=env, timeout=120)
    assert run.returncode != 0, run.stdout.decode()
    assert b"Traceback" not in run.stderr, run.stderr.decode()
    assert_no_leak(run, tmp_path, DB_PASSWORD)


def test_database_password_in_history_help_and_config_dump(tmp_path: Path) -> None:
    """`--help` shows the variable's name (show_envvar), never its value."""
    env = {"AUDITOR_DATABASE_URL": f"postgresql+psycopg://auditor:{DB_PASSWORD}@{LOOPBACK_DOWN}/auditor"}
    run = _auditor(tmp_path, "history", "--help", env=env)
    assert run.returncode == 0 and b"AUDITOR_DATABASE_URL" in run.stdout
    assert_no_leak(run, tmp_path, DB_PASSWORD)


# --- cloud credentials --------------------------------------------------------------------------


def test_aws_secret_key_and_session_token_never_shown(tmp_path: Path) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_SESSION_TOKEN": AWS_TOKEN,
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": f"http://{LOOPBACK_DOWN}",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_RETRY_MODE": "standard",
    }
    run = _auditor(tmp_path, "scan", "aws", "--no-progress", "-o", tmp_path / "inv.jsonl", env=env)
    assert run.returncode != 0 and b"Traceback" not in run.stderr, run.stderr.decode()
    assert_no_leak(run, tmp_path, AWS_SECRET, AWS_TOKEN)
    # an account list the scanner cannot use: the error path with credentials set
    accounts = tmp_path / "accounts.txt"
    accounts.write_text("not-an-account\n")
    run = _auditor(
        tmp_path,
        "scan",
        "aws",
        "--role-arn",
        "arn:aws:iam::{account_id}:role/audit",
        "--accounts",
        accounts,
        "-o",
        tmp_path / "inv2.jsonl",
        env=env,
    )
    assert run.returncode == 2 and str(accounts) in _stderr_line(run), run.stderr.decode()
    assert_no_leak(run, tmp_path, AWS_SECRET, AWS_TOKEN)


def test_azure_access_token_never_shown(tmp_path: Path) -> None:
    env = {"AUDITOR_AZURE_ACCESS_TOKEN": AZURE_TOKEN}
    arm = f"https://{LOOPBACK_DOWN}"
    run = _auditor(
        tmp_path,
        "scan",
        "azure",
        "--subscription",
        "00000000-0000-0000-0000-000000000001",
        "--arm-endpoint",
        arm,
        "--no-progress",
        "-o",
        tmp_path / "inv.jsonl",
        env=env,
    )
    assert run.returncode != 0 and b"Traceback" not in run.stderr, run.stderr.decode()
    assert_no_leak(run, tmp_path, AZURE_TOKEN)
    # the token is an ARM token: asking to use it for blobs is refused, without showing it
    run = _auditor(
        tmp_path,
        "scan",
        "azure",
        "--subscription",
        "00000000-0000-0000-0000-000000000001",
        "--arm-endpoint",
        arm,
        "--blob-credential",
        "token",
        "-o",
        tmp_path / "inv2.jsonl",
        env=env,
    )
    assert_no_leak(run, tmp_path, AZURE_TOKEN)


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param(f"acct1:{AZURE_KEY}", id="valid"),
        pytest.param(f"acct1:{AZURE_KEY};{AZURE_KEY}", id="entry-without-name"),
        pytest.param(AZURE_KEY, id="key-only"),
        pytest.param(f"acct1:{AZURE_KEY};acct2", id="name-without-key"),
    ],
)
def test_azure_account_keys_never_shown(tmp_path: Path, keys: str) -> None:
    env = {"AUDITOR_AZURE_ACCOUNT_KEYS": keys, "AUDITOR_AZURE_ACCESS_TOKEN": AZURE_TOKEN}
    run = _auditor(
        tmp_path,
        "scan",
        "azure",
        "--subscription",
        "00000000-0000-0000-0000-000000000001",
        "--arm-endpoint",
        f"https://{LOOPBACK_DOWN}",
        "--blob-credential",
        "shared-key",
        "--no-progress",
        "-o",
        tmp_path / "inv.jsonl",
        env=env,
    )
    assert run.returncode != 0 and b"Traceback" not in run.stderr, run.stderr.decode()
    assert_no_leak(run, tmp_path, AZURE_KEY, AZURE_TOKEN)


@pytest.mark.parametrize("shape", ["service-account", "malformed-key", "not-json"])
def test_gcp_credentials_file_never_shown(tmp_path: Path, shape: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    if shape == "malformed-key":
        pem = pem.replace(pem.splitlines()[3], pem.splitlines()[3][::-1])
    info = {
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": GCP_KEY_ID,
        "private_key": pem,
        "client_email": "auditor@demo-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"http://{LOOPBACK_DOWN}/token",
    }
    credentials = tmp_path / "creds" / "sa.json"
    credentials.parent.mkdir()
    text = json.dumps(info)
    credentials.write_text(text if shape != "not-json" else text[: len(text) // 2])
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(credentials)}
    run = _auditor(
        tmp_path,
        "scan",
        "gcp",
        "--project",
        "demo-project",
        "--no-progress",
        # The token endpoint refuses connections; the library retries that as transient until the
        # deadline (120 s by default), so bound it: what is asserted is what the output shows.
        "--retry-deadline",
        "3",
        "-o",
        tmp_path / "inv.jsonl",
        env=env,
    )
    assert run.returncode != 0 and b"Traceback" not in run.stderr, run.stderr.decode()
    assert_no_leak(run, tmp_path, pem, GCP_KEY_ID, inputs=(credentials,))


# --- the harness itself -------------------------------------------------------------------------


def test_the_leak_check_finds_a_leak(tmp_path: Path) -> None:
    """Not vacuous: a secret in stderr, in a file, or inside a bundle archive is found."""
    (tmp_path / "plain.txt").write_text(f"x {DB_PASSWORD} y")
    with pytest.raises(AssertionError, match=r"plain\.txt"):
        assert_no_leak(Run(0, b"", b""), tmp_path, DB_PASSWORD)
    (tmp_path / "plain.txt").unlink()
    with pytest.raises(AssertionError, match="stderr"):
        assert_no_leak(Run(0, b"", f"error: {PASSPHRASE}".encode()), tmp_path, PASSPHRASE)
    archive = tmp_path / "b.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = AWS_SECRET.encode()
        info = tarfile.TarInfo("config.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(AssertionError, match=r"config\.json"):
        assert_no_leak(Run(0, b"", b""), tmp_path, AWS_SECRET)
    pem = _signing_pem(None)
    with pytest.raises(AssertionError, match="stdout"):
        assert_no_leak(Run(0, pem.splitlines()[1].encode(), b""), tmp_path / "none", pem)
