"""The AWS call table (auditor/scan/aws_source.py `CALLS`) against the scanner's own decisions.

The scanner decides its calls in code (`AttributeNeeds.wants_kind` / `wants` in auditor/scan/aws.py
and aws_ai.py); this test keeps the table that `auditor permissions aws` and the docs derive from
equal to what it does: for each single-policy selection (scoped to the kinds the policy names), the
calls made on an estate where every call has something to read (replication, a customer key, an
agent on an inference profile, tags, ...) are exactly the calls the table derives for it. Buckets
are scanned against moto in-process, AI resources against the recorded Bedrock server.
"""

from __future__ import annotations

import pytest

from auditor.model import STORAGE_KINDS, attribute_paths
from auditor.permissions import permission_table
from auditor.policy.loader import load_policies, policy_leaves, shipped_policies_dir
from auditor.policy.zones import ZoneCatalog
from auditor.scan.aws import AwsScanner
from auditor.scan.aws_ai import AWS_AI_KINDS
from auditor.scan.base import AttributeNeeds
from tests.test_permissions import estate_with_every_attribute

from .bedrock_server import BedrockServer
from .helpers import run

SHIPPED = {
    loaded.policy.id: (
        frozenset(leaf.attribute for leaf, _ in policy_leaves(loaded)),
        tuple(loaded.policy.scope.kinds),
    )
    for loaded in load_policies([shipped_policies_dir()])
}
# Attributes no shipped policy reads alone, each behind a different call (or none).
SINGLE_ATTRIBUTES = {
    "name only": (frozenset({"name"}), ("bucket",)),
    "location.primary": (frozenset({"location.primary"}), ("bucket",)),
    "encryption.key_id": (frozenset({"encryption.key_id"}), ("bucket",)),
    "access": (frozenset({"access.public_access_blocked"}), ("bucket",)),
    "transport.min_tls_version": (frozenset({"transport.min_tls_version"}), ("bucket",)),
    "agent name only": (frozenset({"name"}), ("ai-agent",)),
    "agent processing": (frozenset({"processing.regions"}), ("ai-agent",)),
    "agent tags": (frozenset({"tags.team"}), ("ai-agent",)),
    "profile tags": (frozenset({"tags.team"}), ("ai-inference-profile",)),
    "profile training": (frozenset({"training.provider_may_train"}), ("ai-inference-profile",)),
    "settings name only": (frozenset({"name"}), ("ai-settings",)),
    "invocation log name only": (frozenset({"name"}), ("ai-invocation-log",)),
}
SELECTIONS = {**SHIPPED, **SINGLE_ATTRIBUTES}
AI_REGIONS = ("eu-west-1", "us-east-1")


def needs_of(selection: str, kinds: tuple[str, ...]) -> AttributeNeeds:
    """The needs of `selection`, scoped to those of its kinds in `kinds`."""
    paths, scoped = SELECTIONS[selection]
    return AttributeNeeds(paths, {kind: paths for kind in scoped if kind in kinds})


def test_every_shipped_policy_is_a_selection() -> None:
    assert len(SHIPPED) == 9


@pytest.mark.parametrize("selection", sorted(SELECTIONS))
def test_bucket_calls_made_are_the_calls_the_table_derives(
    selection: str, aws: None, catalog: ZoneCatalog
) -> None:
    estate_with_every_attribute()
    needs = needs_of(selection, STORAGE_KINDS)
    made = run(catalog, needs).calls
    assert sorted(made) == permission_table("aws").grant(needs).operations()


@pytest.mark.parametrize("selection", sorted(SELECTIONS))
def test_ai_calls_made_are_the_calls_the_table_derives(
    selection: str, bedrock: BedrockServer, catalog: ZoneCatalog
) -> None:
    needs = needs_of(selection, AWS_AI_KINDS)
    scanner = AwsScanner(needs, catalog, 4, regions=AI_REGIONS, max_attempts=1)
    list(scanner.scan())
    assert sorted(scanner.calls.snapshot()) == permission_table("aws").grant(needs).operations()


def test_every_attribute_makes_every_reader_call(
    bedrock: BedrockServer, aws_estate_on_moto_server: None, catalog: ZoneCatalog
) -> None:
    table = permission_table("aws")
    needs = AttributeNeeds.everything()
    scanner = AwsScanner(needs, catalog, 4, regions=(*AI_REGIONS, "eu-central-1"), max_attempts=1)
    list(scanner.scan())
    reader_calls = sorted(call.operation for call in table.calls if call.holder == "reader")
    assert sorted(scanner.calls.snapshot()) == table.grant(needs).operations() == reader_calls


def test_the_regions_option_adds_get_bucket_location(aws: None, catalog: ZoneCatalog) -> None:
    estate_with_every_attribute()
    needs = needs_of("training.ai-training-consent", STORAGE_KINDS)
    made = run(catalog, needs, regions=["eu-west-1"]).calls
    assert sorted(made) == permission_table("aws").grant(needs, ("regions",)).operations()
    assert "s3:GetBucketLocation" in made


def test_a_policy_scoped_to_no_aws_kind_needs_only_the_identity() -> None:
    paths = attribute_paths()
    needs = AttributeNeeds(paths, {"container": paths, "ai-deployment": paths})
    assert permission_table("aws").grant(needs).operations() == ["sts:GetCallerIdentity"]


@pytest.fixture
def aws_estate_on_moto_server(bedrock: BedrockServer) -> None:
    """`estate_with_every_attribute` on the moto_server the `bedrock` fixture points boto3 at."""
    estate_with_every_attribute()
