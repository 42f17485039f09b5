"""Small PNG figures drawn with OpenCV (no plotting library): loss curves and frame strips."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from media import atomic_path

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _write_png(path: Path, image_rgb: np.ndarray) -> Path:
    """Write atomically (a half-written PNG never replaces a good one)."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
    return path


def loss_curve(steps: Sequence[float], losses: Sequence[float], path: str | os.PathLike[str], *,
               title: str = "loss", width: int = 720, height: int = 400) -> Path:
    """Loss against step on a log axis, raw values faint and a running mean on top."""
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 70, 20, 40, 45
    x = np.asarray(steps, np.float64)
    y = np.log10(np.clip(np.asarray(losses, np.float64), 1e-12, None))
    if len(x) and np.isfinite(y).any():
        y_lo, y_hi = math.floor(np.nanmin(y) * 4) / 4, math.ceil(np.nanmax(y) * 4) / 4 + 1e-9
        x_lo, x_hi = float(x.min()), float(max(x.max(), x.min() + 1))

        def px(xv: np.ndarray, yv: np.ndarray) -> np.ndarray:
            u = left + (xv - x_lo) / (x_hi - x_lo) * (width - left - right)
            v = top + (y_hi - yv) / (y_hi - y_lo) * (height - top - bottom)
            return np.stack([u, v], 1).round().astype(np.int32)

        for tick in np.arange(math.ceil(y_lo * 4) / 4, y_hi, 0.25 if y_hi - y_lo < 2 else 0.5):
            (_, v), = px(np.array([x_lo]), np.array([tick]))
            cv2.line(img, (left, int(v)), (width - right, int(v)), (230, 230, 230), 1)
            cv2.putText(img, f"{10 ** tick:.3g}", (5, int(v) + 4), _FONT, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
        cv2.polylines(img, [px(x, y)], False, (190, 200, 235), 1, cv2.LINE_AA)
        k = max(1, len(y) // 30)
        smooth = np.convolve(y, np.ones(k) / k, mode="valid")
        cv2.polylines(img, [px(x[k - 1 :], smooth)], False, (40, 70, 200), 2, cv2.LINE_AA)
        for frac in (0.0, 0.5, 1.0):
            xv = x_lo + frac * (x_hi - x_lo)
            (u, _), = px(np.array([xv]), np.array([y_lo]))
            cv2.putText(img, f"{xv:.0f}", (int(u) - 12, height - 25), _FONT, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (width - right, height - bottom), (120, 120, 120), 1)
    cv2.putText(img, title, (left, 25), _FONT, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "step", (width // 2, height - 8), _FONT, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    return _write_png(Path(path), img)


def frame_strip(clips: Sequence[np.ndarray], path: str | os.PathLike[str], *, labels: Sequence[str] = (),
                columns: int = 6, cell: int = 128) -> Path:
    """One row per clip (uint8 (T, H, W, 3)): `columns` frames spread over it, each `cell` pixels high."""
    rows = []
    for i, clip in enumerate(clips):
        picks = np.linspace(0, len(clip) - 1, min(columns, len(clip))).round().astype(int)
        cells = [cv2.resize(clip[j], (max(1, round(cell * clip.shape[2] / clip.shape[1])), cell),
                            interpolation=cv2.INTER_AREA) for j in picks]
        row = np.concatenate([np.pad(c, ((0, 0), (0, 2), (0, 0)), constant_values=255) for c in cells], 1)
        band = np.full((18, row.shape[1], 3), 255, np.uint8)
        if i < len(labels):
            cv2.putText(band, labels[i][:110], (2, 13), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([band, row], 0))
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    return _write_png(Path(path), sheet)
