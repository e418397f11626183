"""`auditor scan cloudformation` -> `auditor check --param zone=eu`: the verdicts each fixture declares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from auditor.cli import cli
from auditor.inventory import read_inventory
from auditor.model import StorageResource
from auditor.scan import aws
from auditor.scan.cloudformation import S3_DEFAULT_ENCRYPTION_SOURCE
from tests.conftest import REPO

FIXTURES = Path("fixtures/iac/cloudformation")  # relative to the repository, as a CI job names them
RESIDENCY = "residency.data-in-zone"
KEY_IN_ZONE = "residency.key-in-zone"
AT_REST = "encryption.at-rest-aes256"
CMK = "encryption.customer-managed-key"
PLAINTEXT = "transport.plaintext-refused"
TLS = "transport.tls-minimum"
TRAINING = "training.ai-training-consent"
POLICIES = (RESIDENCY, KEY_IN_ZONE, AT_REST, CMK, PLAINTEXT, TLS, TRAINING)


@pytest.fixture(autouse=True)
def _in_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


def scan(tmp_path: Path, *args: str) -> tuple[Result, Path]:
    output = tmp_path / "i.jsonl"
    result = CliRunner().invoke(cli, ["scan", "cloudformation", *args, "-o", str(output)])
    return result, output


def check(inventory: Path, *params: str) -> dict[str, Any]:
    args = ["check", "--inventory", str(inventory), "--param", "zone=eu", *params, "--format", "json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 1, 3), (result.output, result.exception)
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def verdicts(document: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Resource name -> policy -> status ('none' when the policy gave no finding: out of scope)."""
    table: dict[str, dict[str, str]] = {}
    for finding in document["findings"]:
        table.setdefault(finding["resource"]["name"], dict.fromkeys(POLICIES, "none"))
        table[finding["resource"]["name"]][finding["policy_id"]] = finding["status"]
    return table


def records(inventory: Path) -> dict[str, StorageResource]:
    return {r.name: r for r in read_inventory(inventory) if isinstance(r, StorageResource)}


def line_of(path: Path, text: str) -> int:
    return (REPO / path).read_text().splitlines().index(text) + 1


def row(*statuses: str) -> dict[str, str]:
    return dict(zip(POLICIES, statuses, strict=True))


#                       residency  key-in-zone  at-rest  cmk      plaintext  tls     training
DATA_LAKE_PROD = {
    "acme-raw-prod-eu-west-1": row("pass", "pass", "pass", "error", "pass", "pass", "pass"),
    "acme-curated-prod": row("pass", "pass", "pass", "pass", "fail", "pass", "pass"),
    "AccessLogsBucket": row("pass", "none", "pass", "none", "pass", "pass", "fail"),
    "acme-archive-prod": row("error", "none", "pass", "none", "fail", "pass", "pass"),
    "acme-partner-export": row("pass", "error", "pass", "error", "fail", "pass", "pass"),
}
REPORTING = {
    "acme-reports-eu": row("pass", "none", "pass", "none", "pass", "pass", "pass"),
    "acme-bi-shared-444455556666": row("pass", "error", "error", "error", "fail", "pass", "pass"),
    "ScratchBucket": row("pass", "pass", "pass", "error", "fail", "pass", "pass"),
}
DR_US_EAST_1 = {
    "acme-orders-dr": row("fail", "fail", "pass", "error", "fail", "pass", "pass"),
    "acme-orders-dr-replica": row("fail", "none", "pass", "none", "fail", "pass", "pass"),
}


@pytest.fixture
def data_lake(tmp_path: Path) -> Path:
    result, inventory = scan(
        tmp_path,
        str(FIXTURES / "data-lake.yaml"),
        "--region",
        "eu-west-1",
        "--parameters",
        str(FIXTURES / "data-lake.parameters.json"),
    )
    assert result.exit_code == 0, result.output
    return inventory


def test_yaml_template_with_parameters_gives_each_policy_its_verdict(data_lake: Path) -> None:
    assert verdicts(check(data_lake)) == DATA_LAKE_PROD


