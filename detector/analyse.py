"""Analyse one file: detector scores (per frame, per clip, a patch heatmap) and the forensic signals.

One decode pass (through `media`) converts only the frames the plan needs: the model's frames to
RGB, the temporal windows to luma. `ClipAnalysis` lets a caller share that pass with other checks
(``provenance.credentials.verify_clip`` reads the watermark's frames in it too). The default model
loads lazily, once per process, from ``weights/detector/detector.safetensors`` (or
``$VERIFRAME_DETECTOR_WEIGHTS``).

Wiring into ``provenance.credentials.verify_clip``::

    from detector import ClipAnalysis, verdict
    analysis = ClipAnalysis(path, info)        # then feed_frames(path, limits, [*analysis.requests(), ...])
    report = analysis.finish(decode_s)
    out = {..., **report.to_dict()}            # adds "detector" and "artifacts"
    out["verdict"] = verdict(out, report.detector, report.signals).to_dict()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from media import Frame, FrameRequest, MediaInfo, MediaLimits, feed_frames, probe
from media.decode import mean_quantiser

from .checkpoint import LoadedDetector, load_checkpoint
from .heatmap import PatchMaps
from .sampling import crop_batch, grid_positions, plan_frames
from .signals import Signal, compensated_steps, compute_signals
from .temporal import LoadedTemporalHead, TemporalHeadError, TemporalResult, load_head, temporal_features

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "detector" / "detector.safetensors"
DEFAULT_TEMPORAL = DEFAULT_WEIGHTS.with_name("temporal.safetensors")
# Heavily compressed: past this the codec has erased the traces the detector reads, or put its own in
# their place, and neither model's threshold was set on such clips. H.264: the decoder's mean quantiser
# over the frames read (QP, per 16x16 block; see docs/benchmarks/detector.md "Compression scope");
# other codecs, which export no quantiser: bits per pixel per frame.
MAX_H264_QP = 40.0
MIN_VIDEO_BPP = 0.02
MIN_STILL_BPP = 0.5
# 2: `temporal` and `frame_flagged` added; `flagged` is either model's decision. 3: `mean_qp`, and the
# temporal head's own `in_scope` / `scope_reasons` (heavy compression withdraws its decision too)
REPORT_VERSION = 3

_default_lock = threading.Lock()
_defaults: dict[str, Any] = {}  # installed models, loaded once per process: "detector", "temporal"


def _installed(key: str, env: str, path: Path, load: Callable[[Path], Any], missing: str,
               optional: tuple[type[Exception], ...] = ()) -> Any:
    """The model at ``$env`` or ``path``, loaded once; an ``optional`` model whose file fails to load with
    that error is logged once and left out, instead of failing every analysis."""
    with _default_lock:
        if key not in _defaults:
            found = Path(os.environ.get(env) or path)
            if not found.is_file():
                log.warning(missing, found)
                return None
            try:
                _defaults[key] = load(found)
            except optional as exc:
                log.error("%s; left out of every analysis in this process", exc)
                _defaults[key] = None
        return _defaults[key]


def default_detector() -> LoadedDetector | None:
    """The installed frame model (``weights/detector/detector.safetensors`` or ``$VERIFRAME_DETECTOR_WEIGHTS``),
    loaded once per process; None when no weights are installed."""
    return _installed("detector", "VERIFRAME_DETECTOR_WEIGHTS", DEFAULT_WEIGHTS, load_checkpoint,
                      "no detector weights at %s: detector scores are left out")


def default_temporal_head() -> LoadedTemporalHead | None:
    """The installed temporal head (``weights/detector/temporal.safetensors`` or
    ``$VERIFRAME_TEMPORAL_WEIGHTS``), loaded once per process; None when none is installed."""
    return _installed("temporal", "VERIFRAME_TEMPORAL_WEIGHTS", DEFAULT_TEMPORAL, load_head,
                      "no temporal head at %s: the detector reads single frames only", (TemporalHeadError,))


@dataclass
class DetectorResult:
    """The detector's view of one file: the frame model's scores (``probability``, ``logit``, ``frames``,
    ``heatmap``; ``in_scope`` and ``scope_reasons`` are about the frame model) and the temporal head's
    (``temporal``, for clips with runs of consecutive frames). ``frame_flagged``: the frame model's clip
    logit is above its threshold; ``flagged``: the frame model or the temporal head flagged the clip.
    Probabilities are calibrated; each decision uses its own raw threshold."""

    model_id: str
    in_scope: bool
    scope_reasons: list[str]
    probability: float | None = None
    logit: float | None = None
    flagged: bool = False
    frame_flagged: bool = False
    threshold_probability: float | None = None
    target_fpr: float | None = None
    calibrated: bool = False
    frames: list[dict[str, float]] = field(default_factory=list)  # index, time_s, probability, attention
    heatmap: list[list[float]] | None = None  # rows*h x cols*w probabilities, averaged over frames
    heatmap_cell_px: int | None = None
    crops_per_frame: int = 0
    temporal: TemporalResult | None = None
    mean_qp: float | None = None  # H.264: the decoder's mean quantiser over the frames read

    def with_temporal(self, temporal: TemporalResult | None) -> DetectorResult:
        """This result with the temporal head's, ``flagged`` updated to either decision."""
        self.temporal = temporal
        self.flagged = self.frame_flagged or bool(temporal and temporal.flagged)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DetectorReport:
    """What `analyse_file` found: the detector's result (None without a model) and every signal.

    ``patches`` (the per-frame patch probabilities, for drawing heatmaps) is there when the model ran;
    it stays out of the report's JSON."""

    detector: DetectorResult | None
    signals: list[Signal]
    scope_reasons: list[str]
    timings_s: dict[str, float]
    version: int = REPORT_VERSION
    patches: PatchMaps | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report's ``detector`` and ``artifacts`` sections."""
        det = self.detector.to_dict() if self.detector else {"model_id": None, "in_scope": False,
                                                                "scope_reasons": self.scope_reasons}
        det["version"], det["timings_s"] = self.version, self.timings_s
        return {"detector": det, "artifacts": {s.name: s.to_dict() for s in self.signals}}


