"""The forensic input: a neighbouring-pixel residual taken at native resolution.

``residual(x) = x - up(down(x))`` with ``down`` the mean of each non-overlapping ``f x f`` block and
``up`` nearest-neighbour repetition, so every output pixel is its deviation from the mean of its own
block. Content (edges, objects, colours) mostly cancels; what is left is the fine pixel-to-pixel
structure that cameras (demosaicing, sensor noise, compression) and generator decoders (upsampling,
transposed convolutions) write differently (the NPR observation: Tan et al., CVPR 2024).

It must run before any resizing: a resize rewrites exactly the relations it measures. Both sides
are cropped to a multiple of ``f`` first, so the block grid is the pixel grid of the source.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def residual(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """``x - up(down(x))`` over the last two dims of ``x`` (..., H, W); H and W are cropped to a multiple
    of ``factor`` (the crop is returned, not padded)."""
    if factor < 2:
        raise ValueError(f"residual factor must be at least 2, got {factor}")
    h, w = x.shape[-2] // factor * factor, x.shape[-1] // factor * factor
    if h == 0 or w == 0:
        raise ValueError(f"input {tuple(x.shape[-2:])} is smaller than one {factor}x{factor} block")
    x = x[..., :h, :w]
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, h, w)
    down = F.avg_pool2d(flat, factor)  # (N, 1, H/f, W/f): block means
    up = down.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)  # (N, 1, H, W)
    return (flat - up).reshape(*lead, h, w)
