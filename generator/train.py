"""Training the autoencoder and the DiT: one loop, two objectives, exact resume.

Read bottom up: the run config and its named recipes, the two objectives (`_ae_loss`, `_dit_loss`),
the training state file, then `train()`, the loop.

Determinism is by construction, not by saved generator states: batch b is a pure function of
(seed, b) (`generator.data.batches`), and every random draw of step s (noise, times, posterior
samples, dropped captions, frame masks) comes from generators seeded with (seed, s). The state file
holds the weights, the EMA weights, AdamW's moments and the step; the learning rate is a function of
the step. So a run stopped at any checkpoint and resumed with `--resume` continues with the same
batches and the same draws, and ends with the same weights as one that never stopped (on the same
machine, thread count and kernels).

Multi-GPU: started under `torchrun`, each rank trains on its own slice of every batch and rank 0
alone writes. `parallel` picks how the model is spread: DistributedDataParallel (a full copy on every
rank) or FSDP2's `fully_shard` per DiT block (parameters, gradients, AdamW moments and EMA weights
sharded across ranks; the default for the L and XL presets). The state file is the same either way:
full tensors, gathered for writing, so a run can resume with the other strategy or another rank count.

Outputs in `out`: `train-state.safetensors` (the resumable state, written atomically), `log.jsonl`
(one line per logged step), `loss.png`, `samples/` (reconstructions or generated clips), and the
exported result: `autoencoder.safetensors`, or a generator bundle (model.json, autoencoder and DiT)
that `manage.py generate --checkpoint OUT` loads.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import math
import os
import random
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from media import atomic_path

from .autoencoder import AutoencoderConfig, VideoAutoencoder
from .checkpoint import load_component, save_bundle, save_component
from .conditioning import random_frame_mask
from .data.batches import BatchSpec, ClipBatches, FolderSource, LatentCache, ShapesSource
from .dit import VideoDiT, dit_config
from .errors import GeneratorError
from .flow import FlowConfig, RectifiedFlow
from .generate import DEFAULTS, clips_to_tensor
from .text import drop_captions, load_text_encoder
from .transfer import carry_over, fit_latent_maps

log = logging.getLogger(__name__)

STATE_FILE = "train-state.safetensors"
STATE_FORMAT = "veriframe-train"


class TrainError(GeneratorError):
    """A training run cannot start or resume (bad config, mismatched state, missing autoencoder)."""


@dataclass
class TrainConfig:
    """One training run; stored in its state file, so a resume needs nothing but the out folder."""

    kind: str = "dit"  # "autoencoder" or "dit"
    model: dict = field(default_factory=dict)  # AutoencoderConfig fields, or {"preset": ..., **DiTConfig fields}
    data: str = "shapes"  # "shapes" or a folder of captioned videos
    data_seed: int = 0
    sizes: list = field(default_factory=lambda: [[128, 128]])  # (width, height) buckets, one per batch
    frames: int = 17
    fps: float = 8.0
    crop: int | None = None
    crop_tries: int = 1  # autoencoder: keep the busiest of this many random crops (see data.BatchSpec)
    steps: int = 1000
    batch_size: int = 8
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    precision: str = "auto"  # "bf16" autocast, "fp32", or "auto" (bf16 on CUDA, fp32 on CPU)
    checkpoint_every: int = 100
    sample_every: int = 500
    log_every: int = 10
    workers: int = 0  # DataLoader processes rendering or decoding batches
    parallel: str = "auto"  # under torchrun: "ddp", "fsdp", or "auto" (fsdp for the L and XL DiT presets)
    twins: bool = False  # shapes: every other clip is the mirror image of the one before, its caption naming
    # the opposite directions (data.shapes.direction_twin): pairs that differ only in which way things move
    bind: bool = False  # shapes, with twins: a scene whose objects do different things gets as twin the same
    # paths with the colours exchanged (data.shapes.binding_twin): pairs that differ only in who does what
    movers: float = 0.0  # shapes: this share of scenes has every object moving left, right, up or down
    latent_cache: int = 0  # dit: code this many batches once into out/latents and train on them (0: code each step)
    init: str = ""  # start from these weights (a component .safetensors or a bundle folder) instead of random
    seed: int = 0
    kl_weight: float = 1e-6  # autoencoder
    train_part: str = "all"  # autoencoder: "all", or "decoder" (the encoder frozen: its latents, and so a DiT
    # trained on them, stay valid while the decoder learns more, e.g. longer clips; needs `init`)
    recon_loss: str = "l1"  # autoencoder: "l1", "mse" or "l1+mse". L1 pushes every pixel equally, so the
    # irreducible noise of a large flat background outweighs a small object's large error; MSE weighs
    # errors by size and brought the small shapes in much sooner (docs/training.md)
    autoencoder: str = ""  # dit: the trained autoencoder.safetensors (relative to the config's folder)
    text_encoder: str = "minilm"
    caption_dropout: float = 0.1  # classifier-free guidance learns "no text" from these
    p_image: float = 0.1  # frame-conditioning tasks (conditioning.random_frame_mask)
    p_extend: float = 0.1
    p_loop: float = 0.05
    flow: dict = field(default_factory=dict)
    sample_prompts: list = field(default_factory=lambda: ["a red circle moving right on a black background",
                                                          "a yellow square moving up on a navy background"])

    def __post_init__(self) -> None:
        if self.kind not in ("autoencoder", "dit"):
            raise TrainError(f"kind must be 'autoencoder' or 'dit', got {self.kind!r}")
        if self.recon_loss not in ("l1", "mse", "l1+mse"):
            raise TrainError(f"recon_loss must be l1, mse or l1+mse, not {self.recon_loss!r}")
        if self.steps < 1 or self.batch_size < 1 or self.frames < 1 or self.lr <= 0:
            raise TrainError("steps, batch_size, frames and lr must be positive")
        if self.parallel not in ("auto", "ddp", "fsdp"):
            raise TrainError(f"parallel must be auto, ddp or fsdp, got {self.parallel!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise TrainError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.train_part not in ("all", "decoder") or (self.train_part == "decoder" and self.kind != "autoencoder"):
            raise TrainError(f"train_part must be 'all', or 'decoder' for an autoencoder run, not {self.train_part!r}")
        if not 0.0 <= self.movers <= 1.0:
            raise TrainError(f"movers is a share between 0 and 1, not {self.movers!r}")
        if self.bind and not self.twins:
            raise TrainError("bind chooses which twin a clip gets: set twins as well")
        if self.train_part == "decoder" and not self.init:
            raise TrainError("train_part 'decoder' keeps a trained encoder: set 'init' to the autoencoder to continue")
        if self.kind == "dit" and not self.autoencoder:
            raise TrainError("a DiT run needs 'autoencoder': the trained autoencoder.safetensors")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise TrainError(f"unknown training config keys: {sorted(unknown)}")
        return cls(**d)


# Named recipes. The Shapes default is staged to fit 90-minute sessions on 2 CPU cores: each stage is
# the same run resumed with a larger --steps (see weights/generator-tiny/README.md for what was run).
_SHAPES_AE: dict[str, Any] = {  # the shapes-ae recipe: a 4x8x8 causal VAE, 8 latent channels, trained on
    # 32x32 crops of 5-frame clips: on a CPU many cheap steps beat few large ones (a 64x64x9 step costs 7x as
    # much), keeping the busiest of 4 crops. With L1 at lr 5e-4 / 1e-3 the loss oscillated and the decoder fell
    # back to one flat frame; L1 at 1e-4 learned backgrounds but no shapes in 2,860 steps; MSE at 2e-4 (stage 3)
    # learns shapes. Shortcuts (DC-AE's space/time-to-channel residuals): 22 dB instead of 20 after 150 steps on
    # a fixed batch, and the first model whose later frames move (docs/training.md)
    "kind": "autoencoder",
    "model": {"base_channels": 16, "shortcuts": True}, "sizes": [[128, 128], [176, 96], [96, 176]],
    "frames": 5, "crop": 32, "crop_tries": 4, "steps": 5000, "batch_size": 16, "lr": 2e-4, "warmup": 100,
    "recon_loss": "mse",
    "ema_decay": 0.998, "checkpoint_every": 200, "sample_every": 1000, "log_every": 20,
}

CONFIGS: dict[str, dict[str, Any]] = {
    "shapes-ae": _SHAPES_AE,
    "shapes-ae-decoder": {  # stage 2 of shapes-ae (--set init=...): its decoder on 17-frame clips, encoder
        # frozen. Trained on 5 frames (2 latent frames), the decoder never saw a latent frame with history
        # and drew frames 5-16 at 23 dB against 29 for frames 0-4; the frozen encoder keeps the latents,
        # so a DiT trained on them stays valid (docs/training.md)
        **{k: v for k, v in _SHAPES_AE.items() if k not in ("steps", "lr", "warmup")},
        "frames": 17, "train_part": "decoder", "steps": 1500, "lr": 1e-4, "warmup": 50,
    },
    "shapes-dit-tiny": {  # the tiny DiT on 128x128 and the same area at 16:9 and 9:16, 17 frames (2 s at 8 fps)
        "kind": "dit", "model": {"preset": "tiny"}, "sizes": [[128, 128], [176, 96], [96, 176]],
        "frames": 17, "steps": 6000, "batch_size": 8, "lr": 3e-4, "warmup": 200, "ema_decay": 0.998,
        "checkpoint_every": 100, "sample_every": 1000, "autoencoder": "autoencoder.safetensors",
        "latent_cache": 240,  # 1,920 clips coded once: the encoder costs more than a DiT step on a CPU
    },
    "smoke-ae": {  # seconds on a CPU: for tests and a first look at the trainer
        "kind": "autoencoder", "model": {"base_channels": 8, "channel_mult": [1, 2, 2], "time_down": [True, False],
                                         "space_down": [True, True], "latent_channels": 4},
        "sizes": [[32, 32]], "frames": 5, "steps": 4, "batch_size": 2, "lr": 1e-3, "warmup": 2,
        "checkpoint_every": 2, "sample_every": 4, "log_every": 1,
    },
    "smoke-dit": {
        "kind": "dit", "model": {"preset": "tiny", "width": 64, "depth": 2, "heads": 2},
        "sizes": [[32, 32], [48, 16]], "frames": 5, "steps": 4, "batch_size": 2, "lr": 1e-3, "warmup": 2,
        "checkpoint_every": 2, "sample_every": 4, "log_every": 1, "text_encoder": "hash", "latent_cache": 3,
        "autoencoder": "autoencoder.safetensors", "sample_prompts": ["a red circle moving right"],
    },
}


def load_config(name_or_path: str, overrides: dict[str, Any] | None = None) -> tuple[TrainConfig, Path | None]:
    """A named recipe or a .json/.toml file, with overrides; also the file's folder (for relative paths)."""
    base: Path | None = None
    if name_or_path in CONFIGS:
        d = copy.deepcopy(CONFIGS[name_or_path])
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise TrainError(f"unknown training config {name_or_path!r}: use one of {', '.join(CONFIGS)} or a "
                             ".json/.toml file")
        try:
            d = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
        except (ValueError, OSError) as exc:
            raise TrainError(f"{path} is not a readable training config: {exc}") from exc
        base = path.resolve().parent
    try:
        return TrainConfig.from_dict({**d, **(overrides or {})}), base
    except TypeError as exc:
        raise TrainError(f"invalid training config: {exc}") from exc


