"""Hard limits on the media veriframe reads, checked from headers before any decoding."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaLimits:
    """Upper bounds for one input file; anything above is refused before it is decoded."""

    max_bytes: int = 2 * 1024**3
    max_pixels: int = 3840 * 2160
    max_frames: int = 10 * 60 * 60
    max_duration_s: float = 10 * 60.0
