"""Analyse one file: detector scores (per frame, per clip, a patch heatmap) and the forensic signals.

One decode pass (through `media`) converts only the frames the plan needs: the model's frames to
RGB, the temporal windows to luma. The default model loads lazily, once per process, from
``weights/detector/detector.safetensors`` (or ``$VERIFRAME_DETECTOR_WEIGHTS``).

Wiring into ``provenance.credentials.verify_clip``::

    from detector import analyse_file, verdict
    analysis = analyse_file(path, settings.media_limits)
    out = {..., **analysis.to_dict()}          # adds "detector" and "artifacts"
    out["verdict"] = verdict(out, analysis.detector, analysis.signals).to_dict()
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from media import MediaLimits, probe
from media.decode import decoded_frames, to_array

from .checkpoint import LoadedDetector, load_checkpoint
from .sampling import crop_batch, plan_frames
from .signals import Signal, compute_signals

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "detector" / "detector.safetensors"
# Below this many bits per pixel per frame the codec has erased the traces the detector reads.
MIN_VIDEO_BPP = 0.02
MIN_STILL_BPP = 0.5
REPORT_VERSION = 1

_default_lock = threading.Lock()
_default: LoadedDetector | None = None


def default_detector() -> LoadedDetector | None:
    """The installed default model, loaded once per process; None when no weights are installed."""
    global _default
    with _default_lock:
        if _default is None:
            path = Path(os.environ.get("VERIFRAME_DETECTOR_WEIGHTS") or DEFAULT_WEIGHTS)
            if not path.is_file():
                log.warning("no detector weights at %s: detector scores are left out", path)
                return None
            _default = load_checkpoint(path)
        return _default


@dataclass
class DetectorResult:
    """The model's view of one file; probabilities are calibrated, ``flagged`` uses the raw threshold."""

    model_id: str
    in_scope: bool
    scope_reasons: list[str]
    probability: float | None = None
    logit: float | None = None
    flagged: bool = False
    threshold_probability: float | None = None
    target_fpr: float | None = None
    calibrated: bool = False
    frames: list[dict[str, float]] = field(default_factory=list)  # index, time_s, probability, attention
    heatmap: list[list[float]] | None = None  # rows*h x cols*w probabilities, averaged over frames
    heatmap_cell_px: int | None = None
    crops_per_frame: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DetectorReport:
    """What `analyse_file` found: the detector's result (None without a model) and every signal."""

    detector: DetectorResult | None
    signals: list[Signal]
    scope_reasons: list[str]
    timings_s: dict[str, float]
    version: int = REPORT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The report's ``detector`` and ``artifacts`` sections."""
        det = self.detector.to_dict() if self.detector else {"model_id": None, "in_scope": False,
                                                                "scope_reasons": self.scope_reasons}
        det["version"], det["timings_s"] = self.version, self.timings_s
        return {"detector": det, "artifacts": {s.name: s.to_dict() for s in self.signals}}


def _scope(info: Any, side: int) -> list[str]:
    reasons = []
    if min(info.width, info.height) < side:
        reasons.append(f"too small: {info.width}x{info.height} is under one {side}px crop")
    pixels = info.width * info.height
    if info.is_still:
        bpp = info.size_bytes * 8 / max(pixels, 1)
        if info.video_codec == "mjpeg" and bpp < MIN_STILL_BPP:
            reasons.append(f"heavily compressed: {bpp:.2f} bits per pixel")
    elif info.bit_rate and info.fps:
        bpp = info.bit_rate / (pixels * info.fps)
        if bpp < MIN_VIDEO_BPP:
            reasons.append(f"heavily compressed: {bpp:.3f} bits per pixel per frame")
    return reasons


