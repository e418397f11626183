"""The CI examples of docs/audit.md run as written: their shell steps, against loopback clouds.

The GitHub Actions workflow and the GitLab CI job are read from docs/audit.md (which shows the files
under examples/ci/ verbatim). Every `run:` step and `script:` line runs in bash in a temporary
checkout, in order, with the environment the runner would give it. The steps that are not shell
(`uses:` actions) are handled by a table: the cloud logins become the credentials their action
leaves behind, pointed at loopback emulators; the other actions are checked for what they read
(the SARIF file, the artifact paths). The install line is checked, not run: it must install this
repository with extras that exist (re-installing into the test venv would need PyPI).

The clouds: moto_server (STS, S3, EC2) and the recorded Bedrock / Organizations server for AWS, the
recorded Cloud Storage server and the Org Policy / Vertex AI server for Google Cloud, the recorded
ARM server and Azurite for Azure, and a PostgreSQL server for the history. All on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from azure.storage.blob import BlobServiceClient
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from auditor.audit.config import load_config
from auditor.cli import cli
from tests.audit.conftest import PostgresServer
from tests.scan.aws.bedrock_server import BedrockServer, Estate
from tests.scan.azure.arm_server import ArmServer, load_recorded
from tests.scan.azure.conftest import AZURITE_BIN, DATA_PLANE, account_key, keys_text
from tests.scan.gcp.recorded_server import RecordedGcsServer, RecordedProject, load_projects
from tests.scan.gcp.vertex_server import SERVICE_ACCOUNT, GoogleApiServer, VertexProject

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "audit.md"
EXAMPLES = REPO / "examples" / "ci"
BIN = Path(sys.executable).parent  # the venv's bin: `auditor` where `pip install` puts it
MOTO_SERVER = BIN / "moto_server"
SUBMODULE = "tools/auditor"  # where the examples vendor auditor's source (as docs/iac.md does)

# Where docs/audit.md shows an example file: a line linking it, a blank line, the fenced file.
_SHOWN = re.compile(
    r"^\[examples/ci/(?P<name>[\w.-]+)\]\(\.\./examples/ci/(?P=name)\):\n\n"
    r"```(?:yaml|json)\n(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)

# The recorded estates the clouds serve (a selection of the scanner tests' recordings).
RECORDED_GCS_PROJECT = "auditor-eu"
UNDECIDED_BUCKET = "eu-new-region"  # a location the zone catalog does not know: `error`, never pass
RECORDED_SUBSCRIPTION = "11111111-1111-4111-8111-111111111111"
AZURE_ACCOUNTS = ("euwlrs", "seagrs", "euwtls10")  # in zone; Singapore (fails residency); TLS 1.0
ARM_TOKEN = "ci-arm-token-" + os.urandom(6).hex()
AWS_SESSION_SECRET = "ci-aws-secret-" + os.urandom(6).hex()
TLS_CONSTRAINT = "gcp.restrictTLSVersion"
DENY_OLD_TLS = {"spec": {"rules": [{"values": {"deniedValues": ["TLS_VERSION_1", "TLS_VERSION_1_1"]}}]}}
BEDROCK_ESTATE = REPO / "tests" / "scan" / "aws" / "recorded" / "bedrock-estate.json"

# Keys the test adds to the example auditor.yaml: where each cloud's requests go, nothing else.
# (An ARM token cannot list containers on the data plane, hence the shared keys for Azurite.)
ENDPOINT_KEYS = {
    "gcp": {"api_endpoints"},
    "azure": {"arm_endpoint", "ca_bundle", "blob_endpoint_template", "blob_credential"},
}
# Features that need an extra, and how a job shows it uses them.
EXTRA_FOR_DATABASE = {"postgresql": "postgres", "postgres": "postgres"}
EXTRA_FOR_EXECUTOR = {"dask": "dask"}


# --- what docs/audit.md shows ----------------------------------------------------------------


def shown_examples() -> dict[str, str]:
    """The example files docs/audit.md shows, by file name, as shown."""
    return {match["name"]: match["body"] for match in _SHOWN.finditer(DOCS.read_text(encoding="utf-8"))}


def shown(name: str) -> str:
    """One example file as docs/audit.md shows it."""
    examples = shown_examples()
    assert name in examples, f"docs/audit.md does not show examples/ci/{name}"
    return examples[name]


def test_docs_show_every_ci_example_file_verbatim() -> None:
    files = {path.name: path.read_text(encoding="utf-8") for path in sorted(EXAMPLES.iterdir())}
    assert set(files) == {"auditor.yaml", "github-actions.yml", "gitlab-ci.yml", "gcp-credential-config.json"}
    assert shown_examples() == files


def test_the_ci_config_is_valid_without_profiles_and_the_pipelines_parse(tmp_path: Path) -> None:
    config_file = tmp_path / "auditor.yaml"
    config_file.write_text(shown("auditor.yaml"), encoding="utf-8")
    config = load_config(config_file, environ={})
    sections = config.clouds.configured()
    assert set(sections) == {"aws", "gcp", "azure"}
    for section in sections.values():
        section.check()  # every scanner takes its section
    assert sections["aws"].profiles == []  # type: ignore[attr-defined]  # OIDC: the default chain
    assert config.database_url() == f"sqlite:///{tmp_path / 'reports' / 'history.db'}"  # unless the secret
    workflow = yaml.safe_load(shown("github-actions.yml"))
    assert workflow["permissions"]["id-token"] == "write"  # without it no login action gets a token
    assert workflow["permissions"]["security-events"] == "write"  # the SARIF upload
    job = yaml.safe_load(shown("gitlab-ci.yml"))["storage-audit"]
    assert {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"} <= set(job["variables"])  # boto3 needs both
    assert json.loads(shown("gcp-credential-config.json"))["type"] == "external_account"


# --- a temporary checkout and its shell -------------------------------------------------------


@dataclass
class Secrets:
    """The CI secrets: a PostgreSQL URL with its password, and a signing key's PEM text."""

    database_url: str
    signing_key: str
    public_key: Path

    def texts(self) -> list[str]:
        """Every piece of secret text that must never appear in output."""
        password = self.database_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
        return [password, *self.signing_key.strip().splitlines()[1:-1]]


