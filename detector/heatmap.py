"""The detector's patch probabilities drawn over a picture of the frame they were computed on.

The model scores native-resolution crops laid on a grid (`detector.sampling.grid_positions`); each
crop's patch head gives an ``h x w`` map of probabilities, one cell per ``crop / h`` source pixels.
`PatchMaps` keeps those maps per analysed frame and where the crops lay; `draw_heatmap` paints them,
in the colours of `COLOUR_SCALE`, half-transparent over a thumbnail of the frame. Areas no crop
covered are greyed out, so "not examined" never reads as "low score".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Viridis at five stops: ordered in lightness and readable with the common colour-vision deficiencies.
# The report carries these stops, so its legend is drawn from the same numbers as the pictures.
COLOUR_SCALE: tuple[tuple[float, str], ...] = (
    (0.0, "#440154"), (0.25, "#3b528b"), (0.5, "#21918c"), (0.75, "#5ec962"), (1.0, "#fde725"),
)
OPACITY = 0.55  # of the colour over the picture: enough to read the scale, little enough to see the frame
UNEXAMINED_GREY = 0.6  # how far areas no crop covered are blended towards mid grey


@dataclass(frozen=True)
class PatchMaps:
    """Patch probabilities of the analysed frames: ``frames[index]`` is (K, h, w), one map per crop at
    ``positions[k]`` (top-left y, x) of side ``crop`` in a ``frame_size`` (width, height) frame;
    ``mean`` is their average over frames (the clip's heatmap)."""

    frame_size: tuple[int, int]
    crop: int
    positions: tuple[tuple[int, int], ...]
    frames: dict[int, np.ndarray]
    mean: np.ndarray

    def cell_px(self) -> int:
        return self.crop // max(self.mean.shape[-2], 1)


def colourise(p: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB colours of probabilities in [0, 1] on `COLOUR_SCALE`."""
    at = np.array([s for s, _ in COLOUR_SCALE])
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for _, c in COLOUR_SCALE], np.float32)
    p = np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0)
    out = np.stack([np.interp(p, at, rgb[:, ch]) for ch in range(3)], axis=-1)
    return out.round().astype(np.uint8)


def probability_canvas(maps: PatchMaps, probabilities: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (H, W) float map at ``size`` (width, height) holding each pixel's patch probability, NaN
    where no crop lay. ``probabilities`` is (K, h, w), as in ``maps.frames``."""
    width, height = size
    sx, sy = width / maps.frame_size[0], height / maps.frame_size[1]
    canvas = np.full((height, width), np.nan, np.float32)
    k, h, w = probabilities.shape
    for (y, x), cells in zip(maps.positions[:k], probabilities, strict=False):
        ys = np.linspace(y, y + maps.crop, h + 1)
        xs = np.linspace(x, x + maps.crop, w + 1)
        for i in range(h):
            for j in range(w):
                y0, y1 = round(ys[i] * sy), max(round(ys[i + 1] * sy), round(ys[i] * sy) + 1)
                x0, x1 = round(xs[j] * sx), max(round(xs[j + 1] * sx), round(xs[j] * sx) + 1)
                canvas[y0:y1, x0:x1] = cells[i, j]
    return canvas


def draw_heatmap(picture: np.ndarray, maps: PatchMaps, probabilities: np.ndarray) -> np.ndarray:
    """``picture`` (an RGB thumbnail of the analysed frame, any size, same orientation) with the patch
    probabilities painted over it half-transparently; unexamined areas greyed out."""
    height, width = picture.shape[:2]
    canvas = probability_canvas(maps, probabilities, (width, height))
    base = picture.astype(np.float32)
    covered = ~np.isnan(canvas)[..., None]
    painted = base * (1 - OPACITY) + colourise(canvas).astype(np.float32) * OPACITY
    greyed = base * (1 - UNEXAMINED_GREY) + 128.0 * UNEXAMINED_GREY
    return np.where(covered, painted, greyed).round().astype(np.uint8)
