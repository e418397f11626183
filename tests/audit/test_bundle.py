"""Evidence bundles: `auditor verify` passes untouched bundles and names the first tampered file."""

from __future__ import annotations

import base64
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result

from auditor.audit.bundle import load_private_key, sha256_file

RunCli = Callable[..., Result]


@pytest.fixture(scope="module")
def signed_runs(tmp_path_factory: pytest.TempPathFactory, demo_inventory_path: Path) -> dict[str, Any]:
    """Two signed audit runs (directory bundles) and one as .tar.gz, plus a second key pair."""
    from click.testing import CliRunner

    from auditor.cli import cli

    root = tmp_path_factory.mktemp("bundles")
    runner = CliRunner()

    def run(*args: str | Path) -> Result:
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    for name in ("a", "b"):
        assert (
            run(
                "keygen", "--private-key", root / f"{name}.key", "--public-key", root / f"{name}.pub"
            ).exit_code
            == 0
        )
    config: dict[str, Any] = {
        "name": "bundles",
        "inventories": [str(demo_inventory_path)],
        "params": {"zone": "eu"},
        "outputs": {"directory": "out", "formats": ["html", "json"]},
        "signing": {"private_key": "a.key"},
    }
    (root / "auditor.yaml").write_text(yaml.safe_dump(config))
    for _ in range(2):
        assert run("audit", "--config", root / "auditor.yaml").exit_code == 1
    config["outputs"]["bundle"] = "tar.gz"
    config["name"] = "tarred"
    (root / "tar.yaml").write_text(yaml.safe_dump(config))
    assert run("audit", "--config", root / "tar.yaml").exit_code == 1
    del config["signing"]
    config["outputs"]["bundle"] = "directory"
    config["outputs"]["directory"] = "unsigned"
    (root / "unsigned.yaml").write_text(yaml.safe_dump(config))
    assert run("audit", "--config", root / "unsigned.yaml").exit_code == 1
    bundles = sorted(p for p in (root / "out" / "bundles").iterdir() if p.is_dir())
    return {
        "root": root,
        "first": bundles[0],
        "second": bundles[1],
        "tar": next((root / "out" / "bundles").glob("*.tar.gz")),
        "unsigned": next((root / "unsigned" / "bundles").iterdir()),
    }


@pytest.fixture(scope="module")
def demo_inventory_path() -> Path:
    from auditor.policy.loader import shipped_root

    return shipped_root() / "fixtures" / "demo-estate.jsonl"