@dataclass
class StepRun:
    """One shell step or line: what ran, its exit code and output."""

    name: str
    command: str
    env: dict[str, str]
    exit_code: int
    output: str


@dataclass
class Checkout:
    """A job's working directory, its environment so far, and what its steps did."""

    root: Path
    env: dict[str, str]
    steps: list[StepRun] = field(default_factory=list)

    def shell(self, name: str, command: str, env: Mapping[str, str] | None = None) -> StepRun:
        """Run `command` as a CI runner's bash does (-e, pipefail), in the checkout; install lines
        are checked instead (`check_install`)."""
        step_env = self.env | dict(env or {})
        if is_install(command):
            check_install(command, self.root, step_env)
            # What the install leaves: `auditor` on PATH (the test venv's, with the same extras).
            self.env["PATH"] = f"{BIN}{os.pathsep}{self.env['PATH']}"
            run = StepRun(name, command, step_env, 0, "")
        else:
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", command],
                cwd=self.root,
                env=step_env,
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
            run = StepRun(name, command, step_env, done.returncode, done.stdout + done.stderr)
        self.steps.append(run)
        return run

    def output(self) -> str:
        """Everything the steps printed."""
        return "".join(step.output for step in self.steps)


def is_install(command: str) -> bool:
    """Whether `command` is a `pip install` line."""
    words = shlex.split(command, comments=True)
    return words[:2] == ["pip", "install"] or words[:4] == ["python", "-m", "pip", "install"]


