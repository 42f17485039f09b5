"""Carrying a trained DiT over to another autoencoder's latents (generator.transfer)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from generator_helpers import small_dit

from generator.autoencoder import AutoencoderConfig, VideoAutoencoder
from generator.text import HashingTextEncoder
from generator.train import TrainError, load_config, train
from generator.transfer import carry_over, fit_latent_maps

SMALL_AE = {"base_channels": 8, "channel_mult": [1, 2, 2], "time_down": [True, False], "space_down": [True, True]}


def _ae(channels: int, seed: int) -> VideoAutoencoder:
    torch.manual_seed(seed)
    return VideoAutoencoder(AutoencoderConfig(latent_channels=channels, **SMALL_AE)).eval()


def _clips(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 5, 16, 16, generator=g) * 2 - 1


@torch.no_grad()
def test_between_an_autoencoder_and_itself_the_carried_dit_is_the_same_function() -> None:
    text = HashingTextEncoder(dim=16).encode(["a red circle moving right", "a blue square"])
    ae = _ae(4, seed=1)
    A, a, B, b = maps = fit_latent_maps(ae, ae, _clips())
    assert torch.allclose(A, torch.eye(4), atol=1e-4) and torch.allclose(B, torch.eye(4), atol=1e-4)
    assert a.abs().max() < 1e-4 and b.abs().max() < 1e-4
    trained, fresh = small_dit(2, in_channels=4), small_dit(3, in_channels=4)
    carry_over(trained, fresh, maps)
    x, t = torch.randn(2, 4, 2, 4, 4), torch.rand(2)
    assert torch.allclose(fresh(x, t, text), trained(x, t, text), atol=1e-4)


@torch.no_grad()
def test_the_maps_fold_into_the_first_and_last_layers_exactly() -> None:
    """new(x) == B-map(old(A-map(x))) - b for any x: the blocks are shared, only the two layers change."""
    text = HashingTextEncoder(dim=16).encode(["a green ring", "a white star rising"])
    A, a, B, b = maps = fit_latent_maps(_ae(4, seed=1), _ae(8, seed=4), _clips())
    assert A.shape == (8, 4) and B.shape == (4, 8)
    trained, carried = small_dit(2, in_channels=4), small_dit(5, in_channels=8)
    carry_over(trained, carried, maps)
    x, t = torch.randn(2, 8, 2, 4, 4), torch.rand(2)
    mapped_in = torch.einsum("bnthw,no->bothw", x, A) + a[None, :, None, None, None]
    want = torch.einsum("bothw,on->bnthw", trained(mapped_in, t, text), B) - b[None, :, None, None, None]
    assert torch.allclose(carried(x, t, text), want, atol=1e-4)


def test_a_dit_of_another_architecture_is_refused() -> None:
    maps = fit_latent_maps(_ae(4, seed=1), _ae(8, seed=4), _clips())
    deeper = small_dit(in_channels=8, depth=3)
    with pytest.raises(ValueError, match="only the latent channels"):
        carry_over(small_dit(2, in_channels=4), deeper, maps)


def test_a_dit_run_on_a_new_autoencoder_starts_from_a_bundle_trained_on_another(tmp_path: Path) -> None:
    """`init` a bundle whose DiT knows 4 latent channels, `autoencoder` one with 8: the run carries it over."""
    torch.set_num_threads(1)
    old_ae = train(load_config("smoke-ae", {"steps": 2, "sample_every": 100})[0], tmp_path / "ae4", progress=False)
    bundle = train(load_config("smoke-dit", {"autoencoder": str(old_ae), "steps": 2, "sample_every": 100})[0],
                   tmp_path / "gen4", progress=False)
    wide = {**load_config("smoke-ae")[0].model, "latent_channels": 8}
    new_ae = train(load_config("smoke-ae", {"steps": 2, "sample_every": 100, "model": wide})[0], tmp_path / "ae8",
                   progress=False)
    cfg, _ = load_config("smoke-dit", {"autoencoder": str(new_ae), "init": str(bundle), "steps": 2,
                                       "sample_every": 100})
    out = train(cfg, tmp_path / "gen8", progress=False)
    from generator.checkpoint import load_component

    dit = load_component(out / "dit.safetensors", "dit")
    assert dit.config.in_channels == 8
    (bundle / "autoencoder.safetensors").unlink()  # without the autoencoder it was trained with: a clear error
    with pytest.raises(TrainError, match="needs the autoencoder it was trained with"):
        train(cfg, tmp_path / "again", progress=False)
