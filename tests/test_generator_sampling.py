"""Rectified flow, the samplers, guidance, seeds, frame conditioning, and overfitting one clip."""

from __future__ import annotations

import functools
import math
import random

import pytest
import torch
from generator_helpers import small_dit

from generator.autoencoder import AutoencoderConfig, VideoAutoencoder
from generator.conditioning import FrameCondition, extension, image_to_video, loop, random_frame_mask
from generator.flow import FlowConfig, RectifiedFlow, shift_time
from generator.sampler import SamplerConfig, guided_velocity, initial_noise, sample
from generator.text import HashingTextEncoder

TEXT_DIM = 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def encoder() -> HashingTextEncoder:
    return HashingTextEncoder(dim=TEXT_DIM)


small_dit = functools.partial(small_dit, patch_size=(1, 1, 1))  # one latent position per token


def test_shift_keeps_the_ends_and_grows_with_size():
    t = torch.linspace(0, 1, 11)
    assert torch.equal(shift_time(t, 1.0), t)
    shifted = shift_time(t, 3.0)
    assert shifted[0] == 0 and shifted[-1] == 1 and (shifted[1:-1] > t[1:-1]).all()
    flow = RectifiedFlow(FlowConfig(base_positions=1280))
    assert flow.shift_for((5, 16, 16)) == 1.0
    assert flow.shift_for((5, 32, 32)) == pytest.approx(2.0)  # 4x the positions: sqrt(4)
    assert flow.shift_for((9, 32, 32)) > flow.shift_for((5, 32, 32))  # longer clips shift too
    schedule = flow.schedule(8, (5, 32, 32))
    assert schedule[0] == 1 and schedule[-1] == 0 and (schedule.diff() < 0).all()


def test_training_times_are_logit_normal_in_the_open_interval():
    t = RectifiedFlow().sample_time(4000, (5, 16, 16), torch.Generator().manual_seed(0))
    assert 0 < t.min() and t.max() < 1
    assert abs(t.median().item() - 0.5) < 0.03  # sigmoid(N(0, 1)) is centred at 1/2


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_samplers_land_on_the_data_point_with_the_exact_velocity(method, encoder):
    """For a single data point x0 the true velocity is (x_t - x0) / t: both integrators must be exact."""
    x0 = torch.randn(1, 4, 2, 3, 3)

    def exact(x, t, text):
        return (x - x0) / t.view(-1, 1, 1, 1, 1)

    out = sample(exact, initial_noise(x0.shape, 0), encoder.encode(["x"]), flow=RectifiedFlow(),
                 config=SamplerConfig(steps=4, method=method, cfg=1.0))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)


def test_cfg_scale_one_equals_the_conditional_pass(encoder):
    model = small_dit()
    x, t = torch.randn(2, 4, 2, 3, 3), torch.tensor([0.4, 0.9])
    text, uncond = encoder.encode(["a red circle", "a blue star"]), encoder.encode(["", ""])
    with torch.no_grad():
        conditional = model(x, t, text)
        batched = guided_velocity(model, x, t, text, uncond, 1.0, skip_at_one=False)  # 4-row call
        shortcut = guided_velocity(model, x, t, text, uncond, 1.0)
        guided = guided_velocity(model, x, t, text, uncond, 4.0)
        unconditional = model(x, t, uncond)
    assert torch.equal(shortcut, conditional)
    torch.testing.assert_close(batched, conditional, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(guided, unconditional + 4.0 * (conditional - unconditional), atol=1e-5, rtol=1e-5)


def test_negative_prompt_replaces_the_empty_prompt(encoder):
    model = small_dit()
    noise, text = initial_noise((1, 4, 2, 3, 3), 3), encoder.encode(["a red circle"])
    config = SamplerConfig(steps=3, cfg=3.0)
    runs = [sample(model, noise, text, flow=RectifiedFlow(), config=config, uncond=encoder.encode([neg]))
            for neg in ("", "", "blurry")]
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])


