"""The AI side of the AWS scanner: Bedrock inference profiles, agents, invocation logging and the AI
services opt-out policy, against recorded answers (tests/scan/aws/bedrock_server.py) reached through
boto3's per-service endpoint variables, with moto_server answering STS, EC2 and S3.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

from auditor.cli import cli
from auditor.inventory import read_inventory
from auditor.model import ANY_REGION, CoverageGap, StorageResource, UnknownCode, attribute_paths
from auditor.permissions import permission_table
from auditor.policy.loader import shipped_policies_dir
from auditor.policy.zones import ZoneCatalog
from auditor.scan.aws import AwsScanner
from auditor.scan.aws_ai import (
    AI_OPT_OUT_POLICIES,
    AWS_AI_KINDS,
    BEDROCK_DATA_PROTECTION,
    opt_out_training,
    processing_scope,
    profile_regions,
)
from auditor.scan.aws_calls import BODY_LIMIT
from auditor.scan.base import AttributeNeeds

from .bedrock_server import RECORDED, BedrockServer, Fault
from .estate import http_answer
from .helpers import scoped_policies, storage_policies

EU_REGIONS = ("eu-west-1", "us-east-1", "eu-central-1")
SHIPPED = shipped_policies_dir()
OPT_OUT_POLICIES: dict[str, Any] = json.loads(
    (RECORDED / "opt-out-policies.json").read_text(encoding="utf-8")
)
SETTINGS = "ai-services-opt-out-policy"
FAST: dict[str, Any] = {"max_attempts": 2, "connect_timeout": 2.0, "read_timeout": 5.0}


@dataclass
class AiScan:
    """The records of one scan by name, its gaps, and the scanner (for its call counts)."""

    scanner: AwsScanner
    records: dict[str, StorageResource] = field(default_factory=dict)
    gaps: list[CoverageGap] = field(default_factory=list)

    def gap(self, scope: str) -> CoverageGap:
        (found,) = [g for g in self.gaps if g.scope == scope]
        return found


def ai_needs(paths: frozenset[str] | None = None, kinds: tuple[str, ...] = AWS_AI_KINDS) -> AttributeNeeds:
    """Needs of policies scoped to AI kinds (default: every attribute of every AWS AI kind)."""
    read = paths if paths is not None else attribute_paths()
    return AttributeNeeds(read, {kind: read for kind in kinds})


def scan(
    catalog: ZoneCatalog,
    needs: AttributeNeeds | None = None,
    regions: Iterator[str] | tuple[str, ...] | None = EU_REGIONS,
    **options: Any,
) -> AiScan:
    """Scan with `needs` (default: every AI attribute) in `regions` (None: the enabled regions)."""
    settings = {**FAST, **options}
    scanner = AwsScanner(needs or ai_needs(), catalog, 4, regions=regions, **settings)
    result = AiScan(scanner)
    for record in scanner.scan():
        if isinstance(record, CoverageGap):
            result.gaps.append(record)
        else:
            assert record.name not in result.records, f"{record.name} yielded twice"
            result.records[record.name] = record
    return result


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def scan_and_check(
    tmp_path: Path, *args: str
) -> tuple[dict[str, StorageResource], dict[tuple[str, str], str]]:
    """`auditor scan aws` then `auditor check --param zone=eu`: records by name, status by (policy, name)."""
    inventory = tmp_path / "ai.jsonl"
    result = invoke("scan", "aws", "--output", str(inventory), "--no-progress", *args)
    assert result.exit_code == 0, result.output
    checked = invoke("check", "--inventory", str(inventory), "--param", "zone=eu", "--format", "json")
    assert checked.exit_code in (0, 1, 3), checked.output
    statuses = {
        (f["policy_id"], f["resource"]["name"]): f["status"] for f in json.loads(checked.stdout)["findings"]
    }
    records = {r.name: r for r in read_inventory(inventory) if isinstance(r, StorageResource)}
    return records, statuses


# --- the recorded estate ----------------------------------------------------------------------------


def test_recorded_estate_becomes_one_record_per_resource(
    bedrock: BedrockServer, catalog: ZoneCatalog
) -> None:
    result = scan(catalog, AttributeNeeds.from_policy_paths([SHIPPED]))
    assert result.gaps == []
    assert sorted(result.records) == sorted(
        [
            "support-haiku-eu",
            "eu-claude-sonnet-4",
            "global-sonnet",
            "support-bot",
            "claims-bot",
            "research-assistant",
            "sales-assistant",
            "model-invocation-logging/eu-west-1",
            SETTINGS,
        ]
    )
    processing = {
        name: (r.processing.scope, r.processing.regions)
        for name, r in result.records.items()
        if r.processing is not None
    }
    assert processing == {
        # the regions of the models' ARNs, never the name: "eu-claude-sonnet-4" routes to London too
        "support-haiku-eu": ("geography", ["eu-west-1", "eu-west-3"]),
        "eu-claude-sonnet-4": (
            "geography",
            ["eu-central-1", "eu-north-1", "eu-west-1", "eu-west-2", "eu-west-3"],
        ),
        "global-sonnet": ("global", [ANY_REGION]),  # a model ARN with an empty region: any region
        "support-bot": ("region", ["eu-west-1"]),  # a model id: the agent's own region
        "sales-assistant": ("geography", ["us-east-1", "us-east-2", "us-west-2"]),  # us. profile, resolved
        # a foundation-model ARN in Frankfurt, and a prompt override on the global application profile
        "research-assistant": ("global", [ANY_REGION, "eu-central-1"]),
    }
    profile = result.records["support-haiku-eu"]
    assert profile.kind == "ai-inference-profile" and profile.id.endswith(
        "application-inference-profile/k2x8d1m4q7zt"
    )
    assert profile.processing is not None and profile.processing.raw == profile.id
    assert result.records["sales-assistant"].processing.raw == "us.anthropic.claude-3-5-sonnet-20241022-v2:0"  # type: ignore[union-attr]
    # Bedrock's documented default: it does not train on prompts, with the source and when checked.
    for name in ("support-haiku-eu", "global-sonnet", "support-bot", "claims-bot"):
        training = result.records[name].training
        assert training is not None and training.provider_may_train is False
        assert (training.decided_by, training.source) == ("provider-default", BEDROCK_DATA_PROTECTION)
        assert training.as_of is not None

    claims = result.records["claims-bot"]  # its eu. profile cannot be resolved: GetInferenceProfile denied
    assert claims.processing is None and claims.unknown["processing"].code == UnknownCode.ACCESS_DENIED
    denied = [e for e in claims.evidence if e.call == "bedrock:GetInferenceProfile"]
    assert len(denied) == 1 and denied[0].error and "AccessDeniedException" in denied[0].error

    log = result.records["model-invocation-logging/eu-west-1"]
    assert log.kind == "ai-invocation-log" and log.location is not None
    assert log.location.regions == ["eu-west-1"] and log.location.type == "region"
    assert log.location.raw is not None and "s3://bedrock-invocation-logs-eu/invocations" in log.location.raw
    assert "logs:/aws/bedrock/invocations" in log.location.raw
    (logged,) = log.evidence  # the answer, and the rule behind `location` with its source
    assert logged.call == "bedrock:GetModelInvocationLoggingConfiguration"
    assert "model-invocation-logging.html" in logged.response["auditor_note"]

    settings = result.records[SETTINGS]
    assert settings.kind == "ai-settings" and settings.training is not None
    assert (settings.training.provider_may_train, settings.training.decided_by) == (
        False,
        "organization-policy",
    )
    assert settings.training.setting is not None and "optOut" in settings.training.setting

    # GetAgent's evidence keeps the model, never the agent's instructions.
    support = result.records["support-bot"]
    (get_agent,) = [e for e in support.evidence if e.call == "bedrock-agent:GetAgent"]
    assert get_agent.response["agent"]["foundationModel"] == "anthropic.claude-3-haiku-20240307-v1:0"
    assert "instruction" not in json.dumps(get_agent.response)
    assert support.state == "prepared"
    # One GetInferenceProfile per distinct profile and region; one logging call per region.
    assert bedrock.by_region[("bedrock:GetInferenceProfile", "us-east-1")] == 1
    assert bedrock.by_region[("bedrock:GetInferenceProfile", "eu-west-1")] == 2
    assert result.scanner.calls.snapshot()["bedrock:GetModelInvocationLoggingConfiguration"] == 3


def test_verdicts_through_the_cli(bedrock: BedrockServer, tmp_path: Path) -> None:
    records, statuses = scan_and_check(tmp_path, "--regions", "eu-west-1,us-east-1")
    expected = {
        ("residency.processing-in-zone", "support-haiku-eu"): "pass",
        ("residency.processing-in-zone", "eu-claude-sonnet-4"): "fail",  # eu-west-2 is London
        ("residency.processing-in-zone", "global-sonnet"): "fail",
        ("residency.processing-in-zone", "support-bot"): "pass",
        ("residency.processing-in-zone", "sales-assistant"): "fail",
        ("residency.processing-in-zone", "claims-bot"): "error",
        ("residency.processing-in-zone", "research-assistant"): "fail",
        ("residency.data-in-zone", "model-invocation-logging/eu-west-1"): "pass",
        ("training.provider-opt-out", SETTINGS): "pass",
        ("training.provider-opt-out", "support-haiku-eu"): "pass",
        ("training.provider-opt-out", "claims-bot"): "pass",
    }
    assert {key: statuses.get(key) for key in expected} == expected
    # No invocation logging configured in us-east-1: no resource, and no finding.
    assert "model-invocation-logging/us-east-1" not in records
    assert all(record.kind != "bucket" for record in records.values())


@pytest.mark.parametrize(
    ("variant", "status", "may_train", "decided_by"),
    [
        ("opted-out", "pass", False, "organization-policy"),
        ("service-opts-in", "fail", True, "organization-policy"),
        ("no-default", "fail", True, "provider-default"),
        ("no-effective-policy", "fail", True, "provider-default"),
        ("no-organization", "fail", True, "provider-default"),
        ("operators-left-in", "error", None, None),
        ("denied", "error", None, None),
    ],
)
def test_opt_out_policy_verdicts(
    variant: str,
    status: str,
    may_train: bool | None,
    decided_by: str | None,
    bedrock: BedrockServer,
    tmp_path: Path,
) -> None:
    if variant == "denied":
        bedrock.estate.faults.append(Fault("organizations:DescribeEffectivePolicy", status=400))
    else:
        bedrock.estate.effective_policy = OPT_OUT_POLICIES[variant]
    policies = scoped_policies(tmp_path / "settings", ("ai-settings",), SHIPPED / "training.yaml")
    records, statuses = scan_and_check(tmp_path, "--policies", str(policies))
    assert list(records) == [SETTINGS]  # ai-settings only: no Bedrock listing at all
    assert bedrock.ai_requests() == 1
    assert statuses[("training.provider-opt-out", SETTINGS)] == status
    training = records[SETTINGS].training
    if may_train is None:
        code = UnknownCode.ACCESS_DENIED if variant == "denied" else UnknownCode.ERROR
        assert training is None and records[SETTINGS].unknown["training"].code == code
        return
    assert training is not None and (training.provider_may_train, training.decided_by) == (
        may_train,
        decided_by,
    )
    if decided_by == "provider-default":  # the AWS default, documented: with its source and date
        assert training.source == AI_OPT_OUT_POLICIES and training.as_of is not None


# --- paging, retries, failures ------------------------------------------------------------------------


def test_every_listing_pages_with_next_token(bedrock: BedrockServer, catalog: ZoneCatalog) -> None:
    bedrock.estate.page_size = 1
    result = scan(catalog, regions=("eu-west-1",))
    assert result.gaps == []
    kinds = sorted(r.kind for r in result.records.values())
    assert kinds.count("ai-inference-profile") == 3 and kinds.count("ai-agent") == 3
    assert bedrock.by_region[("bedrock:ListInferenceProfiles", "eu-west-1")] == 3
    assert bedrock.by_region[("bedrock-agent:ListAgents", "eu-west-1")] == 3


def test_throttling_answered_by_retries(bedrock: BedrockServer, catalog: ZoneCatalog) -> None:
    bedrock.estate.faults += [
        Fault(
            "bedrock:ListInferenceProfiles",
            429,
            "ThrottlingException",
            region="eu-west-1",
            key="1",
            times=2,
            retry_after="0",
        ),
        Fault("organizations:DescribeEffectivePolicy", 400, "TooManyRequestsException", times=1),
    ]
    result = scan(catalog, regions=("eu-west-1",), max_attempts=3)
    assert [g.scope for g in result.gaps] == []
    assert {"support-haiku-eu", "eu-claude-sonnet-4", "global-sonnet"} <= set(result.records)
    assert result.records[SETTINGS].training is not None
    # page 1 three times (two 429s), page 2 once
    assert bedrock.by_region[("bedrock:ListInferenceProfiles", "eu-west-1")] == 4


def test_throttled_after_retries_is_a_gap_for_that_listing_alone(
    bedrock: BedrockServer, catalog: ZoneCatalog
) -> None:
    bedrock.estate.faults.append(
        Fault("bedrock:ListInferenceProfiles", 429, "ThrottlingException", region="eu-west-1")
    )
    result = scan(catalog, regions=("eu-west-1",), max_attempts=2)
    gap = result.gap("region:eu-west-1:bedrock-inference-profiles")
    assert gap.code == UnknownCode.THROTTLED and "ThrottlingException" in gap.reason
    assert gap.evidence and gap.evidence[0].call == "bedrock:ListInferenceProfiles"
    assert not any(r.kind == "ai-inference-profile" for r in result.records.values())
    # the agents and the logging of the same region are still scanned
    assert {"support-bot", "model-invocation-logging/eu-west-1"} <= set(result.records)


def test_denied_listing_is_a_gap(bedrock: BedrockServer, catalog: ZoneCatalog) -> None:
    bedrock.estate.faults.append(Fault("bedrock-agent:ListAgents", region="eu-west-1"))
    result = scan(catalog, regions=("eu-west-1",))
    gap = result.gap("region:eu-west-1:bedrock-agents")
    assert gap.code == UnknownCode.ACCESS_DENIED and "bedrock:ListAgents" in gap.reason
    assert not any(r.kind == "ai-agent" for r in result.records.values())
    assert "support-haiku-eu" in result.records


def test_a_failed_second_page_keeps_the_first(bedrock: BedrockServer, catalog: ZoneCatalog) -> None:
    bedrock.estate.faults.append(
        Fault("bedrock:ListInferenceProfiles", 500, "InternalServerException", region="eu-west-1", key="2")
    )
    result = scan(catalog, regions=("eu-west-1",), max_attempts=1)
    gap = result.gap("region:eu-west-1:bedrock-inference-profiles")
    # a JSON service's 500 is the server's error, never "not well-formed XML" (S3's quirk)
    assert gap.code == UnknownCode.ERROR and gap.reason.startswith("InternalServerException")
    profiles = sorted(n for n, r in result.records.items() if r.kind == "ai-inference-profile")
    assert profiles == ["eu-claude-sonnet-4", "support-haiku-eu"]


@pytest.mark.parametrize(
    ("operation", "body", "scope", "reason"),
    [
        (
            "bedrock:ListInferenceProfiles",
            '{"inferenceProfileSummaries": [{"inferenceProf',
            "bedrock-inference-profiles",
            "malformed answer",
        ),
        (
            "bedrock:ListInferenceProfiles",
            "{}",
            "bedrock-inference-profiles",
            "has no inferenceProfileSummaries",
        ),
        ("bedrock-agent:ListAgents", "", "bedrock-agents", "malformed answer: empty body"),
        (
            "bedrock-agent:ListAgents",
            '{"agentSummaries": [{"agentName": "nameless"}]}',
            "bedrock-agents",
            "an agent without an agentId",
        ),
        # an empty body is not "no logging configuration" (that is `{}`)
        ("bedrock:GetModelInvocationLoggingConfiguration", "", "bedrock-invocation-logging", "empty body"),
        (
            "bedrock:GetModelInvocationLoggingConfiguration",
            '{"loggingConfig": {"s3Config": {}}}',
            "bedrock-invocation-logging",
            None,
        ),
    ],
)
def test_broken_answers_are_never_an_empty_estate(
    operation: str, body: str, scope: str, reason: str | None, bedrock: BedrockServer, catalog: ZoneCatalog
) -> None:
    bedrock.estate.faults.append(Fault(operation, 200, region="eu-west-1", body=body))
    result = scan(catalog, regions=("eu-west-1",), max_attempts=1)
    if reason is None:  # a configuration whose destination names no bucket: the record, location unknown
        log = result.records["model-invocation-logging/eu-west-1"]
        assert log.location is None and log.unknown["location"].code == UnknownCode.ERROR
        assert "s3Config has no bucketName" in log.unknown["location"].reason
        return
    gap = result.gap(f"region:eu-west-1:{scope}")
    assert gap.code == UnknownCode.ERROR and reason in gap.reason
    (evidence,) = gap.evidence
    assert evidence.error
    if isinstance(evidence.response, dict) and "body" in evidence.response:  # the raw answer, bounded
        assert evidence.response["http_status"] == 200 and len(evidence.response["body"]) <= BODY_LIMIT


def test_garbled_effective_policy_leaves_training_unknown(
    bedrock: BedrockServer, catalog: ZoneCatalog
) -> None:
    bedrock.estate.faults.append(Fault("organizations:DescribeEffectivePolicy", 200, body="{}"))
    result = scan(catalog, ai_needs(kinds=("ai-settings",)))
    settings = result.records[SETTINGS]
    assert settings.training is None and settings.unknown["training"].code == UnknownCode.ERROR
    assert "EffectivePolicy.PolicyContent" in settings.unknown["training"].reason


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault("bedrock-agent:GetAgent", region="eu-west-1", key="AGNTHAIKU1"), UnknownCode.ACCESS_DENIED),
        (
            Fault("bedrock-agent:GetAgent", 429, "ThrottlingException", region="eu-west-1", key="AGNTHAIKU1"),
            UnknownCode.THROTTLED,
        ),
        (
            Fault(
                "bedrock:GetInferenceProfile",
                404,
                "ResourceNotFoundException",
                region="eu-west-1",
                key="g4h7j2k5l8mn",
            ),
            UnknownCode.ERROR,
        ),
    ],
)
def test_an_unreadable_agent_model_leaves_processing_unknown(
    fault: Fault, code: UnknownCode, bedrock: BedrockServer, catalog: ZoneCatalog
) -> None:
    bedrock.estate.faults.append(fault)
    result = scan(catalog, ai_needs(kinds=("ai-agent",)), regions=("eu-west-1",), max_attempts=2)
    assert result.gaps == []
    name = "support-bot" if fault.key == "AGNTHAIKU1" else "research-assistant"
    agent = result.records[name]
    if name == "support-bot":
        assert agent.processing is None and agent.unknown["processing"].code == code
        return
    # the prompt override's profile is unknown, its foundation model's region a known member
    assert agent.processing is not None and agent.processing.regions == ["eu-central-1"]
    assert agent.processing.scope is None
    regions = agent.unknown["processing.regions"]
    assert (regions.code, regions.partial) == (code, "members")


# --- regions ----------------------------------------------------------------------------------------


def test_default_regions_are_the_enabled_ones(bedrock: BedrockServer, catalog: ZoneCatalog) -> None:
    listed = boto3.client("ec2", region_name="us-east-1").describe_regions()["Regions"]
    enabled = {r["RegionName"] for r in listed if r.get("OptInStatus") != "not-opted-in"}
    assert len(enabled) < len(listed), "moto lists regions not opted in: they must be skipped"
    result = scan(catalog, ai_needs(kinds=("ai-invocation-log",)), regions=None)
    assert result.gaps == []
    called = {
        region for (operation, region), n in bedrock.by_region.items() if operation.startswith("bedrock:")
    }
    assert called == enabled
    assert list(result.records) == ["model-invocation-logging/eu-west-1"]


UNAUTHORIZED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>UnauthorizedOperation</Code>'
    b"<Message>You are not authorized to perform this operation.</Message></Error></Errors>"
    b"<RequestID>5e3bd0f4-6cbb-4b1a-9f41-0c8a1e6f2a11</RequestID></Response>"
)


@pytest.mark.parametrize("regions", [None, ("eu-west-1",)])
def test_unreadable_region_list_is_a_gap(
    regions: tuple[str, ...] | None, bedrock: BedrockServer, catalog: ZoneCatalog
) -> None:
    def hook(session: boto3.Session) -> None:
        session.events.register(
            "before-send.ec2.DescribeRegions", lambda request, **_: http_answer(request, 403, UNAUTHORIZED)
        )

    scanner = AwsScanner(
        ai_needs(kinds=("ai-invocation-log",)), catalog, 4, regions=regions, session_hook=hook, **FAST
    )
    records = list(scanner.scan())
    gaps = [r for r in records if isinstance(r, CoverageGap)]
    assert [(g.scope, g.code) for g in gaps] == [("regions", UnknownCode.ACCESS_DENIED)]
    assert "UnauthorizedOperation" in gaps[0].reason and gaps[0].evidence
    # Without --regions nothing can be listed; with it, the given regions are listed anyway.
    names = [r.name for r in records if isinstance(r, StorageResource)]
    assert names == ([] if regions is None else ["model-invocation-logging/eu-west-1"])


# --- only the calls the policies need ---------------------------------------------------------------


def test_storage_only_policies_make_no_ai_request(bedrock: BedrockServer, tmp_path: Path) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="plain")
    inventory = tmp_path / "storage.jsonl"
    policies = storage_policies(tmp_path / "storage")
    result = invoke("scan", "aws", "--output", str(inventory), "--no-progress", "--policies", str(policies))
    assert result.exit_code == 0, result.output
    records = list(read_inventory(inventory))
    assert [(r.kind, r.name) for r in records if isinstance(r, StorageResource)] == [("bucket", "plain")]
    assert len(records) == 1
    assert sum(bedrock.requests.values()) == 0
    assert "ec2:DescribeRegions" not in result.output and "bedrock" not in result.output  # the summary
    assert "s3:ListBuckets" in result.stdout  # lists the calls made


def test_ai_only_policies_make_no_s3_request(
    bedrock: BedrockServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", bedrock.url)  # an S3 call would reach the server: counted
    policies = scoped_policies(tmp_path / "ai", AWS_AI_KINDS)
    records, _ = scan_and_check(tmp_path, "--policies", str(policies), "--regions", "eu-west-1")
    assert SETTINGS in records and "support-haiku-eu" in records
    assert [operation for operation in bedrock.requests if operation.startswith("unrouted")] == []
    assert bedrock.ai_requests() > 0


def test_calls_follow_what_the_policies_read(bedrock: BedrockServer, catalog: ZoneCatalog) -> None:
    # A policy reading only an agent's name lists agents (ListAgents) and calls nothing else.
    result = scan(catalog, ai_needs(frozenset({"name"}), kinds=("ai-agent",)), regions=("eu-west-1",))
    assert sorted(result.scanner.calls.snapshot()) == [
        "bedrock-agent:ListAgents",
        "ec2:DescribeRegions",
        "sts:GetCallerIdentity",
    ]
    agent = result.records["support-bot"]
    assert agent.processing is None and agent.training is None and agent.tags is None
    # Tags are read only when a policy reads them, per kind and from each API's own shape.
    tagged = scan(
        catalog,
        ai_needs(frozenset({"tags.team"}), kinds=("ai-inference-profile", "ai-agent")),
        regions=("eu-west-1",),
    )
    assert tagged.records["support-haiku-eu"].tags == {"team": "support"}
    assert tagged.records["support-bot"].tags == {"team": "support", "data-class": "internal"}
    assert "bedrock-agent:GetAgent" not in tagged.scanner.calls.snapshot()


# --- least privilege, against the server's own IAM check --------------------------------------------


def test_ai_permissions_are_sufficient_and_minimal(bedrock: BedrockServer, catalog: ZoneCatalog) -> None:
    bedrock.estate.faults.clear()  # every call answers: nothing unknown but for missing permissions
    needs = ai_needs()
    grant = permission_table("aws").grant(needs)
    # The server checks the Bedrock and Organizations actions; moto answers sts and ec2.
    actions = [a for a in grant.permissions() if a.split(":")[0] in ("bedrock", "organizations")]
    assert actions == [
        "bedrock:GetAgent",
        "bedrock:GetInferenceProfile",
        "bedrock:GetModelInvocationLoggingConfiguration",
        "bedrock:ListAgents",
        "bedrock:ListInferenceProfiles",
        "bedrock:ListTagsForResource",
        "organizations:DescribeEffectivePolicy",
    ]

    def denied(allowed: list[str]) -> list[str]:
        estate = bedrock.estate
        bedrock.load(estate, set(allowed))
        result = scan(catalog, needs)
        found = [f"{g.scope}" for g in result.gaps if g.code == UnknownCode.ACCESS_DENIED]
        for record in result.records.values():
            found += [
                f"{record.name} {p}" for p, u in record.unknown.items() if u.code == UnknownCode.ACCESS_DENIED
            ]
        return found

    assert denied(actions) == []
    for action in actions:
        assert denied([a for a in actions if a != action]), f"without {action} everything was still read"


# --- secrets ----------------------------------------------------------------------------------------

SECRET = "awssecret-Bd7Qk2Lm9Xc4Vz1Np6Rt3Hw8Js5"


def test_no_secret_in_inventory_or_output(
    bedrock: BedrockServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    bedrock.estate.faults.append(Fault("bedrock-agent:ListAgents", 403, region="eu-west-1"))
    inventory = tmp_path / "secrets.jsonl"
    policies = scoped_policies(tmp_path / "ai", AWS_AI_KINDS)
    result = invoke(
        "scan",
        "aws",
        "--output",
        str(inventory),
        "--no-progress",
        "--policies",
        str(policies),
        "--regions",
        "eu-west-1",
    )
    assert result.exit_code == 0, result.output
    text = inventory.read_text(encoding="utf-8") + result.output + result.stderr
    assert "bedrock:ListAgents" in text  # the denied listing is there, as a gap with its evidence
    for leak in (SECRET, "Signature=", "Credential=", "X-Amz-Security-Token", "authorization"):
        assert leak not in text


# --- docs ---------------------------------------------------------------------------------------------


def test_the_bedrock_page_names_every_ai_call_and_its_action() -> None:
    page = (Path(__file__).resolve().parents[3] / "docs" / "scanners" / "aws-bedrock.md").read_text(
        encoding="utf-8"
    )
    ai_calls = [call for call in permission_table("aws").calls if set(call.kinds) & set(AWS_AI_KINDS)]
    assert len(ai_calls) == 9
    for call in ai_calls:
        (permission,) = call.permissions
        assert f"| `{call.operation}` | `{permission}` |" in page, (
            f"docs/scanners/aws-bedrock.md: {call.operation}"
        )


# --- the rules, unit by unit ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("models", "regions", "problem"),
    [
        ([{"modelArn": "arn:aws:bedrock:eu-west-1::foundation-model/a.b-v1:0"}], ["eu-west-1"], None),
        ([{"modelArn": "arn:aws:bedrock:::foundation-model/a.b-v1:0"}], [ANY_REGION], None),
        ([], [], "names no models"),
        ([{"modelArn": "eu.anthropic.claude"}], [], "not understood"),
        ([{"modelArn": "arn:aws:bedrock:eu-west-1:1:guardrail/x"}], [], "not understood"),
        ([{}], [], "not understood"),
        (None, [], "names no models"),
    ],
)
def test_profile_regions(models: Any, regions: list[str], problem: str | None) -> None:
    found, why = profile_regions(models)
    assert found == regions
    assert (why is None) if problem is None else (why is not None and problem in why)


def test_processing_scope() -> None:
    assert processing_scope(["eu-west-1"]) == "region"
    assert processing_scope(["eu-west-1", "eu-west-3"]) == "geography"
    assert processing_scope([ANY_REGION, "eu-west-1"]) == "global"


@pytest.mark.parametrize(
    ("content", "may_train", "decided_by"),
    [
        ('{"services":{"default":{"opt_out_policy":"optOut"}}}', False, "organization-policy"),
        ('{"services":{"default":{"opt_out_policy":"optIn"}}}', True, "organization-policy"),
        (
            '{"services":{"default":{"opt_out_policy":"optOut"},"lex":{"opt_out_policy":"optIn"}}}',
            True,
            "organization-policy",
        ),
        ('{"services":{"lex":{"opt_out_policy":"optOut"}}}', True, "provider-default"),
        ('{"services":{"default":{"opt_out_policy":"OPTOUT"}}}', None, None),  # values are case-sensitive
        ('{"services":{"default":{"opt_out_policy":{"@@assign":"optOut"}}}}', None, None),
        ('{"services":[]}', None, None),
        ("{not json", None, None),
        (None, None, None),
    ],
)
def test_opt_out_training(content: Any, may_train: bool | None, decided_by: str | None) -> None:
    training, problem = opt_out_training(content)
    if may_train is None:
        assert training is None and problem is not None and problem.code == UnknownCode.ERROR
        return
    assert problem is None and training is not None
    assert (training.provider_may_train, training.decided_by) == (may_train, decided_by)
