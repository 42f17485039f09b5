"""The job life cycle in the database: submit, claim, heartbeat, progress, finish, fail, cancel.

Every transition is one compare-and-set UPDATE, so it holds on SQLite and PostgreSQL alike with
any number of web processes and workers::

    queued --claim--> running --finish--> succeeded
       |                 |-----fail-----> failed
       |                 |--release-----> queued      (transient error, retried with backoff)
       +---cancel--------+--------------> cancelled

A running job belongs to the attempt whose token is in ``claim``; that attempt keeps
``heartbeat_at`` fresh. Another delivery of the same task claims the job only once the holder is
known dead (same host, process gone) or its heartbeat is older than ``stale_after``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .errors import ClaimLostError, JobCancelledError, JobNotFoundError
from .models import TERMINAL_STATES, Artifact, ErrorKind, Job, JobKind, JobState, new_id, utcnow

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class ArtifactView:
    """An artifact as clients see it."""

    id: str
    job_id: str | None
    role: str
    sha256: str
    size: int
    media_type: str
    filename: str
    owner: str

    @classmethod
    def of(cls, a: Artifact) -> ArtifactView:
        return cls(a.id, a.job_id, a.role, a.sha256, a.size, a.media_type, a.filename, a.owner)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class JobView:
    """A snapshot of a job row, detached from any session; ``to_dict`` is its JSON form."""

    id: str
    kind: str
    state: str
    stage: str
    percent: float
    params: dict[str, Any]
    owner: str
    created_at: dt.datetime
    updated_at: dt.datetime
    sent_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    attempts: int
    error: str | None
    error_kind: str | None
    result: dict[str, Any] | None
    artifacts: tuple[ArtifactView, ...] = ()

    @classmethod
    def of(cls, job: Job, artifacts: Sequence[Artifact] = ()) -> JobView:
        return cls(
            id=job.id, kind=job.kind, state=job.state, stage=job.stage, percent=job.percent,
            params=dict(job.params or {}), owner=job.owner, created_at=job.created_at,
            updated_at=job.updated_at, sent_at=job.sent_at, started_at=job.started_at, finished_at=job.finished_at,
            attempts=job.attempts, error=job.error, error_kind=job.error_kind,
            result=dict(job.result) if job.result is not None else None,
            artifacts=tuple(ArtifactView.of(a) for a in artifacts),
        )

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES

    def artifact(self, role: str) -> ArtifactView | None:
        return next((a for a in self.artifacts if a.role == role), None)

    def to_dict(self) -> dict[str, Any]:
        def iso(t: dt.datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "id": self.id, "kind": self.kind, "state": self.state, "stage": self.stage,
            "percent": round(self.percent, 1), "params": self.params, "owner": self.owner,
            "created_at": iso(self.created_at), "updated_at": iso(self.updated_at), "sent_at": iso(self.sent_at),
            "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
            "attempts": self.attempts, "error": self.error, "error_kind": self.error_kind,
            "result": self.result, "artifacts": [a.to_dict() for a in self.artifacts],
        }


@dataclass(frozen=True)
class NewArtifact:
    """An artifact a workflow stored, to be recorded when the job finishes."""

    role: str
    sha256: str
    size: int
    media_type: str
    filename: str = ""


@dataclass
class Outcome:
    """What a workflow returns: the job's result document plus the artifacts to record with it."""

    result: dict[str, Any]
    artifacts: list[NewArtifact] = field(default_factory=list)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _holder_is_dead(worker: str | None) -> bool:
    """True when the attempt holding a job ran on this host in a process that no longer exists."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False  # our own process: the holder is a thread that is still alive
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# --- submission and queries ---------------------------------------------------------------------


def create_job(
    session: Session,
    kind: JobKind | str,
    params: dict[str, Any],
    *,
    owner: str = "",
    idempotency_key: str | None = None,
    inputs: Sequence[NewArtifact] = (),
) -> tuple[Job, bool]:
    """Insert a queued job (and its input artifacts); returns (job, created).

    With an ``idempotency_key`` already used by this owner, the existing job comes back and
    nothing is inserted, so a client that retries a submission gets one job.
    """
    kind = JobKind(kind)
    if idempotency_key is not None:
        existing = session.scalar(select(Job).where(Job.owner == owner, Job.idempotency_key == idempotency_key))
        if existing is not None:
            return existing, False
    job = Job(id=new_id(), kind=kind.value, state=JobState.QUEUED.value, params=params, owner=owner,
              idempotency_key=idempotency_key, stage="queued", percent=0.0, attempts=0)
    session.add(job)
    try:
        session.flush()  # the job row first: the artifacts refer to it
    except IntegrityError:
        session.rollback()
        if idempotency_key is None:
            raise
        existing = session.scalar(select(Job).where(Job.owner == owner, Job.idempotency_key == idempotency_key))
        if existing is None:
            raise
        return existing, False
    for item in inputs:
        session.add(Artifact(job_id=job.id, role=item.role, sha256=item.sha256, size=item.size,
                             media_type=item.media_type, filename=item.filename, owner=owner))
    session.flush()
    return job, True


def mark_sent(session: Session, job_id: str) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(sent_at=utcnow()))


def get_job(session: Session, job_id: str, *, owner: str | None = None) -> JobView:
    """The job with its artifacts; ``owner`` restricts it to that owner's jobs."""
    job = session.get(Job, job_id)
    if job is None or (owner is not None and job.owner != owner):
        raise JobNotFoundError(f"no job {job_id}")
    artifacts = session.scalars(select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.created_at))
    return JobView.of(job, list(artifacts))