def check_install(command: str, root: Path, env: Mapping[str, str]) -> None:
    """The install line installs this repository (from its checkout) with existing extras, and with
    the extras the job's features need: a PostgreSQL history, the dask executor."""
    words = shlex.split(command, comments=True)
    (target,) = words[words.index("install") + 1 :]
    found = re.fullmatch(r"(?P<path>\.[\w./-]*)(?:\[(?P<extras>[\w,-]+)\])?", target)
    assert found, f"{command}: install from a checkout of the repository, './DIR[extras]'"
    source = (root / found["path"]).resolve()
    assert source == REPO, f"{command}: {found['path']} is not a checkout of auditor's source"
    project = tomllib.loads((source / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "auditor" and "auditor" in project["scripts"]
    extras = set((found["extras"] or "").split(",")) - {""}
    unknown = extras - set(project["optional-dependencies"])
    assert not unknown, f"{command}: no such extra {sorted(unknown)} in pyproject.toml"
    config = yaml.safe_load((root / "auditor.yaml").read_text(encoding="utf-8"))
    scheme = env.get("AUDITOR_DATABASE_URL", "").split(":", 1)[0]
    used = (EXTRA_FOR_DATABASE.get(scheme), EXTRA_FOR_EXECUTOR.get(config.get("executor", "")))
    needed = {extra for extra in used if extra is not None}
    assert needed <= extras, f"{command}: the job needs the extras {sorted(needed)}"


def assert_python_supported(version: str) -> dict[str, str]:
    """`version` (3.12) satisfies pyproject.toml's requires-python (>=3.11); the test runs its own."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found = re.fullmatch(r">=(\d+)\.(\d+)", project["requires-python"])
    assert found, project["requires-python"]
    wanted = (int(found[1]), int(found[2]))
    assert tuple(int(part) for part in version.split(".")[:2]) >= wanted, f"Python {version} < {wanted}"
    return {}


def check_out_submodule(root: Path) -> None:
    """The submodule at SUBMODULE: auditor's source, which is this repository."""
    (root / SUBMODULE).parent.mkdir(parents=True, exist_ok=True)
    (root / SUBMODULE).symlink_to(REPO, target_is_directory=True)


def base_env(home: Path) -> dict[str, str]:
    """A runner's bare environment: the system's tools on PATH (not auditor: the job installs it),
    an empty home, and no instance metadata (169.254.169.254 is not loopback)."""
    path = [entry for entry in os.environ["PATH"].split(os.pathsep) if Path(entry).resolve() != BIN.resolve()]
    return {
        "PATH": os.pathsep.join(path),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": str(home),
        "CI": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
        "NO_GCE_CHECK": "True",
    }


# --- the loopback clouds ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"{what} was not ready in 30 s", pytrace=False)
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _started(stack: ExitStack, command: list[str], **env: str) -> subprocess.Popen[bytes]:
    """`command` started on loopback, stopped when `stack` closes."""
    process = subprocess.Popen(
        command, env=os.environ | env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    stack.callback(_stop, process)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class LoopbackClouds:
    """The emulated estate of the CI config's accounts, projects and subscriptions."""

    config: dict[str, Any]
    moto_url: str
    bedrock: BedrockServer
    gcs: RecordedGcsServer
    google_apis: GoogleApiServer
    arm: ArmServer
    blob_template: str
    service_account: Path

    def endpoints(self) -> dict[str, str]:
        """Environment that sends each SDK's requests to the loopback servers (no credential)."""
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ENDPOINT_URL_BEDROCK": self.bedrock.url,
            "AWS_ENDPOINT_URL_BEDROCK_AGENT": self.bedrock.url,
            "AWS_ENDPOINT_URL_ORGANIZATIONS": self.bedrock.url,
            "STORAGE_EMULATOR_HOST": self.gcs.url,
        }

    def config_endpoints(self) -> dict[str, dict[str, Any]]:
        """The auditor.yaml keys that send the Google and Azure API calls to the loopback servers."""
        return {
            "gcp": {"api_endpoints": {"orgpolicy": self.google_apis.url, "aiplatform": self.google_apis.url}},
            "azure": {
                "arm_endpoint": self.arm.base_url,
                "ca_bundle": str(self.arm.ca_file),
                "blob_endpoint_template": self.blob_template,
                "blob_credential": "shared-key",
            },
        }

    def serve_gcs(self, *, undecided: bool) -> None:
        """Serve the project's recorded buckets (faults left out), with or without the bucket whose
        location nobody can decide."""
        (project,) = self.config["clouds"]["gcp"]["projects"]
        recorded = load_projects(REPO / "fixtures" / "recorded" / "gcs")[RECORDED_GCS_PROJECT]
        buckets = [b for b in recorded.buckets if undecided or b["name"] != UNDECIDED_BUCKET]
        assert len(buckets) == len(recorded.buckets) - (not undecided)
        self.gcs.load({project: RecordedProject(project, buckets)})

    # What each cloud login leaves behind, as the test's stand-in for it.

    def aws_login(self, settings: Mapping[str, Any]) -> dict[str, str]:
        """configure-aws-credentials: the role's session in the environment (moto takes any)."""
        region = settings["aws-region"]
        return {
            "AWS_ACCESS_KEY_ID": "ASIACIEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": AWS_SESSION_SECRET,
            "AWS_SESSION_TOKEN": "ci-session-token",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
        }

    def google_login(self, settings: Mapping[str, Any]) -> dict[str, str]:
        """google-github-actions/auth: a credential file in GOOGLE_APPLICATION_CREDENTIALS."""
        assert settings["workload_identity_provider"] and settings["service_account"]
        return self.google_login_stand_in()

    def google_login_stand_in(self) -> dict[str, str]:
        """A service account whose tokens the loopback server issues, in place of an external
        account (its token exchange, at Google's STS, is not on loopback)."""
        return {"GOOGLE_APPLICATION_CREDENTIALS": str(self.service_account)}

    def azure_login(self, settings: Mapping[str, Any]) -> dict[str, str]:
        """azure/login: an Azure CLI login (here the scanner's pre-acquired ARM token and, since an
        ARM token cannot list containers, Azurite's shared keys)."""
        assert settings["client-id"] and settings["tenant-id"]
        return self.azure_stand_in()

    def azure_stand_in(self) -> dict[str, str]:
        """The scanner's token and keys, in place of what Azure AD would issue."""
        return {
            "AUDITOR_AZURE_ACCESS_TOKEN": ARM_TOKEN,
            "AUDITOR_AZURE_ACCOUNT_KEYS": keys_text(sorted(AZURE_ACCOUNTS)),
        }


def _aws_estate(aws: Mapping[str, Any], moto_url: str) -> None:
    """In each account of the config, one EU bucket that passes and, in the first, one in the US."""
    sts = boto3.client(
        "sts",
        region_name="us-east-1",
        endpoint_url=moto_url,
        aws_access_key_id="setup",
        aws_secret_access_key="setup-secret",
    )
    for index, account in enumerate(aws["accounts"]):
        role = f"arn:aws:iam::{account}:role/{aws['role']}"
        credentials = sts.assume_role(RoleArn=role, RoleSessionName="setup")["Credentials"]
        session = boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
        buckets = [(f"ci-records-{index}", "eu-central-1")] + (
            [("ci-us-copy", "us-east-1")] if index == 0 else []
        )
        for name, region in buckets:
            s3 = session.client("s3", region_name=region, endpoint_url=moto_url)
            location = (
                {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            )
            s3.create_bucket(Bucket=name, **location)
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )
            deny_plaintext = {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
            s3.put_bucket_policy(
                Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny_plaintext]})
            )


