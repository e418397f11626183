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
