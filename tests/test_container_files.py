"""The container files, checked without building: Containerfile, .ci/container and the CronJob.

The build itself (and its in-image demo audit) runs in CI through `.ci/container`; these tests pin
what the build cannot see: that the CronJob names the tag the build produces, runs as the image's
user on a read-only root filesystem, and that its auditor.yaml validates with everything it writes
on a writable volume.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from auditor.audit.bundle import write_keypair
from auditor.audit.config import load_config
from auditor.audit.job import validate_config

REPO = Path(__file__).resolve().parents[1]
CONTAINERFILE = REPO / "Containerfile"
BUILD_SCRIPT = REPO / ".ci" / "container"
CRONJOB = REPO / "examples" / "kubernetes" / "cronjob.yaml"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

# The official Python image, slim variant, as a fully qualified name (no short-name lookup).
_OFFICIAL_SLIM = re.compile(r"^docker\.io/library/python:(?P<minor>3\.\d+)-slim(-[a-z]+)?$")


@dataclass(frozen=True)
class Instruction:
    """One Containerfile instruction, continuation lines joined."""

    keyword: str
    argument: str


def _instructions(text: str) -> list[Instruction]:
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Containerfile ends inside a continued line"
    parsed = (line.strip().partition(" ") for line in logical)
    return [Instruction(keyword.upper(), argument.strip()) for keyword, _, argument in parsed]


def _final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    return instructions[starts[-1] :]


def _manifests() -> dict[str, dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all(CRONJOB.read_text()) if d is not None]
    by_kind = {d["kind"]: d for d in documents}
    assert len(by_kind) == len(documents), "one object of each kind"
    return by_kind


def _pod(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = manifests["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def _container_uid() -> int:
    users = [
        ins.argument
        for ins in _final_stage(_instructions(CONTAINERFILE.read_text()))
        if ins.keyword == "USER"
    ]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {users[-1]}: numeric, so runAsNonRoot can verify it"
    return int(uid)


def test_containerfile_base_is_an_argument_defaulting_to_the_official_slim_python() -> None:
    instructions = _instructions(CONTAINERFILE.read_text())
    first_from = next(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    base_args = [ins.argument for ins in instructions[:first_from] if ins.keyword == "ARG"]
    defaults = dict(arg.split("=", 1) for arg in base_args if "=" in arg)
    match = _OFFICIAL_SLIM.match(defaults.get("BASE", ""))
    assert match, f"ARG BASE default {defaults.get('BASE')!r} is not an official python slim image"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11" and tuple(map(int, match["minor"].split("."))) >= (3, 11)
    stages = [ins.argument.split()[0] for ins in instructions if ins.keyword == "FROM"]
    assert stages and all(stage == "${BASE}" for stage in stages), stages


def test_image_extras_exist_and_the_ci_wheelhouse_holds_them() -> None:
    instructions = _instructions(CONTAINERFILE.read_text())
    defaults = dict(
        ins.argument.split("=", 1) for ins in instructions if ins.keyword == "ARG" and "=" in ins.argument
    )
    extras = defaults["EXTRAS"].split(",")
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras and set(extras) <= set(declared), extras
    (wheel_command,) = [line for line in BUILD_SCRIPT.read_text().splitlines() if " wheel " in line]
    assert wheel_command.endswith(f"-w dist/wheelhouse '.[{defaults['EXTRAS']}]'")


def test_containerfile_runs_auditor_as_a_non_root_user_and_smoke_tests_as_that_user() -> None:
    final = _final_stage(_instructions(CONTAINERFILE.read_text()))
    keywords = [ins.keyword for ins in final]
    assert _container_uid() != 0
    entrypoint = next(ins.argument for ins in final if ins.keyword == "ENTRYPOINT")
    assert json.loads(entrypoint) == ["auditor"]
    smoke = [
        i for i, ins in enumerate(final) if ins.keyword == "RUN" and "auditor audit --demo" in ins.argument
    ]
    assert smoke, "the final stage runs the demo audit"
    assert keywords.index("USER") < smoke[0], "the smoke test runs as the non-root user"
    assert "-eq 1" in final[smoke[0]].argument, "the demo audit must exit 1 (its estate has violations)"


def test_build_script_is_executable_valid_bash_and_called_by_ci() -> None:
    assert BUILD_SCRIPT.is_file() and os.access(BUILD_SCRIPT, os.X_OK)
    subprocess.run(["bash", "-n", str(BUILD_SCRIPT)], check=True)
    calls = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if ".ci/container" in line]
    assert calls and not calls[0].lstrip().startswith("#")


def test_cronjob_names_the_image_the_ci_build_tags() -> None:
    templates = re.findall(r"^image=(\S+)$", BUILD_SCRIPT.read_text(), re.MULTILINE)
    assert templates == ["localhost/auditor:$version"]
    built = templates[0].replace("$version", VERSION)
    (container,) = _pod(_manifests())["containers"]
    assert container["image"] == built
    assert container["args"] == ["audit", "--config", "/etc/auditor/auditor.yaml"]


def test_cronjob_runs_as_the_image_user_on_a_read_only_root() -> None:
    pod = _pod(_manifests())
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _container_uid()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {m["name"] for m in container["volumeMounts"]} <= {v["name"] for v in pod["volumes"]}
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"]), "Python needs a writable /tmp"


def test_cronjob_takes_secrets_from_secrets_and_cloud_credentials_from_workload_identity() -> None:
    manifests = _manifests()
    (container,) = _pod(manifests)["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["AUDITOR_DATABASE_URL"]["valueFrom"]
    secret_like = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CONNECTION_STRING")
    assert not [name for name, e in env.items() if secret_like.search(name) and "value" in e]
    annotations = manifests["ServiceAccount"]["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert _pod(manifests)["serviceAccountName"] == manifests["ServiceAccount"]["metadata"]["name"]


def _pod_filesystem(root: Path, manifests: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Lay the pod's mounts out under `root`: the ConfigMap's files, a fresh signing key for the
    Secret, empty directories for the volumes. Returns the environment the container gets."""
    pod = _pod(manifests)
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True)
        if "configMap" in volumes[mount["name"]]:
            for name, text in manifests["ConfigMap"]["data"].items():
                (target / name).write_text(_relocated(text, root, container))
    env = {e["name"]: _relocated(e["value"], root, container) for e in container["env"] if "value" in e}
    write_keypair(Path(env["AUDITOR_SIGNING_KEY"]), root / "signing.pub", passphrase=None, force=False)
    return env