# --------------------------------------------------------------------------- objectives


def _ae_loss(ae: nn.Module, video: Tensor, cfg: TrainConfig, gen: torch.Generator, _py: random.Random,
             _texts: list[str]) -> tuple[Tensor, dict[str, Tensor]]:
    """Reconstruction (L1, MSE or both) + KL on a crop batch; PSNR of the reconstruction for the log
    (the statistics stay tensors until a logging step reads them)."""
    recon, posterior = ae(video, gen)
    l1 = (recon - video).abs().mean()
    mse = (recon - video).pow(2).mean()
    kl = posterior.kl()
    rec = {"l1": l1, "mse": mse, "l1+mse": l1 + mse}[cfg.recon_loss]
    with torch.no_grad():
        clamped = (recon.detach().clamp(-1, 1) - video).pow(2).mean().clamp(min=1e-10)
        psnr = 10 * torch.log10(4.0 / clamped)  # range [-1, 1] has peak-to-peak 2
    stats = {"l1": l1.detach(), "mse": mse.detach(), "kl": kl.detach(), "psnr": psnr}
    return rec + cfg.kl_weight * kl, stats


class _DiTObjective:
    """Rectified-flow velocity loss on latents of the frozen autoencoder, with dropped captions and
    randomly given frames (so one network learns text-, image-to-video and extension)."""

    def __init__(self, cfg: TrainConfig, autoencoder: VideoAutoencoder, device: torch.device) -> None:
        self.cfg, self.ae = cfg, autoencoder.to(device).eval().requires_grad_(False)
        self.flow = RectifiedFlow(FlowConfig.from_dict(cfg.flow))
        self.text = load_text_encoder(cfg.text_encoder, str(device))

    @torch.no_grad()
    def encode(self, clips: np.ndarray) -> Tensor:
        """uint8 (B, T, H, W, 3) -> normalised latents (B, C, T', h, w) (the posterior mean)."""
        return self.ae.encode_latents(clips_to_tensor(clips, next(self.ae.parameters()).device))

    def __call__(self, dit: nn.Module, x: Tensor, cfg: TrainConfig, gen: torch.Generator, py: random.Random,
                 texts: list[str]) -> tuple[Tensor, dict[str, float]]:
        with torch.no_grad():
            # x: a video batch (B, 3, T, H, W), or latents from the cache (B, C, T', h, w)
            z = x if cfg.latent_cache else self.ae.encode_latents(x)
            text = self.text.encode(drop_captions(texts, cfg.caption_dropout, py)).to(x.device)
        mask = random_frame_mask(z.shape[0], z.shape[2], py, p_image=cfg.p_image, p_extend=cfg.p_extend,
                                 p_loop=cfg.p_loop)
        loss = self.flow.training_loss(dit, z, text, frame_mask=mask, generator=gen)
        return loss, {}


