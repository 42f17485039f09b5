"""The video DiT: presets, patches, Patch n' Pack, 3D RoPE, per-frame times, checkpointing."""

from __future__ import annotations

import pytest
import torch
from generator_helpers import small_dit

from generator.attention import Rope3D, apply_rope
from generator.dit import DiT_models, DiTConfig, dit_config
from generator.packing import bucket_by_tokens, pack_by_tokens, patch_grid, patchify, tokens_of, unpatchify
from generator.text import HashingTextEncoder

TEXT_DIM = 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def encoder() -> HashingTextEncoder:
    return HashingTextEncoder(dim=TEXT_DIM)


@pytest.mark.parametrize("name", list(DiT_models))
def test_every_preset_runs_at_tiny_width(name, encoder):
    heads = dit_config(name).heads
    model = DiT_models[name](width=heads * 8, depth=2, in_channels=4, text_dim=TEXT_DIM)
    x = torch.randn(2, 4, 3, 8, 6)
    text = encoder.encode(["a red circle", "a blue square moving left"])
    with torch.no_grad():
        v = model(x, torch.rand(2), text)
        v_frames = model(x, torch.rand(2, 3), text)
    assert v.shape == v_frames.shape == x.shape
    assert torch.isfinite(v).all() and torch.isfinite(v_frames).all()


def test_presets_at_full_size_on_meta_device():
    sizes = {}
    with torch.device("meta"):  # no memory is allocated: XL is checked at its real size
        for name, build in DiT_models.items():
            model = build()
            sizes[name] = model.num_params()
    xl = dit_config("XL")
    assert (xl.width, xl.depth, xl.heads) == (1152, 28, 16)
    # DiT-XL/2 has 675M parameters; cross-attention adds 4 * 1152^2 per block (~149M).
    assert 780e6 < sizes["XL"] < 880e6
    assert sizes["tiny"] < sizes["S"] < sizes["B"] < sizes["L"] < sizes["XL"]
    assert sizes["tiny"] < 15e6


@pytest.mark.parametrize("size,patch", [((3, 8, 6), (1, 2, 2)), ((5, 7, 9), (2, 2, 2)), ((1, 4, 4), (1, 1, 1))])
def test_patchify_round_trip_pads_and_crops(size, patch):
    x = torch.randn(2, 3, *size)
    tokens = patchify(x, patch)
    assert tokens.shape == (2, tokens_of(size, patch), 3 * patch[0] * patch[1] * patch[2])
    assert torch.equal(unpatchify(tokens, size, 3, patch), x)
    assert patch_grid(size, patch).shape == (tokens.shape[1], 3)


PACK_TOL = {"atol": 1e-5, "rtol": 1e-5}  # fp32: only summation order differs (seen: max 2e-7 on outputs ~1)


@pytest.mark.parametrize("layout", ["full", "factorized"])
@pytest.mark.parametrize("attention", ["split", "mask"])
@pytest.mark.parametrize("patch", [(1, 2, 2), (2, 2, 2)])
def test_packed_batch_equals_each_clip_alone(attention, patch, layout, encoder):
    model = small_dit(patch_size=patch, attention=layout, depth=3)
    sizes = [(3, 8, 6), (2, 6, 10), (1, 4, 4)]  # (T, H, W) latents; odd T exercises patch padding
    xs = [torch.randn(4, *s) for s in sizes]
    ts = [torch.tensor(0.3), torch.tensor([0.0, 0.7]), torch.tensor(0.9)]  # per clip or per frame
    text = encoder.encode(["a red circle moving right", "square", "two white stars and a ring"])
    with torch.no_grad():
        packed = model.forward_packed(xs, ts, text, attention=attention)
        alone = [model(x[None], t.reshape(1, -1) if t.ndim else t.reshape(1), text[i])[0]
                 for i, (x, t) in enumerate(zip(xs, ts, strict=True))]
    for p, a in zip(packed, alone, strict=True):
        assert p.shape == a.shape
        torch.testing.assert_close(p, a, **PACK_TOL)


@pytest.mark.parametrize("layout", ["full", "factorized"])
def test_padded_batch_with_sizes_equals_each_clip_alone(layout, encoder):
    model = small_dit(attention=layout, depth=3)
    sizes = [(3, 8, 6), (2, 6, 10), (1, 4, 4)]
    xs = [torch.randn(4, *s) for s in sizes]
    padded = torch.zeros(3, 4, 3, 8, 10)
    for i, (x, (T, H, W)) in enumerate(zip(xs, sizes, strict=True)):
        padded[i, :, :T, :H, :W] = x
    t = torch.tensor([0.3, 0.6, 0.9])
    text = encoder.encode(["a red circle moving right", "square", "two white stars and a ring"])
    with torch.no_grad():
        out = model(padded, t, text, sizes=sizes)
        for i, (x, (T, H, W)) in enumerate(zip(xs, sizes, strict=True)):
            torch.testing.assert_close(out[i, :, :T, :H, :W], model(x[None], t[i : i + 1], text[i])[0], **PACK_TOL)


