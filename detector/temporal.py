"""The detector's temporal head: does the clip change over time the way generated video does?

The frame model reads traces inside single frames, and a 50% downscale or a CRF 28 re-encode erases
most of them. What a generator also leaves, and what survives both, is time: a video DiT decodes
every frame from noise, so flat areas boil and edges shimmer in ways that no camera motion explains
(docs/benchmarks/detector.md: veriframe's laundered clips score 1.2-4.4 on the flicker signal, real
and rendered clips 0.0-1.0). This head turns that into a learned, calibrated score.

Read from the bottom up: the features (`temporal_features`, a fixed vector per clip from the same
motion-compensated steps the ``temporal_flicker`` signal computes), the head (standardisation and a
logistic regression, or a one-hidden-layer MLP; `TemporalConfig` stored as a plain dict beside the
weights), fitting, and the checkpoint file (safetensors with the config, the calibration and the
training facts as JSON metadata; nothing pickled). The threshold is set on real-only held-out clips
for a stated false positive rate (`detector.calibration`), as for the frame model.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn as nn

from .calibration import Calibration
from .checkpoint import CheckpointError, load_tensors, read_metadata, write_checkpoint
from .signals import CompensatedStep, block_means

FORMAT, FORMAT_VERSION, CONFIG_VERSION = "veriframe.detector.temporal", 1, 1

# Each feature is one number per clip: the median over the clip's compensated steps of a per-step
# statistic (``_worst`` features: the 90th percentile over steps instead). Grey levels are log1p'd.
FEATURES = (
    "flicker_p50",  # block (8x8) means of |d2|: median block
    "flicker_p75",  # ... 75th percentile block (the temporal_flicker signal's statistic)
    "flicker_p90",
    "flicker_p99",
    "flicker_p75_worst",  # the p75 statistic at the clip's worst 10% of steps
    "flicker_16",  # 75th percentile of |d2| over 16x16 blocks: coarse boiling survives a downscale
    "residual_p75",  # first-order change left after motion compensation, 8x8 blocks
    "pixel_d2_p75",  # |d2| per pixel: sensor and codec noise, which block means average out
    "lowfreq_share",  # log((flicker_p75 + 0.05) / (pixel_d2_p75 + 0.05)), grey levels: how much change is coarse
    "reversal",  # correlation over blocks of (x[t] - prev) and (next - x[t]): -1 when changes reverse
    "texture",  # mean gradient magnitude of x[t] (what the flow and the noise act on)
    "reliable_share",  # share of pixels whose flows pass the forward-backward check (not occluded, not failed)
    "flicker_reliable_p75",  # flicker_p75 over the 8x8 blocks that are all reliable: boiling, not failed flow
    "flicker_reliable_p90",
)


class TemporalHeadError(ValueError):
    """The file is not a temporal-head checkpoint this version can read, or the data cannot train one."""


def _step_stats(step: CompensatedStep) -> dict[str, float]:
    d2 = step.d2
    b8, b16 = np.abs(block_means(d2, 8)), np.abs(block_means(d2, 16)) if min(d2.shape) >= 16 else None
    fwd, bwd = block_means(step.cur - step.prev, 8).ravel(), block_means(step.next - step.cur, 8).ravel()
    sf, sb = fwd.std(), bwd.std()
    reversal = float(np.mean((fwd - fwd.mean()) * (bwd - bwd.mean())) / (sf * sb)) if sf > 1e-6 and sb > 1e-6 else 0.0
    gx, gy = cv2.Sobel(step.cur, cv2.CV_32F, 1, 0), cv2.Sobel(step.cur, cv2.CV_32F, 0, 1)
    p75, pixel = float(np.percentile(b8, 75)), float(np.percentile(np.abs(d2), 75))
    return {
        "flicker_p50": float(np.percentile(b8, 50)), "flicker_p75": p75, "flicker_p90": float(np.percentile(b8, 90)),
        "flicker_p99": float(np.percentile(b8, 99)),
        "flicker_16": float(np.percentile(b16, 75)) if b16 is not None and b16.size else p75,
        "residual_p75": float(np.percentile(np.abs(fwd), 75)), "pixel_d2_p75": pixel,
        "lowfreq_share": float(np.log((p75 + 0.05) / (pixel + 0.05))), "reversal": reversal,
        "texture": float(np.mean(np.hypot(gx, gy))) / 8,  # Sobel's 3x3 kernel weighs 8x a unit step
        **_reliable_stats(step, b8),
    }


def _reliable_stats(step: CompensatedStep, b8: np.ndarray) -> dict[str, float]:
    """``b8``: the step's 8x8 block means of |d2|, of which the wholly reliable blocks are kept."""
    if step.reliable is None:
        raise ValueError("temporal features need compensated_steps(..., reliability=True)")
    ok = block_means(step.reliable.astype(np.float32), 8) >= 1.0  # blocks whose every pixel is reliable
    blocks = b8[ok]
    return {"reliable_share": float(step.reliable.mean()),
            "flicker_reliable_p75": float(np.percentile(blocks, 75)) if blocks.size else 0.0,
            "flicker_reliable_p90": float(np.percentile(blocks, 90)) if blocks.size else 0.0}


