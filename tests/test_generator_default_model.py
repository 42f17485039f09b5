"""The shipped default generator (weights/generator-tiny): it loads, and its clips follow prompts
better than chance on the facts the analyser reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generator.checkpoint import read_bundle
from generator.cli import default_checkpoint
from generator.data import BACKGROUNDS, analyse_clip
from generator.generate import VideoGenerator

BUNDLE = default_checkpoint()
# One object on each background: chance of naming the background is 1 in 5 per clip.
PROMPTS = [
    ("a red circle moving right on a black background", "black"),
    ("a yellow square moving left on a white background", "white"),
    ("a white circle moving up on a navy background", "navy"),
    ("an orange ring standing still on a dark green background", "dark green"),
    ("a cyan square moving down on a gray background", "gray"),
]


def test_the_default_bundle_is_committed_small_and_documented() -> None:
    bundle = read_bundle(BUNDLE)
    files = [BUNDLE / bundle["autoencoder"], BUNDLE / bundle["dit"], BUNDLE / "model.json"]
    assert all(f.is_file() for f in files)
    assert sum(f.stat().st_size for f in BUNDLE.iterdir() if f.is_file()) < 60 * 2**20
    card = (BUNDLE / "README.md").read_text()
    for fact in ("manage.py train", "seed", "steps", "wall", "machine"):
        assert fact in card.lower() or fact in card, fact
    assert bundle["text_encoder"] == "minilm" and bundle["defaults"]["width"] >= 128


@pytest.mark.slow
def test_the_default_model_names_backgrounds_better_than_chance(one_torch_thread: None) -> None:
    gen = VideoGenerator.from_pretrained(BUNDLE)
    hits = 0
    for prompt, background in PROMPTS:
        clip = gen.generate(prompt, seed=1)
        assert clip.shape == (16, 128, 128, 3) and clip.dtype == np.uint8
        assert clip.std() > 2.0  # not a flat or empty frame
        found = analyse_clip(clip).background
        assert found in BACKGROUNDS
        hits += found == background
    # Chance is 1 in 5 per clip (P(>= 3 of 5) = 5.8%); a model that ignores the text names one at most.
    assert hits >= 3, f"{hits} of {len(PROMPTS)} backgrounds right"


def test_generation_at_other_aspect_ratios_has_the_asked_size(one_torch_thread: None) -> None:
    gen = VideoGenerator.from_pretrained(BUNDLE)
    for width, height in ((176, 96), (96, 176)):
        clip = gen.generate("a blue star rotating on a gray background", width=width, height=height, frames=9,
                            steps=4, seed=0)
        assert clip.shape == (9, height, width, 3)


def test_the_bundle_records_how_it_was_trained() -> None:
    training = read_bundle(BUNDLE)["training"]["config"]
    assert training["kind"] == "dit" and training["data"] == "shapes"
    assert Path(BUNDLE / "README.md").read_text().count(str(training["steps"])) >= 1
