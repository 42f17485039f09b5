"""Content-addressed artifact storage: a local directory by default, any S3-compatible store.

A blob's key is the SHA-256 of its bytes (``sha256/ab/cd/abcd...``), so storing the same bytes
twice keeps one copy and a reader can check what it got. Writes are atomic: a local blob is
written to a temporary file, fsynced and renamed into place; an S3 object appears only once its
upload completed. Both stores implement :class:`ArtifactStore`, the only interface the rest of
veriframe uses.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from settings import Settings

from .errors import BlobNotFoundError, StorageError, StorageUnavailableError  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class BlobRef:
    """A stored blob: its SHA-256 (hex) and size in bytes."""

    sha256: str
    size: int

    def to_dict(self) -> dict[str, object]:
        return {"sha256": self.sha256, "size": self.size}


def check_sha256(sha256: str) -> str:
    """Refuse anything but 64 lowercase hex digits: a key never carries a path from outside."""
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise StorageError(f"not a sha256 digest: {sha256!r}")
    return sha256


def blob_key(sha256: str) -> str:
    check_sha256(sha256)
    return f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def sha256_file(path: Path) -> BlobRef:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return BlobRef(digest.hexdigest(), size)


class ArtifactStore(Protocol):
    """What every artifact store offers."""

    def put_file(self, path: Path) -> BlobRef:
        """Store the bytes of ``path`` (the file is left in place)."""
        ...

    def put_bytes(self, data: bytes) -> BlobRef: ...

    def exists(self, sha256: str) -> bool: ...

    def open(self, sha256: str) -> BinaryIO:
        """A readable stream of the blob (close it); raises BlobNotFoundError."""
        ...

    def local_copy(self, sha256: str, scratch: Path) -> contextlib.AbstractContextManager[Path]:
        """A local, read-only path holding the blob for the duration of the ``with`` block."""
        ...

    def delete(self, sha256: str) -> None: ...

    def iter_blobs(self) -> Iterator[str]:
        """Every stored digest (for garbage collection and audits)."""
        ...


class LocalStore:
    """Blobs under one directory, shared by every process on the machine (or an NFS mount)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def path_of(self, sha256: str) -> Path:
        return self.root / blob_key(sha256)

    def _write(self, source: BinaryIO) -> BlobRef:
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="put-", suffix=".part")
        tmp = Path(name)
        try:
            digest, size = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            ref = BlobRef(digest.hexdigest(), size)
            final = self.path_of(ref.sha256)
            if final.exists():
                return ref  # same bytes already stored: keep the one copy
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
            return ref
        except OSError as exc:
            raise StorageError(f"cannot write to artifact storage {self.root}: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, path: Path) -> BlobRef:
        with open(path, "rb") as fh:
            return self._write(fh)

    def put_bytes(self, data: bytes) -> BlobRef:
        return self._write(io.BytesIO(data))

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self.path_of(sha256), "rb")
        except FileNotFoundError:
            raise BlobNotFoundError(f"artifact {sha256} is not in storage") from None

    @contextlib.contextmanager
    def local_copy(self, sha256: str, scratch: Path) -> Iterator[Path]:
        path = self.path_of(sha256)
        if not path.is_file():
            raise BlobNotFoundError(f"artifact {sha256} is not in storage")
        yield path  # already local: readers must not modify it

    def delete(self, sha256: str) -> None:
        self.path_of(sha256).unlink(missing_ok=True)

    def iter_blobs(self) -> Iterator[str]:
        base = self.root / "sha256"
        if base.is_dir():
            for path in sorted(base.glob("*/*/*")):
                if _SHA256.match(path.name):
                    yield path.name


class S3Store:
    """Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, R2, ...) through boto3.

    Network failures and 5xx/throttling answers raise :class:`StorageUnavailableError` so the task layer
    retries them with backoff; everything else is a :class:`StorageError`.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        client: object | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None)
        self.client = client

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def key_of(self, sha256: str) -> str:
        return self.prefix + blob_key(sha256)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in ("404", "NoSuchKey", "NotFound"):
                raise BlobNotFoundError(f"{what}: not in bucket {self.bucket}") from None
            message = f"{what}: S3 answered {code or status}: {error.get('Message', '')}".strip()
            if status >= 500 or code in ("SlowDown", "Throttling", "RequestTimeout", "InternalError"):
                raise StorageUnavailableError(message) from exc
            raise StorageError(message) from exc
        except (ConnectionError, HTTPClientError) as exc:
            raise StorageUnavailableError(f"{what}: cannot reach S3 ({exc})") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{what}: {exc}") from exc

    def exists(self, sha256: str) -> bool:
        try:
            with self._errors(f"artifact {sha256}"):
                self.client.head_object(Bucket=self.bucket, Key=self.key_of(sha256))
            return True
        except BlobNotFoundError:
            return False

    def put_file(self, path: Path) -> BlobRef:
        ref = sha256_file(Path(path))
        if not self.exists(ref.sha256):
            with self._errors(f"upload of {ref.sha256}"):
                # upload_file uses multipart for large files; the object appears only when complete.
                self.client.upload_file(str(path), self.bucket, self.key_of(ref.sha256))
        return ref

    def put_bytes(self, data: bytes) -> BlobRef:
        ref = BlobRef(hashlib.sha256(data).hexdigest(), len(data))
        if not self.exists(ref.sha256):
            with self._errors(f"upload of {ref.sha256}"):
                self.client.put_object(Bucket=self.bucket, Key=self.key_of(ref.sha256), Body=data)
        return ref

    def open(self, sha256: str) -> BinaryIO:
        with self._errors(f"artifact {sha256}"):
            response = self.client.get_object(Bucket=self.bucket, Key=self.key_of(sha256))
        return response["Body"]  # a botocore StreamingBody: read(), iter_chunks(), close()

    @contextlib.contextmanager
    def local_copy(self, sha256: str, scratch: Path) -> Iterator[Path]:
        scratch.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=scratch, prefix=f"{sha256[:12]}-", suffix=".blob")
        os.close(fd)
        path = Path(name)
        try:
            with self._errors(f"download of {sha256}"):
                self.client.download_file(self.bucket, self.key_of(sha256), str(path))
            got = sha256_file(path)
            if got.sha256 != sha256:
                raise StorageError(f"artifact {sha256} is corrupt in bucket {self.bucket} (got {got.sha256})")
            yield path
        finally:
            path.unlink(missing_ok=True)

    def delete(self, sha256: str) -> None:
        with self._errors(f"delete of {sha256}"):
            self.client.delete_object(Bucket=self.bucket, Key=self.key_of(sha256))

    def iter_blobs(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors("listing"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + "sha256/"):
                for item in page.get("Contents", []):
                    name = item["Key"].rsplit("/", 1)[-1]
                    if _SHA256.match(name):
                        yield name


def storage_dir(settings: Settings) -> Path:
    return Path(settings.storage_dir) if settings.storage_dir else (settings.instance / "storage").resolve()


def open_store(settings: Settings) -> ArtifactStore:
    """The store the settings describe: S3 when ``storage_s3_bucket`` is set, else a directory."""
    if settings.storage_s3_bucket:
        return S3Store(
            settings.storage_s3_bucket,
            prefix=settings.storage_s3_prefix,
            endpoint_url=settings.storage_s3_endpoint_url or None,
            region=settings.storage_s3_region or None,
        )
    return LocalStore(storage_dir(settings))


def copy_blob(store: ArtifactStore, sha256: str, dest: Path) -> Path:
    """Write the blob to ``dest`` atomically (used by CLI downloads)."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with store.open(sha256) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
