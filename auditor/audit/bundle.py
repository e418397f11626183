"""Evidence bundles: every input and output of a run, a manifest of SHA-256 digests, an Ed25519 signature.

Layout (a directory, or the same inside a .tar.gz)::

    manifest.json   format, tool version, run metadata, every other file with its SHA-256 and size
    manifest.sig    base64 Ed25519 signature of manifest.json's exact bytes (when a key is set)
    inventory.jsonl, findings.json, reports/..., config.json, policies/..., waivers/..., baseline/...

`verify_bundle` checks the signature, then every listed file, then that nothing was added.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from auditor import __version__
from auditor.atomicfile import OWNER_PATTERN, atomic_output, owner_tag, remove_stale, temp_pattern_of
from auditor.errors import InputError
from auditor.inputfile import read_input

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
BUNDLE_FORMAT = "auditor-evidence-bundle/1"
MAX_KEY_BYTES = 64 * 1024  # a PEM key file; an Ed25519 key is a few hundred bytes


# --- keys ----------------------------------------------------------------------------------------


def generate_key() -> Ed25519PrivateKey:
    """A new Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key: a short, stable fingerprint."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def write_keypair(private_path: Path, public_path: Path, *, passphrase: bytes | None, force: bool) -> str:
    """Write a new key pair (private key mode 0600); returns the key id. Refuses to overwrite."""
    for path in (private_path, public_path):
        if path.exists() and not force:
            raise InputError(str(path), "already exists (use --force to replace it)")
    key = generate_key()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_key_pem(key, passphrase))
    os.chmod(private_path, 0o600)
    with atomic_output(public_path) as handle:
        handle.write(public_key_pem(key.public_key()))
    return key_id(key.public_key())


def load_private_key(source: Path | bytes, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file or PEM bytes; never echoes the key in errors."""
    where = str(source) if isinstance(source, Path) else "$AUDITOR_SIGNING_KEY"
    if isinstance(source, Path):
        data = read_input(source, limit=MAX_KEY_BYTES, what="the signing key")
    else:
        data = source
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:  # encrypted without passphrase, or the reverse
        if passphrase is None:
            raise InputError(
                where, "the signing key is encrypted: set $AUDITOR_SIGNING_KEY_PASSPHRASE"
            ) from exc
        raise InputError(
            where, "the signing key is not encrypted: unset $AUDITOR_SIGNING_KEY_PASSPHRASE"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InputError(where, "not a PEM private key (or wrong passphrase)") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(where, "the signing key must be Ed25519 (make one with `auditor keygen`)")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (a regular file of at most MAX_KEY_BYTES)."""
    data = read_input(path, limit=MAX_KEY_BYTES, what="the public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InputError(str(path), "not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(str(path), "the public key must be Ed25519")
    return key


# --- writing -------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _bundle_files(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            yield path.relative_to(root).as_posix(), path
        for name in dirnames:
            if (Path(dirpath) / name).is_symlink():  # os.walk lists but does not follow them
                yield (Path(dirpath) / name).relative_to(root).as_posix(), Path(dirpath) / name


# Staging directories `.run-<12 hex>.<pid>-<host>.partial` (older versions: no owner tag).
STAGING_PATTERN = re.compile(rf"^\.run-[0-9a-f]{{12}}(?:\.(?P<owner>{OWNER_PATTERN}))?\.partial$")
# Sealed bundle archives, `<UTC time>-<run id prefix>.tar.gz`: the names of their temporaries.
ARCHIVE_TEMP_PATTERN = temp_pattern_of(r"\d{8}T\d{6}Z-[0-9a-f-]{8}\.tar\.gz")


def staging_directory(parent: Path) -> Path:
    """A new staging directory name in `parent` (not created), tagged with this process as owner."""
    return parent / f".run-{uuid.uuid4().hex[:12]}.{owner_tag()}.partial"


def remove_stale_bundle_temps(output_dir: Path, *, started: float) -> list[Path]:
    """Remove what killed runs left of their bundles: staging directories in `output_dir` and
    half-written archives in `output_dir/bundles` (see `auditor.atomicfile.is_stale`)."""
    removed = remove_stale(output_dir, STAGING_PATTERN, started=started)
    removed += remove_stale(output_dir / "bundles", ARCHIVE_TEMP_PATTERN, started=started)
    return removed


@dataclass
class BundleWriter:
    """Collects files into a staging directory, then seals them with a manifest (and signature)."""

    staging: Path

    def __post_init__(self) -> None:
        self.staging.mkdir(parents=True, exist_ok=False)

    def add_file(self, source: Path, name: str) -> None:
        """Copy `source` to `name` (a relative POSIX path) in the bundle."""
        target = self._target(name)
        shutil.copyfile(source, target)

    def add_bytes(self, name: str, data: bytes) -> None:
        """Write `data` to `name` in the bundle."""
        self._target(name).write_bytes(data)

    def _target(self, name: str) -> Path:
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or ".." in parts or name in (MANIFEST, SIGNATURE):
            raise ValueError(f"invalid bundle path {name!r}")
        target = self.staging.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def seal(
        self,
        destination: Path,
        run: dict[str, Any],
        *,
        key: Ed25519PrivateKey | None,
        archive: bool,
    ) -> tuple[Path, str]:
        """Write manifest (+signature), move into place; returns (bundle path, manifest SHA-256)."""
        files = [
            {"path": rel, "sha256": sha256_file(path), "size": path.stat().st_size}
            for rel, path in _bundle_files(self.staging)
        ]
        manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
            "tool": {"name": "auditor", "version": __version__},
            "run": run,
            "files": files,
            "signing": None,
        }
        if key is not None:
            public = key.public_key()
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            manifest["signing"] = {
                "algorithm": "ed25519",
                "key_id": key_id(public),
                "public_key": base64.b64encode(raw).decode(),
            }
        manifest_bytes = orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n"
        (self.staging / MANIFEST).write_bytes(manifest_bytes)
        if key is not None:
            (self.staging / SIGNATURE).write_bytes(base64.b64encode(key.sign(manifest_bytes)) + b"\n")
        digest = hashlib.sha256(manifest_bytes).hexdigest()
        if archive:
            target = destination.with_name(destination.name + ".tar.gz")
            with atomic_output(target) as handle, tarfile.open(fileobj=handle, mode="w:gz") as tar:
                tar.add(self.staging, arcname=destination.name, filter=_normalize_member)
            shutil.rmtree(self.staging)
            return target, digest
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.staging, destination)
        return destination, digest

    def discard(self) -> None:
        """Remove the staging directory (the run failed before sealing)."""
        shutil.rmtree(self.staging, ignore_errors=True)


