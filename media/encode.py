"""Write video and stills atomically, and transcode with an optional per-frame transform.

Outputs are written to a hidden temporary file beside the target (`.{name}.{random}.tmp{ext}`) and
renamed into place only once complete, so a failure never leaves a partial or stale-looking file.
The output path's extension picks the format: .mp4/.mov are video, .png/.jpg/.jpeg are images.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import cv2
import numpy as np
from av.video.frame import PictureType

from .decode import decoded_frames, iter_frames, plane_view
from .errors import CorruptMediaError, MediaError, UnsupportedMediaError
from .files import atomic_path
from .limits import MediaLimits
from .probe import DEFAULT_LIMITS, MediaInfo, probe, video_rate

log = logging.getLogger(__name__)

LumaFn = Callable[[np.ndarray, int], np.ndarray]
FrameFn = Callable[[np.ndarray, int], np.ndarray]
PathLike = str | os.PathLike[str]

_VIDEO_FORMATS = {".mp4": "mp4", ".mov": "mov"}
_IMAGE_EXTS = (".png", ".jpg", ".jpeg")
_CODECS = ("libx264", "libx265")
# libx265 as the av wheel bundles it corrupts the heap (glibc aborts the whole process) on some frames
# under one 64 px coding tree unit a side (seen at 40x40, 48x48 and 48x64 within a few dozen clips), so
# smaller H.265 frames are refused before the encoder opens.
X265_MIN_SIDE = 64
_FRAMES_APART = 1 << 16  # a packet's pts and dts (in frames) are never this far apart but when dts is garbage
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def output_kind(path: PathLike) -> str:
    """ "video" or "image" from the extension of `path`; anything else is refused."""
    ext = Path(path).suffix.lower()
    if ext in _VIDEO_FORMATS:
        return "video"
    if ext in _IMAGE_EXTS:
        return "image"
    raise UnsupportedMediaError(f"cannot write {Path(path).name}: use .mp4, .mov, .png, .jpg or .jpeg")


class _AudioPassthrough:
    """Copy the first audio stream of `source` into `output` packet by packet (no re-encoding), or as
    AAC when the container cannot hold its codec. `feed(t)` writes audio up to time t so the two
    streams stay interleaved."""

    def __init__(self, output: av.container.OutputContainer, source: PathLike) -> None:
        try:
            self._input = av.open(str(source))
        except av.FFmpegError as exc:
            raise CorruptMediaError(f"cannot read the audio of {Path(source).name}") from exc
        self._output, self._pending = output, None
        if not self._input.streams.audio:
            self.stream, self._packets = None, iter(())
            return
        self._source = self._input.streams.audio[0]
        self._copy = self._source.codec_context.name in output.supported_codecs
        if self._copy:
            self.stream = output.add_stream_from_template(self._source)
        else:
            log.info(
                "audio codec %s cannot go in %s; transcoding it to AAC", self._source.name, output.format.name
            )
            self.stream = output.add_stream(
                "aac", rate=self._source.rate, layout=_named_layout(self._source.layout)
            )
        self._packets = self._input.demux(self._source)

    def feed(self, until_s: float | None = None) -> None:
        pending = [] if self._pending is None else [self._pending]
        for packet in itertools.chain(pending, self._packets):
            self._pending = None
            if until_s is not None and packet.pts is not None and packet.pts * packet.time_base > until_s:
                self._pending = packet
                return
            if not self._copy:
                for frame in self._source.decode(packet):  # the final empty packet flushes the decoder
                    frame.pts = None
                    self._output.mux(self.stream.encode(frame))
            elif packet.dts is not None:
                packet.stream = self.stream  # mux() rescales timestamps to the output time base
                self._output.mux(packet)

    def finish(self) -> None:
        self.feed()
        if self.stream is not None and not self._copy:
            self._output.mux(self.stream.encode(None))

    def close(self) -> None:
        self._input.close()


def _named_layout(layout: av.AudioLayout) -> str:
    """AAC refuses layouts that only give a channel count (common in WAV): use FFmpeg's default one."""
    if any(channel.name in ("NONE", "USR") for channel in layout.channels):
        return _DEFAULT_LAYOUTS.get(layout.nb_channels, layout.name)
    return layout.name