def test_a_seed_reproduces_the_sample_bit_for_bit(encoder):
    model = small_dit()
    text, uncond = encoder.encode(["a green ring bouncing"]), encoder.encode([""])
    config = SamplerConfig(steps=4, method="heun", cfg=5.0)

    def run(seed: int) -> torch.Tensor:
        return sample(model, initial_noise((1, 4, 3, 4, 4), seed), text, flow=RectifiedFlow(), config=config,
                      uncond=uncond)

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_frame_conditions_are_kept_and_seen_at_time_zero(encoder):
    clean = torch.randn(1, 4, 4, 3, 3)
    seen = []

    def spy(x, t, text):
        seen.append(t.clone())
        return torch.zeros_like(x)

    conditions = {
        "image": image_to_video(clean[:, :, :1], 4),
        "extension": extension(clean[:, :, :2], 4),
        "loop": loop(clean[:, :, :1], clean[:, :, 3:], 4),
    }
    for name, cond in conditions.items():
        seen.clear()
        out = sample(spy, torch.randn(1, 4, 4, 3, 3), encoder.encode(["x"]), flow=RectifiedFlow(),
                     config=SamplerConfig(steps=3, cfg=1.0), condition=cond)
        given = cond.mask[0]
        assert torch.equal(out[:, :, given], clean[:, :, given] if name != "loop" else cond.latents[:, :, given]), name
        assert all(t.shape == (1, 4) and (t[0, given] == 0).all() and (t[0, ~given] > 0).all() for t in seen), name


def test_conditioned_frames_do_not_count_in_the_loss(encoder):
    flow, x0 = RectifiedFlow(), torch.randn(2, 4, 3, 2, 2)
    mask = torch.tensor([[True, False, False], [True, True, False]])

    def model_with(given_value: float):
        def model(x, t, text):
            assert t.shape == (2, 3) and (t[mask] == 0).all()
            out = torch.zeros_like(x)
            out[mask[:, None, :, None, None].expand_as(x)] = given_value  # only given frames differ
            return out
        return model

    losses = [flow.training_loss(model_with(v), x0, encoder.encode(["a", "b"]), frame_mask=mask,
                                 generator=torch.Generator().manual_seed(0)) for v in (0.0, 100.0)]
    assert losses[0] == losses[1]


def test_random_frame_masks_cover_the_three_tasks():
    rng = random.Random(0)
    masks = [random_frame_mask(64, 5, rng, p_image=0.3, p_extend=0.3, p_loop=0.3) for _ in range(4)]
    rows = {tuple(r.tolist()) for m in masks for r in m}
    assert (True, False, False, False, False) in rows  # image-to-video
    assert (True, False, False, False, True) in rows  # loop
    assert any(r[0] and r[1] and not r[-1] for r in rows)  # extension
    assert random_frame_mask(8, 5, rng, p_image=0, p_extend=0, p_loop=0) is None


def test_frame_condition_repeat_matches_batch():
    cond = image_to_video(torch.randn(1, 4, 1, 2, 2), 3).repeat(2)
    assert isinstance(cond, FrameCondition) and cond.latents.shape == (2, 4, 3, 2, 2) and cond.mask.shape == (2, 3)


@pytest.mark.slow
def test_the_whole_model_overfits_one_captioned_clip(encoder):
    """Text encoder + DiT + autoencoder on one clip: the flow loss falls 10x and the sample is the clip."""
    torch.manual_seed(0)
    ae = VideoAutoencoder(AutoencoderConfig(base_channels=8, channel_mult=(1, 2, 2), latent_channels=4,
                                            time_down=(True, True), space_down=(True, True))).eval()
    t = torch.arange(5).float()[:, None, None]
    y, x = torch.arange(12).float()[None, :, None], torch.arange(12).float()[None, None, :]
    disc = torch.exp(-((x - 3 - t) ** 2 + (y - 6) ** 2) / 8.0)
    clip = (disc * 1.6 - 0.8).expand(3, -1, -1, -1)[None]  # (1, 3, 5, 12, 12)
    with torch.no_grad():
        z = ae.encode(clip).mean
        ae.config.scaling_factor = 1.0 / z.std().item()  # unit-variance latents, as training sets it
        z0 = ae.encode_latents(clip)  # (1, 4, 2, 3, 3)
    text = encoder.encode(["a white disc moving right on a black background"])
    model = small_dit(seed=1, width=64).train()
    flow = RectifiedFlow(FlowConfig(base_positions=math.prod(z0.shape[2:])))
    steps, batch = 400, 8
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    gen, losses = torch.Generator().manual_seed(0), []
    for _ in range(steps):
        loss = flow.training_loss(model, z0.expand(batch, -1, -1, -1, -1), text.repeat(batch), generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(loss.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < first / 10, f"loss {first:.3f} -> {last:.3f}"
    model.eval()
    latent = sample(model, initial_noise(z0.shape, 123), text, flow=flow, config=SamplerConfig(steps=16, cfg=1.0))
    assert ((latent - z0).norm() / z0.norm()).item() < 0.25
    with torch.no_grad():
        video, target = ae.decode_latents(latent, frames=5), ae.decode_latents(z0, frames=5)
    assert 10 * math.log10(4.0 / (video - target).pow(2).mean().item()) > 25
