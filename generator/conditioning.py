"""Conditioning on given frames through latent frame masks (as Open-Sora 1.2).

A `FrameCondition` holds clean latent frames and a (B, T) mask of which latent frames they fill.
During sampling the masked frames are reset to their clean values before every model call and fed
with t = 0 (the DiT takes per-frame times), so the model denoises the rest to agree with them. The
trainer masks random frames the same way (`random_frame_mask`, `RectifiedFlow.training_loss`), which
is what teaches one network all three tasks:

- image-to-video: latent frame 0 is the image (a causal VAE codes a still as one latent frame);
- extension: the first k latent frames code the last 1 + f*(k-1) frames of the clip to continue;
- looping: the first and last latent frames are given, both from the same picture, so the clip ends
  where it began.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class FrameCondition:
    """Clean latent frames given in advance: values (B, C, T, H, W) where mask (B, T) is True."""

    latents: Tensor
    mask: Tensor

    def apply(self, x: Tensor) -> Tensor:
        """x with the given frames replaced by their clean values."""
        return torch.where(self.mask.to(x.device)[:, None, :, None, None], self.latents.to(x.device, x.dtype), x)

    def times(self, t: Tensor) -> Tensor:
        """Per-clip times (B,) -> per-frame times (B, T), zero on given frames."""
        return torch.where(self.mask.to(t.device), torch.zeros_like(t)[:, None], t[:, None])

    def repeat(self, n: int) -> FrameCondition:
        return FrameCondition(self.latents.repeat(n, 1, 1, 1, 1), self.mask.repeat(n, 1))


def _empty(like: Tensor, frames: int) -> tuple[Tensor, Tensor]:
    B, C, _, H, W = like.shape
    return like.new_zeros(B, C, frames, H, W), torch.zeros(B, frames, dtype=torch.bool, device=like.device)


def image_to_video(first: Tensor, frames: int) -> FrameCondition:
    """Latent of the first image (B, C, 1, h, w) given as frame 0 of a `frames`-latent-frame clip."""
    latents, mask = _empty(first, frames)
    latents[:, :, :1], mask[:, 0] = first, True
    return FrameCondition(latents, mask)


def extension(context: Tensor, frames: int) -> FrameCondition:
    """Latents of the clip's end (B, C, k, h, w) given as the first k of `frames` latent frames."""
    k = context.shape[2]
    if k >= frames:
        raise ValueError(f"extension needs more latent frames ({frames}) than the context ({k})")
    latents, mask = _empty(context, frames)
    latents[:, :, :k], mask[:, :k] = context, True
    return FrameCondition(latents, mask)


def loop(first: Tensor, last: Tensor, frames: int) -> FrameCondition:
    """First latent frame `first` and last latent frame `last` given (B, C, 1, h, w each).

    For a loop, `first` is the picture coded as a still and `last` the same picture held for f
    frames (a latent frame after the first spans f video frames)."""
    if frames < 2:
        raise ValueError("a loop needs at least two latent frames")
    latents, mask = _empty(first, frames)
    latents[:, :, :1], latents[:, :, -1:] = first, last
    mask[:, 0] = mask[:, -1] = True
    return FrameCondition(latents, mask)


def random_frame_mask(batch: int, frames: int, rng: random.Random, *, p_image: float = 0.1,
                      p_extend: float = 0.1, p_loop: float = 0.05) -> Tensor | None:
    """Training masks (B, T): per clip none, first frame, a random prefix, or first and last frames."""
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    for i in range(batch):
        u = rng.random()
        if u < p_image:
            mask[i, 0] = True
        elif u < p_image + p_extend and frames > 1:
            mask[i, : rng.randint(1, frames - 1)] = True
        elif u < p_image + p_extend + p_loop and frames > 1:
            mask[i, 0] = mask[i, -1] = True
    return mask if mask.any() else None
