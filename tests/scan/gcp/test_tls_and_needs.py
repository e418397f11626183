"""--tls-policy (gcp.restrictTLSVersion), and collecting only the groups the policies need."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.errors import InputError
from auditor.model import UnknownCode
from auditor.scan.gcp_tls_policy import load_tls_policy

from .conftest import POLICIES
from .helpers import scan_gcp
from .recorded_server import RecordedGcsServer


def _write(tmp_path: Path, text: str, name: str = "tls.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("entry", "minimum"),
    [
        ({"restricted_tls_versions": ["TLS_VERSION_1", "TLS_VERSION_1_1"]}, "1.2"),
        ({"restricted_tls_versions": ["TLS1_0", "TLS1_1"]}, "1.2"),
        ({"restricted_tls_versions": []}, "1.0"),
        ({"spec": {"rules": [{"values": {"deniedValues": ["is:TLS_VERSION_1"]}}]}}, "1.1"),
        ({"name": "projects/123/policies/gcp.restrictTLSVersion", "spec": {"reset": True}}, "1.0"),
        (
            {
                "constraint": "constraints/gcp.restrictTLSVersion",
                "listPolicy": {"deniedValues": ["TLS_VERSION_1"]},
            },
            "1.1",
        ),
    ],
)
def test_tls_policy_forms_give_the_lowest_allowed_version(
    tmp_path: Path, entry: object, minimum: str
) -> None:
    path = _write(tmp_path, json.dumps({"proj": entry}), "tls.json")
    parsed = load_tls_policy(path)
    assert parsed["proj"].min_version == minimum
    assert parsed["proj"].problem is None


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"spec": {"inheritFromParent": True, "rules": []}}, "inheritFromParent"),
        (
            {
                "spec": {
                    "rules": [
                        {"condition": {"expression": "x"}, "values": {"deniedValues": ["TLS_VERSION_1"]}}
                    ]
                }
            },
            "conditional",
        ),
    ],
)
def test_tls_policy_that_cannot_be_evaluated_is_a_problem_not_a_version(
    tmp_path: Path, entry: object, problem: str
) -> None:
    parsed = load_tls_policy(_write(tmp_path, json.dumps({"proj": entry}), "tls.json"))
    assert parsed["proj"].min_version is None
    assert parsed["proj"].problem is not None and problem in parsed["proj"].problem


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("proj: {restricted_tls_versions: [TLS_VERSION_1_2]}\n", "unknown TLS version"),
        ("proj: {something: else}\n", "expected 'restricted_tls_versions'"),
        ("- proj\n", "maps project ids"),
    ],
)
def test_bad_tls_policy_file_is_input_error_with_location(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError) as raised:
        load_tls_policy(_write(tmp_path, text))
    assert message in str(raised.value)
    assert str(tmp_path / "tls.yaml") in str(raised.value)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "proj:\n  restricted_tls_versions:\n    - TLS_VERSION_1\n    - SSL3\n",
            4,
            "proj.restricted_tls_versions.1: unknown TLS version 'SSL3'",
        ),
        ("proj:\n  restricted_tls_versions: [TLS1_0]\n  colour: red\n", 3, "proj.colour: Extra inputs"),
        (
            "a: {restricted_tls_versions: []}\nproj:\n  name: projects/1/policies/gcp.resourceLocations\n",
            3,
            "proj.name: policy 'projects/1/policies/gcp.resourceLocations' is not gcp.restrictTLSVersion",
        ),
        (
            "proj:\n  constraint: constraints/gcp.resourceLocations\n",
            2,
            "proj.constraint: constraint 'constraints/gcp.resourceLocations' is not gcp.restrictTLSVersion",
        ),
        ("proj:\n  spec:\n    rules: {values: {}}\n", 3, "proj.spec.rules: Input should be a valid list"),
        ("a: {restricted_tls_versions: []}\nproj: [TLS_VERSION_1]\n", 2, "proj: expected 'restricted_tls"),
    ],
)
def test_tls_policy_errors_name_the_line_and_field(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as raised:
        load_tls_policy(path)
    assert raised.value.where == f"{path}:{line}"
    assert raised.value.message.startswith(message), raised.value.message


def test_tls_policy_documents_keep_their_other_keys_and_numeric_project_ids(tmp_path: Path) -> None:
    text = (
        "123456789:\n"
        "  name: projects/123456789/policies/gcp.restrictTLSVersion\n"
        "  etag: abc\n"
        "  spec: {updateTime: '2026-01-01T00:00:00Z', rules: [{values: {deniedValues: [is:TLS1_0, TLS1_1]}}]}\n"
        "legacy: {constraint: constraints/gcp.restrictTLSVersion, restoreDefault: {}, listPolicy: {allValues: DENY}}\n"
        "denied-all: {listPolicy: {allValues: DENY}}\n"
        "deny-all-v2: {spec: {rules: [{denyAll: true}]}}\n"
    )
    parsed = load_tls_policy(_write(tmp_path, text))
    assert parsed["123456789"].min_version == "1.2"
    assert parsed["123456789"].raw["etag"] == "abc"  # the evidence keeps the whole document
    assert parsed["123456789"].where == f"{tmp_path / 'tls.yaml'}:1"
    assert parsed["legacy"].min_version == "1.0" and parsed["legacy"].problem is None
    assert parsed["denied-all"].problem == "only a deny list is valid for this constraint"
    assert parsed["deny-all-v2"].problem == "denyAll is not a valid deny list for this constraint"


def test_bad_tls_policy_exits_2_through_the_cli(recorded_server: RecordedGcsServer, tmp_path: Path) -> None:
    path = _write(tmp_path, "auditor-eu: {restricted_tls_versions: [SSL3]}\n")
    result = CliRunner(env={"STORAGE_EMULATOR_HOST": recorded_server.url}).invoke(
        cli,
        [
            "scan",
            "gcp",
            "--project",
            "auditor-eu",
            "--tls-policy",
            str(path),
            "-o",
            str(tmp_path / "i.jsonl"),
        ],
    )
    assert result.exit_code == 2
    assert "unknown TLS version 'SSL3'" in result.stderr
    assert not (tmp_path / "i.jsonl").exists()


def test_tls_policy_sets_min_version_per_project(recorded_server: RecordedGcsServer, tmp_path: Path) -> None:
    path = _write(tmp_path, "auditor-eu:\n  restricted_tls_versions: [TLS_VERSION_1, TLS_VERSION_1_1]\n")
    run = scan_gcp(
        tmp_path,
        recorded_server.url,
        "--project",
        "auditor-eu",
        "--policies",
        str(POLICIES),
        "--tls-policy",
        str(path),
    )
    bucket = run.resources["eu-analytics-region"]
    assert bucket.transport is not None
    assert bucket.transport.min_tls_version == "1.2"
    assert bucket.transport.min_tls_enforced_by == "org-policy:gcp.restrictTLSVersion"
    assert bucket.unknown_reason("transport.min_tls_version") is None
    tls_evidence = [e for e in bucket.evidence if e.call == "file:gcp.restrictTLSVersion"]
    assert len(tls_evidence) == 1
    assert tls_evidence[0].response == {"restricted_tls_versions": ["TLS_VERSION_1", "TLS_VERSION_1_1"]}


def test_project_missing_from_tls_policy_stays_unknown(
    recorded_server: RecordedGcsServer, tmp_path: Path
) -> None:
    path = _write(tmp_path, "another-project: {restricted_tls_versions: [TLS_VERSION_1]}\n")
    run = scan_gcp(
        tmp_path,
        recorded_server.url,
        "--project",
        "auditor-eu",
        "--policies",
        str(POLICIES),
        "--tls-policy",
        str(path),
    )
    unknown = run.resources["eu-analytics-region"].unknown_reason("transport.min_tls_version")
    assert unknown is not None and unknown.code is UnknownCode.NOT_SUPPORTED
    assert "'auditor-eu' is not in the --tls-policy file" in unknown.reason


def test_only_the_needed_groups_are_collected(recorded_server: RecordedGcsServer, tmp_path: Path) -> None:
    policy = _write(
        tmp_path,
        "policies:\n"
        "  - id: only.tags\n"
        "    title: t\n"
        "    description: d\n"
        "    severity: low\n"
        "    condition: {attribute: tags.ai-training, op: exists, value: true}\n",
        "tags-only.yaml",
    )
    run = scan_gcp(tmp_path, recorded_server.url, "--project", "auditor-eu", "--policies", str(policy))
    bucket = run.resources["eu-analytics-region"]
    assert bucket.tags == {"data-class": "personal", "ai-training": "opt-out"}
    assert (bucket.location, bucket.encryption, bucket.transport, bucket.access) == (None, None, None, None)
    assert bucket.unknown == {}
    assert bucket.evidence[0].attributes == ["tags"]
    assert "notes" not in (bucket.evidence[0].request or {})
    # Nothing but the listing pages (and the two unreachable buckets' own GETs).
    assert run.operations() == {"storage:buckets.list": 4, "storage:buckets.get": 2}


def test_no_needed_group_lists_identity_only(recorded_server: RecordedGcsServer, tmp_path: Path) -> None:
    policy = _write(
        tmp_path,
        "policies:\n"
        "  - id: only.name\n"
        "    title: t\n"
        "    description: d\n"
        "    severity: low\n"
        "    condition: {attribute: name, op: exists, value: true}\n",
        "name-only.yaml",
    )
    run = scan_gcp(tmp_path, recorded_server.url, "--project", "auditor-eu", "--policies", str(policy))
    assert len(run.resources) == 12
    denied = run.resources["eu-unreachable-denied"]
    assert denied.unknown == {} and denied.evidence == []  # no GET when no group is needed
    assert run.calls("storage:buckets.get") == 0
    assert all(r.location is None and r.tags is None for r in run.resources.values())
