"""Errors of artifact storage."""

from __future__ import annotations


class StorageError(Exception):
    """Artifact storage refused a request (permissions, bad key, corrupt blob)."""


class BlobNotFoundError(StorageError):
    """The artifact is not in storage."""


class StorageUnavailableError(StorageError):
    """The store could not be reached or answered 5xx/throttling: may pass, retry later."""
