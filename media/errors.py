"""Typed errors for media input and output.

Every message is one short human line: the CLI prints it on stderr and the web API puts it in a
problem+json body, so it must never carry a traceback or FFmpeg's internal wording alone.
"""

from __future__ import annotations


class MediaError(ValueError):
    """Base class: a file could not be read or written as media."""


class EmptyMediaError(MediaError):
    """The file has zero bytes."""


class UnsupportedMediaError(MediaError):
    """Not a recognisable media container, or an output format we do not write."""


class CorruptMediaError(MediaError):
    """A recognisable container that is truncated or cannot be decoded."""


class NoVideoStreamError(MediaError):
    """The container holds no video stream (for example an audio-only file)."""


class LimitExceededError(MediaError):
    """A `MediaLimits` bound was exceeded; `limit`, `value` and `maximum` say which and by how much."""

    def __init__(self, limit: str, value: float, maximum: float, unit: str, detail: str = "") -> None:
        self.limit, self.value, self.maximum = limit, value, maximum
        shown = f" ({detail})" if detail else ""
        super().__init__(
            f"{limit} {_number(value)} {unit}{shown} exceeds the limit of {_number(maximum)} {unit}"
        )


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"