def _normalize_member(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


# --- verifying -----------------------------------------------------------------------------------


@dataclass
class Verification:
    """The outcome of `verify_bundle`: problems in the order found (the first names a file)."""

    bundle: Path
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    signed: bool = False
    key_id: str | None = None
    key_pinned: bool = False
    run: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.problems


def verify_bundle(bundle: Path, public_key: Ed25519PublicKey | None = None) -> Verification:
    """Check the signature (against `public_key` if given), every file's SHA-256, and no extras."""
    if not bundle.exists():
        raise InputError(str(bundle), "no such bundle")
    if bundle.is_dir():
        return _verify_directory(bundle, bundle, public_key)
    if not tarfile.is_tarfile(bundle):
        raise InputError(str(bundle), "not a bundle directory or .tar.gz archive")
    with tempfile.TemporaryDirectory(prefix="auditor-verify-") as tmp:
        try:
            with tarfile.open(bundle, "r:*") as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as exc:
            result = Verification(bundle=bundle)
            result.problems.append(f"{bundle.name}: unreadable archive: {exc}")
            return result
        root = Path(tmp)
        entries = list(root.iterdir())
        if not (root / MANIFEST).exists() and len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
        return _verify_directory(root, bundle, public_key)


def _verify_directory(root: Path, shown: Path, public_key: Ed25519PublicKey | None) -> Verification:
    result = Verification(bundle=shown)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        result.problems.append(f"{MANIFEST}: missing")
        return result
    manifest_bytes = manifest_path.read_bytes()
    try:
        manifest = orjson.loads(manifest_bytes)
        files = manifest["files"]
        if manifest.get("format") != BUNDLE_FORMAT or not isinstance(files, list):
            raise ValueError("unknown format")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        result.problems.append(f"{MANIFEST}: not an auditor bundle manifest")
        return result
    result.run = manifest.get("run") or {}
    _check_signature(root, manifest, manifest_bytes, public_key, result)
    listed: set[str] = set()
    for entry in files:
        rel = str(entry.get("path", ""))
        parts = PurePosixPath(rel).parts
        if not parts or rel.startswith("/") or ".." in parts:
            result.problems.append(f"{rel or '?'}: unsafe path in the manifest")
            continue
        listed.add(rel)
        path = root.joinpath(*parts)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            result.problems.append(f"{rel}: not a regular file")
        elif not path.exists():
            result.problems.append(f"{rel}: missing from the bundle")
        elif sha256_file(path) != entry.get("sha256"):
            result.problems.append(f"{rel}: SHA-256 does not match the manifest")
        else:
            result.files_checked += 1
    for rel, path in _bundle_files(root):
        if rel in (MANIFEST, SIGNATURE) or rel in listed:
            continue
        kind = "symlink" if path.is_symlink() else "file"
        result.problems.append(f"{rel}: {kind} not in the manifest (added after sealing)")
    return result


def _check_signature(
    root: Path,
    manifest: dict[str, Any],
    manifest_bytes: bytes,
    public_key: Ed25519PublicKey | None,
    result: Verification,
) -> None:
    signing = manifest.get("signing")
    sig_path = root / SIGNATURE
    if not sig_path.is_file():
        if signing or public_key is not None:
            result.problems.append(f"{SIGNATURE}: missing (the bundle is not signed)")
        return
    try:
        signature = base64.b64decode(sig_path.read_bytes().strip(), validate=True)
    except ValueError:
        result.problems.append(f"{SIGNATURE}: not base64")
        return
    key = public_key
    if key is None:
        try:
            raw = base64.b64decode(str((signing or {})["public_key"]), validate=True)
            key = Ed25519PublicKey.from_public_bytes(raw)
        except (KeyError, TypeError, ValueError):
            result.problems.append(f"{MANIFEST}: names no valid signing key")
            return
    result.key_id = key_id(key)
    result.key_pinned = public_key is not None
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        who = "the given public key" if public_key is not None else "the key named in the manifest"
        result.problems.append(f"{MANIFEST}: signature does not verify with {who} ({result.key_id})")
        return
    result.signed = True
