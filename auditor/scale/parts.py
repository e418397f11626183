"""How a unit's sorted inventory part reaches this host (`scale.parts`, see docs/scale-out.md).

- `directory`: the worker writes the part into the parts directory, which this host and every
  worker must mount at the same path (NFS, EFS, ...); the task carries the directory's path.
- `returned`: the worker returns the part, zlib-compressed, in the unit's result, so it travels
  through the executor itself (Dask's own connections): the cluster needs no shared storage.
- a URL (`s3://bucket/prefix`, `gs://`, `abfs://`, `file:///path`, `memory://`): the worker writes
  the part under `<URL>/<run>/` with fsspec; this host downloads it and removes the run's objects.

Whichever way, this host ends up with the same sorted part files in its own parts directory, and a
returned or downloaded part is checked against the SHA-256 its worker computed, so the merge is the
same and a damaged part is a failed attempt, never a silently shorter inventory.
"""

from __future__ import annotations

import hashlib
import tempfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from auditor.atomicfile import atomic_output

DIRECTORY = "directory"
RETURNED = "returned"
AUTO = "auto"
CHOICES = (AUTO, DIRECTORY, RETURNED)
# URL schemes a parts location may use, and the package fsspec needs for each (None: fsspec itself).
URL_SCHEMES: dict[str, str | None] = {
    "s3://": "s3fs",
    "gs://": "gcsfs",
    "gcs://": "gcsfs",
    "abfs://": "adlfs",
    "abfss://": "adlfs",
    "az://": "adlfs",
    "file://": None,
    "memory://": None,
}
_CHUNK = 1 << 20
_COMPRESS_LEVEL = 1  # JSONL parts shrink several-fold at level 1, at hundreds of MB/s


@dataclass(frozen=True)
class Delivery:
    """What a worker hands back with a unit's result: where the part is, its bytes when returned
    (zlib-compressed), and the SHA-256 of the sorted part ('' where the host reads it in place)."""

    location: str
    data: bytes | None = None
    sha256: str = ""


class PartsTarget(ABC):
    """Where units put their parts (it travels in every task: paths and URLs only, no secret), and
    how this host collects each part into its own parts directory."""

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """On the worker: a directory of its own to write the unit's raw and sorted part in."""
        with tempfile.TemporaryDirectory(prefix="auditor-unit-") as tmp:
            yield Path(tmp)

    @abstractmethod
    def deliver(self, part: Path) -> Delivery:
        """On the worker: hand the sorted part file over."""

    @abstractmethod
    def collect(self, delivery: Delivery, local_dir: Path) -> Path:
        """On this host: the part as a file in `local_dir` (raises when it cannot be had whole)."""

    @abstractmethod
    def discard(self, delivery: Delivery) -> None:
        """On this host: drop a part that will not be merged (a worker on another auditor version)."""

    @abstractmethod
    def close(self) -> None:
        """On this host, when the run ends: remove what the run left in shared storage."""


@dataclass(frozen=True)
class SharedDirectory(PartsTarget):
    """Parts written straight into a directory every worker and this host share."""

    directory: str

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """The shared directory itself (the unsorted scan output sits beside the part)."""
        yield Path(self.directory)

    def deliver(self, part: Path) -> Delivery:
        """Nothing to move: the part is already in the shared directory."""
        return Delivery(str(part))

    def collect(self, delivery: Delivery, local_dir: Path) -> Path:
        """The part where the worker wrote it, if this host sees it there."""
        part = Path(delivery.location)
        if not part.is_file():
            raise FileNotFoundError(
                f"part {part} is not on this host: is the parts directory shared with every worker?"
            )
        return part

    def discard(self, delivery: Delivery) -> None:
        """Delete the part file."""
        Path(delivery.location).unlink(missing_ok=True)

    def close(self) -> None:
        """Nothing: the caller owns the directory (and removes it with the run)."""


@dataclass(frozen=True)
class ReturnedParts(PartsTarget):
    """Parts returned in the unit's result (through Dask's connections), compressed."""

    def deliver(self, part: Path) -> Delivery:
        """The part's bytes, compressed, with their digest."""
        digest = hashlib.sha256()
        compressor = zlib.compressobj(_COMPRESS_LEVEL)
        chunks = [compressor.compress(chunk) for chunk in _hashed_chunks(part, digest)]
        chunks.append(compressor.flush())
        return Delivery(part.name, b"".join(chunks), digest.hexdigest())

    def collect(self, delivery: Delivery, local_dir: Path) -> Path:
        """Decompress the returned bytes into `local_dir`, checking the digest."""
        data = delivery.data
        if data is None:
            raise ValueError("the unit returned no part")
        target = local_dir / Path(delivery.location).name
        return _write_checked(_inflated(data), target, delivery, target.name)

    def discard(self, delivery: Delivery) -> None:
        """Nothing: the bytes go with the result."""

    def close(self) -> None:
        """Nothing: no storage outside this host was used."""


