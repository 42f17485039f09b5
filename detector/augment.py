"""Shortcut-removing augmentation, applied identically to both classes.

A detector that can tell JPEG from PNG, or sharp from soft, learns the data set instead of the
generator (DIRE falls from ~100% to ~50% once its fakes are JPEG like its reals). So every training
crop, real or AI, goes through the same random chain: downscale, blur, noise, and a lossy re-encode
at H.264/H.265 strength CRF 18-35 -- usually a JPEG proxy at the matching quality (cheap, in memory),
sometimes a real libx264/libx265 encode through `media` (the artefacts the proxy only approximates).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from media import MediaError
from media.encode import X265_MIN_SIDE

log = logging.getLogger(__name__)

_INTERPOLATIONS = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each step; ``AugmentConfig(p_*=0)`` turns a step off."""

    p_resize: float = 0.2
    scale: tuple[float, float] = (0.5, 0.9)
    p_blur: float = 0.1
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    p_noise: float = 0.2
    noise_sigma: tuple[float, float] = (0.5, 3.0)
    p_compress: float = 0.6
    crf: tuple[int, int] = (18, 35)
    p_real_codec: float = 0.03  # share of compressions done by a real H.264/H.265 encode


def jpeg_quality_for_crf(crf: int) -> int:
    """The JPEG quality whose distortion on 64-128 px crops roughly matches x264 at ``crf`` (18 -> 95,
    35 -> 55; measured by PSNR on the data kit's real crops, which is all the proxy promises)."""
    return int(round(95 - (crf - 18) * 40 / 17))


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2 could not JPEG-encode a crop")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def video_codec_roundtrip(rgb: np.ndarray, crf: int, codec: str = "libx264") -> np.ndarray:
    """Encode ``rgb`` as a one-frame clip (an IDR frame, as the first frame of any clip is) through
    `media.VideoWriter` and decode it."""
    from media import VideoWriter, iter_frames

    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    with tempfile.TemporaryDirectory(prefix="veriframe-aug-") as tmp:
        path = Path(tmp) / "crop.mp4"
        with VideoWriter(path, width=w, height=h, fps=25, codec=codec, crf=crf, preset="ultrafast") as out:
            out.write_rgb(rgb[:h, :w])
        frame = next(iter_frames(path, fmt="rgb24")).array
    out_rgb = rgb.copy()
    out_rgb[:h, :w] = frame
    return out_rgb


def augment(rgb: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """One random draw of the chain on an (H, W, 3) uint8 image; returns a new uint8 image."""
    out = rgb
    if rng.random() < cfg.p_resize:
        s = rng.uniform(*cfg.scale)
        size = (max(8, round(out.shape[1] * s)), max(8, round(out.shape[0] * s)))
        out = cv2.resize(out, size, interpolation=_INTERPOLATIONS[rng.integers(len(_INTERPOLATIONS))])
    if rng.random() < cfg.p_blur:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(*cfg.blur_sigma))
    if rng.random() < cfg.p_noise:
        noisy = out.astype(np.float32) + rng.normal(0, rng.uniform(*cfg.noise_sigma), out.shape)
        out = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < cfg.p_compress:
        crf = int(rng.integers(cfg.crf[0], cfg.crf[1] + 1))
        coded = None
        if rng.random() < cfg.p_real_codec and min(out.shape[:2]) >= 16:
            try:
                x265 = rng.random() >= 0.7 and min(out.shape[:2]) >= X265_MIN_SIDE
                coded = video_codec_roundtrip(out, crf, "libx265" if x265 else "libx264")
            except MediaError as exc:  # not expected: keep training on the proxy
                log.debug("real-codec augmentation failed (%s); JPEG proxy instead", exc)
        out = coded if coded is not None else jpeg(out, jpeg_quality_for_crf(crf))
    return np.ascontiguousarray(out)
