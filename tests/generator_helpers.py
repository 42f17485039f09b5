"""An untrained but complete generator bundle for tests: 4x4x4 autoencoder, 2-block DiT, hash text encoder."""

from __future__ import annotations

from pathlib import Path

import torch

from generator.autoencoder import AutoencoderConfig, VideoAutoencoder
from generator.checkpoint import save_bundle
from generator.dit import DiTConfig, VideoDiT


def tiny_parts() -> tuple[VideoAutoencoder, VideoDiT]:
    torch.manual_seed(0)
    ae = VideoAutoencoder(AutoencoderConfig(base_channels=8, channel_mult=(1, 2, 2), latent_channels=4,
                                            time_down=(True, True), space_down=(True, True)))
    dit = VideoDiT(DiTConfig(in_channels=4, width=32, depth=2, heads=2, text_dim=384))
    return ae, dit


def untrained_bundle(folder: Path, *, width: int, height: int, seconds: float) -> Path:
    """`folder`/generator-tiny, generating width x height clips of `seconds` at 8 fps in 2 steps."""
    ae, dit = tiny_parts()
    return save_bundle(folder / "generator-tiny", autoencoder=ae, dit=dit, text_encoder="hash",
                       flow={"base_positions": 64}, preset="tiny",
                       defaults={"width": width, "height": height, "fps": 8, "seconds": seconds, "steps": 2,
                                 "cfg": 2.0})
