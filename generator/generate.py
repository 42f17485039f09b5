"""`VideoGenerator`: the pieces put together, from prompt to RGB frames.

It owns no learning: it encodes the prompt, draws seeded noise of the latent size, runs the sampler
with the DiT as the velocity model, and decodes with the autoencoder in chunks of frames and, for
frames larger than SPATIAL_TILE squared, in overlapping spatial tiles, so 720p and 1080p decode in
bounded memory. Sizes that are not a multiple of the latent grid (autoencoder factor x patch size)
are generated one step larger and centre-cropped, so any width, height and length can be asked for.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from .autoencoder import VideoAutoencoder
from .checkpoint import load_component, read_bundle
from .conditioning import FrameCondition, extension, image_to_video, loop
from .dit import VideoDiT
from .errors import GeneratorError
from .flow import FlowConfig, RectifiedFlow
from .sampler import SamplerConfig, initial_noise, sample
from .text import TextEncoder, load_text_encoder

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
DEFAULTS = {"width": 128, "height": 128, "fps": 8, "seconds": 2.0, "steps": 16, "cfg": 5.0, "sampler": "euler"}
CONTEXT_LATENTS = 2  # latent frames of an extended clip's end that the continuation is conditioned on
# Pixels a side of the autoencoder's spatial tiles, used for frames of more than SPATIAL_TILE**2 pixels.
# At 4x8x8 with 32 base channels a 256 x 256 tile peaks near 0.1 GB per frame of a chunk in fp32,
# whatever the frame size (five 1280x720 frames: 0.58 GB tiled, 5.1 GB whole), for up to ~1.8x the
# arithmetic (the overlaps). Tiling is close to, not equal to, whole-frame coding: smaller frames go whole.
SPATIAL_TILE = 256


def frames_to_tensor(frames: np.ndarray) -> Tensor:
    """uint8 (F, H, W, 3) -> float (1, 3, F, H, W) in [-1, 1]."""
    return clips_to_tensor(np.asarray(frames)[None])


def clips_to_tensor(clips: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """uint8 (B, F, H, W, 3) -> float (B, 3, F, H, W) in [-1, 1] on ``device``."""
    x = torch.as_tensor(np.ascontiguousarray(clips)).to(device)  # uint8 across: a quarter of the bytes
    return x.float().div(127.5).sub(1.0).permute(0, 4, 1, 2, 3).contiguous()  # the layout the convolutions had


def tensor_to_frames(video: Tensor) -> np.ndarray:
    """float (1, 3, F, H, W) in [-1, 1] -> uint8 (F, H, W, 3)."""
    x = video[0].float().clamp(-1, 1).add(1.0).mul(127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


def fit_frame(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to cover width x height, then centre-crop: (H, W, 3) uint8 -> (height, width, 3)."""
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    nw, nh = max(width, round(w * scale)), max(height, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    top, left = (nh - height) // 2, (nw - width) // 2
    return resized[top : top + height, left : left + width]


class VideoGenerator:
    """Text (and optionally frames) to video with a trained autoencoder + DiT."""

    def __init__(self, autoencoder: VideoAutoencoder, dit: VideoDiT, text_encoder: TextEncoder, *,
                 flow: RectifiedFlow | None = None, defaults: dict | None = None,
                 device: torch.device | str = "cpu") -> None:
        if dit.config.in_channels != autoencoder.config.latent_channels:
            raise GeneratorError(f"the DiT takes {dit.config.in_channels} latent channels but the autoencoder "
                                 f"makes {autoencoder.config.latent_channels}")
        if dit.config.text_dim != text_encoder.dim:
            raise GeneratorError(f"the DiT expects {dit.config.text_dim}-wide text states but the "
                                 f"'{text_encoder.spec}' encoder gives {text_encoder.dim}")
        self.device = torch.device(device)
        self.autoencoder = autoencoder.to(self.device).eval()
        self.dit = dit.to(self.device).eval()
        self.text_encoder = text_encoder
        self.flow = flow or RectifiedFlow()
        self.defaults = {**DEFAULTS, **(defaults or {})}

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], *, device: torch.device | str = "cpu") -> VideoGenerator:
        """Load a bundle directory written by `checkpoint.save_bundle`."""
        bundle = read_bundle(path)
        root = Path(bundle["_dir"])
        ae = load_component(root / bundle["autoencoder"], "autoencoder")
        dit = load_component(root / bundle["dit"], "dit")
        flow = RectifiedFlow(FlowConfig.from_dict(bundle.get("flow") or {}))
        encoder = load_text_encoder(bundle["text_encoder"], str(torch.device(device)))
        return cls(ae, dit, encoder, flow=flow, defaults=bundle.get("defaults"), device=device)

    @property
    def grid(self) -> tuple[int, int]:
        """Pixel multiple of generated heights and widths: autoencoder factor x patch size."""
        _, fh, fw = self.autoencoder.compression
        _, ph, pw = self.dit.config.patch_size
        return fh * ph, fw * pw

    def _tile(self, height: int, width: int) -> int | None:
        """Autoencoder tile side in latent cells for frames of this size, None to code them whole."""
        return SPATIAL_TILE // self.autoencoder.compression[1] if height * width > SPATIAL_TILE**2 else None

    def _encode(self, frames: np.ndarray) -> Tensor:
        """uint8 (F, H, W, 3) at the generation size -> normalised latents (1, C, T, h, w)."""
        return self.autoencoder.encode_latents(frames_to_tensor(frames).to(self.device), chunk_latents=4,
                                               tile=self._tile(*frames.shape[1:3]))

    @torch.no_grad()
    def generate(self, prompt: str, *, width: int | None = None, height: int | None = None,
                 frames: int | None = None, steps: int | None = None, cfg: float | None = None,
                 seed: int = 0, negative: str | None = None, method: str | None = None,
                 image: np.ndarray | None = None, context: np.ndarray | None = None, loop_clip: bool = False,
                 progress: Progress | None = None) -> np.ndarray:
        """uint8 frames (frames, height, width, 3).

        `image` (H, W, 3) is the first frame (image-to-video); `context` (F, H, W, 3) is a clip to
        continue, and the result is only the new frames; `loop_clip` makes the last frame return to the
        first (to the image if given, else to the first frame of a first, unconditioned pass)."""
        d = self.defaults
        width, height = int(width or d["width"]), int(height or d["height"])
        frames = int(frames or round(d["seconds"] * d["fps"]))
        if width < 2 or height < 2 or frames < 1:
            raise GeneratorError(f"cannot generate {width}x{height} with {frames} frames")
        if image is not None and context is not None:
            raise GeneratorError("give a first image or a clip to extend, not both")
        try:
            config = SamplerConfig(steps=int(steps or d["steps"]), method=method or d["sampler"],
                                   cfg=float(d["cfg"] if cfg is None else cfg))
        except ValueError as exc:
            raise GeneratorError(str(exc)) from exc
        if config.cfg < 0:
            raise GeneratorError(f"guidance scale must be >= 0, got {config.cfg}")
        gh, gw = self.grid
        gen_w, gen_h = math.ceil(width / gw) * gw, math.ceil(height / gh) * gh  # generated, then cropped
        ft, fh, fw = self.autoencoder.compression
        ctx_frames = 0
        if context is not None:
            context = np.stack([fit_frame(f, gen_w, gen_h) for f in context])
            k = min(CONTEXT_LATENTS, self.autoencoder.latent_frames(len(context)) if len(context) > ft else 1)
            ctx_frames = 1 + ft * (k - 1)
        total_frames = ctx_frames + frames
        latent_size = (self.autoencoder.latent_frames(total_frames), gen_h // fh, gen_w // fw)
        tile = self._tile(gen_h, gen_w)
        passes = 2 if loop_clip and image is None and context is None else 1
        done = 0

        def step(i: int, n: int) -> None:
            if progress is not None:
                progress(done + i, n * passes)

        text = self.text_encoder.encode([prompt])
        uncond = self.text_encoder.encode([negative or ""])
        noise = initial_noise((1, self.dit.config.in_channels, *latent_size), seed, self.device)
        first = None if image is None else fit_frame(image, gen_w, gen_h)
        if passes == 2:  # a loop with no picture given: anchor it on the first frame of a free pass
            with self._autocast():
                z = sample(self.dit, noise, text, flow=self.flow, config=config, uncond=uncond, progress=step)
            first = tensor_to_frames(self.autoencoder.decode_latents(z[:, :, :1], frames=1, tile=tile))[0]
            done = config.steps
        condition = self._condition(latent_size, first, context[-ctx_frames:] if ctx_frames else None, loop_clip)
        with self._autocast():
            z = sample(self.dit, noise, text, flow=self.flow, config=config, uncond=uncond, condition=condition,
                       progress=step)
        video = self.autoencoder.decode_latents(z, frames=total_frames, chunk_latents=2, tile=tile)  # (1, 3, F, H', W')
        out = tensor_to_frames(video)[ctx_frames:]
        top, left = (gen_h - height) // 2, (gen_w - width) // 2
        return out[:, top : top + height, left : left + width]

    def _autocast(self) -> torch.autocast:
        """bf16 for the DiT on GPUs (the latents and the integration stay fp32); fp32 on CPUs, where bf16
        matmuls are emulated unless the CPU has AMX/AVX512-BF16."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def _condition(self, latent_size: tuple[int, int, int], first: np.ndarray | None,
                   context: np.ndarray | None, loop_clip: bool) -> FrameCondition | None:
        T = latent_size[0]
        if context is not None:
            cond = extension(self._encode(context), T)
            if loop_clip:  # continue the clip and come back to its first context frame
                held = self._encode(np.repeat(context[:1], 1 + self.autoencoder.compression[0], axis=0))
                cond.latents[:, :, -1:], cond.mask[:, -1] = held[:, :, 1:2], True
            return cond
        if first is None:
            return None
        still = self._encode(first[None])  # (1, C, 1, h, w)
        if not loop_clip or T < 2:
            return image_to_video(still, T)
        held = self._encode(np.repeat(first[None], 1 + self.autoencoder.compression[0], axis=0))
        return loop(still, held[:, :, 1:2], T)
