"""`auditor drift --declared --observed`: intent (infrastructure as code) against reality (a live scan).

Hand-written inventories seed one difference of each kind; each must be found, in JSON and in the
table, and nothing unknown may ever compare equal.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from auditor.cli import cli
from auditor.inventory import write_inventory
from auditor.model import (
    CoverageGap,
    Encryption,
    Evidence,
    KeyManagement,
    Location,
    ResourceKind,
    SourceLocation,
    StorageResource,
    Transport,
    Unknown,
    UnknownCode,
)

AT = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
PROJECT = "acme-data"
SUBSCRIPTION = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"


def record(
    name: str,
    *,
    declared: bool,
    provider: str = "gcp",
    kind: ResourceKind = "bucket",
    account: str = PROJECT,
    storage_account: str | None = None,
    region: str = "europe-west1",
    key_management: KeyManagement = "provider-managed",
    key_location: str | None = None,
    algorithm: str = "AES256",
    plaintext_refused: bool = True,
    min_tls: str = "1.2",
    tags: dict[str, str] | None = None,
    unknown: dict[str, Unknown] | None = None,
    line: int = 1,
) -> StorageResource:
    """A bucket or container as a scanner writes it: declared ones carry `origin` and file/line
    evidence (and a code address as their id), observed ones a cloud id and API-call evidence."""
    if declared:
        evidence = [
            Evidence(
                call="terraform:plan",
                at=AT,
                attributes=["location", "encryption", "transport", "tags"],
                location=SourceLocation(
                    file="infra/main.tf", line=line, address=f"google_storage_bucket.{name}"
                ),
            )
        ]
        resource_id = f"infra/main.tf#google_storage_bucket.{name}"
    else:
        evidence = [Evidence(call="storage.buckets.get", at=AT, attributes=["location"], response={})]
        resource_id = f"{provider}://{storage_account or account}/{name}"
    return StorageResource(
        provider=provider,
        kind=kind,
        account=account,
        storage_account=storage_account,
        name=name,
        id=resource_id,
        origin="terraform" if declared else None,
        location=Location(raw=region, type="region", primary=region, regions=[region], replicas=[]),
        encryption=Encryption(
            enabled=True,
            algorithm=algorithm,
            scheme="test",
            key_management=key_management,
            key_id="key-1" if key_management == "customer-managed" else None,
            key_location=key_location,
        ),
        transport=Transport(
            plaintext_refused=plaintext_refused,
            plaintext_refused_by="test" if plaintext_refused else None,
            min_tls_version=min_tls,
            min_tls_enforced_by="test",
        ),
        tags={"ai-training": "opt-out", **(tags or {})},
        unknown=unknown or {},
        evidence=evidence,
    )


def container(name: str, storage_account: str | None, *, declared: bool, min_tls: str) -> StorageResource:
    return record(
        name,
        declared=declared,
        provider="azure",
        kind="container",
        account=SUBSCRIPTION,
        storage_account=storage_account,
        region="westeurope",
        min_tls=min_tls,
    )


AFTER_APPLY = Unknown(code=UnknownCode.NOT_KNOWN_UNTIL_APPLY, reason="known after apply: kms key region")

# name -> (declared, observed); None: that side does not have it
SEEDED: dict[str, tuple[StorageResource | None, StorageResource | None]] = {
    # region: declared in the zone, deployed outside it
    "moved-region": (
        record("moved-region", declared=True, line=10),
        record("moved-region", declared=False, region="us-east1"),
    ),
    # encryption: the code asks for a customer-managed key, the bucket has the provider's
    "lost-cmk": (
        record(
            "lost-cmk",
            declared=True,
            key_management="customer-managed",
            key_location="europe-west1",
            tags={"data-class": "restricted"},
            line=20,
        ),
        record("lost-cmk", declared=False, tags={"data-class": "restricted"}),
    ),
    # a tag changed by hand; a tag the cloud adds itself (ignored by --ignore-tag)
    "retagged": (
        record("retagged", declared=True, tags={"owner": "platform"}, line=30),
        record("retagged", declared=False, tags={"owner": "data-team", "goog-managed-by": "console"}),
    ),
    # transport: plaintext refused by hand although the code does not: fixed outside code
    "hand-fixed": (
        record("hand-fixed", declared=True, plaintext_refused=False, line=40),
        record("hand-fixed", declared=False),
    ),
    # unknown on the declared side: cannot compare, never equal
    "after-apply": (
        record(
            "after-apply",
            declared=True,
            key_management="customer-managed",
            key_location=None,
            unknown={"encryption.key_location": AFTER_APPLY},
            line=50,
        ),
        record("after-apply", declared=False, key_management="customer-managed", key_location="europe-west1"),
    ),
    "unchanged": (record("unchanged", declared=True, line=60), record("unchanged", declared=False)),
    "not-yet-applied": (record("not-yet-applied", declared=True, line=70), None),
    "clickops": (None, record("clickops", declared=False)),
}
CONTAINERS: dict[str, tuple[StorageResource | None, StorageResource | None]] = {
    # TLS lowered on the account; 'TLS1_2' and '1.2' are the same version
    "exports": (
        container("exports", "acmelegacy", declared=True, min_tls="TLS1_2"),
        container("exports", "acmelegacy", declared=False, min_tls="TLS1_0"),
    ),
    "reports": (
        container("reports", "acmemain", declared=True, min_tls="TLS1_2"),
        container("reports", "acmemain", declared=False, min_tls="1.2"),
    ),
}


def inventories(
    tmp_path: Path, seeded: dict[str, tuple[StorageResource | None, StorageResource | None]]
) -> tuple[Path, Path]:
    declared = tmp_path / "iac.jsonl"
    observed = tmp_path / "live.jsonl"
    write_inventory(declared, [d for d, _ in seeded.values() if d is not None])
    write_inventory(observed, [o for _, o in seeded.values() if o is not None])
    return declared, observed


def drift(declared: Path, observed: Path, *extra: str) -> Result:
    return CliRunner().invoke(
        cli,
        ["drift", "--declared", str(declared), "--observed", str(observed), *extra],
        catch_exceptions=False,
    )


def as_json(declared: Path, observed: Path, tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "drift.json"
    result = drift(declared, observed, "--format", "json", "-o", str(out), *extra)
    return result.exit_code, json.loads(out.read_text())


def table_rows(table: str) -> list[list[str]]:
    """The rows of a rich table: cells of continuation lines joined to their row, spaces removed."""
    rows: list[list[str]] = []
    for line in table.splitlines():
        if not line.startswith("│"):
            continue
        cells = ["".join(c.split()) for c in line.strip("│").split("│")]
        if cells[0] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [a + b for a, b in zip(rows[-1], cells, strict=True)]
    return rows


def entry(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [r for r in document["resources"] if r["name"] == name]
    assert len(found) == 1, found
    return found[0]


def differences(resource: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {d["attribute"]: (d["declared"], d["observed"]) for d in resource["differences"]}


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Path, Path]:
    return inventories(tmp_path, {**SEEDED, **CONTAINERS})


def test_every_seeded_difference_is_found_in_json(seeded: tuple[Path, Path], tmp_path: Path) -> None:
    code, document = as_json(*seeded, tmp_path, "--param", "zone=eu", "--ignore-tag", "goog-*")
    assert code == 1
    assert document["comparison"]["declared"].endswith("iac.jsonl")

    moved = entry(document, "moved-region")
    assert moved["state"] == "differs"
    assert differences(moved) == {
        "location.primary": ("europe-west1", "us-east1"),
        "location.regions": (["europe-west1"], ["us-east1"]),
    }
    assert moved["differences"][0]["declared_at"] == "infra/main.tf:10 (google_storage_bucket.moved-region)"
    # declared compliant, observed failing: the finding a reviewer needs most
    [regression] = [v for v in moved["verdicts"] if v["kind"] == "regression"]
    assert (regression["policy_id"], regression["declared"], regression["observed"]) == (
        "residency.data-in-zone",
        "pass",
        "fail",
    )
    assert "us-east1" in regression["observed_message"]

    lost = entry(document, "lost-cmk")
    assert differences(lost) == {
        "encryption.key_management": ("customer-managed", "provider-managed"),
        "encryption.key_location": ("europe-west1", None),
    }
    assert {v["policy_id"] for v in lost["verdicts"] if v["kind"] == "regression"} == {
        "encryption.customer-managed-key"
    }

    retagged = entry(document, "retagged")
    assert differences(retagged) == {"tags.owner": ("platform", "data-team")}  # goog-* ignored

    fixed = entry(document, "hand-fixed")
    assert differences(fixed) == {"transport.plaintext_refused": (False, True)}
    assert [(v["policy_id"], v["kind"]) for v in fixed["verdicts"]] == [
        ("transport.plaintext-refused", "fixed_outside_code")
    ]

    exports = entry(document, "exports")
    assert differences(exports) == {"transport.min_tls_version": ("TLS1_2", "TLS1_0")}
    assert [v["policy_id"] for v in exports["verdicts"] if v["kind"] == "regression"] == [
        "transport.tls-minimum"
    ]
    assert exports["declared"]["storage_account"] == "acmelegacy"

    # unknown is "cannot compare" with its reason, never equal
    after = entry(document, "after-apply")
    assert after["state"] == "incomplete" and after["differences"] == []
    reasons = {c["attribute"]: c["reason"] for c in after["cannot_compare"]}
    assert reasons["encryption.key_location"] == (
        "declared: not_known_until_apply: known after apply: kms key region"
    )
    assert "policy residency.key-in-zone" in reasons
    [undecided] = after["verdicts"]
    assert (undecided["kind"], undecided["declared"], undecided["observed"]) == (
        "cannot_compare",
        "error",
        "pass",
    )

    assert entry(document, "unchanged")["state"] == "same"
    assert entry(document, "reports")["state"] == "same"  # TLS1_2 == 1.2
    assert entry(document, "not-yet-applied")["state"] == "declared_only"
    assert entry(document, "not-yet-applied")["observed"] is None
    assert entry(document, "clickops")["state"] == "observed_only"
    assert entry(document, "clickops")["declared"] is None

    assert document["summary"] == {
        "matched": 8,
        "differs": 5,
        "declared_only": 1,
        "observed_only": 1,
        "cannot_match": 0,
        "incomplete": 1,
        "same": 2,
        "regressions": 3,
        "exit_code": 1,
    }


def test_every_seeded_difference_is_in_the_table(seeded: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "drift.txt"
    result = drift(*seeded, "-o", str(out), "--ignore-tag", "goog-*")
    assert result.exit_code == 1
    table = out.read_text()
    rows = table_rows(table)

    def row(*cells: str) -> None:
        """A row whose columns start with `cells` (folded cells joined, spaces ignored)."""
        wanted = ["".join(c.split()) for c in cells]
        assert any(all(w in got for w, got in zip(wanted, r, strict=False)) for r in rows), (cells, table)

    row("regression", "moved-region", "residency.data-in-zone", "pass", "fail", "infra/main.tf:10")
    row("regression", "lost-cmk", "encryption.customer-managed-key", "pass", "fail")
    row("regression", "exports", "transport.tls-minimum", "pass", "fail")
    row("differs", "moved-region", "location.primary", "europe-west1", "us-east1", "infra/main.tf:10")
    row("differs", "moved-region", "location.regions", '["europe-west1"]', '["us-east1"]')
    row("differs", "lost-cmk", "encryption.key_management", "customer-managed", "provider-managed")
    row("differs", "lost-cmk", "encryption.key_location", "europe-west1", "absent")
    row("differs", "exports", "transport.min_tls_version", "TLS1_2", "TLS1_0")
    row("differs", "retagged", "tags.owner", "platform", "data-team", "infra/main.tf:30")
    row("differs", "hand-fixed", "transport.plaintext_refused", "false", "true")
    row("fixed outside code", "hand-fixed", "transport.plaintext-refused", "fail", "pass")
    row("cannot compare", "after-apply", "encryption.key_location", "declared: not_known_until_apply")
    row("declared only", "not-yet-applied", "declared, not observed", "", "", "infra/main.tf:70")
    row("observed only", "clickops", "observed, not declared")
    assert "goog-managed-by" not in table and "unchanged" not in table and "reports" not in table
    assert "8 matched (2 same, 5 differ, 1 incomplete), 1 declared only, 1 observed only" in table


def test_markdown_leads_with_declared_compliant_observed_failing(
    seeded: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "drift.md"
    assert drift(*seeded, "--format", "markdown", "-o", str(out)).exit_code == 1
    text = out.read_text()
    assert text.startswith("## auditor drift: DIFFERENCES")
    regressions = text.index("### Declared compliant, observed failing (3)")
    assert regressions < text.index("### Differences and gaps")
    assert "residency.data\\-in\\-zone" in text or "residency.data-in-zone" in text


def test_only_unknowns_is_incomplete_not_equal(tmp_path: Path) -> None:
    declared, observed = inventories(
        tmp_path, {"after-apply": SEEDED["after-apply"], "unchanged": SEEDED["unchanged"]}
    )
    result = drift(declared, observed)
    assert result.exit_code == 3
    assert result.stdout.strip().splitlines()[-1].startswith("incomplete: 1 matched resource(s)")
    assert drift(declared, observed, "--allow-incomplete").exit_code == 0


def test_nothing_differs_exits_0(tmp_path: Path) -> None:
    declared, observed = inventories(
        tmp_path, {"unchanged": SEEDED["unchanged"], **{"reports": CONTAINERS["reports"]}}
    )
    code, document = as_json(declared, observed, tmp_path)
    assert code == 0 and document["summary"]["same"] == 2


def test_nothing_to_compare_is_not_a_pass(tmp_path: Path) -> None:
    declared, observed = inventories(tmp_path, {})
    result = drift(declared, observed)
    assert result.exit_code == 3 and "nothing compared" in result.stdout
    assert drift(declared, observed, "--allow-empty").exit_code == 0


def test_a_shared_name_without_the_account_cannot_be_matched(tmp_path: Path) -> None:
    """Two storage accounts each have an `exports` container; the code does not say which."""
    declared, observed = inventories(
        tmp_path,
        {
            "a": (container("exports", None, declared=True, min_tls="TLS1_2"), None),
            "b": (None, container("exports", "acmelegacy", declared=False, min_tls="TLS1_2")),
            "c": (None, container("exports", "acmemain", declared=False, min_tls="TLS1_2")),
        },
    )
    code, document = as_json(declared, observed, tmp_path)
    assert code == 3  # not a difference, not a pass
    [only] = document["resources"]  # the two observed ones are part of the ambiguity, not "not in code"
    assert only["state"] == "cannot_match" and "2 observed record(s)" in only["reason"]


def test_a_coverage_gap_of_the_live_scan_hides_instead_of_missing(tmp_path: Path) -> None:
    declared = tmp_path / "iac.jsonl"
    observed = tmp_path / "live.jsonl"
    write_inventory(declared, [record("elsewhere", declared=True, account="other-project")])
    write_inventory(
        observed,
        [
            CoverageGap(
                provider="gcp",
                account="other-project",
                scope="project",
                code=UnknownCode.ACCESS_DENIED,
                reason="403 storage.buckets.list",
            )
        ],
    )
    code, document = as_json(declared, observed, tmp_path)
    assert code == 3
    [hidden] = document["resources"]
    assert hidden["state"] == "cannot_match" and "coverage gap" in hidden["reason"]


def test_observed_only_can_be_limited_to_the_declared_accounts(tmp_path: Path) -> None:
    declared, observed = inventories(
        tmp_path,
        {
            "unchanged": SEEDED["unchanged"],
            "clickops": SEEDED["clickops"],
            "other": (None, record("other", declared=False, account="unrelated-project")),
        },
    )
    _, everything = as_json(declared, observed, tmp_path)
    assert {r["name"] for r in everything["resources"] if r["state"] == "observed_only"} == {
        "clickops",
        "other",
    }
    code, limited = as_json(declared, observed, tmp_path, "--only-declared-accounts")
    assert code == 1
    assert {r["name"] for r in limited["resources"] if r["state"] == "observed_only"} == {"clickops"}


def test_bad_input_is_exit_2_and_writes_nothing(seeded: tuple[Path, Path], tmp_path: Path) -> None:
    declared, observed = seeded
    broken = tmp_path / "broken.jsonl"
    broken.write_text(observed.read_text().splitlines()[0][:40] + "\n")
    out = tmp_path / "never.json"
    result = drift(declared, broken, "--format", "json", "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"error: {broken}:1:")
    assert not out.exists()
    result = drift(declared, observed, "--param", "no_such=1", "-o", str(out))
    assert result.exit_code == 2 and not out.exists()


def test_an_account_the_code_does_not_name_matches_any_account(tmp_path: Path) -> None:
    """Scanners write `unknown` when neither the file nor an option names the account."""
    declared, observed = inventories(
        tmp_path,
        {
            "moved-region": (
                record("moved-region", declared=True, account="unknown"),
                SEEDED["moved-region"][1],
            )
        },
    )
    code, document = as_json(declared, observed, tmp_path)
    assert code == 1
    moved = entry(document, "moved-region")
    assert moved["state"] == "differs" and moved["declared"]["account"] is None
    assert moved["observed"]["account"] == PROJECT


def test_a_name_not_known_until_apply_cannot_be_matched(tmp_path: Path) -> None:
    """Neither listed as not deployed nor compared: the real name is not in the code."""
    prefixed = record("prefixed", declared=True)
    generated = prefixed.model_copy(update={"name": "google_storage_bucket.prefixed"})  # named by its address
    listed = record(
        "logs-[unique suffix]",
        declared=True,
        unknown={
            "name": Unknown(code=UnknownCode.NOT_KNOWN_UNTIL_APPLY, reason="name_prefix: generated at apply")
        },
    )
    declared, observed = inventories(tmp_path, {"a": (generated, None), "b": (listed, None)})
    code, document = as_json(declared, observed, tmp_path)
    assert code == 3
    reasons = sorted(r["reason"] for r in document["resources"])
    assert [r["state"] for r in document["resources"]] == ["cannot_match", "cannot_match"]
    assert reasons == [
        "name not known (declared: not_known_until_apply: name_prefix: generated at apply)",
        "name not known (declared: the record is named by its code address, the real name is not in the file)",
    ]