# --------------------------------------------------------------------------- state file


def _lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth over the configured steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _sharded(cfg: TrainConfig, world: int) -> bool:
    """Whether this run shards its model with FSDP (only under torchrun with more than one rank)."""
    if world == 1:
        return False
    if cfg.parallel == "auto":
        return cfg.kind == "dit" and cfg.model.get("preset") in ("L", "XL")
    return cfg.parallel == "fsdp"


def _shard(model: nn.Module) -> None:
    """FSDP2: each DiT block is one all-gather unit, the rest (embeddings, final layer) the root's."""
    from torch.distributed.fsdp import fully_shard

    for block in getattr(model, "blocks", []):
        fully_shard(block)
    fully_shard(model)


def _full_options():  # -> StateDictOptions
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def _param_index(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, int]:
    """Parameter name -> its index in `opt.state_dict()` (the order of the parameter groups)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: i for i, p in enumerate(p for g in opt.param_groups for p in g["params"])}


def _full_model(module: nn.Module, sharded: bool) -> dict[str, Tensor]:
    """The module's full state dict; under FSDP a collective (every rank calls it, rank 0 gets it)."""
    if not sharded:
        return module.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(module, options=_full_options())


def _save_state(path: Path, step: int, cfg: TrainConfig, model: nn.Module, ema: nn.Module,
                opt: torch.optim.Optimizer, extra: dict, rank: int = 0, sharded: bool = False) -> None:
    """Write the full training state (rank 0); every rank calls it when the model is sharded."""
    if rank != 0 and not sharded:  # nothing to gather: the other ranks have nothing to do
        return
    tensors = {f"model.{k}": v for k, v in _full_model(model, sharded).items()}
    tensors |= {f"ema.{k}": v for k, v in _full_model(ema, sharded).items()}
    if sharded:
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        index = _param_index(model, opt)
        opt_state = {index[name]: v for name, v in get_optimizer_state_dict(model, opt, options=_full_options())
                     .get("state", {}).items()}
    else:
        opt_state = opt.state_dict()["state"]
    if rank != 0:
        return
    for i, state in opt_state.items():
        tensors |= {f"opt.{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)) for k, v in state.items()}
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = {"format": STATE_FORMAT, "step": str(step), "config": json.dumps(cfg.to_dict()),
            "model_config": json.dumps(model.config.to_dict()), "extra": json.dumps(extra)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _read_state(path: Path) -> tuple[dict, dict[str, Tensor]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError) as exc:
        raise TrainError(f"{path} is not a readable training state: {exc}") from exc
    if meta.get("format") != STATE_FORMAT:
        raise TrainError(f"{path} is not a veriframe training state")
    return meta, tensors


def saved_config(out: str | os.PathLike[str]) -> dict:
    """The config dict a run folder's state was written with (what `--resume` continues)."""
    path = Path(out) / STATE_FILE
    if not path.is_file():
        raise TrainError(f"nothing to resume: {path} does not exist")
    meta, _ = _read_state(path)
    return json.loads(meta["config"])


def _load_state(tensors: dict[str, Tensor], model: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer,
                sharded: bool = False) -> None:
    def part(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    state: dict[int, dict[str, Tensor]] = {}
    for key, value in part("opt.").items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = value
    if not sharded:
        model.load_state_dict(part("model."))
        ema.load_state_dict(part("ema."))
        opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    full = StateDictOptions(full_state_dict=True)  # every rank read the file: each keeps its own shards
    set_model_state_dict(model, part("model."), options=full)
    set_model_state_dict(ema, part("ema."), options=full)
    groups = get_optimizer_state_dict(model, opt, options=full)["param_groups"]
    by_name = {name: state[i] for name, i in _param_index(model, opt).items() if i in state}
    set_optimizer_state_dict(model, opt, {"state": by_name, "param_groups": groups}, options=full)


def _unsharded(ema: nn.Module, sharded: bool, rank: int, dev: torch.device) -> nn.Module | None:
    """The EMA model whole, for samples and the export: itself, or under FSDP a fresh copy on rank 0
    (a collective: every rank calls it; the others get None)."""
    if not sharded:
        return ema
    weights = _full_model(ema, sharded)
    if rank != 0:
        return None
    whole = (VideoDiT if isinstance(ema, VideoDiT) else VideoAutoencoder)(ema.config)
    whole.load_state_dict(weights)
    return whole.to(dev).eval()


# --------------------------------------------------------------------------- the loop


def _build(cfg: TrainConfig, base: Path | None,
           device: torch.device) -> tuple[nn.Module, Callable, VideoAutoencoder | None]:
    if cfg.kind == "autoencoder":
        try:
            model: nn.Module = VideoAutoencoder(AutoencoderConfig.from_dict(cfg.model))
        except (TypeError, ValueError) as exc:
            raise TrainError(f"invalid autoencoder config: {exc}") from exc
        return model, _ae_loss, None
    ae_path = Path(cfg.autoencoder)
    ae_path = ae_path if ae_path.is_absolute() or base is None else base / ae_path
    if not ae_path.is_file():
        raise TrainError(f"the DiT trains on a trained autoencoder: {ae_path} does not exist "
                         "(train one first with `manage.py train autoencoder`)")
    ae = load_component(ae_path, "autoencoder")
    objective = _DiTObjective(cfg, ae, device)
    overrides = {k: v for k, v in cfg.model.items() if k != "preset"}
    overrides.setdefault("in_channels", ae.config.latent_channels)
    overrides.setdefault("text_dim", objective.text.dim)
    try:
        model = VideoDiT(dit_config(cfg.model.get("preset", "tiny"), **overrides))
    except (TypeError, ValueError) as exc:
        raise TrainError(f"invalid DiT config: {exc}") from exc
    return model, objective, ae


def _init_from(model: nn.Module, path: Path, kind: str,
               latent_maps: Callable[[VideoAutoencoder], tuple[Tensor, ...]] | None = None) -> None:
    """Copy exported weights into a fresh run (a new stage from a shipped model; AdamW starts anew).
    A DiT trained on another autoencoder's latents (its bundle's autoencoder.safetensors beside it) is
    carried over through `latent_maps(old autoencoder)` (generator.transfer)."""
    if path.is_dir():
        path = path / f"{kind}.safetensors"
    trained = load_component(path, kind)
    if latent_maps is not None and trained.config.in_channels != model.config.in_channels:
        old_ae = path.with_name("autoencoder.safetensors")
        if not old_ae.is_file():
            raise TrainError(f"{path} was trained on {trained.config.in_channels} latent channels and this run's "
                             f"autoencoder has {model.config.in_channels}: carrying it over needs the autoencoder "
                             f"it was trained with beside it ({old_ae} does not exist)")
        try:
            carry_over(trained, model, latent_maps(load_component(old_ae, "autoencoder")))
        except ValueError as exc:
            raise TrainError(f"cannot carry {path} over to this run: {exc}") from exc
        log.info("carried %s over from %d to %d latent channels", path, trained.config.in_channels,
                 model.config.in_channels)
        return
    # the same network, or (an autoencoder) the same with extra decoder blocks, grown as the identity
    same = {"scaling_factor": 0, "shift_factor": 0, "decoder_extra_blocks": 0}
    extra_had, extra_wanted = (getattr(c.config, "decoder_extra_blocks", 0) for c in (trained, model))
    if trained.config.to_dict() | same != model.config.to_dict() | same or extra_had not in (0, extra_wanted):
        raise TrainError(f"{path} holds a different {kind} ({trained.config.to_dict()}) than this run configures")
    grows = extra_wanted > extra_had  # from none: the configs are otherwise equal, so only those blocks are new
    model.load_state_dict(trained.state_dict(), strict=not grows)
    if grows:
        model.decoder.identity_extra()
    if isinstance(model, VideoAutoencoder):  # keep the measured latent normalisation until it is re-measured
        model.config.scaling_factor, model.config.shift_factor = (trained.config.scaling_factor,
                                                                  trained.config.shift_factor)


def _latent_maps(cfg: TrainConfig, base: Path | None, dev: torch.device, ae: VideoAutoencoder,
                 old: VideoAutoencoder) -> tuple[Tensor, ...]:
    """The maps between `old`'s latents and the run's autoencoder's, fitted on a batch of the run's own clips."""
    spec = BatchSpec(16, cfg.sizes[:1], cfg.frames, cfg.fps)
    clips = ClipBatches(_source(cfg, base, cfg.data_seed + 2), spec, cfg.data_seed + 2).batch(0)[0]
    return fit_latent_maps(old.to(dev), ae, clips_to_tensor(clips, dev))


def _source(cfg: TrainConfig, base: Path | None, seed: int) -> ShapesSource | FolderSource:
    """The run's clips: the Shapes world, or its folder (relative to the config file's folder)."""
    if cfg.data == "shapes":
        return ShapesSource(seed, twins=cfg.twins, movers=cfg.movers, bind=cfg.bind)
    return FolderSource(cfg.data if base is None or Path(cfg.data).is_absolute() else base / cfg.data, seed)


def _past(deadline: float | None, world: int, dev: torch.device) -> bool:
    """Whether the run's time is up; under DDP every rank gets the same answer (the first clock past
    it wins), so no rank waits in a collective for one that already stopped."""
    if deadline is None:
        return False
    over = time.monotonic() > deadline
    if world > 1:
        flag = torch.tensor([float(over)], device=dev)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        over = bool(flag.item())
    return over


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return (torch.distributed.get_rank() if world > 1 else 0), world


def train(cfg: TrainConfig, out: str | os.PathLike[str], *, resume: bool = False, base: Path | None = None,
          device: str | None = None, progress: bool = True, stop_after: int | None = None,
          max_minutes: float | None = None, export_now: bool = False) -> Path:
    """Run (or resume) a training run into `out`; returns the exported model path (or `out` when the
    run stopped before its last step).

    `stop_after` (steps) or `max_minutes` end this call early with a checkpoint, which is how a long
    recipe is split into sessions; `--resume` continues it exactly. `export_now` (with `resume`)
    writes the model from the last checkpoint's EMA weights without training. Under torchrun the process
    group this call starts is destroyed when it returns: left to the interpreter's exit, the gloo threads
    sometimes aborted a rank ("terminate called without an active exception") after a finished run."""
    owns_group = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized()
    try:
        return _train(cfg, Path(out), resume=resume, base=base, device=device, progress=progress,
                      stop_after=stop_after, max_minutes=max_minutes, export_now=export_now)
    finally:
        if owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train(cfg: TrainConfig, out: Path, *, resume: bool, base: Path | None, device: str | None, progress: bool,
           stop_after: int | None, max_minutes: float | None, export_now: bool) -> Path:
    rank, world = _distributed()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device or (f"cuda:{local}" if torch.cuda.is_available() else "cpu"))
    state_path = out / STATE_FILE
    if state_path.exists() and not resume:
        raise TrainError(f"{out} already holds a training run: pass --resume to continue it, or another --out")
    if resume and not state_path.exists():
        raise TrainError(f"nothing to resume: {state_path} does not exist")
    meta: dict = {}
    tensors: dict[str, Tensor] = {}
    if resume:
        meta, tensors = _read_state(state_path)
        saved = TrainConfig.from_dict(json.loads(meta["config"]))
        if (saved.kind, saved.model, saved.batch_size, saved.seed, saved.train_part) != \
                (cfg.kind, cfg.model, cfg.batch_size, cfg.seed, cfg.train_part):
            raise TrainError(f"{state_path} was written by a different run ({saved.kind}, {saved.model}); "
                             "only steps, intervals and workers may change on resume")
    torch.manual_seed(cfg.seed)  # initial weights
    model, objective, ae = _build(cfg, base, dev)
    if cfg.init and not resume:
        maps = None if ae is None else functools.partial(_latent_maps, cfg, base, dev, ae)  # used if it must be
        _init_from(model, Path(cfg.init) if Path(cfg.init).is_absolute() or base is None else base / cfg.init,
                   cfg.kind, latent_maps=maps)
    if cfg.train_part == "decoder":
        model.encoder.requires_grad_(False)
    model.to(dev)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    sharded = _sharded(cfg, world)
    if sharded:
        _shard(model)
        _shard(ema)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name or "embed" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99),
                            fused=dev.type == "cuda")
    step = 0
    if resume:
        _load_state(tensors, model, ema, opt, sharded)
        step = int(meta["step"])
        log.info("resumed %s at step %d", state_path, step)
    if export_now:
        if not resume:
            raise TrainError("--export needs --resume: it exports the run's last checkpoint")
        whole = _unsharded(ema, sharded, rank, dev)
        return export(out, cfg, whole, ae, dev, base) if rank == 0 else out
    net = model
    if world > 1 and not sharded:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if dev.type == "cuda" else None)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and dev.type == "cuda")
    source = _source(cfg, base, cfg.data_seed)
    spec = BatchSpec(cfg.batch_size, cfg.sizes, cfg.frames, cfg.fps, cfg.crop, cfg.crop_tries)
    dataset: torch.utils.data.IterableDataset = ClipBatches(source, spec, cfg.data_seed, start=step, rank=rank,
                                                            world_size=world)
    if cfg.kind == "dit" and cfg.latent_cache:
        cache = LatentCache(out / "latents" / f"rank-{rank}", cfg.latent_cache, cfg.data_seed, start=step)
        cache.fill(dataset, objective.encode, progress=progress and rank == 0, workers=cfg.workers)
        dataset = cache
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=cfg.workers,
                                         prefetch_factor=2 if cfg.workers else None, persistent_workers=False)
    writer = _Writer(out, cfg, rank == 0, step)
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.kind}", dynamic_ncols=True)
    model.train()
    batches = iter(loader)
    t_last, seen = time.perf_counter(), 0
    deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes
    while step < end:
        if step % cfg.log_every == 0 and _past(deadline, world, dev):  # an all_reduce under DDP: not every step
            end = step  # checkpointed below on the last step, or here when nothing ran since
            if step % cfg.checkpoint_every:
                _save_state(state_path, step, cfg, model, ema, opt, {"world_size": world}, rank, sharded)
            log.info("stopping at step %d after %.1f minutes: resume with --resume", step, max_minutes)
            break
        clips, texts = next(batches)
        video = clips.to(dev) if torch.is_tensor(clips) and clips.is_floating_point() else clips_to_tensor(clips, dev)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * world + rank)
        py = random.Random(f"{cfg.seed}:{step}:{rank}")
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, step)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss, stats = objective(net, video, cfg, gen, py, texts)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        # Only a step that logs or saves reads the loss back: a read waits for the GPU, and on a GPU the
        # host's dispatch is the slow part, so reading every step kept it from running ahead. A loss that
        # went non-finite poisons the weights, so the next read still sees it before anything is saved.
        reads = step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0 or step == end
        if reads and not torch.isfinite(loss):
            raise TrainError(f"loss is {loss.item()} at step {step}: lower the learning rate or check the data")
        with torch.no_grad():  # EMA, with a short warm-up so early samples are not the random init
            d = min(cfg.ema_decay, (1 + step) / (10 + step))
            torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - d)
            for e, b in zip(ema.buffers(), model.buffers(), strict=True):
                e.copy_(b)
        seen += len(clips) * world
        if bar is not None:
            bar.update(1)
        if step % cfg.log_every == 0 or step == end:
            now = time.perf_counter()
            rate = seen / max(now - t_last, 1e-9)
            t_last, seen = now, 0
            grad_norm = (norm.full_tensor() if hasattr(norm, "full_tensor") else norm).item()  # a DTensor under FSDP
            row = {"step": step, "loss": loss.item(), "lr": _lr_at(cfg, step - 1), "grad_norm": grad_norm,
                   "samples_per_s": rate, **{k: float(v) for k, v in stats.items()}}
            writer.log(row)
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.4f}", sps=f"{rate:.1f}")
        if step % cfg.checkpoint_every == 0 or step == end:
            _save_state(state_path, step, cfg, model, ema, opt, {"world_size": world}, rank, sharded)
        if step % cfg.sample_every == 0 or step == cfg.steps:
            whole = _unsharded(ema, sharded, rank, dev)
            if rank == 0:
                writer.samples(step, whole, ae, cfg, dev)
    if bar is not None:
        bar.close()
    result = out
    whole = _unsharded(ema, sharded, rank, dev) if step >= cfg.steps else None
    if rank == 0:
        writer.plot()
        if whole is not None:
            result = export(out, cfg, whole, ae, dev, base)
    if world > 1:
        torch.distributed.barrier()
    return result


