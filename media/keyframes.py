"""Keyframes of a clip for a report's strip: a few frames spread over it, as small thumbnails.

`KeyframeStrip` is one more consumer of a decode pass (`feed_frames`), so the strip costs no decode of
its own: it names its frames up front, shrinks each one as the pass hands it over and keeps only the
thumbnail. The frames are spread evenly over the clip: picking scene changes or codec keyframes would
need every frame looked at (or a second pass over the packets) before the pass could name them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import cv2
import numpy as np

from .decode import Frame, FrameRequest
from .encode import encode_image
from .probe import MediaInfo

KEYFRAMES = 6
THUMBNAIL_PX = 240  # the longest side of a thumbnail
JPEG_QUALITY = 85


def pick_keyframes(frame_count: int, count: int = KEYFRAMES, candidates: Collection[int] = ()) -> list[int]:
    """At most ``count`` frame indices spread evenly over ``frame_count`` frames, in order.

    With enough ``candidates`` (frames another consumer of the pass decodes anyway, such as the
    detector's) the picks are spread over those instead, so the two can share frames and results.
    Otherwise each pick is the middle frame of one of ``count`` equal stretches of the clip.
    """
    total = max(1, frame_count)
    n = min(count, total)
    if n < 1:
        return []
    usable = sorted({i for i in candidates if 0 <= i < total})
    if len(usable) >= n:
        return [usable[int(k)] for k in np.linspace(0, len(usable) - 1, n).round()]
    return sorted({min(total - 1, int((k + 0.5) * total / n)) for k in range(n)})


def thumbnail_size(width: int, height: int, max_side: int = THUMBNAIL_PX) -> tuple[int, int]:
    """(width, height) scaled so that the longest side is at most ``max_side``, never enlarged."""
    scale = min(1.0, max_side / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def shrink(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB image resized to ``size`` (width, height); area averaging, so detail does not alias."""
    if (rgb.shape[1], rgb.shape[0]) == size:
        return np.ascontiguousarray(rgb)
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """An image in coded orientation turned as the clip is shown (``MediaInfo.rotation``: counter-clockwise)."""
    return np.ascontiguousarray(np.rot90(image, (rotation // 90) % 4)) if rotation % 360 else image


@dataclass(frozen=True)
class Keyframe:
    """One keyframe: its frame ``index`` and ``time_s`` in the clip and its thumbnail.

    ``thumbnail`` is RGB in the frame's coded orientation (as decoded), so that overlays drawn in the
    frame's own pixel grid still line up with it; ``rotation`` turns it as the clip is shown (`image`).
    ``source_size`` is the decoded frame's (width, height).
    """

    index: int
    time_s: float
    thumbnail: np.ndarray
    source_size: tuple[int, int]
    rotation: int = 0

    @property
    def size(self) -> tuple[int, int]:
        """The (width, height) of the thumbnail as shown."""
        h, w = self.thumbnail.shape[:2]
        return (h, w) if self.rotation % 180 else (w, h)

    def image(self, overlay: np.ndarray | None = None) -> np.ndarray:
        """The thumbnail (or ``overlay``, an image drawn over it in coded orientation) as shown."""
        return upright(self.thumbnail if overlay is None else overlay, self.rotation)

    def jpeg(self) -> bytes:
        return encode_image(self.image(), "jpeg", JPEG_QUALITY)


class KeyframeStrip:
    """Collects up to ``count`` keyframes of ``info``'s clip from a decode pass the caller runs.

    ``request()`` joins the pass; afterwards ``keyframes`` holds what it handed over, in clip order
    (fewer than planned when the clip holds fewer frames than its header says). A still gives one.
    ``from_candidates`` says whether the picks are among ``candidates`` (see `pick_keyframes`).
    """

    def __init__(self, info: MediaInfo, count: int = KEYFRAMES, *, max_side: int = THUMBNAIL_PX,
                 candidates: Collection[int] = ()) -> None:
        # A clip whose header tells no frame count gives its first frame only: counting its packets
        # would read the file once more.
        total = 1 if info.is_still else info.frame_count or 1
        self.indices = pick_keyframes(total, count, candidates)
        self.from_candidates = bool(candidates) and set(self.indices) <= set(candidates)
        self.max_side, self.rotation = max_side, info.rotation
        self.keyframes: list[Keyframe] = []

    def request(self) -> FrameRequest:
        return FrameRequest("rgb24", self.indices, self._take)

    def _take(self, frame: Frame) -> None:
        rgb = frame.array
        h, w = rgb.shape[:2]
        small = shrink(rgb, thumbnail_size(w, h, self.max_side))
        self.keyframes.append(Keyframe(frame.index, round(frame.time_s, 3), small, (w, h), self.rotation))
