"""Which frames and which native-resolution crops the detector looks at.

The frame sampler spreads ``frames`` model frames uniformly over the clip and adds short runs of
consecutive frames for the temporal signals; the crop sampler lays a uniform grid of at most
``max_crops`` non-overlapping ``S x S`` crops over each frame (no resizing: the residual needs the
source's own pixel grid). The same grid gives the heatmap its cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class FramePlan:
    """Frame indices to decode: ``model`` (spread over the clip) and ``windows`` (consecutive runs)."""

    model: tuple[int, ...]
    windows: tuple[tuple[int, ...], ...]

    @property
    def all(self) -> set[int]:
        return set(self.model) | {i for w in self.windows for i in w}


def plan_frames(frame_count: int, frames: int, *, windows: int = 4, window_length: int = 5) -> FramePlan:
    """``frames`` indices spread uniformly, and ``windows`` runs of ``window_length`` consecutive frames
    spread over the clip (fewer or shorter when the clip is short)."""
    n = max(1, frame_count)
    model = tuple(sorted({int(i) for i in np.linspace(0, n - 1, min(frames, n)).round()}))
    length = min(window_length, n)
    runs: list[tuple[int, ...]] = []
    if length >= 3:
        starts = sorted({int(s) for s in np.linspace(0, n - length, min(windows, n - length + 1)).round()})
        runs = [tuple(range(s, s + length)) for s in starts]
    return FramePlan(model, tuple(runs))


def grid_positions(height: int, width: int, side: int, max_crops: int) -> tuple[list[tuple[int, int]], int, int]:
    """Top-left corners of a uniform ``rows x cols`` grid of crops (rows * cols <= max_crops), row-major."""
    if height < side or width < side:
        return [], 0, 0
    fit_r, fit_c = height // side, width // side
    rows, cols = fit_r, fit_c
    while rows * cols > max_crops:  # shrink the longer dimension of the grid first
        if rows / fit_r >= cols / fit_c and rows > 1:
            rows -= 1
        else:
            cols -= 1
    ys = np.linspace(0, height - side, rows).round().astype(int) if rows > 1 else [(height - side) // 2]
    xs = np.linspace(0, width - side, cols).round().astype(int) if cols > 1 else [(width - side) // 2]
    return [(int(y), int(x)) for y in ys for x in xs], rows, cols


def crop_batch(frames: list[np.ndarray], side: int, max_crops: int) -> tuple[torch.Tensor, int, int]:
    """(1, T, K, 3, S, S) float crops in [0, 1] from RGB uint8 frames of one size, and the grid shape."""
    h, w = frames[0].shape[:2]
    positions, rows, cols = grid_positions(h, w, side, max_crops)
    if not positions:
        raise ValueError(f"frame {w}x{h} is smaller than one {side}x{side} crop")
    crops = np.stack([np.stack([f[y : y + side, x : x + side] for y, x in positions]) for f in frames])
    x = torch.from_numpy(crops).permute(0, 1, 4, 2, 3).float().div_(255)  # (T, K, 3, S, S)
    return x.unsqueeze(0), rows, cols