def temporal_features(steps: Sequence[CompensatedStep]) -> np.ndarray | None:
    """The clip's feature vector in `FEATURES` order (float32), or None without a compensated step; the
    steps must come from ``compensated_steps(windows, reliability=True)``."""
    if not steps:
        return None
    per_step = [_step_stats(s) for s in steps]
    out = []
    for name in FEATURES:
        base = name.removesuffix("_worst")
        values = np.array([p[base] for p in per_step])
        v = float(np.percentile(values, 90) if name.endswith("_worst") else np.median(values))
        out.append(v if name in ("lowfreq_share", "reversal", "reliable_share") else float(np.log1p(max(v, 0.0))))
    return np.array(out, np.float32)


@dataclass
class TemporalConfig:
    """The head's contract, stored in its checkpoint: ``hidden`` 0 is a logistic regression."""

    features: tuple[str, ...] = FEATURES
    hidden: int = 0
    weight_decay: float = 1e-3
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        self.features = tuple(self.features)
        unknown = set(self.features) - set(FEATURES)
        if unknown or not self.features:
            raise TemporalHeadError(f"unknown temporal features {sorted(unknown)}; choose from {FEATURES}")
        if self.hidden < 0:
            raise TemporalHeadError("hidden must be 0 (logistic regression) or a layer width")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TemporalConfig:
        if int(data.get("version", 0)) != CONFIG_VERSION:
            raise TemporalHeadError(f"temporal head config version {data.get('version')} is not {CONFIG_VERSION}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class TemporalHead(nn.Module):
    """Standardised features -> logit. The standardisation is part of the weights (fitted on train)."""

    def __init__(self, cfg: TemporalConfig) -> None:
        super().__init__()
        self.cfg, n = cfg, len(cfg.features)
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.net = nn.Linear(n, 1) if cfg.hidden == 0 else nn.Sequential(
            nn.Linear(n, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std).squeeze(-1)  # (B, F) -> (B,)

    def select(self, full: np.ndarray) -> np.ndarray:
        """Columns of ``full`` (rows in `FEATURES` order) that this head reads."""
        idx = [FEATURES.index(f) for f in self.cfg.features]
        return np.asarray(full, np.float32)[..., idx]

    @torch.no_grad()
    def logits(self, full: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.atleast_2d(self.select(full)))
        return self.eval()(x).numpy().astype(np.float64)


def fit_head(x: np.ndarray, y: np.ndarray, cfg: TemporalConfig | None = None, *, seed: int = 0,
             iters: int = 300) -> TemporalHead:
    """Fit on features ``x`` (N, len(FEATURES)) and labels ``y`` (1 = AI): class-balanced log loss with
    weight decay, full-batch L-BFGS (a few hundred clips: seconds on a CPU, deterministic)."""
    y = np.asarray(y, np.float32)
    if x.ndim != 2 or len(x) != len(y) or not (0 < y.sum() < len(y)):
        raise TemporalHeadError("need a 2-D feature matrix with both classes present")
    cfg = cfg or TemporalConfig()
    torch.manual_seed(seed)
    head = TemporalHead(cfg)
    xs = torch.from_numpy(head.select(x))
    head.mean.copy_(xs.mean(0))
    head.std.copy_(xs.std(0).clamp_min(1e-3))
    target = torch.from_numpy(y)
    pos = float(target.mean())
    weights = torch.where(target > 0, 0.5 / pos, 0.5 / (1 - pos))
    opt = torch.optim.LBFGS(list(head.net.parameters()), lr=0.5, max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (nn.functional.binary_cross_entropy_with_logits(head(xs), target, reduction="none") * weights).mean()
        loss = loss + cfg.weight_decay * sum((p ** 2).sum() for n_, p in head.net.named_parameters()
                                             if n_.endswith("weight")) / 2
        loss.backward()
        return loss

    head.train()
    opt.step(closure)
    return head.eval()


@dataclass
class TemporalResult:
    """The head's view of one clip, as the report shows it (``probability`` calibrated). Out of scope
    (``in_scope`` False: the clip is compressed past what its threshold was set on), the score is kept
    for the record and ``flagged`` is False whatever it is."""

    model_id: str
    probability: float
    logit: float
    flagged: bool
    threshold_probability: float
    target_fpr: float
    features: dict[str, float] = field(default_factory=dict)
    in_scope: bool = True
    scope_reasons: list[str] = field(default_factory=list)

    def out_of_scope(self, reasons: Sequence[str]) -> TemporalResult:
        """This result with its decision withdrawn for ``reasons``."""
        return dataclasses.replace(self, flagged=False, in_scope=False, scope_reasons=list(reasons))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedTemporalHead:
    head: TemporalHead
    calibration: Calibration
    model_id: str
    meta: dict[str, Any] = field(default_factory=dict)

    def score(self, features: np.ndarray, mean_qp: float | None = None) -> TemporalResult:
        """One clip's features (`FEATURES` order) -> its result at the stored operating threshold for the
        clip's compression (``mean_qp``: the H.264 decoder's mean quantiser; None: the strictest)."""
        z = float(self.head.logits(features)[0])
        cal = self.calibration
        threshold = cal.threshold_for(mean_qp)
        return TemporalResult(self.model_id, round(float(cal.probability(z)), 4), round(z, 4),
                              bool(z > threshold), round(float(cal.probability(threshold)), 4), cal.target_fpr,
                              {n: round(float(v), 4) for n, v in zip(FEATURES, features, strict=True)})


def save_head(path: str | os.PathLike[str], head: TemporalHead, calibration: Calibration, *, model_id: str,
              meta: dict[str, Any] | None = None) -> Path:
    """Write the head atomically: weights as safetensors, config / calibration / meta as JSON metadata."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_checkpoint(path, head.state_dict(), model_id=model_id, config=head.cfg.to_dict(),
                            calibration=calibration, meta=meta, fmt=(FORMAT, FORMAT_VERSION))


def load_head(path: str | os.PathLike[str]) -> LoadedTemporalHead:
    """Rebuild the head from its stored config and load its weights; `TemporalHeadError` for foreign files."""
    try:
        info = read_metadata(path, (FORMAT, FORMAT_VERSION))
        if info["calibration"] is None:
            raise CheckpointError(f"{Path(path).name} has no calibration")
        head = TemporalHead(TemporalConfig.from_dict(info["config"]))
        missing, unexpected = head.load_state_dict(load_tensors(path, ""), strict=False)
        calibration = Calibration.from_dict(info["calibration"])
    except (CheckpointError, KeyError, TypeError, RuntimeError) as exc:  # foreign, damaged, wrong shapes
        raise TemporalHeadError(str(exc)) from None
    if missing or unexpected:
        raise TemporalHeadError(f"{Path(path).name} does not match its config: missing {missing[:3]}, "
                                f"unexpected {unexpected[:3]}")
    return LoadedTemporalHead(head.eval(), calibration, info["model_id"], info["meta"])
