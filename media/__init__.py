"""veriframe's one place for video and image I/O, built on PyAV.

Every reader checks `MediaLimits` from headers before decoding and again frame by frame while
decoding; every writer is atomic. Errors are `MediaError` subclasses with one-line messages.
"""

from .decode import Frame, FrameRequest, feed_frames, iter_frames, read_frames
from .encode import VideoWriter, encode_image, transcode, write_image
from .errors import (
    CorruptMediaError,
    EmptyMediaError,
    LimitExceededError,
    MediaError,
    NoVideoStreamError,
    UnsupportedMediaError,
)
from .files import atomic_path
from .limits import MediaLimits
from .probe import MediaInfo, probe

__all__ = [
    "CorruptMediaError",
    "EmptyMediaError",
    "Frame",
    "FrameRequest",
    "LimitExceededError",
    "MediaError",
    "MediaInfo",
    "MediaLimits",
    "NoVideoStreamError",
    "UnsupportedMediaError",
    "VideoWriter",
    "atomic_path",
    "encode_image",
    "feed_frames",
    "iter_frames",
    "probe",
    "read_frames",
    "transcode",
    "write_image",
]