def _arm_documents(subscription: str) -> dict[str, Any]:
    """The recorded ARM answers, under the config's subscription, with AZURE_ACCOUNTS and no AI."""
    recorded = json.dumps(load_recorded(REPO / "fixtures" / "recorded" / "azure"))
    documents: dict[str, Any] = json.loads(recorded.replace(RECORDED_SUBSCRIPTION, subscription))
    accounts = f"/subscriptions/{subscription}/providers/microsoft.storage/storageaccounts"
    documents[accounts] = {"value": [a for a in documents[accounts]["value"] if a["name"] in AZURE_ACCOUNTS]}
    assert len(documents[accounts]["value"]) == len(AZURE_ACCOUNTS)
    documents[f"/subscriptions/{subscription}/providers/microsoft.cognitiveservices/accounts"] = {"value": []}
    return documents


def _service_account(directory: Path, token_uri: str) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = directory / "service-account.json"
    info = {
        "type": "service_account",
        "project_id": "loopback-project",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": SERVICE_ACCOUNT,
        "client_id": "100000000000000000001",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackClouds]:
    """Every cloud the CI config names, on loopback, holding an estate for its ids."""
    if not AZURITE_BIN.exists():
        pytest.fail(f"{AZURITE_BIN} is missing: run `npm ci` at the repository root", pytrace=False)
    config = yaml.safe_load(shown("auditor.yaml"))
    root = tmp_path_factory.mktemp("clouds")
    with ExitStack() as stack:
        moto_port, blob_port = _free_port(), _free_port()
        moto_url = f"http://127.0.0.1:{moto_port}"
        moto = _started(stack, [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(moto_port)])
        azurite = _started(
            stack,
            [
                str(AZURITE_BIN),
                *(
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    str(blob_port),
                    "--location",
                    str(root / "azurite"),
                ),
                *("--disableTelemetry", "--skipApiVersionCheck", "--silent"),
            ],
            AZURITE_ACCOUNTS=keys_text(sorted(AZURE_ACCOUNTS)),
        )
        effective_policy = json.loads(BEDROCK_ESTATE.read_text(encoding="utf-8"))["effective_policy"]
        bedrock = stack.enter_context(BedrockServer(Estate(effective_policy=effective_policy)))
        gcs = stack.enter_context(RecordedGcsServer())
        google_apis = stack.enter_context(GoogleApiServer())
        (project,) = config["clouds"]["gcp"]["projects"]
        google_apis.load(
            VertexProject(project, policies={TLS_CONSTRAINT: DENY_OLD_TLS}, locations=["europe-west4"])
        )
        (subscription,) = config["clouds"]["azure"]["subscriptions"]
        (root / "arm").mkdir()
        arm = stack.enter_context(
            ArmServer(_arm_documents(subscription), token=ARM_TOKEN, cert_dir=root / "arm")
        )

        _wait(lambda: _answers(f"{moto_url}/moto-api/data.json"), moto, "moto_server")
        _aws_estate(config["clouds"]["aws"], moto_url)
        _wait(lambda: _listens(blob_port), azurite, "azurite-blob")
        blob_template = f"http://127.0.0.1:{blob_port}/{{account}}"
        for account in AZURE_ACCOUNTS:
            credential = {"account_name": account, "account_key": account_key(account)}
            with BlobServiceClient(blob_template.format(account=account), credential=credential) as client:
                for name, (metadata, public) in DATA_PLANE[account].items():
                    client.create_container(name, metadata=metadata or None, public_access=public)
        service_account = _service_account(root, f"{google_apis.url}/token")
        yield LoopbackClouds(config, moto_url, bedrock, gcs, google_apis, arm, blob_template, service_account)