@dataclass(frozen=True)
class StoreParts(PartsTarget):
    """Parts written under a URL with fsspec (`url` is this run's own prefix) and downloaded here."""

    url: str

    def deliver(self, part: Path) -> Delivery:
        """Upload the part as `<url>/<part name>`."""
        location = f"{self.url}/{part.name}"
        fs, path = _filesystem(location)
        if _is_local(fs):
            fs.makedirs(fs._parent(path), exist_ok=True)
        with part.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        fs.put_file(str(part), path)
        return Delivery(location, None, digest)

    def collect(self, delivery: Delivery, local_dir: Path) -> Path:
        """Download the part into `local_dir`, check its digest, delete the object."""
        if not delivery.location.startswith(self.url + "/"):
            raise ValueError(f"part {delivery.location} is not under this run's {self.url}")
        fs, path = _filesystem(delivery.location)
        target = local_dir / delivery.location.rsplit("/", 1)[1]
        with fs.open(path, "rb") as remote:
            _write_checked(iter(lambda: remote.read(_CHUNK), b""), target, delivery, delivery.location)
        fs.rm_file(path)
        return target

    def discard(self, delivery: Delivery) -> None:
        """Delete the uploaded part."""
        fs, path = _filesystem(delivery.location)
        with suppress(FileNotFoundError):
            fs.rm_file(path)

    def close(self) -> None:
        """Remove the run's prefix and whatever failed attempts left under it."""
        fs, path = _filesystem(self.url)
        with suppress(FileNotFoundError):
            fs.rm(path, recursive=True)


def parts_target(choice: str, parts_dir: Path) -> PartsTarget:
    """The target `scale.parts` names (`directory`, `returned` or a URL, `auto` already resolved);
    a URL's parts go under `<URL>/<name of this run's parts directory>/`."""
    if choice == DIRECTORY:
        return SharedDirectory(str(parts_dir))
    if choice == RETURNED:
        return ReturnedParts()
    if "://" in choice:
        return StoreParts(f"{choice.rstrip('/')}/{parts_dir.name}")
    raise ValueError(f"unknown parts location {choice!r} (directory, returned or a URL)")


def url_problem(url: str) -> str | None:
    """Why `url` cannot hold parts (unknown scheme, a secret in it, its filesystem package missing
    on this host), or None. Imports the filesystem's package; makes no network call."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    prefix = f"{scheme}://"
    if prefix not in URL_SCHEMES:
        return f"unsupported storage scheme '{prefix}' (one of {', '.join(URL_SCHEMES)})"
    if parts.password is not None:
        return "the URL holds a password: give the store's credentials its standard way on each host"
    if parts.query or parts.fragment:
        return "the URL has a query or fragment (which can carry a token): give the bucket and prefix only"
    if prefix == "file://" and (parts.netloc or not parts.path.startswith("/")):
        return "a file:// URL names an absolute path: file:///mnt/audit-parts"
    if prefix != "file://" and not (parts.netloc or parts.path.strip("/")):
        return f"the URL names no bucket or container: {prefix}BUCKET/PREFIX"
    try:
        import fsspec  # type: ignore[import-untyped]
    except ImportError:
        return "a URL needs fsspec on this host and every worker: pip install fsspec (or the dask extra)"
    try:
        fsspec.get_filesystem_class(scheme)
    except ImportError:
        package = URL_SCHEMES[prefix]
        return f"{prefix} needs the {package} package on this host and every worker: pip install {package}"
    return None


def _filesystem(url: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs  # type: ignore[import-untyped]

    fs, path = url_to_fs(url)
    return fs, str(path)


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def _hashed_chunks(part: Path, digest: Any) -> Iterator[bytes]:
    # The part file's bytes in chunks, each fed to `digest` as it is read.
    with part.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            yield chunk


def _inflated(data: bytes) -> Iterator[bytes]:
    # The decompressed bytes of a returned part, a chunk at a time.
    decompressor = zlib.decompressobj()
    for start in range(0, len(data), _CHUNK):
        yield decompressor.decompress(data[start : start + _CHUNK])
    yield decompressor.flush()


def _write_checked(pieces: Iterator[bytes], target: Path, delivery: Delivery, name: str) -> Path:
    # Write `pieces` to `target` atomically; a digest other than the worker's leaves nothing behind.
    digest = hashlib.sha256()
    with atomic_output(target) as out:
        for piece in pieces:
            digest.update(piece)
            out.write(piece)
        if digest.hexdigest() != delivery.sha256:
            raise ValueError(f"part {name} arrived damaged: its SHA-256 differs from the worker's")
    return target
