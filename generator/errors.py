"""Typed errors of the generator; all derive from `GeneratorError` so callers can catch one type."""

from __future__ import annotations


class GeneratorError(Exception):
    """A generation request or model file cannot be used (bad input, not an internal bug)."""


class CheckpointError(GeneratorError):
    """A checkpoint is missing, unreadable, of another format or version, or does not fit its config."""


class NoCheckpointError(CheckpointError):
    """No trained generator is available: generating would only produce noise."""


class CheckpointMismatchError(CheckpointError):
    """A tensor in a checkpoint is missing, unexpected or of the wrong shape; `tensor` names it."""

    def __init__(self, message: str, tensor: str) -> None:
        super().__init__(message)
        self.tensor = tensor
