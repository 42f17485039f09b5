"""Fit, calibrate and evaluate the temporal head on the clip kit (`detector.clipkit`).

The head fits on the ``train`` clips; the operating threshold comes from the ``val`` split's *real*
clips only, at the stated false positive rate *in every encoding condition* (the highest of the
per-condition thresholds: pooled, the heavily compressed clips alone were flagged 2-3% of the time),
and the probability map (temperature) from all ``val`` clips; ``test`` is reported per condition and
per source and never touched before.
Seconds on a CPU: the features are computed once, when the clip kit is built.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .analyse import within_quantiser_scope
from .calibration import calibrate, threshold_at_fpr
from .clipkit import CONDITIONS, ClipKit, read_clip_kit
from .evaluate import binary_metrics
from .temporal import FEATURES, LoadedTemporalHead, TemporalConfig, fit_head, save_head

log = logging.getLogger(__name__)

MODEL_ID = "veriframe-temporal-v1"


def threshold_by_condition(real_logits: np.ndarray, conditions: Sequence[str], fpr: float) -> dict[str, float]:
    """Per encoding condition, the threshold that keeps at most ``fpr`` of that condition's real logits above
    it (`threshold_at_fpr`); the operating threshold is the highest of them."""
    z, cond = np.asarray(real_logits, np.float64), np.asarray(conditions)
    return {c: threshold_at_fpr(z[cond == c], fpr) for c in sorted(set(cond.tolist()))}


def in_scope(kit: ClipKit) -> np.ndarray:
    """Rows `detector.analyse` would judge (`within_quantiser_scope`; rows of a kit built before the
    quantiser was recorded count as in scope)."""
    return np.array([within_quantiser_scope(float(r["mean_qp"]) if r.get("mean_qp") else None) for r in kit.rows],
                    bool)


def evaluate_head(loaded: LoadedTemporalHead, kit: ClipKit, split: str = "test") -> dict[str, Any]:
    """Metrics per condition (AUC, AP, TPR and FPR at the stored threshold), rates per source, and the
    decisions `detector.analyse` keeps: ``scoped_tpr`` / ``scoped_fpr`` count a flag only on a clip in
    the compression scope (`in_scope`); ``out_of_scope`` is (AI, real) clips outside it."""
    z = loaded.head.logits(kit.x)
    thr = loaded.calibration.threshold_logit
    scoped = in_scope(kit)
    out: dict[str, Any] = {}
    for cond in list(CONDITIONS) + ["all"]:
        m = kit.mask(split=split) if cond == "all" else kit.mask(split=split, condition=cond)
        if not m.any():
            continue
        metrics = binary_metrics(kit.y[m], z[m], thr)
        sources = sorted({r["source"] for r, k in zip(kit.rows, m, strict=True) if k})
        metrics["per_source"] = {s: float((z[m & kit.mask(source=s)] > thr).mean()) for s in sources}
        kept = (z > thr) & scoped
        ai, real = m & (kit.y == 1), m & (kit.y == 0)
        metrics["scoped_tpr"] = float(kept[ai].mean()) if ai.any() else None
        metrics["scoped_fpr"] = float(kept[real].mean()) if real.any() else None
        metrics["out_of_scope"] = [int((ai & ~scoped).sum()), int((real & ~scoped).sum())]
        out[cond] = metrics
    return out


def train_temporal_head(kit_dir: str | os.PathLike[str], out: str | os.PathLike[str], *, hidden: int = 8,
                        weight_decay: float = 1e-3, target_fpr: float = 0.01, seed: int = 0) -> dict[str, Any]:
    """Fit the head on ``kit_dir``'s clip kit, calibrate it, write it to ``out`` and return the summary."""
    kit = read_clip_kit(kit_dir)
    train, val = kit.mask(split="train"), kit.mask(split="val")
    if not (kit.y[train].any() and (kit.y[train] == 0).any() and (kit.y[val] == 0).any()):
        raise ValueError("the clip kit needs both classes in train and real clips in val")
    cfg = TemporalConfig(hidden=hidden, weight_decay=weight_decay)
    head = fit_head(kit.x[train], kit.y[train], cfg, seed=seed)
    z = head.logits(kit.x)
    reals = val & (kit.y == 0)
    cal = calibrate(z[reals], z[val], kit.y[val], target_fpr=target_fpr)
    by_condition = threshold_by_condition(z[reals], [r["condition"] for r, v in zip(kit.rows, reals, strict=True)
                                                    if v], target_fpr)
    cal.threshold_logit = max(cal.threshold_logit, *by_condition.values())
    loaded = LoadedTemporalHead(head, cal, MODEL_ID)
    summary = {
        "model_id": MODEL_ID, "config": cfg.to_dict(), "features": list(FEATURES),
        "rows": {s: int(kit.mask(split=s).sum()) for s in ("train", "val", "test")},
        "threshold_logit": cal.threshold_logit, "threshold_by_condition": by_condition, "target_fpr": target_fpr,
        "n_real_val": cal.n_real,
        "temperature": cal.temperature, "val": evaluate_head(loaded, kit, "val"),
        "test": evaluate_head(loaded, kit, "test"),
    }
    if hidden == 0:
        w = head.net.weight.detach().numpy()[0]
        summary["weights"] = {f: round(float(v), 4) for f, v in zip(cfg.features, w, strict=True)}
    save_head(out, head, cal, model_id=MODEL_ID, meta={"training": {k: summary[k] for k in (
        "rows", "threshold_logit", "threshold_by_condition", "target_fpr", "n_real_val")}, "test": summary["test"]})
    log.info("temporal head written to %s", Path(out))
    return summary
