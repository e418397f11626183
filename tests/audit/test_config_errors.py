"""auditor.yaml checked before any cloud call: every problem in one run, each at the file's line.

The bad-config corpus names loopback servers as every source's endpoint; a test asserts that none of
them saw a request, and a control run with a valid configuration shows the same wiring does reach it.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from click.testing import Result

from auditor.audit.config import load_config
from auditor.errors import InputError, InputErrors

from ..loopback import LoopbackServer

RunCli = Callable[..., Result]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "auditor.yaml"


class CountingHandler(BaseHTTPRequestHandler):
    """Counts every request (any method, any path) and answers 500: a stand-in for every cloud API."""

    requests: list[str] = []
    lock = threading.Lock()

    def _count(self) -> None:
        with self.lock:
            self.requests.append(f"{self.command} {self.path}")
        body = b'{"error": "counting server"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _count

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A counting server on loopback; AWS (fake keys, no profile files) points at it too."""
    seen: list[str] = []
    handler = type("Handler", (CountingHandler,), {"requests": seen, "lock": threading.Lock()})
    for name in [k for k in list(os.environ) if k.startswith(("AWS_", "AUDITOR_"))]:
        monkeypatch.delenv(name)
    with LoopbackServer(handler, "counting-emulator") as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield server.url, seen


