"""Every manifest veriframe signs, kept so a clip that lost its manifest can find it again.

A row per manifest (SQLAlchemy; the instance's database) indexed by the watermark payload and by
the signed file's sha256; the manifest bytes live in the instance's content-addressed artifact
storage (a local directory or S3, shared by every machine of a deployment). ``put`` is idempotent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import DateTime, Integer, String, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from settings import Settings
from storage import ArtifactStore, open_store

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
    blobs: ArtifactStore

    def read(self) -> bytes:
        with self.blobs.open(self.manifest_sha256) as fh:
            return fh.read()


class ManifestStore:
    """Manifests by payload and by content hash, in the instance's database and artifact storage."""

    def __init__(self, settings: Settings):
        self.blobs = open_store(settings)
        self.engine: Engine = create_engine(settings.sqlalchemy_url)
        try:
            _Base.metadata.create_all(self.engine)  # checkfirst: a no-op once the table exists
        except (OperationalError, ProgrammingError):  # another process created it at the same moment
            _Base.metadata.create_all(self.engine)

    def put(self, *, label: str, manifest: bytes, asset_sha256: str, payload_hex: str | None,
            source: str) -> StoredManifest:
        digest = self.blobs.put_bytes(manifest).sha256
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
                              row.created_at, self.blobs)

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
