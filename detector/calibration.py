"""Operating threshold and probability calibration for detector logits.

Two separate questions, answered on separate held-out data:

* *Where to flag*: `threshold_at_fpr` sets the threshold on **real-only** held-out scores so that
  new real scores are expected above it at most ``fpr`` of the time (split-conformal; a fixed 0.5 on
  a sigmoid is how detectors end up miscalibrated on new data, CNNDetection #14). The decision is
  always ``logit > threshold_logit``.
* *What a score means*: temperature scaling (one parameter, keeps the order) or isotonic regression
  (pool-adjacent-violators, monotone steps) fitted on labelled held-out scores turn a logit into a
  probability; `reliability` and `write_reliability_plot` show how well that worked.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

METHODS = ("temperature", "isotonic")


def threshold_at_fpr(real_scores: np.ndarray, fpr: float) -> float:
    """The threshold t, one of the real scores, that keeps the expected rate of *new* reals above it at
    most ``fpr``: the k-th largest of the n scores with k = floor(fpr * (n + 1)).

    A new real score exchangeable with the n lies above the k-th largest of them with probability
    k / (n + 1) (split-conformal; ties only lower it). Taking instead the smallest t with
    ``mean(scores > t) <= fpr`` (the (floor(fpr*n)+1)-th largest) holds the rate on the calibration
    scores but not on new ones: with 121 reals and fpr 1% that is the second largest, whose expected
    rate is 2/122 = 1.6%. With fewer than 1/fpr - 1 reals (k = 0) no score resolves the rate and the
    maximum is used: its expected rate is 1/(n + 1) (`expected_fpr`).
    """
    scores = np.sort(np.asarray(real_scores, dtype=np.float64))[::-1]
    if scores.size == 0:
        raise ValueError("need at least one real score to set a threshold")
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be in [0, 1), got {fpr}")
    k = max(1, int(math.floor(fpr * (scores.size + 1) + 1e-9)))
    return float(scores[k - 1])


def expected_fpr(n_real: int, fpr: float) -> float:
    """The expected false positive rate on new reals of `threshold_at_fpr` set on ``n_real`` scores:
    ``fpr`` or below once there are enough reals, 1 / (n_real + 1) when there are too few."""
    k = max(1, int(math.floor(fpr * (n_real + 1) + 1e-9)))
    return k / (n_real + 1)


# Upper edges of the quantiser bands that get their own threshold (mean H.264 QP). Chosen on the clip
# kit's val split (session 16): lightly compressed clips (the kit's CRF 18 and 28) sit at QP 30 or below,
# CRF 40 at 34-40; finer bands above 30 gave the same thresholds. The last edge is
# `detector.analyse.MAX_H264_QP`, past which the detector is out of scope (a test holds them equal).
QP_BANDS = (30.0, 40.0)


def threshold_by_band(real_logits: np.ndarray, conditions: Sequence[str], mean_qp: Sequence[float | None],
                      fpr: float, bands: Sequence[float] = QP_BANDS, floor: float = -math.inf) -> list[list[float]]:
    """[upper QP, threshold] per band of ``bands``: the highest of `threshold_at_fpr` over the band's real
    logits pooled and over each condition with at least 1/fpr - 1 real clips in the band (fewer cannot
    resolve the rate), and never below the band before nor ``floor``. A band without real clips takes the one
    before; clips without a quantiser or past the last band are left out (they take the highest threshold)."""
    z, cond = np.asarray(real_logits, np.float64), np.asarray(conditions)
    qp = np.array([np.inf if q is None else float(q) for q in mean_qp])
    if not (qp <= bands[-1]).any():
        raise ValueError("no real clip with a quantiser inside the bands to set a threshold on")
    enough = math.ceil(1 / fpr) - 1
    out: list[list[float]] = []
    lower, running = -np.inf, floor
    for upper in bands:
        band = (qp > lower) & (qp <= upper)
        groups = [band] + [band & (cond == c) for c in sorted(set(cond[band].tolist()))]
        found = [threshold_at_fpr(z[g], fpr) for i, g in enumerate(groups) if g.any() and (i == 0 or g.sum() >= enough)]
        running = max([running, *found])
        out.append([float(upper), float(running)])
        lower = upper
    return [[u, t if np.isfinite(t) else running] for u, t in out]


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iters: int = 200) -> float:
    """The T > 0 minimising the log loss of sigmoid(logit / T) (Guo et al., 2017), by Newton on log T."""
    z, y = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
    log_t = 0.0
    for _ in range(iters):
        t = math.exp(log_t)
        p = _sigmoid(z / t)
        # d loss / d log T = sum((p - y) * (-z / T)); a second derivative gives a damped Newton step.
        u = -z / t
        grad = float(np.sum((p - y) * u))
        hess = float(np.sum(p * (1 - p) * u * u - (p - y) * u)) + 1e-9
        step = grad / hess if hess > 0 else grad * 0.1
        log_t -= float(np.clip(step, -1.0, 1.0))
        if abs(step) < 1e-8:
            break
    return float(math.exp(np.clip(log_t, -5, 5)))


def fit_isotonic(scores: np.ndarray, labels: np.ndarray) -> tuple[list[float], list[float]]:
    """Pool-adjacent-violators: (x knots, y values) of the non-decreasing step fit of labels on scores."""
    order = np.argsort(scores, kind="stable")
    x, y = np.asarray(scores, np.float64)[order], np.asarray(labels, np.float64)[order]
    blocks: list[list[float]] = []  # [sum of y, count, max x]
    for xi, yi in zip(x, y, strict=True):
        blocks.append([yi, 1.0, xi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c, m = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
            blocks[-1][2] = m
    return [b[2] for b in blocks], [b[0] / b[1] for b in blocks]


@dataclass
class Calibration:
    """Operating threshold (on the raw logit) and the logit -> probability map, with their provenance."""

    threshold_logit: float
    target_fpr: float
    n_real: int
    method: str = "temperature"
    temperature: float = 1.0
    iso_x: list[float] = field(default_factory=list)
    iso_y: list[float] = field(default_factory=list)
    # Optional thresholds by compression: [upper mean H.264 quantiser, threshold logit] pairs, ascending in
    # both; a clip at quantiser q takes the first band with q <= upper. ``threshold_logit`` (their highest)
    # is for a clip without a quantiser or past the last band.
    qp_bands: list[list[float]] = field(default_factory=list)
    version: int = 1

    def threshold_for(self, mean_qp: float | None = None) -> float:
        """The threshold for a clip whose decoder reported ``mean_qp`` (None: not H.264, or unknown)."""
        if mean_qp is not None:
            for upper, threshold in self.qp_bands:
                if mean_qp <= upper:
                    return threshold
        return self.threshold_logit

    def probability(self, logits: np.ndarray | float) -> np.ndarray:
        """Calibrated P(AI) for raw logits."""
        z = np.asarray(logits, np.float64)
        if self.method == "isotonic" and self.iso_x:
            # Each step holds from its block's largest score; clip to [0.001, 0.999]: no step is certainty.
            idx = np.clip(np.searchsorted(self.iso_x, z, side="left"), 0, len(self.iso_x) - 1)
            return np.clip(np.asarray(self.iso_y)[idx], 1e-3, 1 - 1e-3)
        return _sigmoid(z / self.temperature)

    @property
    def threshold_probability(self) -> float:
        return float(self.probability(self.threshold_logit))

    def flags(self, logits: np.ndarray | float) -> np.ndarray:
        return np.asarray(logits) > self.threshold_logit

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "threshold_logit": self.threshold_logit, "target_fpr": self.target_fpr,
            "n_real": self.n_real, "method": self.method, "temperature": self.temperature,
            "iso_x": self.iso_x, "iso_y": self.iso_y, "qp_bands": self.qp_bands,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(**{k: data[k] for k in ("threshold_logit", "target_fpr", "n_real", "method", "temperature",
                                           "iso_x", "iso_y", "qp_bands", "version") if k in data})


def calibrate(
    real_logits: np.ndarray, logits: np.ndarray, labels: np.ndarray, *, target_fpr: float = 0.01,
    method: str = "temperature",
) -> Calibration:
    """Threshold from ``real_logits`` (real-only, held out) and the probability map from labelled ones."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose from {METHODS}")
    cal = Calibration(threshold_at_fpr(real_logits, target_fpr), target_fpr, int(np.size(real_logits)), method)
    if method == "temperature":
        cal.temperature = fit_temperature(logits, labels)
    else:
        cal.iso_x, cal.iso_y = (list(map(float, v)) for v in fit_isotonic(logits, labels))
    return cal


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Per-bin mean confidence, observed frequency and count, and the expected calibration error."""
    p, y = np.asarray(probs, np.float64), np.asarray(labels, np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if not m.any():
            rows.append({"bin": b, "confidence": None, "frequency": None, "count": 0})
            continue
        conf, freq = float(p[m].mean()), float(y[m].mean())
        ece += m.mean() * abs(conf - freq)
        rows.append({"bin": b, "confidence": conf, "frequency": freq, "count": int(m.sum())})
    return {"bins": rows, "ece": float(ece), "n": int(p.size)}


def write_reliability_plot(path: str | os.PathLike[str], table: dict[str, Any], title: str = "") -> None:
    """A reliability diagram as PNG (drawn with OpenCV: no plotting dependency)."""
    from media import write_image

    size, pad = 420, 50
    img = np.full((size + 2 * pad, size + 2 * pad, 3), 255, np.uint8)

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(pad + x * size), int(pad + (1 - y) * size)

    cv2.rectangle(img, pt(0, 0), pt(1, 1), (0, 0, 0), 1)
    cv2.line(img, pt(0, 0), pt(1, 1), (160, 160, 160), 1, cv2.LINE_AA)
    n_bins = len(table["bins"])
    for row in table["bins"]:
        if not row["count"]:
            continue
        x0, x1 = row["bin"] / n_bins, (row["bin"] + 1) / n_bins
        cv2.rectangle(img, pt(x0 + 0.005, row["frequency"]), pt(x1 - 0.005, 0), (70, 130, 200), -1)
        cv2.circle(img, pt(row["confidence"], row["frequency"]), 4, (200, 60, 40), -1, cv2.LINE_AA)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, "predicted P(AI)", (pad + size // 2 - 70, size + pad + 35), font, 0.5, (0, 0, 0), 1)
    cv2.putText(img, "observed", (5, pad - 10), font, 0.5, (0, 0, 0), 1)
    cv2.putText(img, f"{title}  ECE {table['ece']:.3f}  n={table['n']}", (pad, pad - 25), font, 0.45, (0, 0, 0), 1)
    for v in (0.0, 0.5, 1.0):
        cv2.putText(img, f"{v:.1f}", (pt(v, 0)[0] - 10, size + pad + 15), font, 0.4, (0, 0, 0), 1)
        cv2.putText(img, f"{v:.1f}", (pad - 30, pt(0, v)[1] + 4), font, 0.4, (0, 0, 0), 1)
    write_image(path, img)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
