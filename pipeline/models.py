"""The instance's tables: jobs, the artifacts they read and write, API keys, portal users, webhook
deliveries.

(Signed manifests are indexed by ``provenance.manifest_store``, whose ORM class mirrors its table:
a library cannot import the pipeline. Migration 0002 creates that table like the others.)

The schema is owned by the Alembic migrations in ``pipeline/migrations``; these classes mirror
it for the ORM. Identifiers that reach users (job and artifact ids) are random UUIDs, never
sequence numbers, so they reveal nothing and cannot be guessed.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class JobKind(enum.StrEnum):
    VERIFY = "verify"
    SIGN = "sign"
    GENERATE = "generate"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class DeliveryState(enum.StrEnum):
    """Where a job's webhook stands (see pipeline.webhooks)."""

    WAITING = "waiting"  # the job has not ended yet
    PENDING = "pending"  # the event is due: being sent, or waiting for its next attempt
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed (or nothing can sign it): given up


class ErrorKind(enum.StrEnum):
    """Why a job failed, for clients that branch on it (the message says it to humans)."""

    BAD_INPUT = "bad_input"  # the input or parameters are unusable: retrying cannot help
    UNAVAILABLE = "unavailable"  # a component (generator, checkpoint, signing identity) is missing
    TIMEOUT = "timeout"  # the job ran past its time limit
    TRANSIENT = "transient"  # a service kept failing after every retry
    ABANDONED = "abandoned"  # workers kept dying on it (crash, out of memory)
    INTERNAL = "internal"  # a bug: details in the worker log


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC on every backend (SQLite stores naive text, PostgreSQL timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# Constraint names are spelled out so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Job(Base):
    """One unit of work a user asked for; the source of truth a worker claims and reports to.

    ``claim`` is the token of the attempt that holds a running job; only that attempt may move
    the job on, so a duplicate delivery or a worker presumed dead can never write a second result.
    ``attempts`` counts claims and doubles as the row's version for compare-and-set.
    """

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED)
    stage: Mapped[str] = mapped_column(String(64), default="queued")
    percent: Mapped[float] = mapped_column(Float, default=0.0)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    owner: Mapped[str] = mapped_column(String(128), default="")
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claim: Mapped[str | None] = mapped_column(String(32))
    worker: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    error_kind: Mapped[str | None] = mapped_column(String(32))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key"),
        Index("ix_jobs_owner_created_at", "owner", "created_at"),
        Index("ix_jobs_state_heartbeat_at", "state", "heartbeat_at"),
    )


class Artifact(Base):
    """A blob in artifact storage as one job used or produced it (``role``: input, output, ...).

    Blobs are content-addressed, so two rows may name the same ``sha256``; a job has at most one
    artifact per role, which is what makes a job's result single even when it ran twice.
    """

    __tablename__ = "artifacts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(128), default="application/octet-stream")
    filename: Mapped[str] = mapped_column(String(255), default="")
    owner: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("job_id", "role"),)


class ApiKey(Base):
    """An API key of the web API (``web.apikeys``); ``key_hash`` is the key's SHA-256, never the key.

    ``webhook_secret`` signs the webhooks of the jobs the key submits. Like any HMAC key it has to
    be readable to sign, so it is stored as it is; keys made before migration 0002 have none.
    """

    __tablename__ = "web_api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[str] = mapped_column(Text)  # comma-separated, from web.apikeys.SCOPES
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to recognise it in lists
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    webhook_secret: Mapped[str | None] = mapped_column(String(64))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # updated at most once a minute


class User(Base):
    """A portal account (``web.users``): ``password_hash`` is werkzeug's salted scrypt, never the password.

    The email is stored lower-case so that it is unique however it is typed; the user's jobs and
    API keys belong to the owner ``user:<id>``.
    """

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Raised by every password change; a portal session holding an older one has ended (0004).
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class WebhookDelivery(Base):
    """The webhook a submission asked for: one per job, sent once the job ends, retried until 2xx.

    Its id is the event id receivers see (``Veriframe-Event-Id``), the same on every attempt.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    key_id: Mapped[str] = mapped_column(String(36))  # the API key whose webhook secret signs it
    url: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.WAITING)
    event: Mapped[str | None] = mapped_column(String(32))  # job.succeeded, job.failed, job.cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)  # the receiver's last HTTP status
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),)
