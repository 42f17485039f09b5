"""Rectified flow: the training objective and the time schedule, independent of any network.

Convention (as SD3): x_t = (1 - t) x_0 + t * noise, t = 0 is data and t = 1 pure noise; the model
predicts the velocity v = noise - x_0, so sampling integrates dx/dt = v from t = 1 down to 0.

Training times are logit-normal (SD3: most weight on the middle, where the velocity is hardest to
predict), then shifted towards noise for larger latents: with more tokens the same noise level
destroys less of the signal (neighbouring tokens average it away), so a clip of 4x the positions
needs more time at high noise to settle its coarse layout. The shift is
t' = s t / (1 + (s - 1) t) with s = sqrt(positions / base_positions), clamped to [min_shift, max_shift]
(Open-Sora 1.2 / SD3's resolution-dependent shift, extended to length through the position count).

Frame conditioning (`conditioning.py`): given latent frames are held clean, get t = 0, and are left
out of the loss, so the same network learns text-to-video, image-to-video and extension.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from .text import TextEmbedding

VelocityModel = Callable[[Tensor, Tensor, TextEmbedding], Tensor]  # (x_t, t, text) -> v
PackedVelocityModel = Callable[[list[Tensor], list[Tensor], TextEmbedding], list[Tensor]]


@dataclass
class FlowConfig:
    """Time distribution and shift; stored with the model because sampling must use the same shift."""

    logit_mean: float = 0.0
    logit_std: float = 1.0
    base_positions: int = 1280  # latent T*H*W at which the shift is 1 (8x5x16x16: 128x128x17 at 4x8x8)
    min_shift: float = 1.0
    max_shift: float = 6.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FlowConfig:
        return cls(**d)


def shift_time(t: Tensor, shift: float) -> Tensor:
    """Warp t in [0, 1] towards 1 (noise) for shift > 1; keeps 0 and 1 fixed."""
    return shift * t / (1.0 + (shift - 1.0) * t)


class RectifiedFlow:
    """The flow-matching objective and schedule."""

    def __init__(self, config: FlowConfig | None = None) -> None:
        self.config = config or FlowConfig()

    def shift_for(self, latent_size: Sequence[int]) -> float:
        """Shift for a latent of (T, H, W) positions."""
        c = self.config
        s = math.sqrt(math.prod(latent_size) / c.base_positions)
        return min(max(s, c.min_shift), c.max_shift)

    def sample_time(self, n: int, latent_size: Sequence[int], generator: torch.Generator | None = None) -> Tensor:
        """n training times: logit-normal, then shifted for this latent size. (n,) in (0, 1)."""
        u = torch.randn(n, generator=generator) * self.config.logit_std + self.config.logit_mean
        return shift_time(torch.sigmoid(u), self.shift_for(latent_size))

    def schedule(self, steps: int, latent_size: Sequence[int]) -> Tensor:
        """Sampling times from 1 to 0 (steps + 1 values), uniform before the shift."""
        if steps < 1:
            raise ValueError("need at least one sampling step")
        return shift_time(torch.linspace(1.0, 0.0, steps + 1), self.shift_for(latent_size))

    @staticmethod
    def interpolate(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """x_t for per-sample t (B,) or per-frame t (B, T)."""
        t = _expand_time(t, x0)
        return (1.0 - t) * x0 + t * noise

    def training_loss(self, model: VelocityModel, x0: Tensor, text: TextEmbedding, *,
                      frame_mask: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Mean squared velocity error on a batch of same-size latents x0 (B, C, T, H, W).

        `frame_mask` (B, T) bool marks latent frames given as conditions: they stay clean, are fed
        with t = 0, and do not count in the loss."""
        B, C, T, H, W = x0.shape
        t = self.sample_time(B, (T, H, W), generator).to(x0.device, x0.dtype)  # (B,)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        xt = self.interpolate(x0, noise, t)
        target = noise - x0
        if frame_mask is None:
            return (model(xt, t, text) - target).pow(2).mean()
        m = frame_mask.to(x0.device)[:, None, :, None, None]  # (B, 1, T, 1, 1)
        xt = torch.where(m, x0, xt)
        t_frames = torch.where(frame_mask.to(x0.device), torch.zeros_like(t)[:, None], t[:, None])  # (B, T)
        weight = (~m).to(x0.dtype).expand(B, 1, T, H, W)
        err = (model(xt, t_frames, text) - target).pow(2).mean(dim=1, keepdim=True)  # (B, 1, T, H, W)
        return (err * weight).sum() / weight.sum().clamp(min=1.0)

    def packed_training_loss(self, model: PackedVelocityModel, x0s: Sequence[Tensor], text: TextEmbedding, *,
                             generator: torch.Generator | None = None) -> Tensor:
        """Patch n' Pack training: clips x0s[i] (C, T_i, H_i, W_i) of any sizes in one sequence; each
        clip's loss is its mean squared error, averaged over positions of all clips."""
        ts, xts, targets = [], [], []
        for x0 in x0s:
            t = self.sample_time(1, x0.shape[-3:], generator).to(x0.device, x0.dtype)[0]
            noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
            ts.append(t)
            xts.append((1.0 - t) * x0 + t * noise)
            targets.append(noise - x0)
        preds = model(xts, ts, text)
        total = sum((p - y).pow(2).sum() for p, y in zip(preds, targets, strict=True))
        return total / sum(y.numel() for y in targets)


def _expand_time(t: Tensor, x: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1, 1); (B, T) -> (B, 1, T, 1, 1), to broadcast against (B, C, T, H, W)."""
    return t.view(-1, 1, 1, 1, 1) if t.ndim == 1 else t[:, None, :, None, None]
