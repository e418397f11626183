"""The AWS call table (auditor/scan/aws_source.py `CALLS`) against the scanner's own decisions.

The scanner decides its calls in code (`AttributeNeeds.wants` in auditor/scan/aws.py); this test
keeps the table that `auditor permissions aws` and the docs derive from equal to what it does: for
each single-policy selection, the calls made on an estate where every call has something to read
(replication, a customer key, ...) are exactly the calls the table derives for that selection.
"""

from __future__ import annotations

import pytest

from auditor.permissions import permission_table
from auditor.policy.loader import load_policies, policy_leaves, shipped_policies_dir
from auditor.policy.zones import ZoneCatalog
from auditor.scan.base import AttributeNeeds
from tests.scan.aws.helpers import run
from tests.test_permissions import estate_with_every_attribute

SHIPPED = {
    loaded.policy.id: frozenset(leaf.attribute for leaf, _ in policy_leaves(loaded))
    for loaded in load_policies([shipped_policies_dir()])
}
# Attributes no shipped policy reads alone, each behind a different call (or none).
SINGLE_ATTRIBUTES = {
    "name only": frozenset({"name"}),
    "location.primary": frozenset({"location.primary"}),
    "encryption.key_id": frozenset({"encryption.key_id"}),
    "access": frozenset({"access.public_access_blocked"}),
    "transport.min_tls_version": frozenset({"transport.min_tls_version"}),
}
SELECTIONS = {**SHIPPED, **SINGLE_ATTRIBUTES}


def test_every_shipped_policy_is_a_selection() -> None:
    assert len(SHIPPED) == 7


@pytest.mark.parametrize("selection", sorted(SELECTIONS))
def test_calls_made_are_the_calls_the_table_derives(selection: str, aws: None, catalog: ZoneCatalog) -> None:
    estate_with_every_attribute()
    needs = AttributeNeeds(SELECTIONS[selection])
    made = run(catalog, needs).calls
    assert sorted(made) == permission_table("aws").grant(needs).operations()


def test_every_attribute_makes_every_reader_call(aws: None, catalog: ZoneCatalog) -> None:
    estate_with_every_attribute()
    table = permission_table("aws")
    made = run(catalog, AttributeNeeds.everything()).calls
    reader_calls = sorted(call.operation for call in table.calls if call.holder == "reader")
    assert sorted(made) == table.grant(AttributeNeeds.everything()).operations() == reader_calls


def test_the_regions_option_adds_get_bucket_location(aws: None, catalog: ZoneCatalog) -> None:
    estate_with_every_attribute()
    needs = AttributeNeeds(SHIPPED["training.ai-training-consent"])
    made = run(catalog, needs, regions=["eu-west-1"]).calls
    assert sorted(made) == permission_table("aws").grant(needs, ("regions",)).operations()
    assert "s3:GetBucketLocation" in made