def test_json_template_with_a_plain_parameter_map(tmp_path: Path) -> None:
    result, inventory = scan(
        tmp_path,
        str(FIXTURES / "reporting.json"),
        "--region",
        "eu-west-1",
        "--account",
        "444455556666",
        "--parameters",
        str(FIXTURES / "reporting.parameters.json"),
    )
    assert result.exit_code == 0, result.output
    assert verdicts(check(inventory)) == REPORTING
    found = records(inventory)
    shared = found["acme-bi-shared-444455556666"]
    assert shared.account == "444455556666" and shared.id == "arn:aws:s3:::acme-bi-shared-444455556666"
    assert shared.unknown["encryption"].code == "not_known_until_apply"
    assert "Fn::ImportValue" in shared.unknown["encryption"].reason
    scratch = found["ScratchBucket"]  # `${AWS::StackName}-scratch` without --stack-name
    assert scratch.id == f"{FIXTURES / 'reporting.json'}#ScratchBucket"
    assert "--stack-name" in scratch.evidence[0].response["auditor_note"]
    assert scratch.unknown["tags.data-class"].code == "not_known_until_apply"
    assert found["acme-reports-eu"].access is not None
    assert found["acme-reports-eu"].access.public_access_blocked is False  # RestrictPublicBuckets "false"


def test_a_stack_in_us_east_1_and_its_replica(tmp_path: Path) -> None:
    result, inventory = scan(
        tmp_path,
        str(FIXTURES / "dr-us-east-1.yaml"),
        "--region",
        "us-east-1",
        "--parameters",
        str(FIXTURES / "dr-us-east-1.parameters.json"),
    )
    assert result.exit_code == 0, result.output
    assert verdicts(check(inventory)) == DR_US_EAST_1
    orders = records(inventory)["acme-orders-dr"]
    assert orders.location is not None and orders.encryption is not None
    assert [(r.region, r.target) for r in orders.location.replicas] == [
        ("us-east-1", "arn:aws:s3:::acme-orders-dr-replica")
    ]
    assert orders.encryption.key_location == "us-east-1"
    assert orders.encryption.key_management == "customer-managed"


def test_defaults_decide_conditions_and_names(tmp_path: Path) -> None:
    result, inventory = scan(tmp_path, str(FIXTURES / "data-lake.yaml"), "--region", "eu-west-1")
    assert result.exit_code == 0, result.output
    # Environment defaults to dev: CreateLogs is false, so the access-log bucket is not created.
    assert sorted(records(inventory)) == [
        "acme-archive-dev",
        "acme-curated-dev",
        "acme-partner-export-dev",
        "acme-raw-dev-eu-west-1",
    ]


def test_an_undecidable_condition_is_audited_with_a_note(data_lake: Path) -> None:
    archive = records(data_lake)["acme-archive-prod"]
    note = archive.evidence[0].response["auditor_note"]
    assert "InDataAccount" in note and "--account" in note and "audited as if created" in note
    assert archive.unknown["location.regions"].partial == "members"
    assert archive.location is not None and archive.location.regions == ["eu-west-1"]


def test_the_tls_floor_of_a_bucket_policy_raises_the_minimum(data_lake: Path) -> None:
    table = verdicts(check(data_lake, "--param", "min_tls=1.3"))
    assert table["acme-curated-prod"][TLS] == "pass"  # Deny s3:TlsVersion < 1.3
    assert table["acme-raw-prod-eu-west-1"][TLS] == "fail"  # the provider floor, 1.2


