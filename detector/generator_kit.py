"""veriframe's own generator in the data kit: its shipped autoencoder and DiT as AI families.

* ``veriframe-vae``: real kit images reconstructed through the shipped video autoencoder
  (``weights/generator-tiny/autoencoder.safetensors``, 4x time, 8x space): the decoder every clip
  our DiT makes passes through, content-matched to the real side and cheap (encode to the posterior
  mean, decode; no sampling). A still is coded as a one-frame video (the image path: latent frame 0
  sees frame 0 alone); a clip frame as the last frame of a 1 + 4 frame window ending at it (the
  temporal path, depth-to-time upsampling, which makes 15 of a generated clip's 16 frames). Frames
  are centre-cropped to at most ``VAE_SIDE`` pixels a side, in multiples of 8.
* ``veriframe-dit``: clips sampled from the shipped bundle at its defaults (16 Euler steps, guidance
  5, 2 s at 8 fps) for Shapes-world captions, across its three sizes, with fixed seeds, taken as
  veriframe issues them (``as_issued``: H.264 CRF 18 as ``generate`` writes, then the watermark's
  re-encode): the lossless frames scored far higher than the issued files, so lossless kit items
  taught traces that no issued clip still has. Their real counterpart is ``cg-shapes``: the same
  captions' scenes rendered by the Shapes world (the computer graphics the DiT learned to imitate)
  through the same writer and watermark, so neither "looks like the Shapes world" nor the codec or
  the watermark is a shortcut to "AI".

Sampling is a pure function of the weights and the seeds; sampled clips are cached (``.npz`` in the
kit's ``cache/``, keyed by the DiT weights' hash, prompt, seed and size) so a rebuild does not sample
again, and issued clips too (keyed by the clip's hash), since the H.264 re-encode is not bit-reproducible.
Nothing is downloaded: the text encoder is the bundled MiniLM.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from media import atomic_path
from storage import sha256_file

log = logging.getLogger(__name__)

DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "weights" / "generator-tiny"
VAE_SIDE = 128  # the generator's own frame size; the 5-frame window costs ~2 s on one CPU thread
VAE_WINDOW = 5  # 1 + 4: one latent step of the 4x temporal autoencoder
KIT_PROMPT_SEED = 80  # Shapes-world stream of the kit's captions (the DiT trained on stream 0)
DIT_FRAMES = (0, 5, 10, 15)  # frames of each sampled clip that become kit items
SHAPES_FRAMES = (5, 15)  # frames of each rendered counterpart that become real items
SIZES = ((128, 128), (176, 96), (96, 176))  # the bundle's training sizes: 1:1, 16:9, 9:16
KIT_WATERMARK_KEY = bytes.fromhex("6b1d" * 16)  # fixed, so the issued frames are a function of the clip
ISSUE_CRF, ISSUE_PRESET = 18, "medium"  # what `generate` writes and the watermark re-encodes with


@dataclass(frozen=True)
class ClipSpec:
    """One clip to sample (and render): caption, noise seed, size, and its scene's stream index."""

    index: int
    prompt: str
    seed: int
    width: int
    height: int
    prompt_seed: int

    def scene(self):  # noqa: ANN201 - generator.data.Scene, imported lazily
        from generator.data.shapes import ShapesStream

        return ShapesStream(self.prompt_seed).scene(self.index)[0]


def clip_specs(n: int, *, prompt_seed: int = KIT_PROMPT_SEED, seed_base: int = 1000) -> list[ClipSpec]:
    """``n`` clips cycling through the three sizes; captions from Shapes-world stream ``prompt_seed``."""
    from generator.data.shapes import ShapesStream

    stream = ShapesStream(prompt_seed)
    return [ClipSpec(i, stream.scene(i)[1], seed_base + i, *SIZES[i % len(SIZES)], prompt_seed) for i in range(n)]


def centre_window(frames: Sequence[np.ndarray], side: int = VAE_SIDE) -> np.ndarray:
    """(F, h, w, 3): the frames centre-cropped to at most ``side`` a side, in multiples of 8."""
    h, w = frames[0].shape[:2]
    ch, cw = min(side, h) // 8 * 8, min(side, w) // 8 * 8
    if ch < 8 or cw < 8:
        raise ValueError(f"frame {w}x{h} is too small for the autoencoder")
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return np.stack([f[y0 : y0 + ch, x0 : x0 + cw] for f in frames])