def copy_bundle(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def verify(run_cli: RunCli, bundle: Path, key: Path | None) -> Result:
    args: list[str | Path] = ["verify", bundle]
    if key is not None:
        args += ["--public-key", key]
    return run_cli(*args)


def test_untouched_bundles_verify(signed_runs: dict[str, Any], run_cli: RunCli) -> None:
    key = signed_runs["root"] / "a.pub"
    for name in ("first", "second", "tar"):
        result = verify(run_cli, signed_runs[name], key)
        assert result.exit_code == 0, result.stderr
        assert "the given public key" in result.stdout
    embedded = verify(run_cli, signed_runs["first"], None)
    assert embedded.exit_code == 0 and "pass --public-key" in embedded.stdout
    unsigned = verify(run_cli, signed_runs["unsigned"], None)
    assert unsigned.exit_code == 0 and "UNSIGNED" in unsigned.stdout
    manifest = json.loads((signed_runs["first"] / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    assert {
        "inventory.jsonl",
        "findings.json",
        "config.json",
        "reports/report.html",
        "reports/report.json",
    } <= listed
    assert "waivers/demo-waivers.yaml" not in listed  # this config has no waivers
    assert manifest["run"]["job"] == "bundles" and manifest["tool"]["version"]
    assert manifest["signing"]["algorithm"] == "ed25519"


def flip_byte(bundle: Path) -> str:
    path = bundle / "findings.json"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return "findings.json: SHA-256 does not match"


def remove_file(bundle: Path) -> str:
    (bundle / "reports" / "report.html").unlink()
    return "reports/report.html: missing"


def add_file(bundle: Path) -> str:
    (bundle / "reports" / "extra.html").write_text("<p>added later</p>")
    return "reports/extra.html: file not in the manifest"


def add_symlink(bundle: Path) -> str:
    (bundle / "policies" / "link").symlink_to("/etc")
    return "policies/link: symlink not in the manifest"


def reseal_without_key(bundle: Path) -> str:
    """Tamper, then rewrite the manifest's digest to match: only the signature catches it."""
    inventory = bundle / "inventory.jsonl"
    inventory.write_text(inventory.read_text().replace("us-east-1", "eu-west-1"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == "inventory.jsonl":
            entry["sha256"] = sha256_file(inventory)
            entry["size"] = inventory.stat().st_size
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return "manifest.json: signature does not verify"


TAMPERING = {
    "one byte changed": flip_byte,
    "file removed": remove_file,
    "file added": add_file,
    "symlink added": add_symlink,
    "manifest re-sealed without the key": reseal_without_key,
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_each_tampering_is_detected_and_named(
    case: str, signed_runs: dict[str, Any], run_cli: RunCli, tmp_path: Path
) -> None:
    bundle = copy_bundle(signed_runs["first"], tmp_path)
    expected = TAMPERING[case](bundle)
    for key in (signed_runs["root"] / "a.pub", None):
        result = verify(run_cli, bundle, key)
        assert result.exit_code == 1
        assert result.stdout.startswith(f"FAILED {bundle}: {expected}") and result.stderr == "", result.output


def test_swapped_manifest_is_detected(signed_runs: dict[str, Any], run_cli: RunCli, tmp_path: Path) -> None:
    """Another run's manifest (validly signed by the same key) does not describe this bundle."""
    bundle = copy_bundle(signed_runs["first"], tmp_path)
    for name in ("manifest.json", "manifest.sig"):
        shutil.copyfile(signed_runs["second"] / name, bundle / name)
    result = verify(run_cli, bundle, signed_runs["root"] / "a.pub")
    assert result.exit_code == 1
    assert result.stdout.startswith(f"FAILED {bundle}: findings.json: SHA-256 does not match"), result.stdout
    # The manifest alone swapped: its signature no longer matches.
    bundle2 = copy_bundle(signed_runs["first"], tmp_path / "only-manifest")
    shutil.copyfile(signed_runs["second"] / "manifest.json", bundle2 / "manifest.json")
    result = verify(run_cli, bundle2, signed_runs["root"] / "a.pub")
    assert result.exit_code == 1 and "manifest.json: signature does not verify" in result.stdout


def test_signature_of_another_key_is_rejected(
    signed_runs: dict[str, Any], run_cli: RunCli, tmp_path: Path
) -> None:
    bundle = copy_bundle(signed_runs["first"], tmp_path)
    other = load_private_key(signed_runs["root"] / "b.key")
    (bundle / "manifest.sig").write_bytes(
        base64.b64encode(other.sign((bundle / "manifest.json").read_bytes()))
    )
    result = verify(run_cli, bundle, signed_runs["root"] / "a.pub")
    assert result.exit_code == 1 and "signature does not verify with the given public key" in result.stdout
    # Verified against key b, the genuine signature of key a is rejected as well.
    genuine = verify(run_cli, signed_runs["first"], signed_runs["root"] / "b.pub")
    assert genuine.exit_code == 1 and "manifest.json: signature does not verify" in genuine.stdout


def test_unsigned_bundle_fails_when_a_key_is_required(signed_runs: dict[str, Any], run_cli: RunCli) -> None:
    result = verify(run_cli, signed_runs["unsigned"], signed_runs["root"] / "a.pub")
    assert result.exit_code == 1 and "manifest.sig: missing" in result.stdout


def test_removed_signature_is_detected(signed_runs: dict[str, Any], run_cli: RunCli, tmp_path: Path) -> None:
    bundle = copy_bundle(signed_runs["first"], tmp_path)
    (bundle / "manifest.sig").unlink()
    result = verify(run_cli, bundle, None)  # the manifest says it was signed
    assert result.exit_code == 1 and "manifest.sig: missing" in result.stdout


def test_tampered_archive_is_detected(signed_runs: dict[str, Any], run_cli: RunCli, tmp_path: Path) -> None:
    source: Path = signed_runs["tar"]
    extracted = tmp_path / "x"
    with tarfile.open(source) as tar:
        tar.extractall(extracted, filter="data")
    (top,) = list(extracted.iterdir())
    flip_byte(top)
    tampered = tmp_path / source.name
    with tarfile.open(tampered, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    result = verify(run_cli, tampered, signed_runs["root"] / "a.pub")
    assert result.exit_code == 1 and "findings.json: SHA-256 does not match" in result.stdout


def test_verify_bad_input(run_cli: RunCli, tmp_path: Path) -> None:
    assert run_cli("verify", tmp_path / "nope").exit_code == 2
    junk = tmp_path / "junk.tar.gz"
    junk.write_text("not an archive")
    assert run_cli("verify", junk).exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("verify", empty)
    assert result.exit_code == 1 and "manifest.json: missing" in result.stdout


def test_keygen_refuses_to_overwrite_and_protects_the_private_key(run_cli: RunCli, tmp_path: Path) -> None:
    private, public = tmp_path / "k.key", tmp_path / "k.pub"
    assert run_cli("keygen", "--private-key", private, "--public-key", public).exit_code == 0
    assert private.stat().st_mode & 0o077 == 0
    again = run_cli("keygen", "--private-key", private, "--public-key", public)
    assert again.exit_code == 2 and "--force" in again.stderr
    assert run_cli("keygen", "--private-key", private, "--public-key", public, "--force").exit_code == 0


def test_encrypted_key_needs_its_passphrase(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auditor.errors import InputError

    monkeypatch.setenv("AUDITOR_SIGNING_KEY_PASSPHRASE", "correct horse")
    assert (
        run_cli("keygen", "--private-key", tmp_path / "k.key", "--public-key", tmp_path / "k.pub").exit_code
        == 0
    )
    assert b"ENCRYPTED" in (tmp_path / "k.key").read_bytes()
    load_private_key(tmp_path / "k.key", b"correct horse")
    with pytest.raises(InputError, match="encrypted"):
        load_private_key(tmp_path / "k.key", None)