@pytest.fixture(scope="module")
def history_database() -> Iterator[str]:
    """The CI secret AUDITOR_DATABASE_URL: a PostgreSQL database on loopback."""
    server = PostgresServer()
    server.start()
    try:
        yield server.new_database()
    finally:
        server.stop()


@pytest.fixture
def secrets(tmp_path: Path, history_database: str) -> Secrets:
    """The CI secrets, with a fresh signing key made by `auditor keygen`."""
    keys = tmp_path / "keys"
    keys.mkdir()
    made = CliRunner().invoke(
        cli, ["keygen", "--private-key", str(keys / "signing.key"), "--public-key", str(keys / "signing.pub")]
    )
    assert made.exit_code == 0, made.output
    return Secrets(history_database, (keys / "signing.key").read_text(encoding="utf-8"), keys / "signing.pub")


def new_checkout(root: Path, clouds: LoopbackClouds, files: Mapping[str, str]) -> Checkout:
    """A checkout of the repository that holds the CI config: the example auditor.yaml with only
    the endpoint keys added, and `files` (name -> text)."""
    root.mkdir(parents=True)
    config = yaml.safe_load(shown("auditor.yaml"))
    for cloud, keys in clouds.config_endpoints().items():
        section = config["clouds"][cloud]
        assert set(keys) <= ENDPOINT_KEYS[cloud] and not set(keys) & set(section), "only endpoints are added"
        section.update(keys)
    (root / "auditor.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    home = root.with_name(root.name + "-home")  # the runner's, outside the checkout
    home.mkdir()
    return Checkout(root, base_env(home) | clouds.endpoints())


def assert_no_secret_in(checkout: Checkout, secrets: Secrets, *extra: str) -> None:
    """No secret text in what the steps printed, in any text file of reports/, or in the job summary."""
    texts = [checkout.output()]
    texts += [p.read_text(encoding="utf-8") for p in (checkout.root / "reports").glob("*") if p.is_file()]
    texts += [p.read_text(encoding="utf-8") for p in Path(checkout.env["HOME"]).glob("*.md")]
    leaked = [s for s in [*secrets.texts(), *extra] if any(s in text for text in texts)]
    assert not leaked, f"secret text in the output: {[s[:6] + '...' for s in leaked]}"


def findings(checkout: Checkout) -> dict[str, Any]:
    """The findings document the audit wrote."""
    document: dict[str, Any] = json.loads((checkout.root / "reports" / "findings.json").read_text("utf-8"))
    return document


# --- GitHub Actions ---------------------------------------------------------------------------

# `${{ ... }}` expressions the workflow may use in `env:` (never in `run:`, where they would be
# pasted into the script): the repository's secrets and variables.
_EXPRESSION = re.compile(r"\$\{\{\s*(?P<kind>secrets|vars)\.(?P<name>\w+)\s*\}\}")
# `if:` conditions and whether the step runs, given whether every step before it succeeded.
_CONDITIONS: dict[str | None, Callable[[bool], bool]] = {
    None: lambda ok: ok,
    "success()": lambda ok: ok,
    "!cancelled()": lambda ok: True,
    "always()": lambda ok: True,
    "failure()": lambda ok: not ok,
}


def _checkout_action(job: Checkout, settings: Mapping[str, Any], clouds: LoopbackClouds) -> dict[str, str]:
    # The repository itself `new_checkout` made; its submodule is auditor's source.
    assert (job.root / "auditor.yaml").is_file() and set(settings) == {"submodules"}
    if settings["submodules"]:
        check_out_submodule(job.root)
    return {}


def _sarif_upload(job: Checkout, settings: Mapping[str, Any], clouds: LoopbackClouds) -> dict[str, str]:
    sarif = json.loads((job.root / settings["sarif_file"]).read_text(encoding="utf-8"))
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["tool"]["driver"]["name"] == "auditor"
    return {}


def _artifact_upload(job: Checkout, settings: Mapping[str, Any], clouds: LoopbackClouds) -> dict[str, str]:
    for path in str(settings["path"]).split():
        assert (job.root / path).exists(), f"artifact path {path} does not exist"
    return {}


# Every action a workflow step may use: what the test does in its place (the environment it leaves).
GITHUB_ACTIONS: dict[str, Callable[[Checkout, Mapping[str, Any], LoopbackClouds], dict[str, str]]] = {
    "actions/checkout": _checkout_action,
    "actions/setup-python": lambda job, settings, clouds: assert_python_supported(settings["python-version"]),
    "aws-actions/configure-aws-credentials": lambda job, settings, clouds: clouds.aws_login(settings),
    "google-github-actions/auth": lambda job, settings, clouds: clouds.google_login(settings),
    "azure/login": lambda job, settings, clouds: clouds.azure_login(settings),
    "github/codeql-action/upload-sarif": _sarif_upload,
    "actions/upload-artifact": _artifact_upload,
}


def _github_value(value: str, secrets: Secrets) -> str:
    known = {("secrets", "AUDITOR_DATABASE_URL"): secrets.database_url}
    known[("secrets", "AUDITOR_SIGNING_KEY")] = secrets.signing_key

    def substitute(match: re.Match[str]) -> str:
        key = (match["kind"], match["name"])
        assert key in known, f"the test has no value for {match[0]}"
        return known[key]

    return _EXPRESSION.sub(substitute, value)


def run_github_workflow(job: Checkout, clouds: LoopbackClouds, secrets: Secrets) -> dict[str, StepRun]:
    """Run the workflow's one job as a runner would; returns its shell steps by name."""
    workflow = yaml.safe_load(shown("github-actions.yml"))
    (steps,) = [j["steps"] for j in workflow["jobs"].values()]
    summary = Path(job.env["HOME"]) / "step-summary.md"
    summary.touch()
    job.env |= {
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(job.root),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    ok = True
    ran: dict[str, StepRun] = {}
    for number, step in enumerate(steps, start=1):
        assert set(step) <= {"name", "uses", "with", "run", "env", "if", "id"}, step
        if not _CONDITIONS[step.get("if")](ok):
            continue
        if "uses" in step:
            action = step["uses"].split("@")[0]
            assert action in GITHUB_ACTIONS, f"step {number}: no stand-in for {action}"
            job.env |= GITHUB_ACTIONS[action](job, step.get("with", {}), clouds)
            continue
        assert "${{" not in step["run"], f"step {number}: pass expressions through env:, not into run:"
        env = {name: _github_value(str(value), secrets) for name, value in step.get("env", {}).items()}
        assert "${{" not in "".join(env.values())
        run = job.shell(step.get("name", f"step {number}"), step["run"], env)
        ran[run.name] = run
        ok = ok and run.exit_code == 0
    return ran


# --- GitLab CI --------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
# A fake JWT per `id_tokens:` entry (moto accepts any web identity token).
_FAKE_JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwcm9qZWN0X3BhdGg6YWNtZS9zdG9yYWdlLWF1ZGl0In0.c2lnbmF0dXJl"


def _expand(value: str, env: Mapping[str, str]) -> str:
    def lookup(match: re.Match[str]) -> str:
        assert match[1] in env, f"variable {match[0]} is not defined"
        return env[match[1]]

    return _VARIABLE.sub(lookup, value)


@dataclass
class GitlabJob:
    """The job's definition, its environment from `variables:` and `id_tokens:`, and its lines."""

    definition: dict[str, Any]
    variables: dict[str, str]
    lines: list[StepRun]


def run_gitlab_job(job: Checkout, secrets: Secrets, stand_ins: Mapping[str, str]) -> GitlabJob:
    """Run the job's before_script and script lines in order, stopping at the first failure.

    `stand_ins` replace what the OIDC exchanges would give the SDKs where the exchange is not on
    loopback (Google's STS, Azure AD); they override the job's variables of the same name.
    """
    (name, definition), *others = yaml.safe_load(shown("gitlab-ci.yml")).items()
    assert not others and name == "storage-audit"
    assert set(definition) <= {
        "image",
        "rules",
        "id_tokens",
        "variables",
        "before_script",
        "script",
        "artifacts",
    }
    assert {"if": '$CI_PIPELINE_SOURCE == "schedule"'} in definition["rules"]
    image, _, tag = definition["image"].partition(":")
    assert image == "python"
    assert_python_supported(tag.split("-")[0])
    job.env |= {"GITLAB_CI": "true", "CI_PROJECT_DIR": str(job.root), "CI_PIPELINE_SOURCE": "schedule"}
    if definition["variables"].get("GIT_SUBMODULE_STRATEGY") in ("normal", "recursive"):
        check_out_submodule(job.root)  # the runner does, before the job's first line
    job.env |= {token: _FAKE_JWT for token in definition["id_tokens"]}
    for variable, value in definition["variables"].items():
        job.env[variable] = _expand(str(value), job.env)
    # Protected CI/CD variables: the URL masked, the key of type File (the variable holds its path).
    key_file = Path(job.env["HOME"]) / "AUDITOR_SIGNING_KEY"
    key_file.write_text(secrets.signing_key, encoding="utf-8")
    job.env |= {"AUDITOR_DATABASE_URL": secrets.database_url, "AUDITOR_SIGNING_KEY": str(key_file)}
    variables = dict(job.env)
    job.env |= stand_ins
    ran: list[StepRun] = []
    for line in [*definition["before_script"], *definition["script"]]:
        # Each line runs in its own bash here; GitLab runs them in one shell, the same unless a
        # line changes the shell's state.
        assert not re.match(r"\s*(export|cd|source|\.)\s", line), f"{line}: state would not carry over"
        run = job.shell(line, line)
        ran.append(run)
        if run.exit_code != 0:
            break
    return GitlabJob(definition, variables, ran)


# --- the examples, run --------------------------------------------------------------------------


def test_the_ci_examples_run_against_loopback_clouds(
    clouds: LoopbackClouds, secrets: Secrets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The estate has violations, and one bucket whose location nobody can decide (`error`).
    clouds.serve_gcs(undecided=True)

    # GitLab: the scheduled job, no baseline. AWS is reached by web identity for real (moto's
    # sts:AssumeRoleWithWebIdentity, from the token file the before_script writes); Google and
    # Azure by stand-ins, after checking the job's own credential settings below.
    files = {"gcp-credential-config.json": shown("gcp-credential-config.json")}
    gitlab = new_checkout(tmp_path / "gitlab", clouds, files)
    stand_ins = {**clouds.google_login_stand_in(), **clouds.azure_stand_in()}
    job = run_gitlab_job(gitlab, secrets, stand_ins)
    audit = job.lines[-1]
    assert audit.command.startswith("auditor audit"), [(line.name, line.output[-2000:]) for line in job.lines]
    assert audit.exit_code == 1, audit.output[-4000:]  # violations (at or above fail_on: high) win over 3
    document = findings(gitlab)
    assert {f["resource"]["provider"] for f in document["findings"]} == {"aws", "gcp", "azure"}
    assert document["run"]["coverage"]["gaps"] == [] and document["run"]["gate"]["errors"] == 1
    junit = gitlab.root / job.definition["artifacts"]["reports"]["junit"]
    assert ElementTree.parse(junit).getroot().tag == "testsuites"
    for path in job.definition["artifacts"]["paths"]:
        assert (gitlab.root / path).exists()
    # The credentials the job sets up, as the SDKs read them (the token files exist once the
    # before_script wrote the id tokens into them).
    assert Path(job.variables["AWS_WEB_IDENTITY_TOKEN_FILE"]).read_text() == job.variables["AWS_ID_TOKEN"]
    google_credential = Path(job.variables["GOOGLE_APPLICATION_CREDENTIALS"])
    assert_google_credential_reads(google_credential, gitlab.root, job.variables["GCP_ID_TOKEN"])
    assert_azure_chain(monkeypatch, job.variables, "WorkloadIdentityCredential")
    assert_no_secret_in(gitlab, secrets, ARM_TOKEN, _FAKE_JWT)

    # The baseline the GitHub workflow passes: today's failures, made as docs/audit.md says.
    made = subprocess.run(
        ["auditor", "baseline", "create", "--findings", "reports/findings.json", "--output", "baseline.yaml"],
        cwd=gitlab.root,
        env=gitlab.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    baseline = (gitlab.root / "baseline.yaml").read_text(encoding="utf-8")

    # GitHub, with the baseline committed: every failure is in the baseline, but the undecided
    # bucket is not (a baseline accepts known failures only), so the run is incomplete: exit 3.
    # The summary, SARIF and artifacts are kept all the same.
    github = new_checkout(tmp_path / "github", clouds, {"baseline.yaml": baseline})
    steps = run_github_workflow(github, clouds, secrets)
    assert steps["Audit"].exit_code == 3, steps["Audit"].output[-4000:]
    assert "incomplete: 1 error finding at or above high" in steps["Audit"].output
    gate = findings(github)["run"]["gate"]
    assert gate["errors"] == 1 and gate["failures"] == 0 and gate["baseline"]["baselined"] > 0
    summary = (github.root / "reports" / "summary.md").read_text(encoding="utf-8")
    assert summary.strip() and Path(github.env["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8") == summary
    assert steps["Job summary"].exit_code == 0
    assert_azure_chain(monkeypatch, steps["Audit"].env, "AzureCliCredential")
    assert_no_secret_in(github, secrets, ARM_TOKEN, AWS_SESSION_SECRET)

    # Once the bucket's location is decided (here: the bucket is gone), the same workflow with the
    # same baseline passes: exit 0 until something new fails. The bundle is signed with the secret key.
    clouds.serve_gcs(undecided=False)
    decided = new_checkout(tmp_path / "decided", clouds, {"baseline.yaml": baseline})
    steps = run_github_workflow(decided, clouds, secrets)
    assert steps["Audit"].exit_code == 0, steps["Audit"].output[-4000:]
    gate = findings(decided)["run"]["gate"]
    assert gate["errors"] == 0 and gate["failures"] == 0 and gate["exit_code"] == 0
    (bundle,) = (decided.root / "reports" / "bundles").glob("*.tar.gz")
    verified = subprocess.run(
        ["auditor", "verify", str(bundle), "--public-key", str(secrets.public_key)],
        env=decided.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def assert_google_credential_reads(path: Path, root: Path, token: str) -> None:
    """The job's GOOGLE_APPLICATION_CREDENTIALS is an external-account credential that google-auth
    loads, reading the id token the before_script wrote (no token is exchanged: STS is not loopback)."""
    from google.auth import identity_pool

    credential = identity_pool.Credentials.from_file(str(path))  # type: ignore[no-untyped-call]
    assert credential.info["credential_source"]["file"]
    source = json.loads(path.read_text(encoding="utf-8"))["credential_source"]["file"]
    assert (root / source).read_text(encoding="utf-8") == token


def assert_azure_chain(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str], expected: str) -> None:
    """DefaultAzureCredential, built in `env`, is exactly the `expected` credential."""
    from azure.identity import DefaultAzureCredential

    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("AZURE_")]:
            patch.delenv(name)
        for name, value in env.items():
            if name.startswith("AZURE_"):
                patch.setenv(name, value)
        chain = DefaultAzureCredential()
        assert [type(c).__name__ for c in chain.credentials] == [expected]