def _scope_size(width: int, height: int, side: int) -> list[str]:
    return [f"too small: {width}x{height} is under one {side}px crop"] if min(width, height) < side else []


def within_quantiser_scope(mean_qp: float | None) -> bool:
    """Whether a clip's mean decoder quantiser (`media.decode.mean_quantiser`) is within the detector's
    scope; None (the codec exports none) leaves the decision to the bit-rate floor."""
    return mean_qp is None or mean_qp <= MAX_H264_QP


def _compression(info: MediaInfo, mean_qp: float | None) -> list[str]:
    """Why the input is too heavily compressed for either model, if it is: the quantiser where the decoder
    exports it (H.264), the bit rate otherwise (bits say less: flat scenes need few at any quality)."""
    if mean_qp is not None:
        return [] if within_quantiser_scope(mean_qp) else \
            [f"heavily compressed: mean quantiser QP {mean_qp:.1f} (over {MAX_H264_QP:g})"]
    pixels = info.width * info.height
    if info.is_still:
        bpp = info.size_bytes * 8 / max(pixels, 1)
        if info.video_codec == "mjpeg" and bpp < MIN_STILL_BPP:
            return [f"heavily compressed: {bpp:.2f} bits per pixel"]
    elif info.bit_rate and info.fps:
        bpp = info.bit_rate / (pixels * info.fps)
        if bpp < MIN_VIDEO_BPP:
            return [f"heavily compressed: {bpp:.3f} bits per pixel per frame"]
    return []


@torch.no_grad()
def _run_model(loaded: LoadedDetector, rgb: dict[int, tuple[float, np.ndarray]],
               mean_qp: float | None = None) -> tuple[DetectorResult, PatchMaps]:
    cfg, cal = loaded.config, loaded.calibration
    indices = sorted(rgb)
    height, width = rgb[indices[0]][1].shape[:2]
    side = cfg.crop_for(height, width)  # not None: `ClipAnalysis.finish` checked the decoded size
    x, rows, cols = crop_batch([rgb[i][1] for i in indices], side, cfg.crops_per_frame)
    out = loaded.model(x.to(next(loaded.model.parameters()).device))

    def prob(z: np.ndarray) -> np.ndarray:
        return cal.probability(z) if cal else 1 / (1 + np.exp(-z))

    clip_logit = round(float(out.clip_logits[0]), 4)  # the decision is on the logit the report shows
    frame_p = prob(out.frame_logits[0].cpu().numpy())
    per_frame = out.patch_logits[0].cpu().numpy()  # (T, K, h, w)
    patches = per_frame.mean(axis=0)  # (K, h, w), averaged over frames
    k, h, w = patches.shape
    grid = patches.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)
    threshold = cal.threshold_for(mean_qp) if cal else 0.0  # clip thresholds by compression, where set
    positions = tuple(grid_positions(height, width, side, cfg.crops_per_frame)[0])  # crop_batch's grid
    maps = PatchMaps((width, height), side, positions,
                     {i: prob(p) for i, p in zip(indices, per_frame, strict=True)}, prob(patches))
    result = DetectorResult(
        model_id=loaded.model_id, in_scope=True, scope_reasons=[], probability=round(float(prob(clip_logit)), 4),
        logit=clip_logit, flagged=clip_logit > threshold, frame_flagged=clip_logit > threshold,
        threshold_probability=round(float(prob(threshold)), 4), target_fpr=cal.target_fpr if cal else None,
        calibrated=cal is not None,
        frames=[{"index": i, "time_s": round(rgb[i][0], 3), "probability": round(float(p), 4),
                 "attention": round(float(a), 4)} for i, p, a in zip(indices, frame_p, out.attention[0].tolist(),
                                                                      strict=True)],
        heatmap=np.round(prob(grid), 3).tolist(), heatmap_cell_px=side // max(h, 1), crops_per_frame=k,
    )
    return result, maps


