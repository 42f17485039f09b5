"""Sampling a rectified flow: Euler or Heun (second order), with classifier-free guidance.

The sampler takes the denoiser as a callable `model(x_t, t, text) -> v` and knows nothing of its
architecture. Guidance runs the conditional and unconditional (empty or negative prompt) branches in
one batched call, v = v_u + g (v_c - v_u); at g = 1 that is v_c, so the unconditional half is skipped.

Reproducibility: the initial noise is drawn on the CPU from `torch.Generator().manual_seed(seed)`
whatever the device, and the steps themselves draw no randomness, so a seed gives the same video
bit for bit on the same machine and software (same thread count and kernels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .conditioning import FrameCondition
from .flow import RectifiedFlow, VelocityModel
from .text import TextEmbedding

SAMPLERS = ("euler", "heun")
Progress = Callable[[int, int], None]  # (steps done, total steps)


@dataclass
class SamplerConfig:
    steps: int = 16
    method: str = "euler"
    cfg: float = 5.0

    def __post_init__(self) -> None:
        if self.method not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.method!r}; choose from {SAMPLERS}")
        if self.steps < 1:
            raise ValueError("steps must be at least 1")


def initial_noise(shape: tuple[int, ...], seed: int, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """Seeded Gaussian noise, drawn on the CPU so a seed means the same noise on every device."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device, dtype)


def guided_velocity(model: VelocityModel, x: Tensor, t: Tensor, text: TextEmbedding,
                    uncond: TextEmbedding | None, scale: float, *, skip_at_one: bool = True) -> Tensor:
    """Classifier-free guided velocity; cond and uncond share one batched model call.

    t is (B,) or per-frame (B, T); `uncond` has one row per clip (the empty or negative prompt)."""
    if uncond is None or (skip_at_one and scale == 1.0):
        return model(x, t, text)
    v_cond, v_uncond = model(torch.cat([x, x]), torch.cat([t, t]), TextEmbedding.cat([text, uncond])).chunk(2)
    return v_uncond + scale * (v_cond - v_uncond)


@torch.no_grad()
def sample(model: VelocityModel, noise: Tensor, text: TextEmbedding, *, flow: RectifiedFlow,
           config: SamplerConfig, uncond: TextEmbedding | None = None, condition: FrameCondition | None = None,
           progress: Progress | None = None) -> Tensor:
    """Integrate from noise (B, C, T, H, W) at t = 1 to a latent at t = 0."""
    times = flow.schedule(config.steps, noise.shape[-3:]).to(noise.device)
    B = noise.shape[0]
    x = noise

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        tb = t.expand(B).to(x.dtype)  # (B,)
        if condition is not None:
            x, tb = condition.apply(x), condition.times(tb)  # given frames clean, at t = 0
        return guided_velocity(model, x, tb, text, uncond, config.cfg)

    for i in range(config.steps):
        t, t_next = times[i], times[i + 1]
        v = velocity(x, t)
        if config.method == "heun" and t_next > 0:  # second order: average with the slope at the end
            x_euler = x + (t_next - t) * v
            v = 0.5 * (v + velocity(x_euler, t_next))
        x = x + (t_next - t) * v
        if progress is not None:
            progress(i + 1, config.steps)
    return x if condition is None else condition.apply(x)
