"""The fast findings writer (`Evaluator.encode`) against the reference path (`Finding` objects and
`to_json_dict`): whole findings documents byte for byte, but for the run's id and timestamps.

On the demo estate (two zones, with waivers) and on a randomised estate: the demo records mutated
by a seeded RNG (values, unknowns with partial knowledge, tags, states, kinds, duplicated
configurations) with waivers that match some of them, in both evidence forms, with remembered
decisions on and off.
"""

from __future__ import annotations

import copy
import io
import random
import re
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditor.check import CheckOptions, run_check
from auditor.errors import InputError
from auditor.inventory import parse_record

REPO = Path(__file__).resolve().parents[1]
DEMO_INVENTORY = REPO / "fixtures" / "demo-estate.jsonl"
DEMO_WAIVERS = REPO / "fixtures" / "demo-waivers.yaml"
TODAY = date(2026, 11, 24)
# The run's id and clock: the only bytes two runs of the same check may differ in.
_VOLATILE = re.compile(rb'^  "(id|started_at|finished_at)": "[^"]*"', re.MULTILINE)


def _document(options: CheckOptions, *, reference_path: bool, remember: bool) -> bytes:
    result = run_check(options, reference_path=reference_path, remember_decisions=remember)
    try:
        out = io.BytesIO()
        result.spool.write_document(out, result.run)
    finally:
        result.spool.close()
    return _VOLATILE.sub(rb'  "\1": "-"', out.getvalue())


def _statuses(document: bytes) -> dict[str, int]:
    counts: dict[str, int] = orjson.loads(document)["run"]["counts"]["by_status"]
    return counts


def _assert_same(options: CheckOptions) -> bytes:
    """Both paths, remembered decisions on and off, give the same document; returns it."""
    expected = _document(options, reference_path=True, remember=False)
    for remember in (True, False):
        assert _document(options, reference_path=True, remember=remember) == expected
        fast = _document(options, reference_path=False, remember=remember)
        if fast != expected:  # the first differing finding, for a readable failure
            for fast_line, expected_line in zip(fast.splitlines(), expected.splitlines(), strict=False):
                assert fast_line == expected_line
        assert fast == expected
    return expected


@pytest.mark.parametrize("evidence", ["inline", "reference"])
@pytest.mark.parametrize("zone", ["eu", "us"])
def test_demo_estate_fast_equals_reference(zone: str, evidence: str) -> None:
    options = CheckOptions(
        inventory=DEMO_INVENTORY, params={"zone": zone}, waivers=DEMO_WAIVERS, today=TODAY, evidence=evidence
    )
    document = _assert_same(options)
    statuses = _statuses(document)
    assert all(statuses[status] > 0 for status in ("pass", "fail", "error", "waived")), statuses
    data = orjson.loads(document)
    assert data["run"]["evidence"] == evidence
    assert data["run"]["schema_version"] == ("2.0" if evidence == "reference" else "1.6")
    findings = data["findings"]
    if evidence == "reference":
        assert all("evidence" not in f and "controls" not in f for f in findings)
        assert any(f["evidence_refs"] for f in findings)
    else:
        assert all("evidence_refs" not in f for f in findings)
        assert any(f["evidence"] for f in findings)


# --- a randomised estate ---------------------------------------------------------------------------

_REGIONS = {
    "aws": ["eu-central-1", "eu-west-1", "us-east-1", "ap-southeast-1", "eu-west-2"],
    "gcp": ["europe-west1", "us-central1", "EU", "asia-east1", "europe-west3"],
    "azure": ["westeurope", "northeurope", "eastus", "uksouth", "japaneast"],
    "openai": ["eu", "us", "global"],
}
_PARTIAL_UNKNOWNS = {
    "location.regions": "members",
    "transport.min_tls_version": "at_least",
    "processing.regions": "members",
}
_WHOLE_UNKNOWNS = [
    "encryption",
    "tags",
    "encryption.key_location",
    "transport",
    "training.provider_may_train",
]