def _decode(path: Path, limits: MediaLimits, plan_model: set[int], plan_gray: set[int]) -> tuple[
        dict[int, tuple[float, np.ndarray]], dict[int, np.ndarray]]:
    rgb, gray = {}, {}
    last = max(plan_model | plan_gray)
    with contextlib.closing(decoded_frames(path, limits)) as frames:
        for _info, _stream, index, time_s, frame in frames:
            if index in plan_model:
                rgb[index] = (time_s, to_array(frame, "rgb24"))
            if index in plan_gray:
                gray[index] = to_array(frame, "gray")
            if index >= last:
                break
    return rgb, gray


@torch.no_grad()
def _run_model(loaded: LoadedDetector, rgb: dict[int, tuple[float, np.ndarray]]) -> DetectorResult:
    cfg, cal = loaded.config, loaded.calibration
    indices = sorted(rgb)
    x, rows, cols = crop_batch([rgb[i][1] for i in indices], cfg.crop, cfg.crops_per_frame)
    out = loaded.model(x.to(next(loaded.model.parameters()).device))

    def prob(z: np.ndarray) -> np.ndarray:
        return cal.probability(z) if cal else 1 / (1 + np.exp(-z))

    clip_logit = float(out.clip_logits[0])
    frame_p = prob(out.frame_logits[0].cpu().numpy())
    patches = out.patch_logits[0].mean(dim=0).cpu().numpy()  # (K, h, w), averaged over frames
    k, h, w = patches.shape
    grid = patches.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)
    threshold = cal.threshold_logit if cal else 0.0
    return DetectorResult(
        model_id=loaded.model_id, in_scope=True, scope_reasons=[], probability=round(float(prob(clip_logit)), 4),
        logit=round(clip_logit, 4), flagged=clip_logit > threshold,
        threshold_probability=round(float(prob(threshold)), 4), target_fpr=cal.target_fpr if cal else None,
        calibrated=cal is not None,
        frames=[{"index": i, "time_s": round(rgb[i][0], 3), "probability": round(float(p), 4),
                 "attention": round(float(a), 4)} for i, p, a in zip(indices, frame_p, out.attention[0].tolist(),
                                                                      strict=True)],
        heatmap=np.round(prob(grid), 3).tolist(), heatmap_cell_px=cfg.crop // max(h, 1), crops_per_frame=k,
    )


def analyse_file(path: str | os.PathLike[str], limits: MediaLimits = MediaLimits(),
                 model: LoadedDetector | str | os.PathLike[str] | None = None) -> DetectorReport:
    """Detector scores and forensic signals for one clip or still; ``model`` is a loaded detector, a
    checkpoint path, or None for the installed default (absent weights leave ``detector`` None)."""
    path, timings = Path(path), {}
    began = time.perf_counter()
    info = probe(path, limits)
    loaded = default_detector() if model is None else model if isinstance(model, LoadedDetector) \
        else load_checkpoint(model)
    frames_wanted = loaded.config.frames if loaded else 8
    side = loaded.config.crop if loaded else 64
    plan = plan_frames(info.frame_count or 1, frames_wanted)
    scope_reasons = _scope(info, side)
    rgb, gray = _decode(path, limits, set(plan.model), {i for w in plan.windows for i in w})
    timings["decode"] = time.perf_counter() - began
    t = time.perf_counter()
    lumas = [np.dot(rgb[i][1][..., :3], np.float32([0.299, 0.587, 0.114])).astype(np.float32) for i in sorted(rgb)]
    windows = [np.stack([gray[i].astype(np.float32) for i in w if i in gray]) for w in plan.windows
               if all(i in gray for i in w)]
    signals = compute_signals(path, frames=lumas, windows=windows, container=info.container, codec=info.video_codec)
    timings["signals"] = time.perf_counter() - t
    t = time.perf_counter()
    result: DetectorResult | None = None
    if loaded is not None:
        if scope_reasons or not rgb:
            result = DetectorResult(loaded.model_id, False, scope_reasons or ["no frame decoded"])
        else:
            result = _run_model(loaded, rgb)
    timings["detector"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - began
    return DetectorReport(result, signals, scope_reasons or ([] if loaded else ["no detector weights installed"]),
                          {k: round(v, 3) for k, v in timings.items()})