def list_jobs(
    session: Session,
    *,
    owner: str | None = None,
    kind: str | None = None,
    state: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[JobView]:
    """Newest first."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
    if owner is not None:
        query = query.where(Job.owner == owner)
    if kind:
        query = query.where(Job.kind == kind)
    if state:
        query = query.where(Job.state == state)
    return [JobView.of(j) for j in session.scalars(query)]


def count_jobs(session: Session, *, owner: str | None = None, state: str | None = None) -> int:
    query = select(func.count()).select_from(Job)
    if owner is not None:
        query = query.where(Job.owner == owner)
    if state:
        query = query.where(Job.state == state)
    return int(session.scalar(query) or 0)


def cancel_job(session: Session, job_id: str, *, owner: str | None = None) -> JobView:
    """Cancel a queued or running job (a running one stops at its next progress checkpoint).

    Cancelling a job that already ended changes nothing and returns it as it is.
    """
    view = get_job(session, job_id, owner=owner)
    if not view.done:
        now = utcnow()
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
            .values(state=JobState.CANCELLED, stage="cancelled", finished_at=now, updated_at=now, claim=None)
        )
        session.commit()
        view = get_job(session, job_id, owner=owner)
    return view


def transfer_jobs(session: Session, from_owner: str, to_owner: str) -> int:
    """Give every job of ``from_owner``, and their artifacts, to ``to_owner`` (the caller commits,
    so both tables move in one transaction); returns how many jobs moved.

    Only rows owned by ``from_owner`` at that moment move, whatever state their job is in: a worker
    finishing one meanwhile writes its artifacts under the job's owner as it stands once the job
    row is locked (``finish_job``). A job with an idempotency key stays where it is, since it could
    collide with one of ``to_owner``'s keys (the portal, whose visitors' jobs move, never sets one).
    """
    if not from_owner or from_owner == to_owner:
        return 0
    moved = session.execute(
        update(Job).where(Job.owner == from_owner, Job.idempotency_key.is_(None)).values(owner=to_owner)
    ).rowcount
    theirs = select(Job.id).where(Job.owner == to_owner)
    session.execute(update(Artifact).where(Artifact.owner == from_owner, Artifact.job_id.in_(theirs))
                    .values(owner=to_owner))
    return moved


# --- the worker's side --------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What trying to claim a job gave: ``status`` is claimed, done, busy, missing or abandoned."""

    status: str
    job: JobView | None = None
    retry_in: float = 0.0