def test_records_read_as_the_live_scan_records_s3(data_lake: Path) -> None:
    found = records(data_lake)
    raw = found["acme-raw-prod-eu-west-1"]
    assert (raw.provider, raw.kind, raw.origin, raw.account) == ("aws", "bucket", "cloudformation", "unknown")
    assert raw.transport is not None and raw.transport.provider_floor == aws.TLS_FLOOR
    assert raw.transport.plaintext_refused_by == "bucket-policy:Sid=DenyInsecureTransport"
    assert raw.encryption is not None and raw.encryption.key_location == "eu-west-1"
    assert raw.unknown["encryption.key_id"].code == "not_known_until_apply"
    logs = found["AccessLogsBucket"]  # no BucketEncryption: S3's documented default
    assert logs.encryption is not None and logs.encryption.provider_default is True
    assert (logs.encryption.scheme, logs.encryption.algorithm) == ("SSE-S3", "AES256")
    assert (
        logs.encryption.source == S3_DEFAULT_ENCRYPTION_SOURCE
        and S3_DEFAULT_ENCRYPTION_SOURCE in aws.SSE_DEFAULT_NOTE
    )
    assert (
        logs.transport is not None and logs.transport.plaintext_refused is True
    )  # generated name, stand-in ARN
    curated = found["acme-curated-prod"]
    assert curated.encryption is not None
    assert (curated.encryption.scheme, curated.encryption.key_id) == ("DSSE-KMS", "alias/acme-data-prod")


def test_evidence_points_at_the_template_line(data_lake: Path) -> None:
    template = FIXTURES / "data-lake.yaml"
    document = check(data_lake)
    finding = next(
        f
        for f in document["findings"]
        if f["policy_id"] == PLAINTEXT and f["resource"]["name"] == "acme-curated-prod"
    )
    locations = {e["location"]["address"]: e["location"] for e in finding["evidence"]}
    assert locations["CuratedBucket"] == {
        "file": str(template),
        "line": line_of(template, "  CuratedBucket:"),
        "address": "CuratedBucket",
    }
    assert locations["CuratedBucketPolicy"]["line"] == line_of(template, "  CuratedBucketPolicy:")
    raw = records(data_lake)["acme-raw-prod-eu-west-1"]
    by_address = {e.location.address: e for e in raw.evidence if e.location is not None}
    assert by_address["DataKey"].location is not None
    assert by_address["DataKey"].location.line == line_of(template, "  DataKey:")
    assert by_address["RawBucket"].request == {
        "logical_id": "RawBucket",
        "type": "AWS::S3::Bucket",
        "region": "eu-west-1",
        "stack_name": None,
    }
    assert by_address["RawBucket"].response["BucketName"] == {
        "Fn::Sub": "acme-raw-${Environment}-${AWS::Region}"
    }


def test_json_evidence_lines(tmp_path: Path) -> None:
    template = FIXTURES / "reporting.json"
    result, inventory = scan(
        tmp_path,
        str(template),
        "--region",
        "eu-west-1",
        "--parameters",
        str(FIXTURES / "reporting.parameters.json"),
    )
    assert result.exit_code == 0, result.output
    reports = records(inventory)["acme-reports-eu"]
    assert reports.evidence[0].location is not None
    assert reports.evidence[0].location.line == line_of(template, '    "ReportsBucket": {')
    key = records(inventory)["ScratchBucket"].unknown["encryption.key_id"]
    declared = '"KMSMasterKeyID": {"Fn::GetAtt": ["ReportsKey", "Arn"]}'
    lines = (REPO / template).read_text().splitlines()
    scratch_key = max(i for i, text in enumerate(lines, 1) if declared in text)  # the ScratchBucket's
    assert f"{template}:{scratch_key})" in key.reason


BAD = [
    ("bad/unknown-tag.yaml", 6, "unknown intrinsic function tag '!Frobnicate'"),
    ("bad/truncated.json", 14, "invalid JSON: Unterminated string"),
    ("bad/garbled.yaml", 6, "invalid YAML: found unexpected end of stream"),
    ("bad/not-a-template.json", 1, "not a CloudFormation template: no 'Resources' mapping"),
]


@pytest.mark.parametrize(("name", "line", "message"), BAD)
def test_bad_input_is_exit_2_with_one_line_and_nothing_written(
    tmp_path: Path, name: str, line: int, message: str
) -> None:
    result, inventory = scan(tmp_path, str(FIXTURES / name), "--region", "eu-west-1")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {FIXTURES / name}:{line}: {message}")
    assert not inventory.exists()
    assert list(tmp_path.iterdir()) == []


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BUCKET = "Resources:\n  B:\n    Type: AWS::S3::Bucket\n"