class ClipAnalysis:
    """`analyse_file` around a decode pass that the caller runs, so that one pass can serve other checks
    too: `requests()` names the frames (RGB for the model, luma for the temporal windows), the pass
    hands them over, `finish()` computes the report. Only the planned frames are kept."""

    def __init__(self, path: str | os.PathLike[str], info: MediaInfo,
                 model: LoadedDetector | str | os.PathLike[str] | None = None,
                 temporal: LoadedTemporalHead | str | os.PathLike[str] | None = None):
        self.path, self.info = Path(path), info
        self.loaded = default_detector() if model is None else model if isinstance(model, LoadedDetector) \
            else load_checkpoint(model)
        # The temporal head's result lives in the detector's result: without a frame model, it is not run.
        self.temporal = None if self.loaded is None else default_temporal_head() if temporal is None \
            else temporal if isinstance(temporal, LoadedTemporalHead) else load_head(temporal)
        self.plan = plan_frames(info.frame_count or 1, self.loaded.config.frames if self.loaded else 8)
        self.rgb: dict[int, tuple[float, np.ndarray]] = {}
        self.gray: dict[int, np.ndarray] = {}
        self.qp: list[np.ndarray] = []  # the quantiser map of each frame read (empty: not exported)

    def requests(self) -> list[FrameRequest]:
        windows = {i for w in self.plan.windows for i in w}
        return [FrameRequest("rgb24", self.plan.model, self._take_rgb), FrameRequest("gray", windows, self._take_gray),
                FrameRequest("qp", self.plan.all, self._take_qp)]

    def _take_rgb(self, frame: Frame) -> None:
        self.rgb[frame.index] = (frame.time_s, frame.array)

    def _take_gray(self, frame: Frame) -> None:
        self.gray[frame.index] = frame.array

    def _take_qp(self, frame: Frame) -> None:
        self.qp.append(frame.array)

    def finish(self, decode_s: float) -> DetectorReport:
        """The report, once the pass is over; ``decode_s`` is what reading the frames took."""
        loaded, rgb, gray, plan, timings = self.loaded, self.rgb, self.gray, self.plan, {"decode": decode_s}
        mean_qp = mean_quantiser(self.qp)
        compression = _compression(self.info, mean_qp)
        scope_reasons = _scope_size(self.info.width, self.info.height,
                                    loaded.config.smallest_crop if loaded else 64) + compression
        t = time.perf_counter()
        lumas = [np.dot(rgb[i][1][..., :3], np.float32([0.299, 0.587, 0.114])).astype(np.float32)
                 for i in sorted(rgb)]
        windows = [np.stack([gray[i].astype(np.float32) for i in w if i in gray]) for w in plan.windows
                   if all(i in gray for i in w)]
        # one optical-flow pass for the flicker signal and the temporal head (which needs the flow check)
        steps = compensated_steps(windows, reliability=self.temporal is not None)
        timings["optical_flow"] = time.perf_counter() - t
        t = time.perf_counter()
        signals = compute_signals(self.path, frames=lumas, windows=windows, container=self.info.container,
                                  codec=self.info.video_codec, steps=steps)
        timings["signals"] = time.perf_counter() - t
        t = time.perf_counter()
        features = temporal_features(steps) if self.temporal is not None else None
        temporal = self.temporal.score(features, mean_qp) if self.temporal is not None and features is not None \
            else None
        if temporal is not None and compression:
            temporal = temporal.out_of_scope(compression)
        timings["temporal"] = time.perf_counter() - t
        t = time.perf_counter()
        result: DetectorResult | None = None
        maps: PatchMaps | None = None
        if loaded is not None:
            if rgb and not scope_reasons:  # decoded frames can differ from the header (rotation, cropping)
                h, w = next(iter(rgb.values()))[1].shape[:2]
                if loaded.config.crop_for(h, w) is None:
                    scope_reasons = _scope_size(w, h, loaded.config.smallest_crop)
            if scope_reasons or not rgb:
                result = DetectorResult(loaded.model_id, False, scope_reasons or ["no frame decoded"])
            else:
                result, maps = _run_model(loaded, rgb, mean_qp)
            result.with_temporal(temporal)
            result.mean_qp = mean_qp
        timings["detector"] = time.perf_counter() - t
        timings["total"] = sum(timings.values())
        return DetectorReport(result, signals, scope_reasons or ([] if loaded else ["no detector weights installed"]),
                              {k: round(v, 3) for k, v in timings.items()}, patches=maps)


def analyse_file(path: str | os.PathLike[str], limits: MediaLimits = MediaLimits(),
                 model: LoadedDetector | str | os.PathLike[str] | None = None,
                 temporal: LoadedTemporalHead | str | os.PathLike[str] | None = None) -> DetectorReport:
    """Detector scores and forensic signals for one clip or still; ``model`` (the frame model) and
    ``temporal`` (the temporal head) are loaded models, checkpoint paths, or None for the installed
    defaults (absent frame-model weights leave ``detector`` None)."""
    began = time.perf_counter()
    analysis = ClipAnalysis(path, probe(path, limits), model, temporal)
    # Alone, nothing needs the frames after the last planned one (verify_clip's shared pass reads on).
    feed_frames(path, limits, analysis.requests(), stop_when_done=True)
    return analysis.finish(time.perf_counter() - began)
