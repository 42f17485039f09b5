"""Small deterministic test clips, written with PyAV, for tests across the project."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

PATTERNS = ("moving", "gradient", "noise")


def make_test_clip(
    path: str | os.PathLike[str],
    *,
    width: int = 160,
    height: int = 120,
    frames: int = 24,
    fps: float | Fraction = 24,
    audio: bool = False,
    pattern: str = "moving",
) -> Path:
    """Write a real H.264 MP4 (+faststart), optionally with a 440 Hz AAC tone as long as the video.

    Patterns: "moving" (a white square crossing a colour gradient), "gradient" (static), "noise"
    (seeded, so every call gives the same pixels).
    """
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose from {PATTERNS}")
    path = Path(path)
    rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        video = out.add_stream("libx264", rate=rate, options={"preset": "ultrafast", "crf": "18"})
        video.width, video.height, video.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        tone = out.add_stream("aac", rate=48000, layout="mono") if audio else None
        for index in range(frames):
            rgb = _pattern(pattern, video.width, video.height, index, frames)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if tone is not None:
            _write_tone(out, tone, float(frames / rate))
    return path


def make_test_tone(path: str | os.PathLike[str], *, seconds: float = 1.0, codec: str = "aac") -> Path:
    """Write an audio-only file (AAC in .m4a/.mp4 by default; e.g. pcm_alaw in .wav)."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        _write_tone(out, out.add_stream(codec, rate=48000, layout="mono"), seconds)
    return path


def _write_tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    rate, block, done = 48000, 1024, 0
    total = round(seconds * rate)
    fmt = stream.codec_context.format.name
    while done < total:
        n = min(block, total - done)
        wave = 0.2 * np.sin(2 * np.pi * 440 * (np.arange(n) + done) / rate)
        samples = wave.astype(np.float32) if fmt.startswith("flt") else (wave * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples[None], format=fmt, layout="mono")
        frame.sample_rate, frame.pts = rate, done
        out.mux(stream.encode(frame))
        done += n
    out.mux(stream.encode(None))


def _pattern(pattern: str, width: int, height: int, index: int, frames: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        [xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), np.full_like(xs, 128)], axis=-1
    ).astype(np.uint8)
    if pattern == "noise":
        return np.random.default_rng(index).integers(0, 256, (height, width, 3), dtype=np.uint8)
    if pattern == "moving":
        side = max(2, min(width, height) // 4)
        x = (width - side) * index // max(frames - 1, 1)
        y = (height - side) // 2
        rgb[y : y + side, x : x + side] = 255
    return rgb