@pytest.mark.parametrize(
    ("files", "args", "where", "message"),
    [
        (
            {
                "t.json": '{"Resources": {"B": {"Type": "AWS::S3::Bucket",\n "Properties": {"BucketName": {"Fn::Frob": "x"}}}}}'
            },
            [],
            "t.json:2",
            "unknown intrinsic function 'Fn::Frob'",
        ),
        (
            {"t.json": '{"Resources": {},\n "Resources": {}}'},
            [],
            "t.json:2",
            "invalid JSON: duplicate key 'Resources'",
        ),
        (
            {"t.yaml": BUCKET, "p.json": '[\n {"ParameterKey": "Nope", "ParameterValue": "x"}]'},
            ["--parameters", "p.json"],
            "p.json:2",
            "parameter 'Nope' is not declared by any template",
        ),
        (
            {
                "t.yaml": "Parameters:\n  Env:\n    Type: String\n    AllowedValues: [dev, prod]\n" + BUCKET,
                "p.json": '{"Env": "qa"}',
            },
            ["--parameters", "p.json"],
            "t.yaml:2",
            "parameter 'Env' is 'qa'",
        ),
        (
            {"t.yaml": BUCKET + "    Properties:\n      BucketName: !Ref Missing\n"},
            [],
            "t.yaml:5",
            "Ref 'Missing': no such parameter or resource",
        ),
        (
            {
                "t.yaml": "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                + BUCKET
            },
            [],
            "t.yaml:",
            "aliases expand the document by more than",
        ),
        ({"t.yaml": BUCKET}, ["--timeout", "5"], "--timeout", "cloudformation scans do not use --timeout"),
        ({"t.yaml": BUCKET}, ["--account", "12"], "--account", "'12' is not a 12-digit AWS account id"),
    ],
)
def test_more_bad_input(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, str],
    args: list[str],
    where: str,
    message: str,
) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    monkeypatch.chdir(tmp_path)
    template = next(name for name in files if name.startswith("t."))
    result = CliRunner().invoke(
        cli, ["scan", "cloudformation", template, "--region", "eu-west-1", *args, "-o", "i.jsonl"]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {where}"), result.stderr
    assert message in result.stderr
    assert not (tmp_path / "i.jsonl").exists()


def test_a_macro_or_a_loop_is_a_coverage_gap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    template = write(
        tmp_path,
        "t.yaml",
        "Transform: AWS::Include\n"
        + BUCKET
        + "  Fn::ForEach::Buckets:\n    - Name\n    - [a, b]\n    - {}\n",
    )
    monkeypatch.chdir(tmp_path)
    result, inventory = scan(tmp_path, template.name, "--region", "eu-west-1")
    assert result.exit_code == 0, result.output
    gaps = [r for r in read_inventory(inventory) if not isinstance(r, StorageResource)]
    assert [(g.scope, g.code) for g in gaps] == [
        ("template:t.yaml:1", "not_supported"),
        ("template:t.yaml:5", "not_supported"),
    ]
    assert check(inventory)["run"]["coverage"]["gaps"]


def test_the_auditor_yaml_section() -> None:
    from auditor.scan.cloudformation_source import SOURCE, CloudFormationSection

    section = SOURCE.parse({"templates": ["t.yaml"], "region": "eu-west-1", "account": "444455556666"})
    assert isinstance(section, CloudFormationSection)
    assert [unit[0] for unit in section.units() if isinstance(unit, tuple)] == ["444455556666"]
    with pytest.raises(ValueError, match="not an AWS region code"):
        CloudFormationSection(templates=[Path("t.yaml")], region="Europe").check()
    with pytest.raises(ValueError, match="do not use --timeout"):
        CloudFormationSection(templates=[Path("t.yaml")], region="eu-west-1", options={"timeout": 5}).check()
