"""The work behind `manage.py generate`, as a plain function that tests can call without Click."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .checkpoint import BUNDLE_FILE, read_bundle
from .dit import DiT_models
from .errors import CheckpointError, GeneratorError, NoCheckpointError
from .generate import VideoGenerator, fit_frame

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_CONFIG = "tiny"


def default_checkpoint(config: str = DEFAULT_CONFIG, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """Where the trained bundle of a DiT preset lives: weights/generator-<preset>/."""
    return weights_dir / f"generator-{config}"


def _train_hint(directory: Path) -> str:
    return (f"pass --checkpoint DIR with a trained bundle (model.json + safetensors), or train one with "
            f"`manage.py train autoencoder --out runs/ae` then `manage.py train dit --autoencoder "
            f"runs/ae/autoencoder.safetensors --out {directory}`")


def resolve_checkpoint(config: str | None, checkpoint: str | os.PathLike[str] | None,
                       weights_dir: Path = WEIGHTS_DIR) -> Path:
    """The bundle directory to load; `NoCheckpointError` if there is no trained model to use."""
    if config is not None and config not in DiT_models:
        raise GeneratorError(f"unknown generator config {config!r}; choose from {', '.join(DiT_models)}")
    if checkpoint is None:
        directory = default_checkpoint(config or DEFAULT_CONFIG, weights_dir)
        if not (directory / BUNDLE_FILE).is_file():
            raise NoCheckpointError(f"no trained generator '{config or DEFAULT_CONFIG}' in {directory}: "
                                    f"{_train_hint(directory)}")
        return directory
    path = Path(checkpoint)
    directory = path.parent if path.name == BUNDLE_FILE else path
    if not (directory / BUNDLE_FILE).is_file():
        raise NoCheckpointError(f"no generator bundle ({BUNDLE_FILE}) at {path}: {_train_hint(directory)}")
    preset = read_bundle(directory).get("preset")
    if config is not None and preset is not None and preset != config:
        raise CheckpointError(f"{directory} holds a '{preset}' generator, not '{config}'")
    return directory


def _read_rgb(path: str | os.PathLike[str], *, last: int | None = None) -> np.ndarray:
    """All frames (or the last `last`) of an image or video as uint8 (F, H, W, 3)."""
    from media import iter_frames

    frames = [f.array for f in iter_frames(path, fmt="rgb24")]
    if last is not None:
        frames = frames[-last:]
    return np.stack(frames)


def generate_to_file(
    prompt: str,
    out_path: str | os.PathLike[str],
    *,
    width: int | None = None,
    height: int | None = None,
    seconds: float | None = None,
    fps: float | None = None,
    steps: int | None = None,
    cfg: float | None = None,
    seed: int | None = None,
    negative: str | None = None,
    image: str | os.PathLike[str] | None = None,
    extend: str | os.PathLike[str] | None = None,
    config: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    loop: bool = False,
    sampler: str | None = None,
    device: str = "cpu",
) -> Path:
    """Generate a clip for `prompt` and write it to `out_path` (.mp4/.mov) atomically.

    None means the model's default (from its model.json). `image` is a first frame (PNG/JPEG or a
    video's first frame); `extend` is a clip to continue: the output is that clip followed by
    `seconds` of new frames, at the clip's size and rate unless given. `progress(done, total)` is
    called after every sampling step. Raises `NoCheckpointError` when no trained model exists,
    rather than writing noise; other bad input raises `GeneratorError` or `media.MediaError`."""
    from media import VideoWriter, probe

    if not prompt.strip():
        raise GeneratorError("the prompt is empty")
    if image is not None and extend is not None:
        raise GeneratorError("give --image or --extend, not both")
    directory = resolve_checkpoint(config, checkpoint)
    if seed is None:
        seed = secrets.randbits(31)
    log.info("generating with %s, seed %d", directory, seed)
    gen = VideoGenerator.from_pretrained(directory, device=device)
    d = gen.defaults
    first = _read_rgb(image)[0] if image is not None else None
    original = None
    if extend is not None:
        info = probe(extend)
        original = _read_rgb(extend)
        if fps is None and info.fps:
            fps = float(info.fps)
        height = height or original.shape[1]
        width = width or original.shape[2]
    fps = float(fps or d["fps"])
    width, height = int(width or d["width"]), int(height or d["height"])
    seconds = float(seconds if seconds is not None else d["seconds"])
    if not (0 < fps <= 120 and 0 < seconds <= 600 and 16 <= width <= 4096 and 16 <= height <= 4096):
        raise GeneratorError(f"cannot generate {width}x{height} for {seconds} s at {fps} fps: need 16..4096 "
                             "pixels a side, at most 600 s and 120 fps")
    frames = max(1, round(seconds * fps))
    new = gen.generate(prompt, width=width, height=height, frames=frames, steps=steps, cfg=cfg, seed=seed,
                       negative=negative, method=sampler, image=first, context=original, loop_clip=loop,
                       progress=progress)
    clip = new if original is None else np.concatenate([np.stack([fit_frame(f, width, height) for f in original]), new])
    out_path = Path(out_path)
    with VideoWriter(out_path, width=width, height=height, fps=fps, crf=18) as writer:
        for frame in clip:
            writer.write_rgb(frame)
    return out_path