def export(out: Path, cfg: TrainConfig, ema: nn.Module, ae: VideoAutoencoder | None, dev: torch.device,
           base: Path | None = None) -> Path:
    """Write the finished (EMA) model: a normalised autoencoder, or a generator bundle."""
    if cfg.kind == "autoencoder":
        assert isinstance(ema, VideoAutoencoder)
        if cfg.train_part == "all":  # a frozen encoder keeps the normalisation its DiT was trained with
            set_latent_normalisation(ema, cfg, dev, base)
        return save_component(out / "autoencoder.safetensors", ema)
    assert ae is not None
    defaults = {**DEFAULTS, "fps": cfg.fps, "seconds": (cfg.frames - 1) / cfg.fps}
    flow = FlowConfig.from_dict(cfg.flow).to_dict()
    save_bundle(out, autoencoder=ae, dit=ema, text_encoder=cfg.text_encoder, flow=flow, defaults=defaults,
                preset=cfg.model.get("preset"), extra={"training": {"config": cfg.to_dict()}})
    return out


@torch.no_grad()
def set_latent_normalisation(ae: VideoAutoencoder, cfg: TrainConfig, dev: torch.device, base: Path | None = None,
                             batches: int = 4) -> None:
    """Shift and scale so the DiT sees latents of mean 0 and unit variance (measured on full frames)."""
    ae.config.shift_factor, ae.config.scaling_factor = 0.0, 1.0
    spec = BatchSpec(cfg.batch_size, cfg.sizes, max(cfg.frames, 17), cfg.fps)
    data = ClipBatches(_source(cfg, base, cfg.data_seed + 1),
                       spec, cfg.data_seed + 1)
    zs = [ae.eval().to(dev).encode_latents(clips_to_tensor(data.batch(b)[0], dev)).flatten() for b in range(batches)]
    z = torch.cat(zs)
    ae.config.shift_factor, ae.config.scaling_factor = float(z.mean()), float(1.0 / z.std().clamp(min=1e-6))


