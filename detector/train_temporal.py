"""Fit, calibrate and evaluate the temporal head on the clip kit (`detector.clipkit`).

The head fits on the ``train`` clips; the operating thresholds come from the ``val`` split's *real*
clips only (`calibrate_head`), one per band of the decoder's mean quantiser (`calibration.QP_BANDS`): heavily
compressed real clips score far higher than lightly compressed ones, so one threshold either lets
them through or gives up most lightly compressed AI clips. Each band's threshold holds the stated
false positive rate for the band's real clips pooled and for each encoding condition with enough
clips in it (`threshold_at_fpr`, whose rate holds on new clips, not only on the val clips), and no
band's is below a less compressed band's. The probability map (temperature) comes from all ``val``
clips; ``test`` is reported per condition and per source and never touched before.
Seconds on a CPU: the features are computed once, when the clip kit is built.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .analyse import within_quantiser_scope
from .calibration import calibrate, threshold_by_band
from .clipkit import CONDITIONS, ClipKit, read_clip_kit
from .evaluate import binary_metrics
from .temporal import FEATURES, LoadedTemporalHead, TemporalConfig, TemporalHead, fit_head, load_head, save_head

log = logging.getLogger(__name__)

MODEL_ID = "veriframe-temporal-v2"


def row_qp(row: dict[str, str]) -> float | None:
    return float(row["mean_qp"]) if row.get("mean_qp") else None


def in_scope(kit: ClipKit) -> np.ndarray:
    """Rows `detector.analyse` would judge (`within_quantiser_scope`; rows of a kit built before the
    quantiser was recorded count as in scope)."""
    return np.array([within_quantiser_scope(row_qp(r)) for r in kit.rows], bool)


def evaluate_head(loaded: LoadedTemporalHead, kit: ClipKit, split: str = "test") -> dict[str, Any]:
    """Metrics per condition (AUC, AP, TPR and FPR at the stored threshold), rates per source, and the
    decisions `detector.analyse` keeps: ``scoped_tpr`` / ``scoped_fpr`` count a flag only on a clip in
    the compression scope (`in_scope`); ``out_of_scope`` is (AI, real) clips outside it."""
    z = loaded.head.logits(kit.x)
    thr = np.array([loaded.calibration.threshold_for(row_qp(r)) for r in kit.rows])
    scoped = in_scope(kit)
    out: dict[str, Any] = {}
    for cond in list(CONDITIONS) + ["all"]:
        m = kit.mask(split=split) if cond == "all" else kit.mask(split=split, condition=cond)
        if not m.any():
            continue
        metrics = binary_metrics(kit.y[m], z[m], thr[m])
        sources = sorted({r["source"] for r, k in zip(kit.rows, m, strict=True) if k})
        metrics["per_source"] = {s: float((z > thr)[m & kit.mask(source=s)].mean()) for s in sources}
        kept = (z > thr) & scoped
        ai, real = m & (kit.y == 1), m & (kit.y == 0)
        metrics["scoped_tpr"] = float(kept[ai].mean()) if ai.any() else None
        metrics["scoped_fpr"] = float(kept[real].mean()) if real.any() else None
        metrics["out_of_scope"] = [int((ai & ~scoped).sum()), int((real & ~scoped).sum())]
        out[cond] = metrics
    return out


def calibrate_head(head: TemporalHead, kit: ClipKit, *, model_id: str, target_fpr: float = 0.01
                   ) -> LoadedTemporalHead:
    """``head`` with thresholds by quantiser band (`threshold_by_band`) from the kit's val real clips within
    the compression scope, and a temperature from all val clips."""
    val = kit.mask(split="val")
    reals = val & (kit.y == 0) & in_scope(kit)
    if not reals.any():
        raise ValueError("the clip kit has no real val clip within the compression scope to calibrate on")
    z = head.logits(kit.x)
    cal = calibrate(z[reals], z[val], kit.y[val], target_fpr=target_fpr)
    rows = [r for r, v in zip(kit.rows, reals, strict=True) if v]
    cal.qp_bands = threshold_by_band(z[reals], [r["condition"] for r in rows], [row_qp(r) for r in rows], target_fpr)
    cal.threshold_logit = max(cal.threshold_logit, *(t for _, t in cal.qp_bands))
    return LoadedTemporalHead(head, cal, model_id)


def _finish(loaded: LoadedTemporalHead, kit: ClipKit, out: str | os.PathLike[str], training: dict[str, Any]
            ) -> dict[str, Any]:
    """Evaluate on val and test, write ``out``, and return the summary."""
    cal = loaded.calibration
    summary = {
        "model_id": loaded.model_id, "config": loaded.head.cfg.to_dict(), "features": list(FEATURES), **training,
        "rows": {s: int(kit.mask(split=s).sum()) for s in ("train", "val", "test")},
        "threshold_logit": cal.threshold_logit, "qp_bands": cal.qp_bands, "target_fpr": cal.target_fpr,
        "n_real_val": cal.n_real, "temperature": cal.temperature,
        "val": evaluate_head(loaded, kit, "val"), "test": evaluate_head(loaded, kit, "test"),
    }
    save_head(out, loaded.head, cal, model_id=loaded.model_id, meta={"training": {k: summary[k] for k in (
        *training, "rows", "threshold_logit", "qp_bands", "target_fpr", "n_real_val")}, "test": summary["test"]})
    log.info("temporal head written to %s", Path(out))
    return summary


def train_temporal_head(kit_dir: str | os.PathLike[str], out: str | os.PathLike[str], *, hidden: int = 8,
                        weight_decay: float = 1e-3, target_fpr: float = 0.01, seed: int = 0,
                        model_id: str = MODEL_ID) -> dict[str, Any]:
    """Fit the head on ``kit_dir``'s clip kit, calibrate it, write it to ``out`` and return the summary."""
    kit = read_clip_kit(kit_dir)
    train = kit.mask(split="train")
    if not (kit.y[train].any() and (kit.y[train] == 0).any()):
        raise ValueError("the clip kit needs both classes in train")
    cfg = TemporalConfig(hidden=hidden, weight_decay=weight_decay)
    head = fit_head(kit.x[train], kit.y[train], cfg, seed=seed)
    training: dict[str, Any] = {"kit": kit.info}
    if hidden == 0:
        w = head.net.weight.detach().numpy()[0]
        training["weights"] = {f: round(float(v), 4) for f, v in zip(cfg.features, w, strict=True)}
    return _finish(calibrate_head(head, kit, model_id=model_id, target_fpr=target_fpr), kit, out, training)


def recalibrate_temporal_head(kit_dir: str | os.PathLike[str], path: str | os.PathLike[str], *,
                              model_id: str | None = None, target_fpr: float = 0.01) -> dict[str, Any]:
    """Keep the head at ``path`` (its weights and standardisation) and set its thresholds and temperature
    again on ``kit_dir``'s val clips; writes ``path`` in place (atomically) under ``model_id`` (default:
    the file's)."""
    kit = read_clip_kit(kit_dir)
    previous = load_head(path)
    training = {"recalibrated_from": previous.model_id, "kit": kit.info,
                "fit": previous.meta.get("training", {})}
    return _finish(calibrate_head(previous.head, kit, model_id=model_id or previous.model_id, target_fpr=target_fpr),
                   kit, path, training)