def line_of(text: str, marker: str) -> int:
    """The 1-based line of the only line of `text` containing `marker`."""
    hits = [number for number, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def corpus(url: str) -> str:
    """One auditor.yaml with a problem of every kind, every source pointed at the emulator."""
    return f"""\
name: corpus
clouds:
  aws:
    regions: [eu-west-1]
    options:
      retry_mod: adaptive          # typo of retry-mode
      max-attempts: 99             # out of range
  gcp:
    projects: [acme-eu]
    api_endpoint: {url}
    tls_policy: missing-tls-policy.yaml
  azure:
    subscriptions: [00000000-0000-0000-0000-000000000000]
    arm_endpoint: {url}
    options:
      container-page-size: 0       # out of range
  openai:
    base_url: {url}/v1
params:
  zone: europe                     # unknown zone
  min_tls: one point two           # not a version
  regoin: eu                       # no policy declares it
waivers: missing-waivers.yaml
attestations: [missing-attestations.yaml]
outputs:
  directory: out
  formats: [html, docx]            # docx: no such report format
  frameworks: [gdpr, sox]          # sox: no such framework
history:
  database_url: sqlite:///db/history.db
signing:
  private_key: keys/missing.key
schedule:
  interval: often                  # not a duration
"""


# (marker on the offending line, what the error says after `auditor.yaml:LINE: `)
EXPECTED = [
    ("retry_mod:", "clouds.aws.options.retry_mod: `auditor scan aws` has no option --retry-mod "
     "(did you mean 'retry-mode'?)"),
    ("max-attempts:", "clouds.aws.options.max-attempts: Input should be less than or equal to 20"),
    ("tls_policy:", "clouds.gcp.tls_policy: file not found: missing-tls-policy.yaml"),
    ("container-page-size:", "clouds.azure.options.container-page-size: Input should be greater than"),
    ("zone: europe", "params.zone: unknown zone 'europe' (known: "),
    ("min_tls:", "params.min_tls: 'min_tls' takes a version such as '1.2'"),
    ("regoin:", "params.regoin: no loaded policy declares parameter 'regoin'"),
    ("waivers:", "waivers: waivers file not found: missing-waivers.yaml"),
    ("attestations:", "attestations: attestations file not found: missing-attestations.yaml"),
    ("formats:", "outputs.formats.1: unknown report format 'docx'"),
    ("frameworks:", "outputs.frameworks: unknown framework 'sox'"),
    ("private_key:", "signing.private_key: signing key not found: keys/missing.key"),
    ("interval:", "schedule.interval: expected a duration such as '24h'"),
]  # fmt: skip


def test_the_bad_config_corpus_reports_every_error_at_its_line_before_any_request(
    tmp_path: Path, run_cli: RunCli, emulator: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, requests = emulator
    text = corpus(url)
    (tmp_path / "auditor.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)

    result = run_cli("audit", "--config", "auditor.yaml")

    assert result.exit_code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith("error: auditor.yaml:") for line in lines), lines
    for marker, message in EXPECTED:
        prefix = f"error: auditor.yaml:{line_of(text, marker)}: {message}"
        assert any(line.startswith(prefix) for line in lines), (prefix, lines)
    assert len(lines) == len(EXPECTED), lines  # each problem once, nothing else
    numbers = [int(line.split(":")[2]) for line in lines]
    assert numbers == sorted(numbers)  # top to bottom, as the file reads
    assert requests == []  # no source was called
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auditor.yaml"]  # no out/, no db/, nothing


def test_the_emulator_is_reached_once_the_config_is_valid(
    tmp_path: Path, run_cli: RunCli, emulator: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control of the test above: the same wiring, valid, does call the emulator."""
    _, requests = emulator
    (tmp_path / "auditor.yaml").write_text(
        "name: control\nclouds:\n  aws:\n    regions: [eu-west-1]\n    options: {max-attempts: 1}\n"
        "params: {zone: eu}\noutputs: {directory: out, formats: [json]}\n"
    )
    monkeypatch.chdir(tmp_path)
    result = run_cli("audit", "--config", "auditor.yaml")
    assert result.exit_code == 3, result.stderr  # the emulator answers 500: a coverage gap
    assert requests, "the AWS scanner never reached the emulator"


def test_the_example_config_reports_every_missing_file_at_once(
    tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in list(os.environ) if k.startswith("AUDITOR_")]:
        monkeypatch.delenv(name)
    shutil.copy(EXAMPLE, tmp_path / "auditor.yaml")
    text = EXAMPLE.read_text()
    monkeypatch.chdir(tmp_path)
    result = run_cli("audit", "--config", "auditor.yaml")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: auditor.yaml:{line_of(text, 'tls_policy:')}: clouds.gcp.tls_policy: file not found: "
        "gcp-tls-policy.yaml",
        f"error: auditor.yaml:{line_of(text, 'waivers: waivers.yaml')}: waivers: waivers file not found: "
        "waivers.yaml",
        f"error: auditor.yaml:{line_of(text, 'private_key:')}: signing.private_key: signing key not found: "
        "/etc/auditor/signing.key",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auditor.yaml"]


def test_load_config_raises_every_error_of_the_file_together(tmp_path: Path) -> None:
    config = tmp_path / "auditor.yaml"
    config.write_text(
        "name: x\n"
        "clouds:\n"
        "  aws:\n"
        "    profils: [a]\n"  # 4: typo
        "fail_on: severe\n"  # 5
        "history:\n"
        "  database_url: postgresql://u:hunter2@127.0.0.1/db\n"  # 7: a password
        "  keep_days: 0\n"  # 8
    )
    with pytest.raises(InputErrors) as raised:
        load_config(config, environ={})
    lines = raised.value.lines()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{config}:{n}" for n in (4, 5, 7, 8)]
    assert "clouds.aws.profils: Extra inputs are not permitted (did you mean 'profiles'?)" in lines[0]
    assert "$AUDITOR_DATABASE_URL" in lines[2]
    assert all("hunter2" not in line for line in lines)
    assert str(raised.value) == lines[0]


def test_command_line_values_are_not_blamed_on_the_file(
    tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, demo_inventory: Path
) -> None:
    """--baseline replaces the file's `baseline`: its error names the path given, no config line."""
    (tmp_path / "auditor.yaml").write_text(f"inventories: [{demo_inventory}]\nbaseline: base.yaml\n")
    (tmp_path / "base.yaml").write_text("entries: []\n")
    monkeypatch.chdir(tmp_path)
    result = run_cli("audit", "--config", "auditor.yaml", "--baseline", "other.yaml")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'other.yaml'}: baseline file not found"]


def test_parameters_from_the_command_line_keep_their_option_name(
    run_cli: RunCli, demo_inventory: Path
) -> None:
    result = run_cli("check", "--inventory", demo_inventory, "--param", "zone=europe", "--param", "regoin=eu")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: --param zone=europe: unknown zone 'europe'")
    assert lines[1].startswith("error: --param regoin: no loaded policy declares parameter 'regoin'")
    assert len(lines) == 2


def test_an_option_given_twice_and_account_ids_are_located(tmp_path: Path, run_cli: RunCli) -> None:
    config = tmp_path / "auditor.yaml"
    config.write_text(
        "clouds:\n"
        "  aws:\n"
        "    accounts: ['12345']\n"  # 3
        "    options:\n"
        "      max_attempts: 3\n"  # 5
        "      max-attempts: 4\n"  # 6
    )
    result = run_cli("audit", "--config", config)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {config}:3: clouds.aws.accounts: '12345' is not a 12-digit AWS account id",
        f"error: {config}:6: clouds.aws.options.max-attempts: given twice (also as 'max_attempts')",
    ]


def test_input_errors_keep_each_problem() -> None:
    one, two = InputError("a.yaml:1", "first"), InputError("a.yaml:2", "second")
    both = InputErrors([one, InputErrors([two, one])])
    assert str(both) == "a.yaml:1: first"
    assert both.lines() == ["a.yaml:1: first", "a.yaml:2: second", "a.yaml:1: first"]
    assert one.lines() == ["a.yaml:1: first"]
    with pytest.raises(ValueError):
        InputErrors([])
