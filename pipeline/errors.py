"""Errors of the pipeline, sorted by what a worker should do about them.

``TransientError`` (and the few library errors listed in :data:`TRANSIENT_ERRORS`) are retried
with backoff; every other failure ends the job at once with its one-line message stored, because
retrying bad input or a missing component only burns worker time.
"""

from __future__ import annotations

from storage.errors import BlobNotFoundError, StorageError, StorageUnavailableError  # noqa: F401 (re-exported)


class PipelineError(Exception):
    """Base class of the pipeline's own errors."""


class TransientError(PipelineError):
    """A service (database, broker, storage) failed in a way that may pass: retry later."""


class JobInputError(PipelineError, ValueError):
    """A job's parameters are unusable (a user error: fail the job, do not retry)."""


class ComponentUnavailableError(PipelineError):
    """A component the job needs (generator, checkpoint, signing identity) is not installed."""


class JobNotFoundError(PipelineError, LookupError):
    """No such job (or not one the caller may see)."""


class JobCancelledError(PipelineError):
    """The job was cancelled while it ran; the worker stops at the next checkpoint."""


class ClaimLostError(PipelineError):
    """Another attempt took the job over (this one was presumed dead): stop, write nothing."""


def transient_errors() -> tuple[type[BaseException], ...]:
    """The exception types retried with backoff: ours plus the database's connection failures."""
    from sqlalchemy.exc import DisconnectionError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    return (TransientError, StorageUnavailableError, OperationalError, DisconnectionError, PoolTimeoutError,
            ConnectionError)
