"""Read what a media file claims to be, and refuse it from its headers before anything is decoded.

Order of checks in `open_input`: the file size (os.stat), then dimensions and duration parsed by hand
from PNG/JPEG/MP4 headers (so a header claiming 100000x100000 never reaches a decoder), then FFmpeg's
own view of the container, with `max_pixels` handed to every decoder it opens. Decoding re-checks
every frame (see `media.decode`), because headers can lie.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from .errors import (
    CorruptMediaError,
    EmptyMediaError,
    LimitExceededError,
    NoVideoStreamError,
    UnsupportedMediaError,
)
from .limits import MediaLimits

log = logging.getLogger(__name__)

DEFAULT_LIMITS = MediaLimits()  # frozen, so one shared default instance is safe

# Leading bytes of containers we recognise: a file that starts like one of these but fails to open is
# corrupt; anything else is unsupported (for example a text file renamed .mp4).
_MAGIC = (
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"\x1a\x45\xdf\xa3",
    b"RIFF",
    b"OggS",
    b"FLV",
    b"GIF8",
    b"ID3",
    b"\x00\x00\x00\x01",
    b"\x00\x00\x01",
)


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds. width/height are coded sizes, before `rotation` is applied.

    rotation is the display matrix's counter-clockwise angle (FFmpeg's and PyAV's convention,
    normalised to 0/90/180/270); frame_count is 0 when neither the header nor the duration tells.
    Stills (PNG, JPEG) are one-frame videos with fps 0 and duration 0.
    """

    path: str
    container: str
    size_bytes: int
    video_codec: str
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    rotation: int
    has_audio: bool
    audio_codec: str | None
    is_still: bool
    pix_fmt: str | None
    bit_rate: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe(path: str | os.PathLike[str], limits: MediaLimits = DEFAULT_LIMITS) -> MediaInfo:
    """Describe `path` from its headers only; raises a `MediaError` subclass if it is refused."""
    with open_input(path, limits) as (info, _container, _stream):
        return info


@contextlib.contextmanager
def open_input(
    path: str | os.PathLike[str], limits: MediaLimits
) -> Iterator[tuple[MediaInfo, av.container.InputContainer, av.VideoStream]]:
    """Open `path` after every header check passed; yields (info, container, video stream)."""
    path = Path(path)
    size = os.stat(path).st_size
    if size == 0:
        raise EmptyMediaError(f"{path.name} is empty (0 bytes)")
    if size > limits.max_bytes:
        raise LimitExceededError("file size", size, limits.max_bytes, "bytes")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
        dims, rotation, duration = _png_dims(head) or _jpeg_dims(head), 0, None
        if head[4:8] == b"ftyp":
            dims, rotation, duration = _mp4_header(f, size, path.name)
    if dims:
        _check_pixels(*dims, limits)
    if duration is not None:
        _check_duration(duration, limits)
    try:
        container = av.open(str(path), options={"max_pixels": str(limits.max_pixels)})
    except av.FFmpegError as exc:
        if head.startswith(_MAGIC) or head[4:8] == b"ftyp":
            raise CorruptMediaError(f"{path.name} is truncated or damaged and cannot be opened") from exc
        raise UnsupportedMediaError(f"{path.name} is not a recognisable video or image file") from exc
    with container:
        info, stream = _describe(path, size, container, rotation)
        _check_pixels(info.width, info.height, limits)
        _check_duration(info.duration_s, limits)
        if info.frame_count > limits.max_frames:
            raise LimitExceededError("frame count", info.frame_count, limits.max_frames, "frames")
        yield info, container, stream


def check_frame(limits: MediaLimits, index: int, time_s: float, width: int, height: int) -> None:
    """The per-frame re-check done while decoding, for headers that lied."""
    _check_pixels(width, height, limits)
    if index + 1 > limits.max_frames:
        raise LimitExceededError("decoded frame count", index + 1, limits.max_frames, "frames")
    _check_duration(time_s, limits)


def _check_pixels(width: int, height: int, limits: MediaLimits) -> None:
    if width * height > limits.max_pixels:
        raise LimitExceededError(
            "frame size", width * height, limits.max_pixels, "pixels", f"{width}x{height}"
        )


def _check_duration(duration_s: float, limits: MediaLimits) -> None:
    if duration_s > limits.max_duration_s:
        raise LimitExceededError("duration", round(duration_s, 2), limits.max_duration_s, "s")


