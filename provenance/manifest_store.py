"""Every manifest veriframe signs, kept so a clip that lost its manifest can find it again.

A row per manifest (SQLAlchemy; the instance's database) indexed by the watermark payload and by
the signed file's sha256; the manifest bytes live in the instance's content-addressed artifact
storage (a local directory or S3, shared by every machine of a deployment). ``put`` is idempotent.

The ``manifests`` table is created by the instance's migrations (``manage.py db upgrade``, also
run by ``serve`` and every worker); this module only mirrors its shape for the ORM. Each process
keeps one engine per database URL, since building one per call costs a new connection pool each time.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass

from sqlalchemy import DateTime, Integer, String, create_engine, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from settings import Settings
from storage import ArtifactStore, open_store

STORE_VERSION = 1
SQLITE_BUSY_TIMEOUT_S = 30

_engines: dict[tuple[str, int], Engine] = {}
_engines_lock = threading.Lock()


def _engine(url: str) -> Engine:
    """This process's engine for ``url`` (a forked child builds its own: pooled connections must
    not cross a fork)."""
    pid = os.getpid()
    with _engines_lock:
        engine = _engines.get((url, pid))
        if engine is None:
            for stale in [k for k in _engines if k[1] != pid]:
                del _engines[stale]  # the parent's: left to the parent, never disposed here
            sqlite = make_url(url).get_backend_name() == "sqlite"
            engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S} if sqlite else {},
                                   pool_pre_ping=not sqlite)
            _engines[(url, pid)] = engine
        return engine


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
        self.engine = _engine(settings.sqlalchemy_url)

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