def _relocated(text: str, root: Path, container: dict[str, Any]) -> str:
    """`text` with each path under a mount moved under `root` (one pass: `root` is itself in /tmp)."""
    mounts = sorted((m["mountPath"] for m in container["volumeMounts"]), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(m) + "(?=/)" for m in mounts))
    return pattern.sub(lambda match: f"{root}{match[0]}", text)


def test_cronjob_config_validates_and_writes_only_to_the_claimed_volume(tmp_path: Path) -> None:
    manifests = _manifests()
    pod = _pod(manifests)
    (container,) = pod["containers"]
    env = _pod_filesystem(tmp_path, manifests)
    config = load_config(tmp_path / container["args"][-1].lstrip("/"), environ=env)
    validate_config(config)  # raises InputErrors (exit 2 in the pod) on any problem

    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = manifests["PersistentVolumeClaim"]["metadata"]["name"]
    claimed = [
        tmp_path / m["mountPath"].lstrip("/")
        for m in container["volumeMounts"]
        if volumes[m["name"]].get("persistentVolumeClaim", {}).get("claimName") == claim
        and not m.get("readOnly")
    ]
    database = Path(config.database_url().removeprefix("sqlite:///"))
    assert config.database_url().startswith("sqlite:///")
    for written in (config.outputs.directory, database, *config.report_paths().values()):
        assert any(written.is_relative_to(volume) for volume in claimed), written
    signing = next(m for m in container["volumeMounts"] if "secret" in volumes[m["name"]])
    assert config.signing.private_key is not None
    assert config.signing.private_key.is_relative_to(tmp_path / signing["mountPath"].lstrip("/"))
