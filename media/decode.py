"""Decode video (and stills, as one-frame videos) into numpy frames, enforcing `MediaLimits` as it goes.

Conversion to numpy is the expensive part, so `sample=` still decodes every frame but converts only the
chosen ones, and `fmt="gray"` copies the Y plane of 8-bit YUV frames without any colour conversion.
`feed_frames` serves several consumers from one decode pass, each with its own frames and format.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np

from .errors import CorruptMediaError, MediaError
from .limits import MediaLimits
from .probe import DEFAULT_LIMITS, MediaInfo, check_frame, open_input

log = logging.getLogger(__name__)

_ENC_PARAMS = av.sidedata.sidedata.Type.VIDEO_ENC_PARAMS
_ENC_PARAMS_H264 = 1  # AV_VIDEO_ENC_PARAMS_H264

FrameFormat = Literal["rgb24", "gray", "yuv420p", "qp"]
FORMATS: tuple[FrameFormat, ...] = ("rgb24", "gray", "yuv420p", "qp")
Planes = tuple[np.ndarray, np.ndarray, np.ndarray]

# 8-bit formats whose plane 0 is the luma plane, read directly for fmt="gray".
_LUMA_FIRST = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray"}


@dataclass
class Frame:
    """One decoded frame: `array` is (H, W, 3) for rgb24, (H, W) for gray, (Y, U, V) planes for yuv420p,
    and for qp the decoder's quantiser per block (`quantiser_map`).

    U and V of yuv420p are (ceil(H/2), ceil(W/2)). `index` counts decoded frames from the clip's start.
    """

    index: int
    time_s: float
    array: np.ndarray | Planes


def plane_view(frame: av.VideoFrame, index: int) -> np.ndarray:
    """A (height, width) uint8 view of one plane of an 8-bit frame, skipping the line padding (no copy)."""
    plane = frame.planes[index]
    rows = np.frombuffer(plane, np.uint8, count=plane.height * plane.line_size)
    return rows.reshape(plane.height, plane.line_size)[:, : plane.width]


def decoded_frames(
    path: str | os.PathLike[str], limits: MediaLimits = DEFAULT_LIMITS, *, quantisers: bool = False
) -> Iterator[tuple[MediaInfo, av.VideoStream, int, float, av.VideoFrame]]:
    """Yield (info, stream, index, time_s, frame) for every frame, re-checking limits on each one.

    The low-level iterator shared by `iter_frames` and `media.encode.transcode`; the container stays
    open while the generator is alive. ``quantisers`` asks the decoder to attach its per-block
    quantisers to each frame (read with `quantiser_map`).
    """
    with open_input(path, limits) as (info, container, stream):
        # Frame threading hands out the quantisers of frames still being decoded (H.264 with B-frames:
        # random blocks read 0); slice threading gives the same maps on every run.
        stream.thread_type = "SLICE" if quantisers else "AUTO"
        # A stream can change size mid-way; the decoder itself refuses to allocate past max_pixels.
        options = {"max_pixels": str(limits.max_pixels)}
        if quantisers:
            options["export_side_data"] = "venc_params"
        stream.codec_context.options = options
        index = -1
        # Times count from the stream's start (MPEG-TS and others begin at an arbitrary timestamp).
        offset = (
            float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
        )
        try:
            for index, frame in enumerate(container.decode(stream)):
                time_s = float(frame.time) - offset if frame.time is not None else index / (info.fps or 1)
                check_frame(limits, index, time_s, frame.width, frame.height)
                yield info, stream, index, time_s, frame
        except av.FFmpegError as exc:
            raise CorruptMediaError(
                f"{os.path.basename(path)} cannot be decoded past frame {index + 1}"
            ) from exc
        if index < 0:
            raise CorruptMediaError(f"{os.path.basename(path)} contains no decodable video frames")


def iter_frames(
    path: str | os.PathLike[str],
    limits: MediaLimits = DEFAULT_LIMITS,
    *,
    fmt: FrameFormat = "rgb24",
    max_frames: int | None = None,
    sample: int | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
) -> Iterator[Frame]:
    """Frames of `path` in order, converted to `fmt`.

    `start_s`/`end_s` keep frames whose time lies in [start_s, end_s) (decoded from the start, not
    seeked). `sample=N` returns at most N frames spread uniformly over that window, chosen from the
    header's frame count (or a packet count when the header has none). `max_frames` stops early.
    """
    _check_format(fmt)
    if sample is not None and sample < 1:
        raise ValueError("sample must be at least 1")
    picks: set[int] | None = None
    yielded = 0
    # closes the file on early exit
    with contextlib.closing(decoded_frames(path, limits, quantisers=fmt == "qp")) as frames:
        for info, _stream, index, time_s, frame in frames:
            if picks is None and sample is not None:
                picks = sample_indices(path, info, sample, start_s, end_s)
            if end_s is not None and time_s >= end_s and not info.is_still:
                return
            if (start_s is not None and time_s < start_s) or (picks is not None and index not in picks):
                continue
            yield Frame(index, time_s, to_array(frame, fmt))
            yielded += 1
            if max_frames is not None and yielded >= max_frames:
                return


@dataclass(frozen=True)
class FrameRequest:
    """One consumer of a shared decode pass: the frames `indices`, converted to `fmt`, handed to `take`
    in decode order. The consumer keeps only what it needs, so memory is the consumers', not the clip's."""

    fmt: FrameFormat
    indices: Collection[int]
    take: Callable[[Frame], None]


def feed_frames(
    path: str | os.PathLike[str],
    limits: MediaLimits,
    requests: Sequence[FrameRequest],
    *,
    stop_when_done: bool = False,
) -> None:
    """Decode `path` once and hand every request its frames, so checks that sample a clip differently
    (the watermark's luma, the detector's RGB) need not decode it once each.

    A frame two requests want in one format is converted once and shared: arrays are read-only. Like
    `iter_frames`, every frame is decoded and checked against `limits` to the clip's end (headers can
    hide frames past their count); `stop_when_done` stops after the last requested frame instead.
    """
    for request in requests:
        _check_format(request.fmt)
    wanted = [(frozenset(r.indices), r) for r in requests]
    last = max((max(indices) for indices, _ in wanted if indices), default=-1)
    quantisers = any(r.fmt == "qp" for r in requests)
    with contextlib.closing(decoded_frames(path, limits, quantisers=quantisers)) as frames:
        for _info, _stream, index, time_s, frame in frames:
            converted: dict[str, Frame] = {}
            for indices, request in wanted:
                if index in indices:
                    if request.fmt not in converted:
                        converted[request.fmt] = Frame(index, time_s, _read_only(to_array(frame, request.fmt)))
                    request.take(converted[request.fmt])
            if stop_when_done and index >= last:
                return


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown frame format {fmt!r}; use {', '.join(FORMATS)}")


def _read_only(array: np.ndarray | Planes) -> np.ndarray | Planes:
    for plane in array if isinstance(array, tuple) else (array,):
        plane.flags.writeable = False
    return array


def read_frames(path: str | os.PathLike[str], limits: MediaLimits = DEFAULT_LIMITS, **kwargs) -> list[Frame]:
    """`iter_frames` collected into a list; takes the same keyword arguments."""
    return list(iter_frames(path, limits, **kwargs))


def to_array(frame: av.VideoFrame, fmt: FrameFormat) -> np.ndarray | Planes:
    """Convert one decoded frame; the result never aliases decoder memory (reference frames live there)."""
    if fmt == "qp":
        return quantiser_map(frame)
    name = frame.format.name
    if fmt == "gray":
        if name in _LUMA_FIRST:
            return plane_view(frame, 0).copy()
        return frame.to_ndarray(format="gray")
    if fmt == "yuv420p":
        if name not in ("yuv420p", "yuvj420p"):
            frame = frame.reformat(format="yuv420p")
        return plane_view(frame, 0).copy(), plane_view(frame, 1).copy(), plane_view(frame, 2).copy()
    return frame.to_ndarray(format="rgb24")


def quantiser_map(frame: av.VideoFrame) -> np.ndarray:
    """The quantiser (QP, 0-51) of every 16x16 macroblock, (rows, cols) int32, as the H.264 decoder exports
    it (FFmpeg's VIDEO_ENC_PARAMS side data, decoded with ``quantisers=True``); (0, 0) when the frame
    carries none (other codecs, or a decode without the option).

    The side data is read as FFmpeg lays it out (``AVVideoEncParams`` then ``AVVideoBlockParams``, the
    C layout of a 64-bit build): one path whatever PyAV version wraps it.
    """
    params = frame.side_data.get(_ENC_PARAMS) if frame.side_data else None
    if params is None:
        return np.zeros((0, 0), np.int32)
    raw = np.frombuffer(memoryview(params), np.uint8)
    count = int(raw[0:4].view(np.uint32)[0])
    offset, size = (int(v) for v in raw[8:24].view(np.uint64))
    kind, base = (int(v) for v in raw[24:32].view(np.int32))
    if kind != _ENC_PARAMS_H264 or count == 0 or size < 20 or offset + count * size > raw.size:
        return np.zeros((0, 0), np.int32)
    blocks = raw[offset : offset + count * size].reshape(count, size)[:, :20].copy().view(np.int32)
    x, y, qp = blocks[:, 0] // 16, blocks[:, 1] // 16, base + blocks[:, 4]  # src_x, src_y, w, h, delta_qp
    out = np.zeros((int(y.max()) + 1, int(x.max()) + 1), np.int32)
    out[y, x] = qp
    return out


def mean_quantiser(maps: Iterable[np.ndarray]) -> float | None:
    """The mean over frames of each frame's mean quantiser (`quantiser_map`), rounded to 0.01; None when
    no frame carries one."""
    means = [float(m.mean()) for m in maps if m.size]
    return round(float(np.mean(means)), 2) if means else None


def sample_indices(
    path: str | os.PathLike[str], info: MediaInfo, sample: int, start_s: float | None = None,
    end_s: float | None = None,
) -> set[int]:
    """The frames `iter_frames(..., sample=sample)` picks: at most `sample` spread uniformly over
    [start_s, end_s), from the header's frame count (or a packet count when the header has none)."""
    total = info.frame_count or _count_packets(path)
    first, last = 0, total - 1
    if info.fps and not info.is_still:
        if start_s is not None:
            first = max(first, math.ceil(start_s * info.fps - 1e-6))
        if end_s is not None:
            last = min(last, math.ceil(end_s * info.fps - 1e-6) - 1)
    if last < first:
        return set()
    return {int(i) for i in np.linspace(first, last, min(sample, last - first + 1)).round()}


def _count_packets(path: str | os.PathLike[str]) -> int:
    """Count video packets without decoding, for containers whose header has no frame count."""
    try:
        with av.open(str(path)) as container:
            return sum(1 for p in container.demux(container.streams.video[0]) if p.size)
    except (av.FFmpegError, IndexError) as exc:
        raise MediaError(f"{os.path.basename(path)} cannot be scanned for frames") from exc
