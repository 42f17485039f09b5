"""Checkpoints (safetensors + JSON config, versioned, validated) and `generate_to_file` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from generator_helpers import tiny_parts, untrained_bundle
from safetensors.torch import save_file

from generator.checkpoint import (
    VERSION,
    load_component,
    read_bundle,
    read_component_header,
    save_component,
)
from generator.cli import generate_to_file, resolve_checkpoint
from generator.dit import DiTConfig, VideoDiT
from generator.errors import CheckpointError, CheckpointMismatchError, GeneratorError, NoCheckpointError
from generator.generate import VideoGenerator
from media import VideoWriter, probe, read_frames, write_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """An untrained but complete generator bundle with the dependency-free text encoder."""
    return untrained_bundle(tmp_path_factory.mktemp("weights"), width=32, height=32, seconds=1.0)


def test_component_round_trip(tmp_path):
    ae, dit = tiny_parts()
    for model, name in ((ae, "autoencoder"), (dit, "dit")):
        path = save_component(tmp_path / f"{name}.safetensors", model)
        kind, config, shapes = read_component_header(path)
        assert kind == name and config == model.config.to_dict()
        loaded = load_component(path, name)
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
    half = load_component(save_component(tmp_path / "half.safetensors", dit, dtype=torch.bfloat16))
    assert half.x_embed.weight.dtype == torch.float32  # stored in bf16, loaded as fp32
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporary files


def test_a_wrong_shape_is_named(tmp_path):
    _, dit = tiny_parts()
    path = save_component(tmp_path / "dit.safetensors", dit)
    header_config = read_component_header(path)[1]
    state = {k: v.contiguous() for k, v in dit.state_dict().items()}
    state["blocks.1.mlp.fc1.weight"] = torch.zeros(7, 32)
    metadata = {"format": "veriframe-generator", "version": str(VERSION), "kind": "dit",
                "config": json.dumps(header_config)}
    save_file(state, str(tmp_path / "bad.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointMismatchError, match=r"'blocks\.1\.mlp\.fc1\.weight' has shape \[7, 32\]") as err:
        load_component(tmp_path / "bad.safetensors")
    assert err.value.tensor == "blocks.1.mlp.fc1.weight"

    del state["blocks.1.mlp.fc1.weight"]
    save_file(state, str(tmp_path / "missing.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointMismatchError, match="'blocks.1.mlp.fc1.weight' .* is missing"):
        load_component(tmp_path / "missing.safetensors")

    bigger = {**header_config, "depth": 3}  # the config says 3 blocks, the file has 2
    save_file({k: v.contiguous() for k, v in dit.state_dict().items()}, str(tmp_path / "depth.safetensors"),
              metadata={**metadata, "config": json.dumps(bigger)})
    with pytest.raises(CheckpointMismatchError, match=r"'blocks\.2\..*' .* is missing"):
        load_component(tmp_path / "depth.safetensors")


def test_versions_formats_and_kinds_are_checked(tmp_path):
    ae, _ = tiny_parts()
    state = {k: v.contiguous() for k, v in ae.state_dict().items()}
    config = json.dumps(ae.config.to_dict())
    save_file(state, str(tmp_path / "new.safetensors"),
              metadata={"format": "veriframe-generator", "version": str(VERSION + 1), "kind": "autoencoder",
                        "config": config})
    with pytest.raises(CheckpointError, match="format version 2"):
        load_component(tmp_path / "new.safetensors")
    save_file(state, str(tmp_path / "other.safetensors"), metadata={"format": "something-else"})
    with pytest.raises(CheckpointError, match="not a veriframe generator checkpoint"):
        load_component(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_component(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="holds a autoencoder, not a dit"):
        load_component(save_component(tmp_path / "ae.safetensors", ae), "dit")


def test_no_checkpoint_is_a_clear_typed_error(tmp_path):
    with pytest.raises(NoCheckpointError, match="pass --checkpoint DIR with a trained bundle"):
        resolve_checkpoint(None, None, weights_dir=tmp_path)
    with pytest.raises(NoCheckpointError, match="no generator bundle"):
        generate_to_file("a red circle", tmp_path / "out.mp4", checkpoint=tmp_path / "nothing")
    with pytest.raises(GeneratorError, match="unknown generator config"):
        resolve_checkpoint("huge", None, weights_dir=tmp_path)
    assert not (tmp_path / "out.mp4").exists()


def test_bundle_preset_must_match_the_requested_config(bundle):
    assert read_bundle(bundle)["preset"] == "tiny"
    assert resolve_checkpoint("tiny", bundle) == bundle
    with pytest.raises(CheckpointError, match="holds a 'tiny' generator, not 'XL'"):
        resolve_checkpoint("XL", bundle)


def test_generate_to_file_writes_a_clip(bundle, tmp_path):
    calls = []
    out = generate_to_file("a red circle moving right", tmp_path / "clip.mp4", width=40, height=24, seconds=1.0,
                           fps=8, steps=3, cfg=3.0, seed=1, negative="blurry", image=None, extend=None,
                           config="tiny", checkpoint=bundle, progress=lambda d, n: calls.append((d, n)))
    info = probe(out)
    assert (info.width, info.height, info.frame_count) == (40, 24, 8)
    assert calls[-1] == (3, 3)


def test_same_seed_same_frames(bundle):
    gen = VideoGenerator.from_pretrained(bundle)
    a, b, c = (gen.generate("a blue star", frames=5, seed=s) for s in (4, 4, 5))
    assert a.shape == (5, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_image_to_video_extension_and_loop(bundle, tmp_path):
    still = np.zeros((48, 64, 3), np.uint8)
    still[:, :32] = (200, 30, 30)
    write_image(tmp_path / "first.png", still)
    out = generate_to_file("a red square", tmp_path / "i2v.mp4", seconds=0.5, fps=8, seed=0,
                           image=tmp_path / "first.png", checkpoint=bundle)
    assert probe(out).frame_count == 4

    with VideoWriter(tmp_path / "source.mp4", width=32, height=32, fps=8) as writer:
        for i in range(6):
            writer.write_rgb(np.full((32, 32, 3), 40 * i, np.uint8))
    out = generate_to_file("continue", tmp_path / "longer.mp4", seconds=0.5, extend=tmp_path / "source.mp4",
                           checkpoint=bundle)
    frames = read_frames(out)
    assert len(frames) == 6 + 4 and frames[0].array.shape == (32, 32, 3)

    out = generate_to_file("a loop", tmp_path / "loop.mp4", seconds=1.0, fps=8, loop=True, checkpoint=bundle)
    assert probe(out).frame_count == 8


def test_large_frames_are_coded_in_tiles_to_the_exact_size(bundle, monkeypatch):
    monkeypatch.setattr("generator.generate.SPATIAL_TILE", 32)  # frames over 32 x 32 pixels: 8-cell tiles
    gen = VideoGenerator.from_pretrained(bundle)
    tiles = []

    def spy(code):
        def coded(x, **kwargs):
            tiles.append(kwargs.get("tile"))
            return code(x, **kwargs)
        return coded

    for name in ("encode_latents", "decode_latents"):
        monkeypatch.setattr(gen.autoencoder, name, spy(getattr(gen.autoencoder, name)))
    small = gen.generate("a blue star", width=32, height=32, frames=5)
    assert small.shape == (5, 32, 32, 3) and tiles == [None]
    tiles.clear()
    large = gen.generate("a blue star", width=50, height=36, frames=5, image=np.zeros((36, 50, 3), np.uint8))
    assert large.shape == (5, 36, 50, 3)  # made at 56 x 40 (14 x 10 latent cells), then cropped
    assert tiles and set(tiles) == {8}


def test_generator_refuses_mismatched_parts():
    ae, _ = tiny_parts()
    dit = VideoDiT(DiTConfig(in_channels=8, width=32, depth=1, heads=2, text_dim=384))
    from generator.text import HashingTextEncoder

    with pytest.raises(GeneratorError, match="latent channels"):
        VideoGenerator(ae, dit, HashingTextEncoder())
