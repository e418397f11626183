"""auditor.yaml: validation, relative paths, environment overrides, the redacted form."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from auditor.audit.config import (
    AuditConfig,
    Outputs,
    demo_config,
    format_duration,
    load_config,
    parse_duration,
)
from auditor.errors import InputError
from auditor.scale.units import plan_units

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "auditor.yaml"


def test_the_example_config_is_valid(tmp_path: Path) -> None:
    config = load_config(EXAMPLE, environ={})
    assert config.name == "prod-estate" and config.fail_on.value == "high"
    assert config.waivers == EXAMPLE.parent / "waivers.yaml"  # relative to the file
    assert config.outputs.directory == EXAMPLE.parent / "reports"
    assert config.schedule.interval == timedelta(hours=24)
    assert config.database_url() == f"sqlite:///{EXAMPLE.parent / 'reports' / 'history.db'}"
    sections = config.clouds.configured()
    assert set(sections) == {"aws", "gcp", "azure"}
    assert sections["aws"].scan_options().max_attempts == 8  # `options:` reach the scanner, typed
    for section in sections.values():
        section.check()  # every scanner accepts its section
    azure = [u for u in plan_units(sections).units if u.source == "azure"]
    assert [u.settings()["subscriptions"] for u in azure] == [["6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"]]


def test_environment_overrides_secrets_and_redaction_hides_them(tmp_path: Path) -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA\n-----END PRIVATE KEY-----"
    env = {"AUDITOR_DATABASE_URL": "postgresql://audit:s3cr3t@127.0.0.1:5432/a", "AUDITOR_SIGNING_KEY": pem}
    config = load_config(EXAMPLE, environ=env)
    assert config.database_url() == env["AUDITOR_DATABASE_URL"]
    assert config.signing_key_pem == pem.encode() and config.signing.private_key is None
    redacted = config.redacted()
    text = str(redacted)
    assert "s3cr3t" not in text and "MC4CAQ" not in text
    assert redacted["history"]["database_url"] == "postgresql://audit:***@127.0.0.1:5432/a"
    assert redacted["history"]["database_url_source"] == "$AUDITOR_DATABASE_URL"
    assert redacted["signing"]["private_key"] == "<from $AUDITOR_SIGNING_KEY>"
    assert config.digest() == load_config(EXAMPLE, environ=env).digest()
    path_key = load_config(EXAMPLE, environ={"AUDITOR_SIGNING_KEY": str(tmp_path / "k.key")})
    assert path_key.signing.private_key == tmp_path / "k.key"


def test_secret_looking_scanner_options_are_redacted(tmp_path: Path) -> None:
    config_file = tmp_path / "auditor.yaml"
    config_file.write_text(
        "clouds:\n  azure:\n    subscriptions: [s]\n    options: {client-secret: hush, timeout: 5}\n"
    )
    redacted = load_config(config_file, environ={}).redacted()
    assert redacted["clouds"]["azure"]["options"] == {"client-secret": "<redacted>", "timeout": 5}


def test_demo_config_needs_no_file(tmp_path: Path) -> None:
    config = demo_config(tmp_path / "out", environ={})
    assert config.name == "demo" and config.inventories[0].is_file() and config.waivers is not None
    assert config.check_params() == {"zone": "eu"}
    assert config.database_url().endswith(str(tmp_path / "out" / "history.db"))


def test_params_become_check_strings() -> None:
    config = AuditConfig(params={"zone": "eu", "strict": True, "allowed": ["a", "b"], "n": 3})
    assert config.check_params() == {"zone": "eu", "strict": "true", "allowed": "a,b", "n": "3"}


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("24h", 86400), ("1d", 86400), ("1w", 604800)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(timedelta(seconds=seconds))) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["often", "0h", "-1d", "", True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_empty_and_unreadable_files(tmp_path: Path) -> None:
    empty = tmp_path / "auditor.yaml"
    empty.write_text("")
    assert load_config(empty, environ={}).name == "default"
    with pytest.raises(InputError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", environ={})


def test_allow_empty_is_a_gate_setting(tmp_path: Path) -> None:
    config_file = tmp_path / "auditor.yaml"
    config_file.write_text("name: x\nfail_on: high\n")
    assert load_config(config_file, environ={}).allow_empty is False
    config_file.write_text("name: x\nallow_empty: true\n")
    config = load_config(config_file, environ={})
    assert config.allow_empty is True and config.redacted()["allow_empty"] is True
    config_file.write_text("name: x\nallow_empty: sometimes\n")
    with pytest.raises(InputError, match=r"auditor\.yaml:2: allow_empty"):
        load_config(config_file, environ={})


def test_digest_of_a_config_without_allow_empty_is_unchanged() -> None:
    """Runs recorded before `allow_empty` existed keep comparing equal: the key counts only when set."""
    config = AuditConfig(
        name="stable", outputs=Outputs(directory=Path("/srv/auditor/reports")), params={"zone": "eu"}
    )
    # The digest auditor computed for this configuration before `allow_empty` was added.
    assert config.digest() == "f72ccd8bdf646e11f8d46fae31e15edbed0347ce2ccca8048c68bd632c674827"
    assert config.model_copy(update={"allow_empty": True}).digest() != config.digest()


def test_validate_config_writes_nothing_and_names_the_problem(tmp_path: Path) -> None:
    from auditor.audit.job import validate_config

    inventory = tmp_path / "inv.jsonl"
    inventory.write_text("")
    config_file = tmp_path / "auditor.yaml"
    config_file.write_text(
        f"inventories: [{inventory}]\noutputs: {{directory: out}}\nwaivers: w.yaml\nparams: {{zone: eu}}\n"
    )
    config = load_config(config_file, environ={})
    with pytest.raises(InputError, match="waivers file not found"):
        validate_config(config)
    (tmp_path / "w.yaml").write_text("waivers: []\n")
    validate_config(config)
    (tmp_path / "out").write_text("a file where the output directory goes")
    with pytest.raises(InputError, match="not a directory"):
        validate_config(config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auditor.yaml", "inv.jsonl", "out", "w.yaml"]


def test_list_file_fields_are_resolved_from_the_config_and_checked(tmp_path: Path) -> None:
    from auditor.audit.job import validate_config

    infra = tmp_path / "infra"
    infra.mkdir()
    (infra / "a.json").write_text("{}")
    config_file = tmp_path / "auditor.yaml"
    config_file.write_text("clouds:\n  terraform:\n    files: [infra/a.json, infra/b.json]\n")
    config = load_config(config_file, environ={})
    section = config.clouds.configured()["terraform"]
    assert section.files == [infra / "a.json", infra / "b.json"]  # type: ignore[attr-defined]
    with pytest.raises(
        InputError, match=r"auditor\.yaml:3: clouds\.terraform\.files: file not found: infra/b\.json"
    ):
        validate_config(config)