class _Writer:
    """The run's log, loss curve and samples (rank 0 only)."""

    def __init__(self, out: Path, cfg: TrainConfig, active: bool, step: int) -> None:
        self.out, self.cfg, self.active = out, cfg, active
        self.log_path = out / "log.jsonl"
        if active:
            out.mkdir(parents=True, exist_ok=True)
            if self.log_path.exists():  # a resumed run drops what was logged after its checkpoint
                rows = [r for r in self.log_path.read_text().splitlines() if r and json.loads(r)["step"] <= step]
                self.log_path.write_text("".join(r + "\n" for r in rows))

    def log(self, row: dict) -> None:
        if self.active:
            with self.log_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")

    def plot(self) -> None:
        from .plots import loss_curve

        rows = [json.loads(r) for r in self.log_path.read_text().splitlines() if r] if self.log_path.exists() else []
        if rows:
            loss_curve([r["step"] for r in rows], [r["loss"] for r in rows], self.out / "loss.png",
                       title=f"{self.cfg.kind} training loss")

    @torch.no_grad()
    def samples(self, step: int, ema: nn.Module, ae: VideoAutoencoder | None, cfg: TrainConfig,
                dev: torch.device) -> None:
        from .plots import frame_strip

        folder = self.out / "samples"
        if cfg.kind == "autoencoder":
            source = ShapesSource(cfg.data_seed + 2, allow_held_out=True) if cfg.data == "shapes" else None
            if source is None:
                return
            clip, _ = source.item(0, 128, 128, 17, cfg.fps)
            video = clips_to_tensor(clip[None], dev)
            recon = ema.eval().decode(ema.encode(video).mean, frames=video.shape[2]).clamp(-1, 1)
            rows = [clip, ((recon[0].permute(1, 2, 3, 0) + 1) * 127.5).round().byte().cpu().numpy()]
            frame_strip(rows, folder / f"step-{step:06d}.png", labels=["input", "reconstruction"])
            self.plot()
            return
        from .generate import VideoGenerator

        gen = VideoGenerator(ae, ema.eval(), load_text_encoder(cfg.text_encoder, str(dev)),
                             flow=RectifiedFlow(FlowConfig.from_dict(cfg.flow)), device=dev)
        w, h = cfg.sizes[0]
        rows = [gen.generate(p, width=w, height=h, frames=cfg.frames, seed=0) for p in cfg.sample_prompts]
        frame_strip(rows, folder / f"step-{step:06d}.png", labels=cfg.sample_prompts)
        self.plot()
