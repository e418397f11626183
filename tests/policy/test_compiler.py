"""Operators and three-valued logic of compiled conditions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from auditor.evaluate import Evaluator, compile_policies
from auditor.findings import Status
from auditor.model import StorageResource
from auditor.policy.loader import load_policies, load_zones
from tests.conftest import SHIPPED_POLICIES

RESOURCE: dict[str, Any] = {
    "provider": "azure",
    "kind": "container",
    "account": "s",
    "name": "c",
    "id": "/c",
    "tags": {"Owner": "team-a", "ai_training": "opt-in"},
    "transport": {
        "plaintext_refused": True,
        "plaintext_refused_by": "x",
        "min_tls_version": "TLS1_3",
        "min_tls_enforced_by": "y",
    },
    "location": {
        "raw": "westeurope",
        "type": "region",
        "primary": "westeurope",
        "regions": ["westeurope", "northeurope"],
        "replicas": [],
    },
    "unknown": {"encryption": {"code": "throttled", "reason": "429 after retries"}},
}


def status_of(
    condition: dict[str, Any], tmp_path: Path, resource: dict[str, Any] = RESOURCE, **params: str
) -> Status:
    policy = {
        "policies": [
            {
                "id": "t.case",
                "title": "t",
                "description": "d",
                "severity": "low",
                "parameters": {"zone": {"type": "zone", "default": "eu"}},
                "condition": condition,
            }
        ]
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(policy))
    loaded = load_policies([path])
    compiled = compile_policies(loaded, load_zones([SHIPPED_POLICIES]), params)
    findings = list(Evaluator(compiled).evaluate(StorageResource.model_validate(resource)))
    assert len(findings) == 1
    return findings[0].status


def leaf(attribute: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"attribute": attribute, "op": op, "value": value}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (leaf("tags.owner", "equals", "team-a"), Status.PASS),
        (leaf("tags.OWNER", "not_equals", "team-b"), Status.PASS),
        (leaf("tags.missing", "not_equals", "x"), Status.PASS),
        (leaf("tags.missing", "equals", "x"), Status.FAIL),
        (leaf("tags.ai-training", "in", ["opt-in", "opt-out"]), Status.PASS),
        (leaf("tags.ai-training", "not_in", ["opt-in"]), Status.FAIL),
        (leaf("location.regions", "subset_of", {"zone": "eu"}), Status.PASS),
        (leaf("location.regions", "subset_of", {"zone": {"param": "zone"}}), Status.PASS),
        (leaf("location.regions", "subset_of", ["westeurope"]), Status.FAIL),
        (leaf("location.regions", "contains", "northeurope"), Status.PASS),
        (leaf("location.primary", "in", {"zone": "uk"}), Status.FAIL),
        (leaf("tags.owner", "exists"), Status.PASS),
        (leaf("tags.nope", "exists", False), Status.PASS),
        (leaf("tags.owner", "matches", "^team-"), Status.PASS),
        (leaf("transport.min_tls_version", "gte", "1.2"), Status.PASS),
        (leaf("transport.min_tls_version", "lt", "1.3"), Status.FAIL),
        (leaf("encryption.enabled", "equals", True), Status.ERROR),
        (leaf("access.public_access_blocked", "equals", True), Status.ERROR),
    ],
)
def test_operators(condition: dict[str, Any], expected: Status, tmp_path: Path) -> None:
    assert status_of(condition, tmp_path) is expected


def test_zone_parameter_from_the_command_line(tmp_path: Path) -> None:
    condition = leaf("location.regions", "subset_of", {"zone": {"param": "zone"}})
    assert status_of(condition, tmp_path, zone="uk") is Status.FAIL


UNKNOWN = leaf("encryption.enabled", "equals", True)
TRUE = leaf("tags.owner", "exists")
FALSE = leaf("tags.owner", "equals", "other")


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"all": [TRUE, UNKNOWN]}, Status.ERROR),
        ({"all": [FALSE, UNKNOWN]}, Status.FAIL),  # a definite violation stays one
        ({"any": [TRUE, UNKNOWN]}, Status.PASS),  # one sufficient, readable reason is enough
        ({"any": [FALSE, UNKNOWN]}, Status.ERROR),
        ({"not": UNKNOWN}, Status.ERROR),
        ({"not": FALSE}, Status.PASS),
        ({"all": [TRUE, {"any": [FALSE, {"not": FALSE}]}]}, Status.PASS),
    ],
)
def test_kleene_logic(condition: dict[str, Any], expected: Status, tmp_path: Path) -> None:
    assert status_of(condition, tmp_path) is expected


def test_error_message_carries_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "policies": [
                    {"id": "t.x", "title": "t", "description": "d", "severity": "low", "condition": UNKNOWN}
                ]
            }
        )
    )
    compiled = compile_policies(load_policies([path]), load_zones([SHIPPED_POLICIES]), {})
    finding = next(Evaluator(compiled).evaluate(StorageResource.model_validate(RESOURCE)))
    assert finding.status is Status.ERROR
    assert "429 after retries" in finding.message and finding.reasons == [
        "encryption.enabled: throttled: 429 after retries"
    ]


def test_hostile_regex_input_is_linear(tmp_path: Path) -> None:
    # (a+)+$ backtracks exponentially in Python's re; RE2 answers at once.
    hostile = {**RESOURCE, "tags": {"owner": "a" * 5000 + "!"}}
    assert status_of(leaf("tags.owner", "matches", "^(a+)+$"), tmp_path, resource=hostile) is Status.FAIL


def test_a_waiver_never_waives_an_error(tmp_path: Path) -> None:
    from datetime import date

    from auditor.evaluate import WaiverBook
    from auditor.policy.language import Waiver
    from auditor.policy.loader import LoadedWaiver

    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "policies": [
                    {"id": "t.x", "title": "t", "description": "d", "severity": "low", "condition": UNKNOWN}
                ]
            }
        )
    )
    compiled = compile_policies(load_policies([path]), load_zones([SHIPPED_POLICIES]), {})
    waiver = Waiver.model_validate(
        {
            "policy": "t.*",
            "resources": {"names": ["c"]},
            "justification": "j",
            "approver": "a",
            "expires": "2099-01-01",
        }
    )
    book = WaiverBook([LoadedWaiver(waiver, "w.yaml:2", "W-1")], date(2026, 1, 1))
    finding = next(Evaluator(compiled, book).evaluate(StorageResource.model_validate(RESOURCE)))
    assert finding.status is Status.ERROR and finding.waiver is None


def test_remembered_decisions_give_the_same_findings_as_fresh_ones() -> None:
    """Outcomes remembered by the values a policy reads must equal evaluating afresh."""
    from auditor.inventory import read_inventory
    from tests.conftest import DEMO_INVENTORY

    paths = [SHIPPED_POLICIES]
    records = list(read_inventory(DEMO_INVENTORY)) * 3  # repeats: the second pass is remembered

    def run(remember: bool) -> list[dict[str, Any]]:
        compiled = compile_policies(load_policies(paths), load_zones(paths), {"zone": "eu"})
        evaluator = Evaluator(compiled, remember_decisions=remember)
        return [f.to_json_dict() for f in evaluator.run(records)]

    remembered, fresh = run(True), run(False)
    assert len(remembered) == len(fresh) > 700
    assert remembered == fresh


# --- partial knowledge (Unknown.partial) -------------------------------------------------------

WHY = {"code": "access_denied", "reason": "replica region unreadable"}


def with_regions(known: list[str], partial: str | None = "members", **unknown: Any) -> dict[str, Any]:
    """RESOURCE whose location.regions holds `known`, with the rest unknown (partial or whole)."""
    location = {**RESOURCE["location"], "regions": known}
    entry = {**WHY, "partial": partial} if partial else dict(WHY)
    return {
        **RESOURCE,
        "location": location,
        "unknown": {**RESOURCE["unknown"], "location.regions": entry, **unknown},
    }


def with_tls_bound(bound: str | None, partial: str | None = "at_least") -> dict[str, Any]:
    """RESOURCE whose transport.min_tls_version is `bound`, recorded as a lower bound."""
    transport = {**RESOURCE["transport"], "min_tls_version": bound}
    entry = {**WHY, "partial": partial} if partial else dict(WHY)
    return {
        **RESOURCE,
        "transport": transport,
        "unknown": {**RESOURCE["unknown"], "transport.min_tls_version": entry},
    }


@pytest.mark.parametrize(
    ("condition", "known", "expected"),
    [
        # subset_of: a known member outside proves the violation; inside ones prove nothing
        (leaf("location.regions", "subset_of", {"zone": "eu"}), ["westeurope", "eastus"], Status.FAIL),
        (leaf("location.regions", "subset_of", {"zone": "eu"}), ["eastus"], Status.FAIL),
        (leaf("location.regions", "subset_of", {"zone": "eu"}), ["WestEurope"], Status.ERROR),
        (leaf("location.regions", "subset_of", {"zone": "eu"}), [], Status.ERROR),
        (leaf("location.regions", "subset_of", {"zone": {"param": "zone"}}), ["eastus"], Status.FAIL),
        (leaf("location.regions", "subset_of", ["westeurope"]), ["westeurope", "northeurope"], Status.FAIL),
        (leaf("location.regions", "subset_of", ["westeurope"]), ["westeurope"], Status.ERROR),
        # contains: a known member proves it; its absence from the known part proves nothing
        (leaf("location.regions", "contains", "northeurope"), ["westeurope", "northeurope"], Status.PASS),
        (leaf("location.regions", "contains", "northeurope"), ["westeurope"], Status.ERROR),
        # equals: a known member the expected list lacks proves inequality; equality is never proven
        (leaf("location.regions", "equals", ["westeurope"]), ["westeurope", "eastus"], Status.FAIL),
        (leaf("location.regions", "equals", ["westeurope"]), ["westeurope"], Status.ERROR),
        (leaf("location.regions", "equals", ["westeurope", "eastus"]), ["eastus"], Status.ERROR),
        (leaf("location.regions", "equals", "westeurope"), ["westeurope"], Status.FAIL),  # never a list
        (leaf("location.regions", "not_equals", ["westeurope"]), ["eastus"], Status.PASS),
        (leaf("location.regions", "not_equals", ["westeurope"]), ["westeurope"], Status.ERROR),
        # exists: a known member proves the list is there; none known proves nothing
        (leaf("location.regions", "exists"), ["westeurope"], Status.PASS),
        (leaf("location.regions", "exists", False), ["westeurope"], Status.FAIL),
        (leaf("location.regions", "exists"), [], Status.ERROR),
        (leaf("location.regions", "exists", False), [], Status.ERROR),
    ],
)
def test_known_members_decide_what_they_prove(
    condition: dict[str, Any], known: list[str], expected: Status, tmp_path: Path
) -> None:
    assert status_of(condition, tmp_path, resource=with_regions(known)) is expected
    # The same entry without partial knowledge is wholly unknown: always an error.
    assert status_of(condition, tmp_path, resource=with_regions(known, partial=None)) is Status.ERROR


@pytest.mark.parametrize(
    ("condition", "bound", "expected"),
    [
        (leaf("transport.min_tls_version", "gte", "1.2"), "1.2", Status.PASS),
        (leaf("transport.min_tls_version", "gte", "1.2"), "TLS1_3", Status.PASS),
        (leaf("transport.min_tls_version", "gte", "1.3"), "1.2", Status.ERROR),
        (leaf("transport.min_tls_version", "gt", "1.1"), "1.2", Status.PASS),
        (leaf("transport.min_tls_version", "gt", "1.2"), "1.2", Status.ERROR),
        (leaf("transport.min_tls_version", "lt", "1.2"), "1.2", Status.FAIL),
        (leaf("transport.min_tls_version", "lt", "1.3"), "1.2", Status.ERROR),
        (leaf("transport.min_tls_version", "lte", "1.1"), "1.2", Status.FAIL),
        (leaf("transport.min_tls_version", "lte", "1.2"), "1.2", Status.ERROR),
        (leaf("transport.min_tls_version", "exists"), "1.2", Status.PASS),
        (leaf("transport.min_tls_version", "exists", False), "1.2", Status.FAIL),
        # no partial rule: never decided from a bound
        (leaf("transport.min_tls_version", "equals", "1.2"), "1.2", Status.ERROR),
        (leaf("transport.min_tls_version", "not_equals", "1.0"), "1.2", Status.ERROR),
        (leaf("transport.min_tls_version", "in", ["1.2", "1.3"]), "1.2", Status.ERROR),
        (leaf("transport.min_tls_version", "not_in", ["1.0"]), "1.2", Status.ERROR),
        (leaf("transport.min_tls_version", "matches", "^1"), "1.2", Status.ERROR),
        (leaf("transport.min_tls_version", "contains", "1"), "1.2", Status.ERROR),
        # a bound that is not a version proves nothing
        (leaf("transport.min_tls_version", "gte", "1.0"), "modern", Status.ERROR),
        (leaf("transport.min_tls_version", "lt", "1.0"), "modern", Status.ERROR),
    ],
)
def test_a_lower_bound_decides_only_what_it_proves(
    condition: dict[str, Any], bound: str, expected: Status, tmp_path: Path
) -> None:
    assert status_of(condition, tmp_path, resource=with_tls_bound(bound)) is expected
    assert status_of(condition, tmp_path, resource=with_tls_bound(bound, partial=None)) is Status.ERROR


def test_partial_kind_must_fit_the_operator(tmp_path: Path) -> None:
    # A lower bound on a list, or members on a version, carry no knowledge the operator can use.
    regions_bound = with_regions(["eastus"], partial="at_least")
    assert status_of(
        leaf("location.regions", "subset_of", {"zone": "eu"}), tmp_path, resource=regions_bound
    ) is (Status.ERROR)
    tls_members = with_tls_bound("1.3", partial="members")
    assert status_of(leaf("transport.min_tls_version", "gte", "1.2"), tmp_path, resource=tls_members) is (
        Status.ERROR
    )


def test_partial_needs_an_entry_on_the_path_itself_and_a_readable_parent(tmp_path: Path) -> None:
    outside = leaf("location.regions", "subset_of", {"zone": "eu"})
    # A whole unknown parent wins over a partial child entry.
    parent_whole = with_regions(["eastus"], location={"code": "timeout", "reason": "slow"})
    assert status_of(outside, tmp_path, resource=parent_whole) is Status.ERROR
    # A (malformed) partial entry on the group is read as wholly unknown for its leaves.
    on_group = {**RESOURCE, "location": {**RESOURCE["location"], "regions": ["eastus"]}}
    on_group["unknown"] = {"location": {**WHY, "partial": "members"}}
    assert status_of(outside, tmp_path, resource=on_group) is Status.ERROR
    # A location that was never collected has no recorded members.
    not_collected = {**with_regions(["eastus"]), "location": None}
    assert status_of(outside, tmp_path, resource=not_collected) is Status.ERROR
    # A recorded bound that is null is no bound.
    assert status_of(
        leaf("transport.min_tls_version", "gte", "1.0"), tmp_path, resource=with_tls_bound(None)
    ) is (Status.ERROR)
    # Tags carry no partial knowledge.
    tags = {**RESOURCE, "unknown": {"tags.owner": {**WHY, "partial": "at_least"}}}
    assert status_of(leaf("tags.owner", "exists"), tmp_path, resource=tags) is Status.ERROR


OUTSIDE = leaf("location.regions", "subset_of", {"zone": "eu"})  # FALSE on known ["eastus"]
HAS_EAST = leaf("location.regions", "contains", "eastus")  # TRUE on known ["eastus"]
HAS_NORTH = leaf("location.regions", "contains", "northeurope")  # UNKNOWN on known ["eastus"]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"not": OUTSIDE}, Status.PASS),
        ({"not": HAS_EAST}, Status.FAIL),
        ({"not": HAS_NORTH}, Status.ERROR),
        ({"all": [TRUE, OUTSIDE]}, Status.FAIL),
        ({"all": [OUTSIDE, UNKNOWN]}, Status.FAIL),  # the known violation stays one
        ({"all": [HAS_EAST, UNKNOWN]}, Status.ERROR),
        ({"all": [HAS_EAST, HAS_NORTH]}, Status.ERROR),
        ({"any": [HAS_EAST, UNKNOWN]}, Status.PASS),
        ({"any": [OUTSIDE, UNKNOWN]}, Status.ERROR),
        ({"any": [HAS_NORTH, FALSE]}, Status.ERROR),
        ({"not": {"all": [OUTSIDE, UNKNOWN]}}, Status.PASS),
        ({"not": {"any": [HAS_EAST, UNKNOWN]}}, Status.FAIL),
        ({"not": {"not": OUTSIDE}}, Status.FAIL),
        ({"any": [{"not": HAS_EAST}, {"all": [TRUE, {"not": OUTSIDE}]}]}, Status.PASS),
    ],
)
def test_partial_results_combine_with_kleene_logic(
    condition: dict[str, Any], expected: Status, tmp_path: Path
) -> None:
    assert status_of(condition, tmp_path, resource=with_regions(["eastus"])) is expected


def finding_of(condition: dict[str, Any], tmp_path: Path, resource: dict[str, Any], **params: str) -> Any:
    path = tmp_path / "p.yaml"
    policy = {
        "id": "t.x",
        "title": "t",
        "description": "d",
        "severity": "low",
        "parameters": {"zone": {"type": "zone", "default": "eu"}, "min_tls": {"default": "1.2"}},
        "condition": condition,
    }
    path.write_text(yaml.safe_dump({"policies": [policy]}))
    compiled = compile_policies(load_policies([path]), load_zones([SHIPPED_POLICIES]), params)
    return next(Evaluator(compiled).evaluate(StorageResource.model_validate(resource)))


def test_a_decided_partial_finding_shows_the_known_part_and_why_the_rest_is_unknown(tmp_path: Path) -> None:
    finding = finding_of(OUTSIDE, tmp_path, with_regions(["westeurope", "eastus"]))
    assert finding.status is Status.FAIL
    assert finding.message == (
        'location.regions includes ["westeurope","eastus"] '
        "(others unknown: access_denied: replica region unreadable), expected all within zone eu"
    )
    document = finding.to_json_dict()
    assert document["observed"] == {
        "location.regions": {
            "unknown": {
                "code": "access_denied",
                "reason": "replica region unreadable",
                "partial": "members",
                "value": ["westeurope", "eastus"],
            }
        }
    }
    # Decided: nothing is left to explain, so no reasons (they belong to undecided results).
    assert finding.reasons == [] and "reasons" not in document


def test_an_undecided_partial_finding_keeps_its_reason(tmp_path: Path) -> None:
    finding = finding_of(OUTSIDE, tmp_path, with_regions(["westeurope"]))
    assert finding.status is Status.ERROR
    assert finding.message.startswith(
        'location.regions includes ["westeurope"] (others unknown: access_denied:'
    )
    assert finding.reasons == ["location.regions: access_denied: replica region unreadable"]
    negated = finding_of({"not": OUTSIDE}, tmp_path, with_regions(["westeurope"]))
    assert negated.status is Status.ERROR and negated.reasons == finding.reasons
    assert negated.message.endswith("expected not (all within zone eu)")


def test_a_bound_finding_shows_the_bound(tmp_path: Path) -> None:
    condition = leaf("transport.min_tls_version", "gte", {"param": "min_tls"})
    finding = finding_of(condition, tmp_path, with_tls_bound("1.2"), min_tls="1.3")
    assert finding.status is Status.ERROR
    assert finding.message == (
        'transport.min_tls_version >= "1.2" (exact value unknown: access_denied: replica region unreadable), '
        "expected >= 1.3"
    )
    assert finding.observed["transport.min_tls_version"]["unknown"]["value"] == "1.2"
    assert finding.observed["transport.min_tls_version"]["unknown"]["partial"] == "at_least"
    assert finding_of(condition, tmp_path, with_tls_bound("1.2"), min_tls="1.2").status is Status.PASS


def test_a_whole_unknown_keeps_the_1_0_observed_shape(tmp_path: Path) -> None:
    finding = finding_of(OUTSIDE, tmp_path, with_regions(["eastus"], partial=None))
    assert finding.observed == {
        "location.regions": {"unknown": {"code": "access_denied", "reason": "replica region unreadable"}}
    }
    assert finding.message == "location.regions unknown (access_denied: replica region unreadable)"


def test_remembered_outcomes_never_mix_partial_whole_and_known_values(tmp_path: Path) -> None:
    """The decision memory keys on the known part and the partial kind: one policy, one evaluator,
    resources that would share an outcome if either were left out of the key."""
    path = tmp_path / "p.yaml"
    policies = [
        {"id": "t.zone", "title": "t", "description": "d", "severity": "low", "condition": OUTSIDE},
        {
            "id": "t.tls",
            "title": "t",
            "description": "d",
            "severity": "low",
            "condition": leaf("transport.min_tls_version", "gte", "1.3"),
        },
    ]
    path.write_text(yaml.safe_dump({"policies": policies}))
    compiled = compile_policies(load_policies([path]), load_zones([SHIPPED_POLICIES]), {})
    known_eu = {**RESOURCE, "location": {**RESOURCE["location"], "regions": ["westeurope"]}}
    known_tls = {**RESOURCE, "transport": {**RESOURCE["transport"], "min_tls_version": "1.2"}}
    cases = [
        ("known eu, known 1.2", {**known_eu, "transport": known_tls["transport"]}, ("pass", "fail")),
        ("partial eu", with_regions(["westeurope"]), ("error", "pass")),
        ("whole", with_regions(["westeurope"], partial=None), ("error", "pass")),
        ("partial us", with_regions(["eastus"]), ("fail", "pass")),
        ("whole again", with_regions(["eastus"], partial=None), ("error", "pass")),
        ("bound 1.2", with_tls_bound("1.2"), ("pass", "error")),
        ("whole tls", with_tls_bound("1.2", partial=None), ("pass", "error")),
        ("known 1.2 again", known_tls, ("pass", "fail")),
        ("bound 1.3", with_tls_bound("1.3"), ("pass", "pass")),
    ]
    remembered = Evaluator(compiled)
    fresh = Evaluator(compiled, remember_decisions=False)
    for _ in range(2):  # the second round is answered from memory
        for label, record, expected in cases:
            resource = StorageResource.model_validate(record)
            got = tuple(f.status.value for f in remembered.evaluate(resource))
            assert got == expected, label
            again = [f.to_json_dict() for f in fresh.evaluate(resource)]
            assert [f.to_json_dict() for f in remembered.evaluate(resource)] == again, label
    assert all(c._decided for c in compiled)