class VaeReconstructor:
    """RGB frame (with its preceding frames) -> its reconstruction through veriframe's autoencoder."""

    def __init__(self, autoencoder: torch.nn.Module, side: int = VAE_SIDE) -> None:
        self.ae, self.side = autoencoder.eval(), side
        self.window = 1 + autoencoder.compression[0]

    @classmethod
    def from_bundle(cls, bundle: str | os.PathLike[str] = DEFAULT_BUNDLE, side: int = VAE_SIDE) -> VaeReconstructor:
        from generator.checkpoint import load_component, read_bundle

        info = read_bundle(bundle)
        return cls(load_component(Path(info["_dir"]) / info["autoencoder"], "autoencoder"), side)

    @torch.no_grad()
    def __call__(self, frame: np.ndarray, history: Sequence[np.ndarray] = ()) -> np.ndarray:
        """The centre crop of ``frame``, reconstructed: alone (a still) or as the last frame of a window of
        ``1 + f`` frames, ``history`` (its preceding frames, oldest first) filling the rest; a short
        history repeats its first frame, as a clip's start would."""
        from generator.generate import frames_to_tensor, tensor_to_frames

        frames = [frame]
        if history:
            frames = list(history)[-(self.window - 1):] + [frame]
            frames = [frames[0]] * (self.window - len(frames)) + frames
        clip = centre_window(frames, self.side)
        x = frames_to_tensor(clip)  # (1, 3, F, h, w)
        recon = self.ae.decode(self.ae.encode(x).mean, frames=len(clip))  # (1, 3, F, h, w)
        return tensor_to_frames(recon)[-1]


def sample_clips(specs: Sequence[ClipSpec], cache_dir: str | os.PathLike[str], *,
                 bundle: str | os.PathLike[str] = DEFAULT_BUNDLE) -> list[np.ndarray]:
    """uint8 clips (F, H, W, 3) of ``specs`` from the bundle, read from ``cache_dir`` when sampled before.

    The cache key is the DiT weights' hash, the prompt, the seed and the size; the bundle's own defaults
    (steps, guidance, length) are part of its ``model.json`` and hashed too."""
    from generator.checkpoint import read_bundle

    info = read_bundle(bundle)
    root = Path(info["_dir"])
    tag = sha256_file(root / info["dit"]).sha256[:12] + sha256_file(root / "model.json").sha256[:4]
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    out: list[np.ndarray] = []
    generator = None
    for spec in specs:
        key = hashlib.sha256(f"{tag}|{spec.prompt}|{spec.seed}|{spec.width}x{spec.height}".encode()).hexdigest()[:16]
        path = cache / f"dit-{spec.index:03d}-{key}.npz"
        if path.is_file():
            out.append(np.load(path)["frames"])
            continue
        if generator is None:
            from generator.generate import VideoGenerator

            generator = VideoGenerator.from_pretrained(root)
        log.info("sampling clip %d: %r seed %d %dx%d", spec.index, spec.prompt, spec.seed, spec.width, spec.height)
        clip = generator.generate(spec.prompt, width=spec.width, height=spec.height, seed=spec.seed)
        with atomic_path(path) as tmp:  # complete files only: an interrupted run samples that clip again
            np.savez_compressed(tmp, frames=clip)
        out.append(clip)
    return out


def render_counterpart(spec: ClipSpec, frames: int, fps: float = 8.0) -> np.ndarray:
    """The Shapes world's own rendering of the scene behind ``spec``'s caption (real side: CG, not AI)."""
    from generator.data.shapes import render_clip

    return render_clip(spec.scene(), spec.width, spec.height, frames, fps)


def as_issued(clip: np.ndarray, workdir: str | os.PathLike[str], name: str, fps: float = 8.0) -> np.ndarray:
    """``clip`` (F, H, W, 3) as veriframe issues it, decoded back: written at CRF 18 (as
    `generator.cli.generate_to_file` does), then watermarked by `provenance.watermark.video.embed_file`
    at the service's default encode settings (CRF 18, preset medium) with the kit's fixed key.

    The result is cached in ``workdir`` under the clip's hash: libx264 is not bit-reproducible here
    (its mb-tree rate control reads memory that earlier encodes in the process left behind: 20
    identical encodes of one 176x96 clip gave 11 different files; with ``MALLOC_PERTURB_`` set, one),
    so a kit rebuild reads the issued frames it made before instead of encoding again."""
    from media import VideoWriter, iter_frames
    from provenance.watermark.keys import Keyring, WatermarkKey
    from provenance.watermark.video import embed_file

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(f"{clip.shape}|{fps}|crf{ISSUE_CRF}|{ISSUE_PRESET}|".encode() + KIT_WATERMARK_KEY)
    digest.update(np.ascontiguousarray(clip).tobytes())
    cached = work / f"{name}-{digest.hexdigest()[:16]}.npz"
    if cached.is_file():
        return np.load(cached)["frames"]
    written, marked = work / f"{name}.mp4", work / f"{name}.marked.mp4"
    with VideoWriter(written, width=clip.shape[2], height=clip.shape[1], fps=fps, crf=ISSUE_CRF) as writer:
        for frame in clip:
            writer.write_rgb(np.ascontiguousarray(frame))
    ring = Keyring((WatermarkKey(0, KIT_WATERMARK_KEY),), 0)
    embed_file(written, marked, hashlib.sha256(name.encode()).digest()[:8], ring, crf=ISSUE_CRF, preset=ISSUE_PRESET)
    issued = np.stack([f.array for f in iter_frames(marked, fmt="rgb24")])
    with atomic_path(cached) as tmp:  # complete files only, as for the sampled clips
        np.savez_compressed(tmp, frames=issued)
    return issued
