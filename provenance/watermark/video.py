"""Watermark files: embed while re-encoding, detect from sampled frames (I/O through media/).

`detect_file` decodes a clip itself; `WatermarkScan` is the same detection fed by a decode pass that
another caller runs and shares (`media.feed_frames`), as ``verify_clip`` does for the detector too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from media import Frame, FrameRequest, MediaInfo, MediaLimits, iter_frames, transcode
from media.decode import sample_indices
from media.encode import output_kind
from settings import Settings, read_secrets

from .core import Accumulator, DetectionResult, Embedder, WatermarkConfig, detect_accumulated, detect_frames
from .keys import Keyring

log = logging.getLogger(__name__)


def embed_file(
    in_path: str | Path,
    out_path: str | Path,
    data: bytes,
    keyring: Keyring,
    *,
    cfg: WatermarkConfig = WatermarkConfig(),
    limits: MediaLimits = MediaLimits(),
    crf: int = 18,
    preset: str = "medium",
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write ``out_path``: ``in_path`` re-encoded with the active key's mark carrying ``data``.

    Video goes to H.264 MP4 (audio copied, frame rate and rotation kept); a still goes to PNG
    or JPEG by the output's extension. The geometry follows the output and the frame size
    (:meth:`WatermarkConfig.for_embedding`: an image output is a still). The output appears only
    when complete.
    """
    key = keyring.active
    still = output_kind(out_path) == "image"
    embedder: Embedder | None = None

    def mark(luma: np.ndarray, index: int) -> np.ndarray:
        nonlocal embedder
        if embedder is None:
            embedder = Embedder(key, data, *luma.shape, cfg=cfg.for_embedding(*luma.shape, still=still))
        if progress is not None:
            progress(index)
        return embedder.embed_luma(luma)

    transcode(in_path, out_path, limits=limits, luma_fn=mark, crf=crf, preset=preset)
    log.info("embedded watermark key_id=%d into %s", key.key_id, out_path)


def detect_file(
    path: str | Path,
    keyring: Keyring,
    *,
    cfg: WatermarkConfig = WatermarkConfig(),
    limits: MediaLimits = MediaLimits(),
    frames: int = 96,
) -> DetectionResult:
    """Detect the mark in ``path`` from at most ``frames`` frames spread over the clip."""
    lumas = (f.array for f in iter_frames(path, limits, fmt="gray", sample=frames))
    return detect_frames(lumas, keyring, cfg)


class WatermarkScan:
    """`detect_file` for a decode pass run by someone else: it asks for the same sampled luma frames
    (`request`), whitens and accumulates each as it arrives (no frame is kept), then decides (`result`)."""

    def __init__(self, keyring: Keyring, *, cfg: WatermarkConfig = WatermarkConfig(), frames: int = 96):
        self.keyring, self.frames = keyring, frames
        self._acc = Accumulator(cfg)

    def request(self, path: str | Path, info: MediaInfo) -> FrameRequest:
        """The frames `detect_file` would read from ``path``, whose probe is ``info``."""
        return FrameRequest("gray", sample_indices(path, info, self.frames), self._take)

    def _take(self, frame: Frame) -> None:
        self._acc.add(frame.array)

    def result(self) -> DetectionResult:
        return detect_accumulated(self._acc, self.keyring)


def config_from_settings(settings: Settings) -> WatermarkConfig:
    return replace(WatermarkConfig(), psnr_db=settings.watermark_psnr_db, p_threshold=settings.watermark_p_threshold)


def keyring_from_settings(settings: Settings) -> Keyring:
    """The instance's watermark keyring (its secrets file is created on first use)."""
    return Keyring.from_secrets(read_secrets(settings))


def embed_for_instance(settings: Settings, src: str | Path, dst: str | Path, data: bytes, *,
                       crf: int | None = None, preset: str | None = None) -> None:
    """:func:`embed_file` with the instance's active key, strength, limits and encoder settings."""
    embed_file(src, dst, data, keyring_from_settings(settings), cfg=config_from_settings(settings),
               limits=settings.media_limits, crf=settings.encode_crf if crf is None else crf,
               preset=preset or settings.encode_preset)


def detect_for_instance(settings: Settings, path: str | Path, *, frames: int | None = None) -> DetectionResult:
    """:func:`detect_file` with every key of the instance, its threshold, limits and frame budget."""
    return detect_file(path, keyring_from_settings(settings), cfg=config_from_settings(settings),
                       limits=settings.media_limits, frames=frames or settings.watermark_detect_frames)


def scan_for_instance(settings: Settings, *, frames: int | None = None) -> WatermarkScan:
    """:class:`WatermarkScan` with what :func:`detect_for_instance` uses (the pass brings the limits)."""
    return WatermarkScan(keyring_from_settings(settings), cfg=config_from_settings(settings),
                         frames=frames or settings.watermark_detect_frames)