def _describe(
    path: Path, size: int, container: av.container.InputContainer, rotation: int
) -> tuple[MediaInfo, av.VideoStream]:
    # Cover art in audio files is a "video" stream flagged attached_pic: it is not a video.
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    audios = list(container.streams.audio)
    if not videos:
        what = "only audio" if audios else "no video stream"
        raise NoVideoStreamError(f"{path.name} has {what}; a video or image is required")
    stream = videos[0]
    ctx = stream.codec_context
    if ctx is None or not stream.width or not stream.height:
        raise CorruptMediaError(f"{path.name} has a video stream whose size cannot be read")
    fmt = container.format.name
    is_still = fmt == "image2" or fmt.endswith("_pipe")
    rate = video_rate(stream)
    duration = 0.0
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1e6
    frames = stream.frames or (round(duration * rate) if rate else 0)
    entries = stream.index_entries
    if entries and max(e.pos + e.size for e in entries) > size:
        raise CorruptMediaError(f"{path.name} is truncated: its index points past the end of the file")
    info = MediaInfo(
        path=str(path),
        container=fmt,
        size_bytes=size,
        video_codec=ctx.name,
        width=stream.width,
        height=stream.height,
        fps=0.0 if is_still else float(rate or 0),
        frame_count=1 if is_still else frames,
        duration_s=0.0 if is_still else duration,
        rotation=rotation,
        has_audio=bool(audios),
        audio_codec=audios[0].codec_context.name if audios and audios[0].codec_context else None,
        is_still=is_still,
        pix_fmt=stream.pix_fmt,
        bit_rate=stream.bit_rate or container.bit_rate or None,
    )
    log.debug("probed %s: %s", path, info)
    return info, stream


def video_rate(stream: av.VideoStream) -> Fraction | None:
    """The stream's exact frame rate (average, else guessed), or None when the container has none."""
    return stream.average_rate or stream.guessed_rate or None


def _png_dims(head: bytes) -> tuple[int, int] | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    return None


def _jpeg_dims(head: bytes) -> tuple[int, int] | None:
    """Width and height from the first SOF marker inside the first 64 KiB, if there is one."""
    if not head.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 9 <= len(head) and head[pos] == 0xFF:
        marker, length = head[pos + 1], struct.unpack(">H", head[pos + 2 : pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    return None


def _mp4_boxes(f: Any, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, declared end) of the boxes in [start, end); at most 4096 per level."""
    pos = start
    for _ in range(4096):
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8 or pos + 8 > end:
            return
        size, kind = struct.unpack(">I4s", header)
        skip = 8
        if size == 1:
            size, skip = struct.unpack(">Q", f.read(8))[0], 16
        elif size == 0:
            size = end - pos
        if size < skip:
            raise CorruptMediaError("the MP4 header is damaged (a box has an impossible size)")
        yield kind, pos + skip, pos + size  # the declared end, which may lie past the file's
        pos += size


def _mp4_header(f: Any, size: int, name: str) -> tuple[tuple[int, int] | None, int, float | None]:
    """(tkhd width and height, rotation, mvhd duration) of the first video track, read by hand."""
    dims, rotation, duration = None, 0, None
    for kind, start, end in _mp4_boxes(f, 0, size):
        if end > size:
            raise CorruptMediaError(
                f"{name} is truncated: its {kind.decode(errors='replace')} box ends past the file"
            )
        if kind != b"moov":
            continue
        for child, s, e in _mp4_boxes(f, start, end):
            if child == b"mvhd":
                f.seek(s)
                version = f.read(1)[0]
                f.seek(s + (20 if version else 12))
                timescale, length = struct.unpack(">IQ" if version else ">II", f.read(12 if version else 8))
                duration = length / timescale if timescale else None
            elif child == b"trak" and dims is None:
                tkhd, handler = None, None
                for kind2, s2, e2 in _mp4_boxes(f, s, e):
                    if kind2 == b"tkhd":
                        f.seek(s2)
                        tkhd = f.read(min(e2 - s2, 92))
                    elif kind2 == b"mdia":
                        for kind3, s3, _ in _mp4_boxes(f, s2, e2):
                            if kind3 == b"hdlr":
                                f.seek(s3 + 8)
                                handler = f.read(4)
                if handler == b"vide" and tkhd:
                    dims, rotation = _tkhd(tkhd)
        break
    return dims, rotation, duration


def _tkhd(box: bytes) -> tuple[tuple[int, int] | None, int]:
    at = 52 if box[0] == 1 else 40  # offset of the 3x3 matrix after version-dependent times
    if len(box) < at + 44:
        return None, 0
    matrix = struct.unpack(">9i", box[at : at + 36])
    width, height = struct.unpack(">II", box[at + 36 : at + 44])
    # FFmpeg's av_display_rotation_get(): counter-clockwise degrees from the matrix's first column.
    angle = -math.degrees(math.atan2(matrix[1], matrix[0])) if matrix[0] or matrix[1] else 0.0
    return (width >> 16, height >> 16), round(angle / 90) % 4 * 90