def claim_job(
    sessions: sessionmaker[Session],
    job_id: str,
    token: str,
    *,
    stale_after: float,
    max_attempts: int,
    worker: str | None = None,
) -> Claim:
    """Take the job for the attempt ``token`` if nobody alive holds it."""
    worker = worker or worker_identity()
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            return Claim("missing")
        if job.state in TERMINAL_STATES:
            return Claim("done", JobView.of(job))
        now = utcnow()
        if job.state == JobState.RUNNING and job.heartbeat_at is not None and not _holder_is_dead(job.worker):
            age = (now - job.heartbeat_at).total_seconds()
            if age < stale_after:
                return Claim("busy", JobView.of(job), retry_in=max(1.0, stale_after - age))
        if job.attempts >= max_attempts:
            message = (f"abandoned after {job.attempts} attempts: each one ended without finishing "
                       "(worker crash, out of memory or time limit)")
            session.execute(
                update(Job).where(Job.id == job_id, Job.attempts == job.attempts, Job.state == job.state)
                .values(state=JobState.FAILED, error=message, error_kind=ErrorKind.ABANDONED, claim=None,
                        finished_at=now, updated_at=now, stage="failed")
            )
            session.commit()
            return Claim("abandoned", get_job(session, job_id))
        recovered = job.state == JobState.RUNNING
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempts == job.attempts, Job.state == job.state)
            .values(state=JobState.RUNNING, claim=token, worker=worker[:255], attempts=job.attempts + 1,
                    heartbeat_at=now, updated_at=now, started_at=job.started_at or now,
                    stage="restarting" if recovered else "starting")
        ).rowcount
        session.commit()
        if done != 1:
            return Claim("busy", None, retry_in=1.0)  # someone claimed it between our read and write
        if recovered:
            log.warning("job %s: took over from %s (attempt %d)", job_id, job.worker, job.attempts + 1)
        return Claim("claimed", get_job(session, job_id))


def _held(job_id: str, token: str):  # noqa: ANN202 - a SQL expression
    return (Job.id == job_id) & (Job.claim == token) & (Job.state == JobState.RUNNING)


def _why_lost(session: Session, job_id: str) -> Exception:
    job = session.get(Job, job_id)
    if job is not None and job.state == JobState.CANCELLED:
        return JobCancelledError(f"job {job_id} was cancelled")
    return ClaimLostError(f"job {job_id} is no longer held by this attempt")


def heartbeat(sessions: sessionmaker[Session], job_id: str, token: str) -> bool:
    """Refresh the attempt's heartbeat; False when it no longer holds the job."""
    with sessions() as session:
        now = utcnow()
        n = session.execute(update(Job).where(_held(job_id, token)).values(heartbeat_at=now)).rowcount
        session.commit()
        return n == 1


def report_progress(sessions: sessionmaker[Session], job_id: str, token: str, stage: str, percent: float) -> None:
    """Store stage and percent; raises JobCancelledError / ClaimLostError when the job moved on."""
    with sessions() as session:
        now = utcnow()
        n = session.execute(
            update(Job).where(_held(job_id, token))
            .values(stage=stage[:64], percent=max(0.0, min(100.0, percent)), heartbeat_at=now, updated_at=now)
        ).rowcount
        session.commit()
        if n != 1:
            raise _why_lost(session, job_id)


def finish_job(sessions: sessionmaker[Session], job_id: str, token: str, outcome: Outcome) -> JobView:
    """Record the artifacts and the result and mark the job succeeded, in one transaction.

    If the attempt lost the job in the meantime nothing is written (the transaction rolls back),
    so a job has exactly one result however many times it ran.
    """
    with sessions() as session:
        now = utcnow()
        n = session.execute(
            update(Job).where(_held(job_id, token))
            .values(state=JobState.SUCCEEDED, result=outcome.result, stage="done", percent=100.0,
                    finished_at=now, updated_at=now, heartbeat_at=now, claim=None, error=None, error_kind=None)
        ).rowcount
        if n != 1:
            session.rollback()
            raise _why_lost(session, job_id)
        # The owner is read after the UPDATE locked the row, so a transfer_jobs racing with this
        # either moved the job before (its new owner is read here) or moves these artifacts after.
        owner = session.scalar(select(Job.owner).where(Job.id == job_id))
        for item in outcome.artifacts:
            session.add(Artifact(job_id=job_id, role=item.role, sha256=item.sha256, size=item.size,
                                 media_type=item.media_type, filename=item.filename, owner=owner))
        try:
            session.commit()
        except IntegrityError:
            # Artifacts for this job already exist: another attempt finished first.
            session.rollback()
            raise ClaimLostError(f"job {job_id} already has its result") from None
        return get_job(session, job_id)


