"""Celery tasks: thin wrappers that take a job id and hand it to :func:`pipeline.runner.execute`.

Idempotent by construction: a delivery of a finished job does nothing, a delivery of a job
another live worker holds comes back later, and only the attempt holding the job can record its
result. Transient failures are retried with exponential backoff (``autoretry_for``); anything
else fails the job at once with its message stored. Once a job has ended, its webhook (if the
submission asked for one) is queued as a task of its own, ``veriframe.webhook``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.exceptions import TimeLimitExceeded

from .celery_app import WEBHOOK_TASK, runtime_of, send_webhook
from .errors import transient_errors
from .jobs import fail_job
from .models import ErrorKind
from .runner import execute
from .webhooks import announce, deliver

log = logging.getLogger(__name__)


class JobTask(Task):
    """Base class of the job tasks: late acks, retries with backoff, failure bookkeeping."""

    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = transient_errors()
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True
    max_retries = 5  # task_annotations set it from settings.job_max_retries
    ignore_result = True
    typing = True

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Reached for a hard time limit (the pool killed the process) and for an error that
        outlived every retry: store it on the job, which would otherwise look stuck."""
        job_id = args[0] if args else kwargs.get("job_id")
        if not job_id:
            return
        if isinstance(exc, TimeLimitExceeded):
            message, kind = f"timed out: killed at the hard time limit ({exc.args[0] if exc.args else '?'} s)", \
                ErrorKind.TIMEOUT
        else:
            message, kind = f"gave up after retries: {type(exc).__name__}: {exc}", ErrorKind.TRANSIENT
        try:
            fail_job(runtime_of(self.app).sessions, job_id, message, kind)
        except Exception as store_exc:
            log.error("job %s: could not store failure %r: %s", job_id, message, store_exc)
        _announce(self, job_id)


def _announce(task: Task, job_id: str) -> None:
    """Queue the webhook of a job that ended (a no-op for any other job; never raises)."""
    announce(runtime_of(task.app).sessions, job_id, lambda delivery_id: send_webhook(task.app, delivery_id))


def _run(task: JobTask, job_id: str) -> str:
    final = task.request.retries >= (task.max_retries or 0)
    result = execute(runtime_of(task.app), job_id, final_attempt=final)
    if result.status == "busy":
        # Another attempt holds the job and looked alive: look again once it would be stale.
        task.apply_async((job_id,), countdown=result.retry_in, task_id=task.request.id)
    elif result.status == "retry" and result.error is not None:
        raise result.error  # autoretry_for turns it into a retry with backoff
    else:
        _announce(task, job_id)
    return result.status


@shared_task(bind=True, base=JobTask, name="veriframe.verify")
def verify(self: JobTask, job_id: str) -> str:
    """Verify an uploaded clip: probe, C2PA, watermark, detector; the report is stored."""
    return _run(self, job_id)


@shared_task(bind=True, base=JobTask, name="veriframe.sign")
def sign(self: JobTask, job_id: str) -> str:
    """Watermark and sign a creator's clip."""
    return _run(self, job_id)


@shared_task(bind=True, base=JobTask, name="veriframe.generate")
def generate(self: JobTask, job_id: str) -> str:
    """Generate a clip, then watermark and sign it."""
    return _run(self, job_id)


@shared_task(bind=True, name=WEBHOOK_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             autoretry_for=transient_errors(), retry_backoff=2, retry_backoff_max=300, max_retries=5)
def webhook(self: Task, delivery_id: str) -> str:
    """One attempt at a job's webhook; after a failure, the next attempt is sent with its delay.

    The attempt count and backoff live in the delivery row, not in Celery's retry state, so an
    attempt that the sweep re-sends continues the same schedule; ``autoretry_for`` only covers the
    database being briefly away.
    """
    result = deliver(runtime_of(self.app), delivery_id)
    if result.retry_in is not None:
        send_webhook(self.app, delivery_id, countdown=result.retry_in)
    return result.status
