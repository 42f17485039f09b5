"""Running a worker: ``manage.py worker`` and the one ``manage.py serve`` starts.

Besides Celery's own consumer, every worker runs an orphan sweep in its main process (at start
and then periodically): jobs whose worker died are put back in the queue at once instead of
waiting for the broker's visibility timeout, and webhooks whose task was lost are sent again. On
the embedded SQLite broker, which forgets the messages a dead worker had taken, the worker first
re-sends every unfinished job whose message is gone, so jobs survive a restart of ``serve``
however it was stopped.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Sequence

from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from sqlalchemy import create_engine, inspect, text

from settings import Settings

from .celery_app import (
    QUEUES,
    broker_url,
    create_celery,
    is_embedded,
    runtime_of,
    send_job,
    send_webhook,
    time_limits,
)
from .jobs import reclaim_orphans, unfinished_jobs
from .webhooks import reclaim_deliveries

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 600.0


def default_pool(queues: Sequence[str]) -> str:
    """prefork for every queue: the pool's parent enforces the soft and hard time limits (a solo
    pool cannot, so a generation stuck in one call would run forever). A generate worker's child
    keeps its loaded model between jobs; only a child killed at the hard limit or recycled for memory
    loads it again."""
    return "prefork"


def recover_embedded_broker(app: Celery) -> int:
    """Before the embedded worker consumes: re-send unfinished jobs whose message was lost.

    kombu's SQL transport marks a message invisible when a worker takes it and forgets it only
    on ack, so a worker that died (or ``serve`` stopped mid-job) leaves invisible rows behind. No
    consumer runs yet, so every invisible row is stale: delete them and re-send each queued or
    running job that has no visible message. Returns how many jobs were re-sent.
    """
    url = broker_url(runtime_of(app).settings).split("+", 1)[1]
    engine = create_engine(url, connect_args={"timeout": 30})
    try:
        if not inspect(engine).has_table("kombu_message"):
            pending: set[str] = set()
        else:
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM kombu_message WHERE visible = 0"))
                payloads = conn.execute(text("SELECT payload FROM kombu_message")).scalars().all()
            pending = set()
            for raw in payloads:
                try:
                    pending.add(json.loads(raw)["headers"]["id"])
                except (ValueError, KeyError, TypeError):
                    continue
    finally:
        engine.dispose()
    resent = 0
    for job_id, kind in unfinished_jobs(runtime_of(app).sessions):
        if job_id not in pending:
            send_job(app, job_id, kind)
            resent += 1
    if resent:
        log.warning("embedded broker: re-sent %d unfinished jobs whose messages were lost", resent)
    return resent


def prune_embedded_broker(app: Celery) -> int:
    """Delete delivered messages from the SQL transport's table, which keeps them forever.

    A message is marked invisible (and stamped) when a worker takes it; one taken longer ago than
    any task may run (the hard limit plus a margin for countdowns) is finished or orphaned, and
    orphans are re-sent from the job table, so it can go. Returns the rows deleted.
    """
    settings = runtime_of(app).settings
    longest = max(hard for _, hard in time_limits(settings).values())
    cutoff = dt.datetime.now() - dt.timedelta(seconds=longest + 600)  # kombu stamps local time
    engine = create_engine(broker_url(settings).split("+", 1)[1], connect_args={"timeout": 30})
    try:
        if not inspect(engine).has_table("kombu_message"):
            return 0
        with engine.begin() as conn:
            return conn.execute(text("DELETE FROM kombu_message WHERE visible = 0 AND timestamp < :cutoff"),
                                {"cutoff": cutoff.strftime("%Y-%m-%d %H:%M:%S.%f")}).rowcount
    finally:
        engine.dispose()


class OrphanSweeper(threading.Thread):
    """Periodically re-queues jobs whose worker died (see :func:`pipeline.jobs.reclaim_orphans`)."""

    def __init__(self, app: Celery, interval_s: float | None = None) -> None:
        super().__init__(name="orphan-sweeper", daemon=True)
        settings = runtime_of(app).settings
        self.app = app
        self.interval_s = interval_s or max(1.0, settings.job_stale_after_s / 2)
        self.embedded = is_embedded(settings)
        self._pruned = 0.0
        self._stopped = threading.Event()

    def sweep(self) -> int:
        runtime = runtime_of(self.app)
        found = reclaim_orphans(runtime.sessions, stale_after=runtime.settings.job_stale_after_s,
                                resend_after=runtime.settings.job_resend_after_s)
        for job_id, kind in found:
            send_job(self.app, job_id, kind)
        # Webhooks whose task was lost; the grace outlasts an attempt's lease (timeout + 30 s).
        for delivery_id in reclaim_deliveries(runtime.sessions, grace_s=runtime.settings.webhook_timeout_s + 60):
            send_webhook(self.app, delivery_id)
        if self.embedded and time.monotonic() - self._pruned > PRUNE_INTERVAL_S:
            self._pruned = time.monotonic()
            prune_embedded_broker(self.app)
        return len(found)

    def run(self) -> None:
        while True:
            try:
                self.sweep()
            except Exception as exc:  # the database or broker may be away for a while
                log.warning("orphan sweep failed: %s", exc)
            if self._stopped.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stopped.set()


def _watch_parent(parent_pid: int) -> None:
    """Warm-shut this worker down when the process that started it (``serve``) is gone."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                log.warning("parent process %d is gone: shutting the worker down", parent_pid)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_worker(
    settings: Settings,
    *,
    queues: Sequence[str] = QUEUES,
    concurrency: int | None = None,
    pool: str | None = None,
    loglevel: str = "INFO",
    hostname: str | None = None,
    parent_pid: int | None = None,
) -> None:
    """Migrate the database, recover what a previous run left, and consume ``queues`` until stopped."""
    unknown = set(queues) - set(QUEUES)
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(sorted(unknown))}; choose from {', '.join(QUEUES)}")
    app = create_celery(settings)
    app.set_default()
    runtime_of(app).migrate()
    embedded = is_embedded(settings)
    if embedded:
        recover_embedded_broker(app)
    sweeper = OrphanSweeper(app)

    @worker_ready.connect(weak=False)
    def _start_sweeper(sender: object = None, **_: object) -> None:
        sweeper.start()

    @worker_shutdown.connect(weak=False)
    def _stop_sweeper(sender: object = None, **_: object) -> None:
        sweeper.stop()

    if parent_pid:
        _watch_parent(parent_pid)
    pool = pool or default_pool(queues)
    argv = [
        "worker", "--queues", ",".join(queues), "--pool", pool, "--loglevel", loglevel,
        "--concurrency", str(concurrency or settings.worker_concurrency),
        "--hostname", hostname or f"veriframe-{'-'.join(queues)}@{socket.gethostname()}",
        "--without-gossip", "--without-mingle",
    ]
    if embedded:
        argv.append("--without-heartbeat")  # worker heartbeats are broadcast: no fanout on SQL
    log.info("starting worker: %s", " ".join(argv))
    app.worker_main(argv)
