"""The causal video VAE: shapes, causality, chunked coding, and learning to reconstruct a clip."""

from __future__ import annotations

import math

import pytest
import torch

from generator.autoencoder import AE_models, AutoencoderConfig, VideoAutoencoder, autoencoder_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_ae(**overrides) -> VideoAutoencoder:
    torch.manual_seed(0)
    config = {"base_channels": 8, "channel_mult": (1, 2, 2), "latent_channels": 4,
              "time_down": (True, True), "space_down": (True, True), **overrides}
    return VideoAutoencoder(AutoencoderConfig(**config)).eval()


def moving_blob(frames: int = 5, height: int = 12, width: int = 12) -> torch.Tensor:
    """A soft coloured disc crossing a colour gradient one pixel per frame: (1, 3, F, H, W) in [-1, 1]."""
    t = torch.arange(frames).float()[:, None, None]
    y, x = torch.arange(height).float()[None, :, None], torch.arange(width).float()[None, None, :]
    zero = torch.zeros(frames, height, width)
    background = torch.stack([x / width - 0.5 + zero, y / height - 0.5 + zero, zero - 0.5])
    blob = torch.exp(-((x - 3 - t) ** 2 + (y - height / 2) ** 2) / 8.0)
    colour = torch.tensor([1.0, 0.8, -0.6])[:, None, None, None]
    return (background * (1 - blob) + colour * blob)[None]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(4.0 / (a - b).pow(2).mean().item())  # peak-to-peak 2 for [-1, 1]


@pytest.mark.parametrize("name", list(AE_models))
def test_presets_compress_as_named(name):
    ae = AE_models[name](base_channels=8)
    ft, fh, fw = ae.compression
    assert f"{ft}x{fh}x{fw}" == name
    x = torch.randn(1, 3, 1 + 2 * ft, 2 * fh, 3 * fw)
    with torch.no_grad():
        posterior = ae.encode(x)
        assert posterior.mean.shape == (1, ae.config.latent_channels, 3, 2, 3)
        assert ae.decode(posterior.mean).shape == x.shape
    assert torch.isfinite(posterior.kl())


def test_a_still_is_a_one_frame_video_and_coding_is_causal():
    ae = small_ae()
    x = torch.randn(1, 3, 9, 16, 16)
    with torch.no_grad():
        z = ae.encode(x).mean  # (1, 4, 3, 4, 4)
        still = ae.encode(x[:, :, :1]).mean
        changed = x.clone()
        changed[:, :, 5:] = torch.randn(1, 3, 4, 16, 16)  # only frames coded by latent frame 2
        z_changed = ae.encode(changed).mean
        decoded, decoded_changed = ae.decode(z), ae.decode(z_changed)
    assert still.shape[2] == 1
    torch.testing.assert_close(still, z[:, :, :1])  # frame 0 is encoded alone
    torch.testing.assert_close(z_changed[:, :, :2], z[:, :, :2])  # the future does not reach the past
    assert not torch.allclose(z_changed[:, :, 2], z[:, :, 2])
    torch.testing.assert_close(decoded_changed[:, :, :5], decoded[:, :, :5])  # so is decoding


@pytest.mark.parametrize("chunk", [1, 2])
def test_chunked_coding_equals_whole_clip(chunk):
    ae = small_ae()
    x = torch.randn(1, 3, 13, 8, 8)  # 4 latent frames
    with torch.no_grad():
        z = ae.encode(x).mean
        z_chunked = ae.encode(x, chunk_latents=chunk).mean
        video, video_chunked = ae.decode(z), ae.decode(z, chunk_latents=chunk)
    # Same arithmetic on the same frames; only convolution blocking may reorder sums (seen: 2e-6).
    torch.testing.assert_close(z_chunked, z, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(video_chunked, video, atol=1e-5, rtol=1e-4)
    assert video.shape == x.shape


def test_lengths_that_do_not_fit_are_padded_then_cropped():
    ae = small_ae()
    x = torch.randn(1, 3, 7, 8, 8)
    with torch.no_grad():
        z = ae.encode(x).mean
        assert z.shape[2] == ae.latent_frames(7) == 3
        assert ae.decode(z, frames=7).shape == x.shape
    with pytest.raises(ValueError, match="multiples of 4"):
        ae.encode(torch.randn(1, 3, 5, 10, 8))


def test_config_round_trips_as_a_plain_dict():
    config = AutoencoderConfig(latent_channels=16, scaling_factor=0.5)
    assert AutoencoderConfig.from_dict(config.to_dict()) == config
    assert config.compression == (4, 8, 8)


@pytest.mark.slow
def test_reconstructs_a_short_clip_after_a_few_hundred_steps():
    """4x4x4 compression of a moving disc: 2x3x3 latents of 4 channels for 5x12x12x3 pixels."""
    ae = small_ae().train()
    x = moving_blob()
    steps = 200
    opt = torch.optim.Adam(ae.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss, _ = autoencoder_loss(ae, x, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    ae.eval()
    with torch.no_grad():
        recon = ae.decode(ae.encode(x).mean, frames=x.shape[2])
    static = x.mean(dim=2, keepdim=True).expand_as(x)  # the best reconstruction without motion
    assert psnr(static, x) < 28
    assert psnr(recon, x) > 33, f"reconstruction PSNR {psnr(recon, x):.1f} dB"
