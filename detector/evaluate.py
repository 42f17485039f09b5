"""Evaluate a detector checkpoint: AUC, AP, accuracy and TPR/FPR at its operating threshold, per source,
on the original files and again after an H.264 CRF 28 re-encode and after a 50% downscale.

Groups: ``in_distribution`` is every AI family the model trained on against the real items;
``unseen`` is each held-out family (recorded in the checkpoint's recipe) against the same reals.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .augment import video_codec_roundtrip
from .checkpoint import load_checkpoint
from .model import Detector
from .sampling import crop_batch
from .train import Item, load_frames, read_items

log = logging.getLogger(__name__)

Condition = Callable[[np.ndarray], np.ndarray]


def _downscale(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)


CONDITIONS: dict[str, Condition] = {
    "original": lambda rgb: rgb,
    "h264_crf28": lambda rgb: video_codec_roundtrip(rgb, 28),
    "downscale_50": _downscale,
}


@torch.no_grad()
def score_frames(model: Detector, frames: list[np.ndarray], max_crops: int) -> float:
    """The clip logit for RGB frames of one item (a still is one frame); NaN when out of the model's scope."""
    side = model.cfg.crop_for(*frames[0].shape[:2])
    if side is None:
        return float("nan")
    x, _, _ = crop_batch(frames, side, max_crops)
    return float(model(x.to(next(model.parameters()).device)).clip_logits[0])


def score_items(model: Detector, items: list[Item], *, max_crops: int = 16,
                condition: Condition | None = None, frames: int = 4) -> np.ndarray:
    """Clip logits of ``items`` (NaN where an item is too small), each optionally transformed first."""
    was_training = model.training
    model.eval()
    out = []
    for item in items:
        imgs = load_frames(item.path, frames)
        if condition is not None:
            imgs = [condition(f) for f in imgs]
        out.append(score_frames(model, imgs, max_crops))
    model.train(was_training)
    return np.array(out, dtype=np.float64)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve by the rank-sum (ties count half); None without both classes."""
    y, s = np.asarray(labels), np.asarray(scores, np.float64)
    pos, neg = s[y == 1], s[y == 0]
    if pos.size == 0 or neg.size == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    y, s = np.asarray(labels), np.asarray(scores, np.float64)
    if y.sum() == 0:
        return None
    order = np.argsort(-s, kind="stable")
    hits = y[order] == 1
    precision = np.cumsum(hits) / np.arange(1, y.size + 1)
    return float(precision[hits].mean())


def binary_metrics(labels: np.ndarray, logits: np.ndarray, threshold: float | np.ndarray) -> dict[str, Any]:
    """AUC, AP, and accuracy / TPR / FPR at ``threshold`` (one, or one per item); NaN logits left out."""
    y, s = np.asarray(labels), np.asarray(logits, np.float64)
    keep = ~np.isnan(s)
    y, s = y[keep], s[keep]
    flag = s > (np.asarray(threshold, np.float64)[keep] if np.ndim(threshold) else threshold)
    out: dict[str, Any] = {"n": int(y.size), "n_ai": int(y.sum()), "n_real": int((y == 0).sum()),
                           "auc": roc_auc(y, s), "ap": average_precision(y, s)}
    out["accuracy"] = float((flag == (y == 1)).mean()) if y.size else None
    out["tpr"] = float(flag[y == 1].mean()) if (y == 1).any() else None
    out["fpr"] = float(flag[y == 0].mean()) if (y == 0).any() else None
    return out


def evaluate_detector(
    data_dir: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    *,
    split: str = "test",
    conditions: tuple[str, ...] = ("original", "h264_crf28", "downscale_50"),
    max_crops: int = 16,
) -> dict[str, Any]:
    """Metrics of ``checkpoint`` on the ``split`` items of ``data_dir`` (all items when it has no splits).

    Returns ``{"model_id", "threshold_logit", "target_fpr", "held_out", "n_items", "conditions": {name:
    {"in_distribution": metrics, "unseen": {family: metrics}, "per_family": {family: metrics}, "per_source":
    {source: metrics}}}}``; per family, each AI family against all the reals; per source, real sources report
    their FPR and AI sources their TPR at the operating threshold.
    """
    loaded = load_checkpoint(checkpoint)
    held_out = list((loaded.meta.get("recipe") or {}).get("held_out", []))
    items = read_items(data_dir)
    if any(i.split != "all" for i in items):
        items = [i for i in items if i.split == split]
    threshold = loaded.calibration.threshold_logit if loaded.calibration else 0.0
    report: dict[str, Any] = {
        "model_id": loaded.model_id, "checkpoint": str(Path(checkpoint)), "split": split, "held_out": held_out,
        "threshold_logit": threshold, "target_fpr": loaded.calibration.target_fpr if loaded.calibration else None,
        "n_items": len(items), "conditions": {},
    }
    labels = np.array([i.label for i in items])
    for name in conditions:
        logits = score_items(loaded.model, items, max_crops=max_crops, condition=CONDITIONS[name])
        seen = np.array([i.label == 0 or i.family not in held_out for i in items])
        result: dict[str, Any] = {"in_distribution": binary_metrics(labels[seen], logits[seen], threshold),
                                  "unseen": {}, "per_family": {}, "per_source": {}}
        for family in sorted({i.family for i in items if i.label == 1}):
            pick = np.array([i.label == 0 or i.family == family for i in items])
            result["per_family"][family] = binary_metrics(labels[pick], logits[pick], threshold)
            if family in held_out:
                result["unseen"][family] = result["per_family"][family]
        for source in sorted({i.source for i in items}):
            pick = np.array([i.source == source for i in items])
            result["per_source"][source] = binary_metrics(labels[pick], logits[pick], threshold)
        report["conditions"][name] = result
        report.setdefault("logits", {})[name] = [None if np.isnan(v) else round(float(v), 4) for v in logits]
        log.info("%s: %s", name, result["in_distribution"])
    report["items"] = [{"path": str(i.path), "label": i.label, "source": i.source, "family": i.family} for i in items]
    return report