class VideoWriter:
    """Write frames to an H.264 (or H.265) MP4/MOV atomically, with +faststart.

    yuv420p needs even sizes, so an odd width or height is cropped by its last column or row (the
    writer's `width`/`height` are the even sizes actually written). `rotation` (counter-clockwise
    degrees, as in `MediaInfo.rotation`) is stored as the stream's display matrix; pixels are not
    turned. `audio_from` copies that file's first audio stream through. Leaving the `with` block by an
    exception removes the temporary file and writes nothing.

    Encodes are not bit-reproducible: the bundled libx264's mb-tree rate control reads memory that
    earlier encodes in the process left behind (identical, single-threaded encodes of one clip differ;
    with MALLOC_PERTURB_ set they do not), so compare decoded quality, never bytes. H.265 needs frames of
    at least `X265_MIN_SIDE` a side.
    """

    def __init__(
        self,
        out_path: PathLike,
        *,
        width: int,
        height: int,
        fps: float | Fraction,
        codec: str = "libx264",
        crf: int = 18,
        preset: str = "medium",
        pix_fmt: str = "yuv420p",
        audio_from: PathLike | None = None,
        rotation: int = 0,
    ) -> None:
        self.out_path = Path(out_path)
        if output_kind(self.out_path) != "video":
            raise UnsupportedMediaError(f"VideoWriter writes .mp4 or .mov, not {self.out_path.name}")
        if codec not in _CODECS:
            raise UnsupportedMediaError(f"unsupported video codec {codec!r}; use libx264 or libx265")
        if codec == "libx265" and min(width, height) < X265_MIN_SIDE:
            raise UnsupportedMediaError(
                f"libx265 needs frames of at least {X265_MIN_SIDE}x{X265_MIN_SIDE}, got {width}x{height}; use libx264"
            )
        if pix_fmt != "yuv420p":
            raise UnsupportedMediaError(f"unsupported pixel format {pix_fmt!r}; only yuv420p is written")
        if width < 2 or height < 2 or rotation % 90:
            raise ValueError(
                f"need width and height >= 2 and rotation a multiple of 90, got {width}x{height}, {rotation}"
            )
        self.fps = as_rate(fps)
        self.width, self.height = width - width % 2, height - height % 2
        self._codec, self._crf, self._preset = codec, crf, preset
        self._audio_from, self._rotation = audio_from, rotation % 360
        self.frames_written = 0
        self._output: av.container.OutputContainer | None = None
        self._audio: _AudioPassthrough | None = None
        self._atomic = atomic_path(self.out_path)

    def __enter__(self) -> VideoWriter:
        tmp = self._atomic.__enter__()
        try:
            self._output = av.open(
                str(tmp),
                "w",
                format=_VIDEO_FORMATS[self.out_path.suffix.lower()],
                options={"movflags": "+faststart"},
            )
            stream = self._output.add_stream(self._codec, rate=self.fps)
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
            options = {"crf": str(self._crf), "preset": self._preset}
            if self._codec == "libx265":
                options["x265-params"] = "log-level=error"
                stream.codec_tag = "hvc1"  # the tag Apple players require for HEVC in MP4
            stream.options = options
            if self._rotation:
                stream.set_display_rotation(self._rotation)
            self._stream = stream
            if self._audio_from is not None:
                self._audio = _AudioPassthrough(self._output, self._audio_from)
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self._finish()
        except BaseException as error:
            exc_type, exc, tb = type(error), error, error.__traceback__
            raise
        finally:
            if self._audio is not None:
                self._audio.close()
            if exc_type is not None and self._output is not None:
                with contextlib.suppress(Exception):
                    self._output.close()
            # _atomic_path renames on a clean exit and deletes the temporary file otherwise.
            self._atomic.__exit__(exc_type, exc, tb)

    def _finish(self) -> None:
        if self.frames_written == 0:
            raise MediaError(f"no frames were written to {self.out_path.name}")
        try:
            self._mux(self._stream.encode(None))
            if self._audio is not None:
                self._audio.finish()
            self._output.close()
        except av.FFmpegError as exc:
            raise MediaError(f"could not finish writing {self.out_path.name}: {exc}") from exc
        log.debug("wrote %d frames to %s", self.frames_written, self.out_path)

    def write_rgb(self, rgb: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame, at the size given to the constructor or the even size."""
        rgb = self._checked(rgb, (self.height, self.width, 3))
        self.write_frame(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"))

    def write_yuv(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        """Append one yuv420p frame given as uint8 planes Y (H, W), U and V (ceil(H/2), ceil(W/2))."""
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        for index, plane in enumerate((y, u, v)):
            view = plane_view(frame, index)
            view[...] = self._checked(plane, view.shape)
        self.write_frame(frame)

    def write_frame(self, frame: av.VideoFrame) -> None:
        """Append a PyAV frame; converted to yuv420p and cropped to the even size if needed."""
        if self._output is None:
            raise RuntimeError("use VideoWriter as a context manager: with VideoWriter(...) as writer")
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        if (frame.width, frame.height) != (self.width, self.height):
            self.write_yuv(*(plane_view(frame, i) for i in range(3)))
            return
        frame.pts, frame.time_base = self.frames_written, 1 / self.fps
        frame.pict_type = PictureType.NONE  # let the encoder place keyframes, not the source's GOP
        try:
            self._mux(self._stream.encode(frame))
            if self._audio is not None:
                self._audio.feed(float((self.frames_written + 1) / self.fps))
        except av.FFmpegError as exc:
            raise MediaError(
                f"could not write frame {self.frames_written} of {self.out_path.name}: {exc}"
            ) from exc
        self.frames_written += 1

    def _mux(self, packets: list[av.Packet]) -> None:
        if self._codec == "libx265":  # the bundled libx265 leaves a short clip's decode timestamps unset
            for packet in packets:  # (garbage like -2**32): such a clip has no reordering, so dts = pts
                if packet.pts is not None and packet.dts is not None and abs(packet.pts - packet.dts) > _FRAMES_APART:
                    packet.dts = packet.pts
        self._output.mux(packets)

    def _checked(self, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """`array` cropped to `shape`; it may be up to one pixel larger (the odd size given)."""
        array = np.asarray(array)
        slack = all(0 <= a - s <= 1 for a, s in zip(array.shape, shape, strict=False))
        if array.dtype != np.uint8 or array.ndim != len(shape) or not slack:
            raise ValueError(f"expected a uint8 array of shape {shape}, got {array.dtype} {array.shape}")
        return array[tuple(slice(0, s) for s in shape)]


def encode_image(image: np.ndarray, fmt: str = "jpeg", quality: int = 95) -> bytes:
    """An (H, W, 3) RGB or (H, W) gray uint8 image as JPEG (at `quality`) or PNG bytes."""
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"unknown image format {fmt!r}; use jpeg or png")
    image = np.ascontiguousarray(image)
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 6]
    ok, data = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    if not ok:
        raise MediaError(f"could not encode a {fmt} image")
    return data.tobytes()


def write_image(out_path: PathLike, image: np.ndarray) -> None:
    """Write an (H, W, 3) RGB or (H, W) gray uint8 image atomically: PNG, or JPEG at quality 95."""
    out_path = Path(out_path)
    if output_kind(out_path) != "image":
        raise UnsupportedMediaError(f"write_image writes .png, .jpg or .jpeg, not {out_path.name}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"expected a uint8 (H, W, 3) or (H, W) image, got {image.dtype} {image.shape}")
    data = encode_image(image, "png" if out_path.suffix.lower() == ".png" else "jpeg")
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(data)


def transcode(
    in_path: PathLike,
    out_path: PathLike,
    *,
    limits: MediaLimits = DEFAULT_LIMITS,
    luma_fn: LumaFn | None = None,
    frame_fn: FrameFn | None = None,
    crf: int = 18,
    preset: str = "medium",
    codec: str = "libx264",
    keep_audio: bool = True,
    fps: float | Fraction | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MediaInfo:
    """Decode `in_path`, optionally transform each frame, and re-encode it to `out_path`.

    luma_fn(y, index) gets the writable Y plane (H, W) of a yuv420p frame and returns the new plane (it
    may edit `y` in place and return it); U and V are untouched and nothing passes through RGB.
    frame_fn(rgb, index) is the general RGB transform; the first frame it returns sets the output size.
    `index` counts output frames. Audio is copied through, rotation kept, and the frame rate kept
    exactly unless `fps` is given, in which case frames are dropped or repeated to reach it. Stills
    written to .png/.jpg apply luma_fn to the full-range Y of cv2's RGB->YCrCb conversion instead.
    progress(done, total) is called per output frame (total is 0 when unknown). Returns the output's info.
    """
    if luma_fn is not None and frame_fn is not None:
        raise ValueError("pass luma_fn or frame_fn, not both")
    kind = output_kind(out_path)
    info = probe(in_path, limits)
    if kind == "image":
        if not info.is_still:
            raise UnsupportedMediaError(f"{Path(in_path).name} is a video; write it to .mp4 or .mov")
        return _transcode_still(in_path, out_path, limits, luma_fn, frame_fn, progress)
    out_rate = as_rate(fps) if fps is not None else None
    audio = in_path if keep_audio and info.has_audio else None
    new_writer = functools.partial(
        VideoWriter, out_path, codec=codec, crf=crf, preset=preset, audio_from=audio, rotation=info.rotation
    )
    with contextlib.ExitStack() as stack:
        writer: VideoWriter | None = None
        frames = stack.enter_context(contextlib.closing(decoded_frames(in_path, limits)))
        for info, stream, index, time_s, frame in frames:
            if index == 0:
                src_rate = (video_rate(stream) if not info.is_still else None) or Fraction(1)
                rate, start = out_rate or src_rate, time_s
                total = math.ceil(info.frame_count * rate / src_rate)
            written = writer.frames_written if writer else 0
            # With a new rate: as many output frames as start before this input frame ends.
            copies = (
                1 if out_rate is None else math.ceil((time_s - start + 1 / src_rate) * rate - 1e-6) - written
            )
            if copies <= 0:
                continue
            if frame_fn is not None:
                rgb = frame_fn(frame.to_ndarray(format="rgb24"), written)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            elif luma_fn is not None:
                frame = _apply_luma(frame, luma_fn, written)
            if writer is None:  # the first output frame sets the size
                writer = stack.enter_context(new_writer(width=frame.width, height=frame.height, fps=rate))
            for _ in range(copies):
                writer.write_frame(frame)
            if progress is not None:
                progress(writer.frames_written, total)
    return probe(out_path)


def as_rate(fps: float | Fraction) -> Fraction:
    """An exact frame rate; floats such as 29.97 or 30000/1001 are recovered to their fraction."""
    rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    return rate


def _apply_luma(frame: av.VideoFrame, luma_fn: LumaFn, index: int) -> av.VideoFrame:
    """Run luma_fn on the frame's own Y plane: no RGB, no copy of U and V beyond make_writable's."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    frame.make_writable()  # decoded frames may be shared with the decoder as reference pictures
    y = plane_view(frame, 0)
    out = luma_fn(y, index)
    if out is not y:
        y[...] = _checked_luma(out, y)
    return frame


def _checked_luma(out: np.ndarray, y: np.ndarray) -> np.ndarray:
    if not isinstance(out, np.ndarray) or out.shape != y.shape or out.dtype != np.uint8:
        raise ValueError(f"luma_fn must return a uint8 array of shape {y.shape}")
    return out


def _transcode_still(
    in_path: PathLike,
    out_path: PathLike,
    limits: MediaLimits,
    luma_fn: LumaFn | None,
    frame_fn: FrameFn | None,
    progress: Callable[[int, int], None] | None,
) -> MediaInfo:
    rgb = next(iter_frames(in_path, limits, fmt="rgb24")).array
    if luma_fn is not None:
        # Stills are full range: JPEG's own YCbCr is full range, so the watermark sees the same Y.
        ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
        y = np.ascontiguousarray(ycc[..., 0])
        ycc[..., 0] = _checked_luma(luma_fn(y, 0), y)
        rgb = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)
    if frame_fn is not None:
        rgb = frame_fn(rgb, 0)
    write_image(out_path, rgb)
    if progress is not None:
        progress(1, 1)
    return probe(out_path)
