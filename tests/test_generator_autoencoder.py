"""The causal video VAE: shapes, causality, chunked and tiled coding, and learning to reconstruct a clip."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from generator.autoencoder import (
    AE_models,
    AutoencoderConfig,
    VideoAutoencoder,
    _tile_spans,
    _tile_weights,
    autoencoder_loss,
    channels_to_space_time,
    space_time_to_channels,
)

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


@pytest.mark.parametrize(("name", "shortcuts"), [(n, s) for n in AE_models for s in (False, True)])
def test_presets_compress_as_named(name, shortcuts):
    ae = AE_models[name](base_channels=8, shortcuts=shortcuts)
    ft, fh, fw = ae.compression
    assert f"{ft}x{fh}x{fw}" == name
    x = torch.randn(1, 3, 1 + 2 * ft, 2 * fh, 3 * fw)
    with torch.no_grad():
        posterior = ae.encode(x)
        assert posterior.mean.shape == (1, ae.config.latent_channels, 3, 2, 3)
        assert ae.decode(posterior.mean).shape == x.shape
    assert torch.isfinite(posterior.kl())


@pytest.mark.parametrize("shortcuts", [False, True])
def test_a_still_is_a_one_frame_video_and_coding_is_causal(shortcuts):
    ae = small_ae(shortcuts=shortcuts)
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


@pytest.mark.parametrize(("chunk", "shortcuts", "time_down"), [
    (1, False, (True, True)), (2, False, (True, True)), (1, True, (True, True)), (2, True, (True, True)),
    (1, True, (False, True)), (2, True, (True, False)),  # a level that keeps time, as in 4x8x8
])
def test_chunked_coding_equals_whole_clip(chunk, shortcuts, time_down):
    ae = small_ae(shortcuts=shortcuts, time_down=time_down)
    x = torch.randn(1, 3, 1 + 3 * ae.compression[0], 8, 8)  # 4 latent frames
    with torch.no_grad():
        z = ae.encode(x).mean
        z_chunked = ae.encode(x, chunk_latents=chunk).mean
        video, video_chunked = ae.decode(z), ae.decode(z, chunk_latents=chunk)
    # Same arithmetic on the same frames; only convolution blocking may reorder sums (seen: 2e-6).
    torch.testing.assert_close(z_chunked, z, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(video_chunked, video, atol=1e-5, rtol=1e-4)
    assert video.shape == x.shape


def test_extra_decoder_blocks_code_in_chunks_and_start_as_the_identity_when_zeroed():
    ae = small_ae(shortcuts=True)
    grown = VideoAutoencoder(AutoencoderConfig.from_dict({**ae.config.to_dict(), "decoder_extra_blocks": 2})).eval()
    missing, unexpected = grown.load_state_dict(ae.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("decoder.extra.") for k in missing)
    z = torch.randn(1, ae.config.latent_channels, 4, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(grown.decode(z, chunk_latents=1), grown.decode(z), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(grown.decode(z), ae.decode(z))  # random extra blocks change the output
        grown.decoder.identity_extra()
        torch.testing.assert_close(grown.decode(z), ae.decode(z))


def test_lengths_that_do_not_fit_are_padded_then_cropped():
    ae = small_ae()
    x = torch.randn(1, 3, 7, 8, 8)
    with torch.no_grad():
        z = ae.encode(x).mean
        assert z.shape[2] == ae.latent_frames(7) == 3
        assert ae.decode(z, frames=7).shape == x.shape
    with pytest.raises(ValueError, match="multiples of 4"):
        ae.encode(torch.randn(1, 3, 5, 10, 8))


@pytest.mark.parametrize(("n", "tile", "overlap"), [(10, 16, 4), (20, 8, 3), (41, 16, 4), (33, 16, 15), (17, 8, 0)])
def test_tiles_cover_the_frame_and_their_weights_sum_to_one(n, tile, overlap):
    spans = _tile_spans(n, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(b - a == min(n, tile) for a, b in spans)  # no slivers
    assert all(b0 - a1 >= overlap for (_, b0), (a1, _) in itertools.pairwise(spans))
    total = torch.zeros(4 * n)
    for (a, b), w in zip(spans, _tile_weights(spans, 4), strict=True):
        assert (w > 0).all()
        total[4 * a : 4 * b] += w
    torch.testing.assert_close(total, torch.ones(4 * n))


def test_tiles_are_placed_blended_and_cropped_exactly():
    """Through a map with no spatial reach, what tiling adds is only placement, blending and cropping:
    any slip would mix the wrong pixels. (The decoder's reach makes real tiling approximate.)"""
    ae = small_ae()
    pointwise = nn.Conv3d(4, 3, 1)

    def run(z):  # (B, 4, T, h, w) -> (B, 3, T, 4h, 4w), shaped like the decoder
        return F.interpolate(pointwise(z), scale_factor=(1, 4, 4), mode="nearest")

    z = torch.randn(1, 4, 2, 19, 30)
    with torch.no_grad():
        whole, tiled = run(z), ae._tiled(run, z, 10, 6, 1, 4)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


def test_tiled_coding_is_close_to_whole_frame_coding():
    """Close, not equal: tile borders see zero padding and FrameNorm takes each tile's own statistics,
    which random weights make the most of. Seen: decode max 0.17, mean 0.012 on outputs of std 0.27;
    encode max 0.30, mean 0.025 on means of std 0.40."""
    ae = small_ae()
    z = torch.randn(1, 4, 2, 24, 24, generator=torch.Generator().manual_seed(1))  # 2 x 2 tiles of 20
    with torch.no_grad():
        whole, tiled = ae.decode(z), ae.decode(z, tile=20, tile_overlap=12)
        x = whole.clamp(-1, 1)
        mean, mean_tiled = ae.encode(x).mean, ae.encode(x, tile=20, tile_overlap=12).mean
    assert tiled.shape == whole.shape and mean_tiled.shape == mean.shape
    error = (tiled - whole).abs()
    assert error.max() < 0.25 and error.mean() < 0.02, (error.max().item(), error.mean().item())
    error = (mean_tiled - mean).abs()
    assert error.max() < 0.4 and error.mean() < 0.04, (error.max().item(), error.mean().item())


def test_tiles_combine_with_time_chunks_at_sizes_off_the_tile_grid():
    ae = small_ae()
    z = torch.randn(1, 4, 3, 13, 22)  # 13 and 22 cells: no multiple of the 8-cell tile
    with torch.no_grad():
        tiled = ae.decode(z, tile=8, tile_overlap=3)
        tiled_chunked = ae.decode(z, tile=8, tile_overlap=3, chunk_latents=1, frames=8)
        x = tiled.clamp(-1, 1)
        encoded = ae.encode(x, tile=8, tile_overlap=3).mean
        encoded_chunked = ae.encode(x, tile=8, tile_overlap=3, chunk_latents=1).mean
    assert tiled.shape == (1, 3, 9, 52, 88) and tiled_chunked.shape == (1, 3, 8, 52, 88)
    assert encoded.shape == encoded_chunked.shape == z.shape
    # Chunking stays exact inside each tile (seen: 2e-6).
    torch.testing.assert_close(tiled_chunked, tiled[:, :, :8], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(encoded_chunked, encoded, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="overlap < tile"):
        ae.decode(z, tile=8, tile_overlap=8)


def test_tiling_bounds_the_largest_activation():
    ae = small_ae()
    largest = [0]

    def record(module, inputs, output):
        largest[0] = max(largest[0], output.numel())

    hooks = [m.register_forward_hook(record) for m in ae.decoder.modules() if m is not ae.decoder]
    z = torch.randn(1, 4, 2, 40, 40)  # 5 frames of 160 x 160 pixels, 3 x 3 tiles of 16 cells
    sizes = {}
    with torch.no_grad():
        for tile in (None, 16):
            largest[0] = 0
            ae.decode(z, tile=tile, tile_overlap=4, chunk_latents=1)
            sizes[tile] = largest[0]
    for hook in hooks:
        hook.remove()
    assert sizes[None] == 8 * 5 * 160 * 160  # base channels x first chunk's frames x whole frame
    assert sizes[16] == 8 * 5 * 64 * 64  # ... x one tile


def test_space_time_folding_is_causal_and_lossless():
    x = torch.randn(2, 3, 9, 8, 12)
    folded = space_time_to_channels(x, 2, 2, first=True)  # frame 0 alone, then (1, 2), (3, 4), ...
    assert folded.shape == (2, 3 * 8, 5, 4, 6)
    torch.testing.assert_close(channels_to_space_time(folded, 2, 2, first=True), x)
    later = x[:, :, 1:]  # a later chunk: whole pairs, no repeated first frame
    torch.testing.assert_close(space_time_to_channels(later, 2, 2, first=False), folded[:, :, 1:])
    changed = x.clone()
    changed[:, :, 3:] += 1.0  # frames 3.. reach groups 2.. only
    torch.testing.assert_close(space_time_to_channels(changed, 2, 2, first=True)[:, :, :2], folded[:, :, :2])


@pytest.mark.parametrize(("latent", "mult"), [(12, (1, 2, 4)), (3, (1, 3, 4))])
def test_shortcuts_fit_any_channel_widths(latent, mult):
    ae = small_ae(shortcuts=True, latent_channels=latent, channel_mult=mult)
    with torch.no_grad():
        z = ae.encode(torch.randn(1, 3, 5, 8, 8)).mean
        assert z.shape == (1, latent, 2, 2, 2) and ae.decode(z).shape == (1, 3, 5, 8, 8)


def test_shortcuts_add_no_parameters_and_old_configs_have_none():
    plain, short = small_ae(), small_ae(shortcuts=True)
    assert [k for k, _ in plain.named_parameters()] == [k for k, _ in short.named_parameters()]
    config = AutoencoderConfig().to_dict()
    del config["shortcuts"]  # a checkpoint written before the field existed
    assert AutoencoderConfig.from_dict(config).shortcuts is False


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