def test_per_frame_times_equal_to_one_time_match_the_scalar_path(encoder):
    model = small_dit()
    x = torch.randn(2, 4, 3, 4, 4)
    text = encoder.encode(["a", "b c"])
    t = torch.tensor([0.2, 0.8])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, text), model(x, t[:, None].expand(2, 3), text))


def test_rope_scores_depend_only_on_relative_position():
    rope = Rope3D(head_dim=64)
    assert sum(rope.bands) == 64 and all(b % 2 == 0 for b in rope.bands)
    assert sum(Rope3D(head_dim=72).bands) == 72  # XL's head size
    q, k = torch.randn(1, 5, 1, 64), torch.randn(1, 5, 1, 64)  # (B, L, heads, Dh)
    pos = torch.tensor([[0, 0, 0], [1, 2, 3], [4, 0, 7], [2, 9, 1], [6, 6, 6]])
    far = pos + torch.tensor([100, 517, 1023])  # far beyond any training size
    scores = [apply_rope(q, *rope(p))[0, :, 0] @ apply_rope(k, *rope(p))[0, :, 0].T for p in (pos, far)]
    torch.testing.assert_close(scores[0], scores[1], atol=2e-4, rtol=1e-4)


def test_rope_gives_valid_positions_for_unseen_sizes(encoder):
    """No position table: any grid works, and translating a clip's positions leaves the output as is."""
    model = small_dit()
    text = encoder.encode(["a yellow triangle"])
    with torch.no_grad():
        big = model(torch.randn(1, 4, 9, 22, 34), torch.tensor([0.5]), text)  # 9 x 11 x 17 patches
        x = torch.randn(1, 4, 3, 6, 8)
        base = model(x, torch.tensor([0.5]), text)
        shifted = model(x, torch.tensor([0.5]), text, position_offset=torch.tensor([40, 300, 77]))
    assert torch.isfinite(big).all()
    torch.testing.assert_close(base, shifted, atol=1e-4, rtol=1e-3)


def test_text_changes_the_output(encoder):
    model = small_dit()
    x, t = torch.randn(1, 4, 2, 4, 4), torch.tensor([0.5])
    with torch.no_grad():
        a = model(x, t, encoder.encode(["a red circle"]))
        b = model(x, t, encoder.encode(["a blue square"]))
    assert (a - b).abs().max() > 1e-4


def test_gradient_checkpointing_gives_the_same_gradients(encoder):
    x, t, text = torch.randn(2, 4, 2, 4, 4), torch.tensor([0.3, 0.6]), encoder.encode(["a", "b"])
    grads = []
    for ckpt in (False, True):
        model = small_dit().train()
        model.gradient_checkpointing = ckpt
        model(x, t, text).pow(2).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_pack_by_tokens_respects_the_budget():
    sizes = [(5, 8, 8), (5, 6, 10), (3, 10, 6), (1, 8, 8), (5, 16, 16)]
    patch = (1, 2, 2)
    packs = pack_by_tokens(sizes, patch, max_tokens=160)
    assert sorted(i for p in packs for i in p) == list(range(len(sizes)))
    for p in packs:
        assert len(p) == 1 or sum(tokens_of(sizes[i], patch) for i in p) <= 160


def test_bucket_by_tokens_groups_one_size_per_batch():
    sizes = [(5, 8, 8)] * 5 + [(3, 4, 4)] * 3
    batches = bucket_by_tokens(sizes, (1, 2, 2), batch_tokens=160)  # 80 and 12 tokens per clip
    assert sorted(i for b in batches for i in b) == list(range(8))
    for b in batches:
        assert len({sizes[i] for i in b}) == 1
    assert max(len(b) for b in batches if sizes[b[0]] == (5, 8, 8)) == 2


def test_factorized_attention_alternates_spatial_and_temporal(encoder):
    model = small_dit(attention="factorized", depth=3)
    assert [b.attn.kind for b in model.blocks] == ["spatial", "temporal", "spatial"]
    x, t, text = torch.randn(1, 4, 3, 4, 4), torch.tensor([0.5]), encoder.encode(["a"])
    with torch.no_grad():
        base = model(x, t, text)
        changed = x.clone()
        changed[:, :, 2, 2:, 2:] += 1.0  # one patch of the last frame
        diff = (model(changed, t, text) - base).abs().amax(dim=(0, 1))  # (T, H, W)
    # spatial then temporal then spatial: the change reaches every frame and every patch
    assert (diff.reshape(3, 2, 2, 2, 2).amax(dim=(2, 4)) > 0).all()


def test_config_round_trips_as_a_plain_dict():
    config = dit_config("S", in_channels=16, patch_size=(1, 2, 2))
    assert DiTConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown DiT config keys"):
        DiTConfig.from_dict({**config.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="unknown DiT preset"):
        dit_config("XXL")
