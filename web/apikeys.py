"""API keys: random, shown once, stored as a SHA-256 hash, scoped, revocable.

A key is ``vf_`` plus 32 random bytes (base64url). Only its SHA-256 is stored: the key carries
256 bits of entropy, so a fast hash is enough (a slow password hash protects low-entropy secrets,
which these are not) and lookup is one indexed equality. Jobs belong to a key's ``owner``, so a
user may rotate keys without losing their history. Keys a portal user makes are owned by the user
(``user:<id>``), so their API jobs and portal jobs are one list; a disabled user's keys stop
working with the account (and work again if it is enabled).

Each key also gets a webhook secret (``whsec_`` plus 32 random bytes), shown once with the key,
which signs the webhooks of the jobs the key submits (docs/webhooks.md). Unlike the key it is
stored as it is: the server needs it to sign.

The table (``pipeline.models.ApiKey``) is created by the instance's migrations, like every other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import secrets
import uuid
from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from pipeline.models import ApiKey, utcnow
from pipeline.models import User as UserRow

from .users import USER_OWNER_PREFIX

log = logging.getLogger(__name__)

SCOPES = ("verify", "generate", "sign")
KEY_PREFIX = "vf_"
WEBHOOK_SECRET_PREFIX = "whsec_"
# last_used_at is written at most this often per key: a list wants the day, not every request.
LAST_USED_EVERY = dt.timedelta(minutes=1)


class ApiKeyError(ValueError):
    """A key request is malformed (unknown scope, empty name)."""


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
    webhooks: bool  # the key has a webhook secret (keys made before webhooks existed have none)
    last_used_at: dt.datetime | None = None  # to the minute

    @classmethod
    def of(cls, row: ApiKey) -> KeyInfo:
        scopes = tuple(s for s in row.scopes.split(",") if s)
        return cls(row.id, row.name, row.owner, scopes, row.prefix, row.created_at, row.revoked_at,
                   bool(row.webhook_secret), row.last_used_at)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "owner": self.owner, "scopes": list(self.scopes),
                "prefix": self.prefix, "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None, "webhooks": self.webhooks,
                "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None}


class NewKey(NamedTuple):
    """A key just created: its record, the key and its webhook secret (neither is shown again)."""

    info: KeyInfo
    key: str
    webhook_secret: str


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

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def create(self, name: str, scopes: str | Iterable[str], *, owner: str | None = None) -> NewKey:
        """A new key: its record, the key and its webhook secret (the last two are never shown again)."""
        name = name.strip()
        if not name or len(name) > 128:
            raise ApiKeyError("a key needs a name of 1 to 128 characters")
        scope_list = parse_scopes(scopes)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        webhook_secret = WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)
        key_id = str(uuid.uuid4())
        row = ApiKey(id=key_id, name=name, owner=(owner or f"key:{key_id}")[:128], scopes=",".join(scope_list),
                     key_hash=hash_key(key), prefix=key[:10], created_at=utcnow(), webhook_secret=webhook_secret)
        with self._session() as session:
            session.add(row)
            session.commit()
            return NewKey(KeyInfo.of(row), key, webhook_secret)

    def authenticate(self, key: str) -> KeyInfo | None:
        """The active key this string is, or None (also when it belongs to a disabled user)."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        with self._session() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
            if row is None or row.revoked_at is not None:
                return None
            if row.owner.startswith(USER_OWNER_PREFIX):
                user = session.get(UserRow, row.owner.removeprefix(USER_OWNER_PREFIX))
                if user is not None and user.disabled:
                    return None
            info = KeyInfo.of(row)
            now = utcnow()
            if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
                try:
                    session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
                    session.commit()
                    info = dataclasses.replace(info, last_used_at=now)
                except SQLAlchemyError as exc:  # bookkeeping: never worth refusing a valid key over
                    log.warning("could not record the use of API key %s: %s", row.id, exc)
            return info

    def get(self, key_id: str) -> KeyInfo | None:
        with self._session() as session:
            row = session.get(ApiKey, key_id)
            return KeyInfo.of(row) if row is not None else None

    def list(self, *, owner: str | None = None) -> list[KeyInfo]:
        """Every key, oldest first; only ``owner``'s when given."""
        query = select(ApiKey).order_by(ApiKey.created_at)
        if owner is not None:
            query = query.where(ApiKey.owner == owner)
        with self._session() as session:
            return [KeyInfo.of(r) for r in session.scalars(query)]

    def revoke(self, key_id_or_prefix: str, *, owner: str | None = None) -> KeyInfo:
        """Revoke by id or by the listed prefix (among ``owner``'s keys when given); LookupError
        when nothing (or more than one) matches."""
        query = select(ApiKey).where((ApiKey.id == key_id_or_prefix) | (ApiKey.prefix == key_id_or_prefix))
        if owner is not None:
            query = query.where(ApiKey.owner == owner)
        with self._session() as session:
            rows = list(session.scalars(query))
            if len(rows) != 1:
                raise LookupError(f"no single API key matches {key_id_or_prefix!r}")
            session.execute(update(ApiKey).where(ApiKey.id == rows[0].id, ApiKey.revoked_at.is_(None))
                            .values(revoked_at=utcnow()))
            session.commit()
            return KeyInfo.of(session.get(ApiKey, rows[0].id, populate_existing=True))
