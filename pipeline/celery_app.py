"""The Celery application, built from veriframe's settings (never at import time).

Brokers: the embedded default is kombu's SQLAlchemy transport on SQLite
(``sqla+sqlite:///<instance>/broker.db``), so a single machine needs no server; production sets
``broker_url`` / ``CELERY_BROKER_URL`` to Redis (``redis://``) or RabbitMQ (``amqp://``).
Task results are not kept by Celery: the job table is the result store.

Queues: ``default`` (verify, sign) and ``generate`` (GPU or heavy CPU; a one-process prefork
pool whose child keeps the model loaded between jobs, while the parent enforces time limits).
"""

from __future__ import annotations

import fcntl
from typing import Any

from celery import Celery

from settings import Settings, load_settings

from .runtime import Runtime

DEFAULT_QUEUE = "default"
GENERATE_QUEUE = "generate"
QUEUES = (DEFAULT_QUEUE, GENERATE_QUEUE)
TASK_NAMES = {"verify": "veriframe.verify", "sign": "veriframe.sign", "generate": "veriframe.generate"}
QUEUE_OF = {"verify": DEFAULT_QUEUE, "sign": DEFAULT_QUEUE, "generate": GENERATE_QUEUE}
WEBHOOK_TASK = "veriframe.webhook"  # one attempt at a webhook (pipeline.webhooks), on the default queue
# Seconds a hard time limit adds to the soft one, so the task can store its timeout itself.
HARD_LIMIT_GRACE_S = 30.0
SQLITE_BROKER_TIMEOUT_S = 30


def broker_url(settings: Settings) -> str:
    if settings.broker_url.strip():
        return settings.broker_url.strip()
    return f"sqla+sqlite:///{(settings.instance / 'broker.db').resolve()}"


def is_embedded(settings: Settings) -> bool:
    """True for the SQLite broker: one machine, no broker server, ``serve`` runs the worker."""
    return broker_url(settings).startswith(("sqla+sqlite", "sqlalchemy+sqlite"))


def time_limits(settings: Settings) -> dict[str, tuple[float, float]]:
    """(soft, hard) seconds per task kind."""
    soft = {"verify": settings.verify_time_limit_s, "sign": settings.sign_time_limit_s,
            "generate": settings.generate_time_limit_s}
    return {k: (v, v + max(HARD_LIMIT_GRACE_S, 0.1 * v)) for k, v in soft.items()}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery setting veriframe relies on, derived from its own settings."""
    url = broker_url(settings)
    limits = time_limits(settings)
    longest_hard = max(hard for _, hard in limits.values())
    transport: dict[str, Any] = {}
    transport_class: str | None = None  # kombu picks it from the URL's scheme
    if url.startswith(("redis", "rediss")):
        # An unacknowledged message goes back to the queue after this long: it must exceed the
        # longest task, or a second worker would start a job the first is still running.
        transport = {"visibility_timeout": int(longest_hard + 600)}
        transport_class = "pipeline.redis_transport:Transport"  # survives losing Redis; see there
    elif url.startswith(("amqp", "pyamqp")):
        transport = {"confirm_publish": True}  # a send returns only once the broker has the message
    elif url.startswith(("sqla+", "sqlalchemy+")):
        transport = {"connect_args": {"timeout": SQLITE_BROKER_TIMEOUT_S}}
    remote_control = not url.startswith(("sqla+", "sqlalchemy+"))  # no fanout on the SQL transport
    return {
        "broker_url": url,
        "broker_transport": transport_class,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_ignore_result": True,
        "task_store_errors_even_if_ignored": False,
        # Idempotent tasks: acknowledge after the work, give the message back if the worker dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.worker_concurrency,
        "worker_max_memory_per_child": settings.worker_max_memory_per_child_kb,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_enable_remote_control": remote_control,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": {**{name: {"queue": QUEUE_OF[kind]} for kind, name in TASK_NAMES.items()},
                        WEBHOOK_TASK: {"queue": DEFAULT_QUEUE}},
        "task_annotations": {
            **{TASK_NAMES[kind]: {"soft_time_limit": soft, "time_limit": hard,
                                  "max_retries": settings.job_max_retries}
               for kind, (soft, hard) in limits.items()},
            # One POST with its timeout, plus the database work around it.
            WEBHOOK_TASK: {"soft_time_limit": settings.webhook_timeout_s + 30,
                           "time_limit": settings.webhook_timeout_s + 60},
        },
        "enable_utc": True,
        "timezone": "UTC",
    }


def create_celery(settings: Settings | None = None) -> Celery:
    """A Celery app for ``settings`` (loaded from the environment when omitted)."""
    settings = settings if settings is not None else load_settings()
    app = Celery("veriframe", include=["pipeline.tasks"], set_as_current=False)
    app.conf.update(celery_config(settings))
    app.veriframe_runtime = Runtime(settings)  # type: ignore[attr-defined]
    if is_embedded(settings):
        prepare_embedded_broker(app, settings)
    return app


def prepare_embedded_broker(app: Celery, settings: Settings) -> None:
    """Create the SQL transport's tables and queue rows once, under an inter-process lock.

    kombu creates them lazily and guards that with a lock that only holds within one process, so a
    worker starting while a client sends its first job could both insert the queue's row and one
    fail on the unique name (or both run CREATE TABLE). Declaring every queue up front, serialised
    by an flock beside the database, leaves kombu nothing to create concurrently. Idempotent."""
    settings.instance.mkdir(parents=True, exist_ok=True)
    with open(settings.instance / "broker.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with app.connection_for_write() as conn:
                channel = conn.default_channel
                for queue in QUEUES:
                    channel.queue_declare(queue=queue, durable=True, auto_delete=False)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def runtime_of(app: Celery) -> Runtime:
    """The runtime attached by :func:`create_celery` (or one from the environment's settings)."""
    runtime = getattr(app, "veriframe_runtime", None)
    if runtime is None:
        runtime = Runtime(load_settings())
        app.veriframe_runtime = runtime  # type: ignore[attr-defined]
    return runtime


def send_job(app: Celery, job_id: str, kind: str, *, countdown: float | None = None) -> None:
    """Publish the task of a job (the job row must already be committed)."""
    app.send_task(TASK_NAMES[kind], args=[job_id], task_id=job_id, queue=QUEUE_OF[kind], countdown=countdown)


def send_webhook(app: Celery, delivery_id: str, *, countdown: float | None = None) -> None:
    """Publish one attempt at a due webhook (its row must already be committed as pending)."""
    app.send_task(WEBHOOK_TASK, args=[delivery_id], queue=DEFAULT_QUEUE, countdown=countdown)
