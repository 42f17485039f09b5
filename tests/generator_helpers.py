"""An untrained but complete generator bundle for tests: 4x4x4 autoencoder, 2-block DiT, hash text encoder."""

from __future__ import annotations

from pathlib import Path

import torch

from generator.autoencoder import AutoencoderConfig, VideoAutoencoder
from generator.checkpoint import save_bundle
from generator.dit import DiTConfig, VideoDiT


def small_dit(seed: int = 0, **overrides) -> VideoDiT:
    """A 2-block DiT, 32 wide, for 16-dim text. adaLN-Zero makes a fresh model the identity on every branch
    with output 0; its zero-initialised layers are perturbed so that outputs depend on every input and the
    tests exercise attention, masks, conditioning and sampling for real."""
    torch.manual_seed(seed)
    config = {"in_channels": 4, "patch_size": (1, 2, 2), "width": 32, "depth": 2, "heads": 2, "text_dim": 16,
              **overrides}
    model = VideoDiT(DiTConfig(**config)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    return model


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
