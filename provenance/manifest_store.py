"""Every manifest veriframe signs, kept so a clip that lost its manifest can find it again.

A row per manifest (SQLAlchemy; the instance's database) indexed by the watermark payload and by
the signed file's sha256; the manifest bytes live beside it in content-addressed files
(``<instance>/manifests/<sha256>.c2pa``, written atomically). ``put`` is idempotent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import DateTime, Integer, String, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

STORE_VERSION = 1


class _Base(DeclarativeBase):
    pass


class ManifestRow(_Base):
    __tablename__ = "manifests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(200), unique=True)
    payload_hex: Mapped[str | None] = mapped_column(String(16), index=True)
    asset_sha256: Mapped[str] = mapped_column(String(64), index=True)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer, default=STORE_VERSION)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class StoredManifest:
    label: str
    payload_hex: str | None
    asset_sha256: str
    manifest_sha256: str
    source: str
    created_at: dt.datetime
    path: Path

    def read(self) -> bytes:
        return self.path.read_bytes()


def default_database_url(instance: Path) -> str:
    return f"sqlite:///{(instance / 'veriframe.db').resolve()}"


class ManifestStore:
    """Manifests by payload and by content hash; ``database_url`` defaults to the instance's SQLite."""

    def __init__(self, instance: Path, database_url: str = ""):
        self.dir = instance / "manifests"
        self.engine: Engine = create_engine(database_url or default_database_url(instance))
        _Base.metadata.create_all(self.engine)

    def _file(self, manifest_sha256: str) -> Path:
        return self.dir / f"{manifest_sha256}.c2pa"

    def put(self, *, label: str, manifest: bytes, asset_sha256: str, payload_hex: str | None,
            source: str) -> StoredManifest:
        digest = hashlib.sha256(manifest).hexdigest()
        target = self._file(digest)
        if not target.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(manifest)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        with Session(self.engine) as session, session.begin():
            row = session.scalar(select(ManifestRow).where(ManifestRow.label == label))
            if row is None:
                row = ManifestRow(label=label, payload_hex=payload_hex, asset_sha256=asset_sha256,
                                  manifest_sha256=digest, source=source, version=STORE_VERSION,
                                  created_at=dt.datetime.now(dt.UTC))
                session.add(row)
                session.flush()
            return self._record(row)

    def _record(self, row: ManifestRow) -> StoredManifest:
        return StoredManifest(row.label, row.payload_hex, row.asset_sha256, row.manifest_sha256, row.source,
                              row.created_at, self._file(row.manifest_sha256))

    def by_payload(self, payload_hex: str) -> list[StoredManifest]:
        """Newest first: a payload is random per signed asset, so normally one."""
        with Session(self.engine) as session:
            rows = session.scalars(select(ManifestRow).where(ManifestRow.payload_hex == payload_hex.lower())
                                   .order_by(ManifestRow.id.desc()))
            return [self._record(r) for r in rows]

    def by_asset(self, asset_sha256: str) -> list[StoredManifest]:
        with Session(self.engine) as session:
            rows = session.scalars(select(ManifestRow).where(ManifestRow.asset_sha256 == asset_sha256)
                                   .order_by(ManifestRow.id.desc()))
            return [self._record(r) for r in rows]

    def by_label(self, label: str) -> StoredManifest | None:
        with Session(self.engine) as session:
            row = session.scalar(select(ManifestRow).where(ManifestRow.label == label))
            return self._record(row) if row else None

    def close(self) -> None:
        self.engine.dispose()
