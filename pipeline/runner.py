"""Run one delivery of a job: claim it, keep it alive, run its workflow, record what happened.

This is everything a task does, without Celery: :func:`execute` returns what the task must do
next (nothing, come back later, or retry), so the Celery layer stays a few lines thick.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import (
    BlobNotFoundError,
    ClaimLostError,
    ComponentUnavailableError,
    JobCancelledError,
    JobInputError,
    StorageError,
    transient_errors,
)
from .jobs import claim_job, fail_job, finish_job, heartbeat, release_job, report_progress
from .models import ErrorKind
from .runtime import Runtime
from .work import WORKFLOWS, JobContext

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5


class JobTimeoutError(Exception):
    """The job passed its time limit (checked at each progress report, on every pool)."""


@dataclass(frozen=True)
class RunResult:
    """How a delivery ended. ``status``: succeeded, failed, cancelled, lost, done, missing,
    abandoned, busy (come back in ``retry_in`` seconds) or retry (transient ``error``)."""

    status: str
    retry_in: float = 0.0
    error: BaseException | None = None


def time_limit(runtime: Runtime, kind: str) -> float:
    s = runtime.settings
    return {"verify": s.verify_time_limit_s, "sign": s.sign_time_limit_s, "generate": s.generate_time_limit_s}[kind]


def classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """The stored error kind and one-line message for a failure that is not worth retrying."""
    from media.errors import MediaError
    from provenance.watermark import KeyringError, PayloadError
    from settings import ConfigError

    try:
        from provenance.c2pa.errors import IdentityError, ProvenanceError
    except ImportError:  # pragma: no cover - C2PA wrapper absent
        IdentityError = ProvenanceError = ()  # type: ignore[assignment,misc]  # noqa: N806

    if isinstance(exc, BlobNotFoundError):
        return ErrorKind.UNAVAILABLE, f"input missing from artifact storage: {exc}"
    if isinstance(exc, ComponentUnavailableError | ConfigError | KeyringError | IdentityError):
        return ErrorKind.UNAVAILABLE, str(exc)
    if isinstance(exc, MediaError | JobInputError | PayloadError | ProvenanceError):
        return ErrorKind.BAD_INPUT, str(exc)
    if isinstance(exc, StorageError):
        return ErrorKind.INTERNAL, f"artifact storage: {exc}"
    return ErrorKind.INTERNAL, f"internal error ({type(exc).__name__}: {exc}); details in the worker log"


class _Attempt:
    """The live side of a claimed job: a heartbeat thread and the progress/cancel checkpoint."""

    def __init__(self, runtime: Runtime, job_id: str, token: str, deadline: float) -> None:
        self.runtime, self.job_id, self.token, self.deadline = runtime, job_id, token, deadline
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._last_write = 0.0
        self._last_stage = ""
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id[:8]}", daemon=True)

    def __enter__(self) -> _Attempt:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        interval = self.runtime.settings.job_heartbeat_s
        while not self._stop.wait(interval):
            try:
                if not heartbeat(self.runtime.sessions, self.job_id, self.token):
                    self._lost.set()
                    return
            except Exception as exc:  # the database may be briefly away: keep trying
                log.warning("job %s: heartbeat failed: %s", self.job_id, exc)

    def progress(self, stage: str, percent: float) -> None:
        """Store progress (throttled); raise when the job was cancelled, taken over or timed out."""
        now = time.monotonic()
        if now > self.deadline:
            raise JobTimeoutError()
        lost = self._lost.is_set()  # the heartbeat saw the job move on: the write below says why
        if not lost and stage == self._last_stage and now - self._last_write < PROGRESS_INTERVAL_S:
            return
        self._last_stage, self._last_write = stage, now
        try:
            report_progress(self.runtime.sessions, self.job_id, self.token, stage, percent)
        except (JobCancelledError, ClaimLostError):
            raise
        except Exception as exc:
            log.warning("job %s: progress not stored: %s", self.job_id, exc)


def execute(runtime: Runtime, job_id: str, *, final_attempt: bool = True) -> RunResult:
    """Run one delivery of ``job_id``. ``final_attempt``: no retry left for transient errors."""
    from celery.exceptions import SoftTimeLimitExceeded

    settings = runtime.settings
    token = uuid.uuid4().hex
    claim = claim_job(runtime.sessions, job_id, token, stale_after=settings.job_stale_after_s,
                      max_attempts=settings.job_max_attempts)
    if claim.status != "claimed" or claim.job is None:
        if claim.status == "missing":
            log.error("job %s does not exist; dropping its task", job_id)
        return RunResult(claim.status, claim.retry_in)
    job = claim.job
    limit = time_limit(runtime, job.kind)
    started = time.monotonic()
    log.info("job %s (%s): attempt %d started", job_id, job.kind, job.attempts)
    try:
        with (
            _Attempt(runtime, job_id, token, started + limit) as attempt,
            tempfile.TemporaryDirectory(prefix=f"veriframe-{job_id[:8]}-") as scratch,
        ):
            ctx = JobContext(job_id=job_id, params=job.params, settings=settings, store=runtime.store,
                             scratch=Path(scratch), progress=attempt.progress)
            outcome = WORKFLOWS[job.kind](ctx)
            finish_job(runtime.sessions, job_id, token, outcome)
    except (JobCancelledError, ClaimLostError) as exc:
        log.info("job %s: stopped (%s)", job_id, exc)
        return RunResult("cancelled" if isinstance(exc, JobCancelledError) else "lost")
    except (JobTimeoutError, SoftTimeLimitExceeded):
        _fail_quietly(runtime, job_id, f"timed out: ran longer than the {limit:g} s limit for {job.kind} jobs",
                      ErrorKind.TIMEOUT, token)
        return RunResult("failed")
    except transient_errors() as exc:
        if final_attempt:
            log.error("job %s: giving up after retries: %s", job_id, exc)
            _fail_quietly(runtime, job_id, f"gave up after retries: {type(exc).__name__}: {exc}",
                          ErrorKind.TRANSIENT, token)
            return RunResult("failed", error=exc)
        log.warning("job %s: transient failure, will retry: %s", job_id, exc)
        try:
            release_job(runtime.sessions, job_id, token, f"{type(exc).__name__}")
        except Exception as release_exc:  # the database itself is down: the retry claims it once stale
            log.warning("job %s: could not release: %s", job_id, release_exc)
        return RunResult("retry", error=exc)
    except Exception as exc:
        kind, message = classify(exc)
        if kind is ErrorKind.INTERNAL:
            log.exception("job %s failed with an internal error", job_id)
        else:
            log.info("job %s failed (%s): %s", job_id, kind.value, message)
        _fail_quietly(runtime, job_id, message, kind, token)
        return RunResult("failed", error=exc)
    log.info("job %s (%s): succeeded in %.2f s", job_id, job.kind, time.monotonic() - started)
    return RunResult("succeeded")


def _fail_quietly(runtime: Runtime, job_id: str, message: str, kind: ErrorKind, token: str | None) -> None:
    try:
        fail_job(runtime.sessions, job_id, message, kind, token=token)
    except Exception as exc:
        log.error("job %s: could not store its failure (%s): %s", job_id, message, exc)
