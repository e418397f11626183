"""scan -> `auditor check --param zone=eu --format json`: the right status for every case."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import EMULATOR_PROJECT, POLICIES, RECORDED
from .helpers import check_statuses, scan_gcp
from .recorded_server import RecordedGcsServer, load_projects

RESIDENCY = "gcstest.residency"
KEY_IN_ZONE = "gcstest.cmek-key-in-zone"
ENCRYPTED = "gcstest.encryption-at-rest"
PLAINTEXT = "gcstest.plaintext-refused"
TLS = "gcstest.tls-minimum"
TRAINING = "gcstest.ai-training"


@pytest.fixture(scope="module")
def recorded_statuses(
    recorded_session: RecordedGcsServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], str]:
    recorded_session.load(load_projects(RECORDED))
    tmp = tmp_path_factory.mktemp("check-recorded")
    tls = tmp / "tls.yaml"
    tls.write_text("auditor-eu: {restricted_tls_versions: [TLS_VERSION_1, TLS_VERSION_1_1]}\n")
    run = scan_gcp(
        tmp,
        recorded_session.url,
        "--project",
        "auditor-eu",
        "--policies",
        str(POLICIES),
        "--tls-policy",
        str(tls),
    )
    return check_statuses(run.inventory, POLICIES, "zone=eu")


@pytest.mark.parametrize(
    ("bucket", "status"),
    [
        ("eu-analytics-region", "pass"),  # EUROPE-WEST1
        ("eu-archive-multi", "pass"),  # EU multi-region: every member in the EU
        ("eu-backup-eur4", "pass"),  # Finland + Netherlands
        ("eu-london-eur5", "fail"),  # Belgium + London
        ("eu-frankfurt-eur7", "fail"),  # London + Frankfurt
        ("eu-custom-dual", "pass"),  # EU code, dataLocations europe-west1 + europe-west4
        ("us-custom-dual", "fail"),  # US code, us-east1 + us-west1
        ("asia-media-multi", "fail"),  # ASIA multi-region
        ("eu-new-region", "error"),  # region unknown to the catalog
        ("eu-unreachable-denied", "error"),  # its own GET answered 403
        ("eu-unreachable-throttled", "pass"),  # 429 once, retried, EUROPE-WEST3
    ],
)
def test_residency_status(recorded_statuses: dict[tuple[str, str], str], bucket: str, status: str) -> None:
    assert recorded_statuses[(RESIDENCY, f"gs://{bucket}")] == status


@pytest.mark.parametrize(
    ("bucket", "status"),
    [
        ("eu-unreachable-throttled", "pass"),  # key in europe-west3
        ("eu-cmek-kms-europe", "fail"),  # KMS multi-region 'europe' has no published members
        ("eu-unreachable-denied", "error"),
    ],
)
def test_cmek_key_status(recorded_statuses: dict[tuple[str, str], str], bucket: str, status: str) -> None:
    assert recorded_statuses[(KEY_IN_ZONE, f"gs://{bucket}")] == status


def test_google_managed_buckets_are_out_of_cmek_scope(recorded_statuses: dict[tuple[str, str], str]) -> None:
    assert (KEY_IN_ZONE, "gs://eu-analytics-region") not in recorded_statuses
    assert recorded_statuses[(ENCRYPTED, "gs://eu-analytics-region")] == "pass"


def test_transport_statuses(recorded_statuses: dict[tuple[str, str], str]) -> None:
    assert recorded_statuses[(TLS, "gs://eu-analytics-region")] == "pass"  # TLS 1.0 and 1.1 denied
    assert recorded_statuses[(PLAINTEXT, "gs://eu-analytics-region")] == "fail"  # XML API takes HTTP
    assert recorded_statuses[(TLS, "gs://eu-unreachable-denied")] == "error"


def test_ai_training_label_variants(recorded_statuses: dict[tuple[str, str], str]) -> None:
    assert recorded_statuses[(TRAINING, "gs://eu-analytics-region")] == "pass"  # ai-training: opt-out
    assert recorded_statuses[(TRAINING, "gs://eu-london-eur5")] == "fail"  # ai_training: opt-in


def test_tls_is_error_without_a_tls_policy(recorded_server: RecordedGcsServer, tmp_path: Path) -> None:
    run = scan_gcp(tmp_path, recorded_server.url, "--project", "auditor-eu", "--policies", str(POLICIES))
    statuses = check_statuses(run.inventory, POLICIES, "zone=eu")
    assert statuses[(TLS, "gs://eu-analytics-region")] == "error"


def test_emulator_cases(seeded_emulator: str, tmp_path: Path) -> None:
    run = scan_gcp(tmp_path, seeded_emulator, "--project", EMULATOR_PROJECT, "--policies", str(POLICIES))
    statuses = check_statuses(run.inventory, POLICIES, "zone=eu")
    assert statuses[(KEY_IN_ZONE, "gs://cmek-in-zone")] == "pass"
    assert statuses[(KEY_IN_ZONE, "gs://cmek-outside-zone")] == "fail"
    assert statuses[(TRAINING, "gs://labels-dash")] == "fail"  # ai-training: opt-in
    assert statuses[(TRAINING, "gs://labels-underscore")] == "fail"  # ai_training: opt-in
    assert (TRAINING, "gs://plain-default") not in statuses


@pytest.fixture(scope="module")
def shipped_statuses(
    recorded_session: RecordedGcsServer, seeded_emulator: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], str]:
    """The acceptance flow: scan with the shipped policies, `auditor check --param zone=eu`."""
    recorded_session.load(load_projects(RECORDED))
    statuses: dict[tuple[str, str], str] = {}
    for endpoint, project in ((recorded_session.url, "auditor-eu"), (seeded_emulator, EMULATOR_PROJECT)):
        tmp = tmp_path_factory.mktemp(f"shipped-{project}")
        run = scan_gcp(tmp, endpoint, "--project", project)
        statuses.update(check_statuses(run.inventory, None, "zone=eu"))
    return statuses


@pytest.mark.parametrize(
    ("policy", "bucket", "status"),
    [
        ("residency.data-in-zone", "eu-analytics-region", "pass"),
        ("residency.data-in-zone", "eu-archive-multi", "pass"),
        ("residency.data-in-zone", "eu-backup-eur4", "pass"),
        ("residency.data-in-zone", "eu-london-eur5", "fail"),
        ("residency.data-in-zone", "eu-frankfurt-eur7", "fail"),
        ("residency.data-in-zone", "eu-custom-dual", "pass"),
        ("residency.data-in-zone", "us-custom-dual", "fail"),
        ("residency.data-in-zone", "asia-media-multi", "fail"),
        ("residency.data-in-zone", "eu-new-region", "error"),
        ("residency.data-in-zone", "eu-unreachable-denied", "error"),
        ("residency.data-in-zone", "eu-unreachable-throttled", "pass"),
        ("residency.key-in-zone", "eu-cmek-kms-europe", "fail"),
        ("residency.key-in-zone", "eu-unreachable-throttled", "pass"),
        ("residency.key-in-zone", "cmek-in-zone", "pass"),
        ("residency.key-in-zone", "cmek-outside-zone", "fail"),
        ("encryption.at-rest-aes256", "plain-default", "pass"),
        ("encryption.at-rest-aes256", "eu-unreachable-denied", "error"),
        ("transport.tls-minimum", "eu-analytics-region", "error"),
        ("training.ai-training-consent", "eu-analytics-region", "pass"),  # ai-training: opt-out
        ("training.ai-training-consent", "eu-london-eur5", "fail"),  # ai_training: opt-in, no consent
        ("training.ai-training-consent", "labels-dash", "pass"),  # opt-in with ai-training-consent
        ("training.ai-training-consent", "labels-underscore", "fail"),  # ai_training: opt-in, no consent
        ("training.ai-training-consent", "plain-default", "pass"),  # no label
    ],
)
def test_shipped_policies_give_the_right_status(
    shipped_statuses: dict[tuple[str, str], str], policy: str, bucket: str, status: str
) -> None:
    assert shipped_statuses[(policy, f"gs://{bucket}")] == status