def fail_job(
    sessions: sessionmaker[Session],
    job_id: str,
    message: str,
    kind: ErrorKind,
    *,
    token: str | None = None,
) -> bool:
    """Mark the job failed with a one-line message. Without ``token``, fails whoever holds it."""
    message = " ".join(str(message).split())[:MAX_ERROR_CHARS] or kind.value
    with sessions() as session:
        now = utcnow()
        held = _held(job_id, token) if token else (Job.id == job_id) & Job.state.in_(
            [JobState.QUEUED, JobState.RUNNING])
        n = session.execute(
            update(Job).where(held).values(state=JobState.FAILED, error=message, error_kind=kind, stage="failed",
                                           finished_at=now, updated_at=now, claim=None)
        ).rowcount
        session.commit()
        return n == 1


def release_job(sessions: sessionmaker[Session], job_id: str, token: str, reason: str) -> bool:
    """Hand a running job back to the queue (a retry of this task will claim it again)."""
    with sessions() as session:
        now = utcnow()
        n = session.execute(
            update(Job).where(_held(job_id, token))
            .values(state=JobState.QUEUED, claim=None, heartbeat_at=None, updated_at=now,
                    stage=f"retrying: {' '.join(reason.split())}"[:64])
        ).rowcount
        session.commit()
        return n == 1


def reclaim_orphans(
    sessions: sessionmaker[Session],
    *,
    stale_after: float,
    unsent_after: float = 60.0,
    resend_after: float | None = None,
) -> list[tuple[str, str]]:
    """Put back in the queue the jobs no worker will finish by itself; returns their (id, kind).

    Orphans are running jobs whose holder is dead (same host, process gone) or silent for
    ``stale_after`` seconds; queued jobs never handed to the broker (the submitting process died
    between commit and send); and, with ``resend_after``, queued jobs sent that long ago and not
    started, whose message a broker outage may have stranded (a worker that loses its broker
    connection drops the messages it had reserved; Redis returns them only after its visibility
    timeout). Each is taken with a compare-and-set, so when several workers sweep at once exactly
    one of them re-sends it; a message that turns up later finds the job done and does nothing.
    """
    now = utcnow()
    out: list[tuple[str, str]] = []
    with sessions() as session:
        running = session.execute(
            select(Job.id, Job.kind, Job.heartbeat_at, Job.worker, Job.attempts).where(Job.state == JobState.RUNNING)
        ).all()
        for job_id, kind, beat, worker, attempts in running:
            stale = beat is None or (now - beat).total_seconds() >= stale_after
            if not (stale or _holder_is_dead(worker)):
                continue
            n = session.execute(
                update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING, Job.attempts == attempts,
                                  Job.heartbeat_at == beat if beat is not None else Job.heartbeat_at.is_(None))
                .values(state=JobState.QUEUED, claim=None, heartbeat_at=None, sent_at=now, updated_at=now,
                        stage="requeued: its worker was lost")
            ).rowcount
            session.commit()
            if n == 1:
                log.warning("job %s: worker %s lost, requeued", job_id, worker)
                out.append((job_id, kind))
        unsent = session.execute(
            select(Job.id, Job.kind, Job.sent_at).where(Job.state == JobState.QUEUED, Job.sent_at.is_(None),
                                                        Job.created_at < now - dt.timedelta(seconds=unsent_after))
        ).all()
        if resend_after is not None:
            unsent += session.execute(
                select(Job.id, Job.kind, Job.sent_at).where(
                    Job.state == JobState.QUEUED, Job.sent_at < now - dt.timedelta(seconds=resend_after))
            ).all()
        for job_id, kind, sent_at in unsent:
            same = Job.sent_at.is_(None) if sent_at is None else Job.sent_at == sent_at
            n = session.execute(
                update(Job).where(Job.id == job_id, Job.state == JobState.QUEUED, same).values(sent_at=now)
            ).rowcount
            session.commit()
            if n == 1:
                out.append((job_id, kind))
    return out


def unfinished_jobs(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    """(id, kind) of every queued or running job, oldest first."""
    with sessions() as session:
        rows = session.execute(
            select(Job.id, Job.kind).where(Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
            .order_by(Job.created_at)
        ).all()
        return [(r[0], r[1]) for r in rows]