def _mutate(record: dict[str, Any], rng: random.Random, kinds: dict[str, list[str]]) -> dict[str, Any]:
    record = copy.deepcopy(record)
    provider = record["provider"]
    if rng.random() < 0.4 and isinstance(record.get("location"), dict):
        record["location"]["regions"] = rng.sample(_REGIONS[provider], rng.randint(1, 2))
    if rng.random() < 0.3 and isinstance(record.get("encryption"), dict):
        encryption = record["encryption"]
        encryption["enabled"] = rng.random() < 0.7
        encryption["key_management"] = rng.choice(["customer-managed", "provider-managed", None])
        encryption["key_location"] = rng.choice([*_REGIONS[provider], None])
    if rng.random() < 0.3 and isinstance(record.get("transport"), dict):
        record["transport"]["min_tls_version"] = rng.choice(["1.0", "1.1", "1.2", "1.3", None])
        record["transport"]["plaintext_refused"] = rng.choice([True, False, None])
    if rng.random() < 0.3:
        tags = record.get("tags") if isinstance(record.get("tags"), dict) else {}
        tags["data-class"] = rng.choice(["restricted", "internal", "public"])
        tags["Owner"] = rng.choice(["platform", "data", "ml"])
        if rng.random() < 0.5:
            tags["ai-training"] = rng.choice(["allowed", "forbidden"])
        record["tags"] = tags
        record["unknown"].pop("tags", None)
    if rng.random() < 0.25:
        path, partial = rng.choice(list(_PARTIAL_UNKNOWNS.items()))
        record["unknown"][path] = {
            "code": "access_denied",
            "reason": f"denied {rng.randint(1, 3)}",
            "partial": partial,
        }
    if rng.random() < 0.2:
        path = rng.choice(_WHOLE_UNKNOWNS)
        record["unknown"][path] = {"code": rng.choice(["access_denied", "not_supported"]), "reason": "no"}
    if rng.random() < 0.1:
        record["state"] = rng.choice(["active", "archived", "prepared"])
    if rng.random() < 0.15:
        record["kind"] = rng.choice(kinds[provider])
    return record


def _valid(record: dict[str, Any]) -> bool:
    try:
        parse_record(orjson.dumps(record), "random")
    except InputError:
        return False
    return True


def _random_estate(tmp_path: Path, seed: int) -> tuple[Path, Path, int]:
    rng = random.Random(seed)
    demo = [orjson.loads(line) for line in DEMO_INVENTORY.read_bytes().splitlines() if line.strip()]
    resources = [r for r in demo if r.get("record", "resource") == "resource"]
    kinds: dict[str, list[str]] = {}
    for record in resources:
        kinds.setdefault(record["provider"], []).append(record["kind"])
    lines: list[bytes] = [orjson.dumps(r) for r in demo if r.get("record") == "gap"]
    ids: list[str] = []
    mutated = 0
    for number in range(400):
        base = rng.choice(resources)
        record = _mutate(base, rng, kinds)
        if _valid(record):
            mutated += record != base
        else:
            record = copy.deepcopy(base)
        copies = 2 if rng.random() < 0.2 else 1  # duplicated configurations under other ids
        for copy_number in range(copies):
            record = copy.deepcopy(record)
            record["name"] = f"r{number}-{copy_number}-{base['name']}"
            record["id"] = f"{base['id']}#r{number}-{copy_number}"
            ids.append(record["id"])
            lines.append(orjson.dumps(record))
    inventory = tmp_path / f"random-{seed}.jsonl"
    inventory.write_bytes(b"\n".join(lines) + b"\n")
    waivers = tmp_path / f"waivers-{seed}.yaml"
    entries = []
    for number, resource_id in enumerate(rng.sample(ids, 40)):
        expires = "2020-01-01" if number % 3 == 0 else "2099-12-31"  # a third expired
        policy = rng.choice(["*", "residency.*", "encryption.*", "transport.*"])
        entries.append(
            f"  - id: R-{number}\n    policy: '{policy}'\n    resources:\n      ids: ['{resource_id}']\n"
            f"    justification: random {number}\n    approver: dpo@example.com\n    expires: {expires}\n"
        )
    entries.append(
        "  - id: R-tags\n    policy: '*'\n    resources:\n      tags: {data-class: public}\n"
        "    justification: public data\n    approver: dpo@example.com\n    expires: 2099-12-31\n"
    )
    waivers.write_text("waivers:\n" + "".join(entries))
    return inventory, waivers, mutated


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("evidence", ["inline", "reference"])
def test_random_estate_fast_equals_reference(tmp_path: Path, seed: int, evidence: str) -> None:
    inventory, waivers, mutated = _random_estate(tmp_path, seed)
    assert mutated > 150  # most records really were changed
    options = CheckOptions(
        inventory=inventory, params={"zone": "eu"}, waivers=waivers, today=TODAY, evidence=evidence
    )
    document = _assert_same(options)
    statuses = _statuses(document)
    assert sum(statuses.values()) > 1000
    assert all(statuses[status] > 10 for status in ("pass", "fail", "error", "waived")), statuses
    run = orjson.loads(document)["run"]
    assert any(entry["expired_matches"] for entry in run["waivers"]["entries"])


def test_a_different_decision_makes_a_different_document(tmp_path: Path) -> None:
    """The comparison can fail: another zone changes the findings of the same estate."""
    inventory, _, _ = _random_estate(tmp_path, 3)
    eu, us = (
        _document(
            CheckOptions(inventory=inventory, params={"zone": zone}, today=TODAY),
            reference_path=False,
            remember=True,
        )
        for zone in ("eu", "us")
    )
    assert eu != us
    assert _statuses(eu) != _statuses(us)
