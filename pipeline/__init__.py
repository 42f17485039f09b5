"""veriframe's job pipeline: durable jobs, artifact storage and Celery workers.

Public API (imported lazily, so ``manage.py`` starts fast)::

    Pipeline(settings).submit_verify(path, owner=...) -> JobView       # pipeline.service
    Pipeline.submit_sign / submit_generate / get / list_jobs / cancel / wait / report / open_artifact
    Pipeline().init_app(flask_app)                                      # app.extensions["veriframe.pipeline"]
    create_celery(settings) -> Celery                                   # pipeline.celery_app
    open_store(settings) -> ArtifactStore (LocalStore | S3Store)        # pipeline.storage
    JobKind, JobState, ErrorKind                                        # pipeline.models

Layers, bottom up: ``models``/``db`` (tables, Alembic migrations), ``storage`` (content-addressed
blobs), ``jobs`` (the job life cycle as compare-and-set updates), ``work`` (the workflows as plain
functions), ``runner`` (one delivery of a job), ``tasks`` (thin Celery tasks), ``worker`` (worker
process, orphan sweep, embedded-broker recovery), ``service`` (submit and read), ``cli``.
See docs/deploy.md for running it on one machine or many.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "Pipeline": "service",
    "JobView": "jobs",
    "ArtifactView": "jobs",
    "JobKind": "models",
    "JobState": "models",
    "ErrorKind": "models",
    "create_celery": "celery_app",
    "open_store": "storage",
    "ArtifactStore": "storage",
    "LocalStore": "storage",
    "S3Store": "storage",
    "JobNotFoundError": "errors",
    "JobInputError": "errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_LAZY)
