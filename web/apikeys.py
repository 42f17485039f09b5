"""API keys: random, shown once, stored as a SHA-256 hash, scoped, revocable.

A key is ``vf_`` plus 32 random bytes (base64url). Only its SHA-256 is stored: the key carries
256 bits of entropy, so a fast hash is enough (a slow password hash protects low-entropy secrets,
which these are not) and lookup is one indexed equality. Jobs belong to a key's ``owner``, so a
user may rotate keys without losing their history.

The table lives in the pipeline's database but is the web app's own: it is created on first use
(``CREATE TABLE IF NOT EXISTS``), because the pipeline's Alembic chain is pinned to its own head
revision (``pipeline.db.SCHEMA_REVISION``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets
import threading
import uuid
from collections.abc import Iterable

from sqlalchemy import Engine, MetaData, String, Text, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pipeline.models import UTCDateTime, utcnow

SCOPES = ("verify", "generate", "sign")
KEY_PREFIX = "vf_"


class ApiKeyError(ValueError):
    """A key request is malformed (unknown scope, empty name)."""


class WebBase(DeclarativeBase):
    metadata = MetaData()


class ApiKey(WebBase):
    """One API key; ``key_hash`` is the SHA-256 of the key, which itself is never stored."""

    __tablename__ = "web_api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[str] = mapped_column(Text)  # comma-separated, from SCOPES
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to recognise it in lists
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    """A key as the app sees it (never the key itself)."""

    id: str
    name: str
    owner: str
    scopes: tuple[str, ...]
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyInfo:
        scopes = tuple(s for s in row.scopes.split(",") if s)
        return cls(row.id, row.name, row.owner, scopes, row.prefix, row.created_at, row.revoked_at)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "owner": self.owner, "scopes": list(self.scopes),
                "prefix": self.prefix, "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_scopes(scopes: str | Iterable[str]) -> tuple[str, ...]:
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    cleaned = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    unknown = [s for s in cleaned if s not in SCOPES]
    if unknown or not cleaned:
        got = ", ".join(unknown) or "none"
        raise ApiKeyError(f"scopes must be a non-empty subset of {', '.join(SCOPES)}; got {got}")
    return cleaned


class KeyStore:
    """Create, find, list and revoke keys in the job database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ready = False
        self._lock = threading.Lock()

    def _session(self) -> Session:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    WebBase.metadata.create_all(self.engine, checkfirst=True)
                    self._ready = True
        return Session(self.engine, expire_on_commit=False)

    def create(self, name: str, scopes: str | Iterable[str], *, owner: str | None = None) -> tuple[KeyInfo, str]:
        """A new key: returns its record and the key itself, which is never shown again."""
        name = name.strip()
        if not name or len(name) > 128:
            raise ApiKeyError("a key needs a name of 1 to 128 characters")
        scope_list = parse_scopes(scopes)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = str(uuid.uuid4())
        row = ApiKey(id=key_id, name=name, owner=(owner or f"key:{key_id}")[:128], scopes=",".join(scope_list),
                     key_hash=hash_key(key), prefix=key[:10], created_at=utcnow())
        with self._session() as session:
            session.add(row)
            session.commit()
            return KeyInfo.of(row), key

    def authenticate(self, key: str) -> KeyInfo | None:
        """The active key this string is, or None."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        with self._session() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
            if row is None or row.revoked_at is not None:
                return None
            return KeyInfo.of(row)

    def get(self, key_id: str) -> KeyInfo | None:
        with self._session() as session:
            row = session.get(ApiKey, key_id)
            return KeyInfo.of(row) if row is not None else None

    def list(self) -> list[KeyInfo]:
        with self._session() as session:
            return [KeyInfo.of(r) for r in session.scalars(select(ApiKey).order_by(ApiKey.created_at))]

    def revoke(self, key_id_or_prefix: str) -> KeyInfo:
        """Revoke by id or by the listed prefix; LookupError when nothing (or more than one) matches."""
        with self._session() as session:
            rows = list(session.scalars(select(ApiKey).where(
                (ApiKey.id == key_id_or_prefix) | (ApiKey.prefix == key_id_or_prefix))))
            if len(rows) != 1:
                raise LookupError(f"no single API key matches {key_id_or_prefix!r}")
            session.execute(update(ApiKey).where(ApiKey.id == rows[0].id, ApiKey.revoked_at.is_(None))
                            .values(revoked_at=utcnow()))
            session.commit()
            return KeyInfo.of(session.get(ApiKey, rows[0].id, populate_existing=True))
