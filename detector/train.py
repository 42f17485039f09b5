"""Train the detector on labelled clips and stills, with shortcut-removing augmentation and balanced classes.

Data: a CSV (``path,label[,source,family,split,group]``, paths relative to the CSV; label 1 = AI) or
a folder laid out as ``DIR/real/<source>/...`` and ``DIR/ai/<source>/...`` (PNG, JPEG, MP4, MOV).
A folder with a ``kit.csv`` (see `detector.datakit`) is read through the CSV.

One training sample is T=2 frames x K=2 crops of one item (two frames of a clip, or two looks at a
still), each crop through its own random `detector.augment` chain, so the attention over frames
trains too. Batches draw the class first (50/50), then a source within the class, then an item, so
neither a class nor a large source dominates. On several GPUs (``torchrun``: WORLD_SIZE > 1) the
model is wrapped in DistributedDataParallel and each rank draws its own samples; rank 0 writes.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .augment import AugmentConfig, augment, jpeg, jpeg_quality_for_crf
from .calibration import Calibration, calibrate, threshold_by_band
from .checkpoint import load_checkpoint, load_tensors, read_metadata, save_checkpoint
from .model import (
    DEFAULT_MODEL,
    Detector,
    DetectorConfig,
    DetectorEnsemble,
    ForensicDetector,
    build_model,
    config_for,
    default_device,
)

if TYPE_CHECKING:
    from .clipkit import BaseClip

log = logging.getLogger(__name__)

MEDIA_EXTS = {".png", ".jpg", ".jpeg", ".mp4", ".mov"}


@dataclass(frozen=True)
class Item:
    """One labelled file of a data set."""

    path: Path
    label: int
    source: str
    family: str = ""
    split: str = "all"
    group: str = ""


def read_items(data_dir: str | os.PathLike[str]) -> list[Item]:
    """The labelled items of a CSV file, a folder holding ``kit.csv``, or a ``real/``/``ai/`` folder."""
    data = Path(data_dir)
    if data.is_file() and data.suffix.lower() != ".csv":
        raise ValueError(f"{data} is neither a folder nor a .csv file")
    csv_path = data if data.suffix.lower() == ".csv" else data / "kit.csv"
    if csv_path.is_file():
        with csv_path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or not {"path", "label"} <= set(rows[0]):
            raise ValueError(f"{csv_path} needs at least the columns path and label")
        return [Item(csv_path.parent / r["path"], int(r["label"]),
                     r.get("source") or ("ai" if int(r["label"]) else "real"), r.get("family") or "",
                     r.get("split") or "all", r.get("group") or "") for r in rows]
    items = []
    for label, name in ((0, "real"), (1, "ai")):
        for path in sorted((data / name).rglob("*")):
            if path.suffix.lower() in MEDIA_EXTS:
                source = path.parent.name if path.parent != data / name else name
                items.append(Item(path, label, source, source if label else "real", "all", path.stem))
    if not items:
        raise ValueError(f"{data} has neither a kit.csv nor media under real/ and ai/")
    return items


def load_frames(path: Path, max_frames: int = 8) -> list[np.ndarray]:
    """RGB frames of a still (one) or a clip (up to ``max_frames``, spread), through `media`."""
    from media import iter_frames

    return [f.array for f in iter_frames(path, fmt="rgb24", sample=max_frames)]


class BalancedCrops:
    """Draws (crops, label) batches: class 50/50, then source, then item; augmentation per crop."""

    def __init__(self, items: list[Item], side: int, *, seed: int, augment_cfg: AugmentConfig,
                 frames_per_sample: int = 2, crops_per_frame: int = 2) -> None:
        self.side, self.rng, self.aug = side, np.random.default_rng(seed), augment_cfg
        self.t, self.k = frames_per_sample, crops_per_frame
        self.frames: dict[Path, list[np.ndarray]] = {}
        self.by_class: dict[int, dict[str, list[Item]]] = {0: defaultdict(list), 1: defaultdict(list)}
        for item in items:
            frames = [f for f in load_frames(item.path) if min(f.shape[:2]) >= side]
            if frames:
                self.frames[item.path] = frames
                self.by_class[item.label][item.source].append(item)
        if not self.by_class[0] or not self.by_class[1]:
            raise ValueError("training needs real and AI items at least one crop in size")

    def _crop(self, rgb: np.ndarray, side: int) -> np.ndarray:
        # Take room for the resize step, augment, then crop S at a random offset (any block phase).
        region = min(2 * side + 16, rgb.shape[0], rgb.shape[1])
        y = self.rng.integers(0, rgb.shape[0] - region + 1)
        x = self.rng.integers(0, rgb.shape[1] - region + 1)
        out = augment(rgb[y : y + region, x : x + region], self.rng, self.aug)
        if min(out.shape[:2]) < side:  # downscaled below the crop: augment without the resize
            out = augment(rgb[y : y + region, x : x + region], self.rng, replace(self.aug, p_resize=0.0))
        y = self.rng.integers(0, out.shape[0] - side + 1)
        x = self.rng.integers(0, out.shape[1] - side + 1)
        return out[y : y + side, x : x + side]

    def sample(self, side: int | None = None) -> tuple[np.ndarray, int]:
        label = int(self.rng.integers(2))
        sources = sorted(self.by_class[label])
        pool = self.by_class[label][sources[self.rng.integers(len(sources))]]
        frames = self.frames[pool[self.rng.integers(len(pool))].path]
        start = int(self.rng.integers(len(frames)))
        picks = [frames[min(start + i, len(frames) - 1)] for i in range(self.t)]
        crops = np.stack([np.stack([self._crop(f, side or self.side) for _ in range(self.k)])
                          for f in picks])  # (T, K, S, S, 3)
        return crops, label

    def batch(self, size: int, side: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` samples of ``side`` px crops (default: the model's crop; smaller ones train ``min_crop``)."""
        samples = [self.sample(side) for _ in range(size)]
        x = torch.from_numpy(np.stack([s[0] for s in samples])).permute(0, 1, 2, 5, 3, 4).float().div_(255)
        return x, torch.tensor([float(s[1]) for s in samples])  # (B, T, K, 3, S, S), (B,)


def _batch_side(cfg: DetectorConfig, small_crop_p: float, rng: np.random.Generator) -> int:
    """The crop side of one training batch: the config's crop, or with ``min_crop`` sometimes a smaller one."""
    if cfg.min_crop is None or cfg.min_crop >= cfg.crop or rng.random() >= small_crop_p:
        return cfg.crop
    return int(rng.choice(np.arange(cfg.min_crop, cfg.crop, 8)))


def detector_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """BCE on the clip logit plus BCE on every crop logit (each crop carries its clip's label)."""
    out = model(x)
    crop_y = y.view(-1, 1, 1).expand_as(out.crop_logits)
    return F.binary_cross_entropy_with_logits(out.clip_logits, y) + \
        F.binary_cross_entropy_with_logits(out.crop_logits, crop_y)


def _optim_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {}
    for pid, state in opt.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value).float() if name == "step" else value
    return tensors


def _load_optim(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state[int(pid)][name] = value
    sd = opt.state_dict()
    sd["state"] = dict(state)
    opt.load_state_dict(sd)


def init_from(model: ForensicDetector, path: str | os.PathLike[str]) -> None:
    """Load a trained checkpoint into a fresh run's ``model``: one of the same network, or a residual-only
    model grown into a two-branch one (``residual|rgb``, same backbone). Growing, the source becomes the
    residual branch and the RGB branch starts untrained with zero weight wherever the joined features are
    read (patch head, frame attention), so the grown model scores exactly as the source until it trains."""
    src, cfg = DetectorConfig.from_dict(read_metadata(path)["config"]), model.cfg
    grows = src.input == "residual" and cfg.two_branch
    # what the weights mean must match; the sampler's and the scope's fields (crop, frames, min_crop) may change
    meaning = ("backbone", "backbone_kwargs", "attention_dim", "residual_factor", "residual_std", "rgb_mean", "rgb_std")
    if any(getattr(src, f) != getattr(cfg, f) for f in meaning) or (src.input != cfg.input and not grows):
        raise ValueError(f"{Path(path).name} holds a {src.input} {src.backbone} detector that cannot start "
                         f"this run's {cfg.input} {cfg.backbone} one")
    state = model.state_dict()
    for key, value in load_tensors(path, "model.").items():
        target = state.get(key)
        if target is None or (value.shape != target.shape and not (
                grows and value.shape[:1] + value.shape[2:] == target.shape[:1] + target.shape[2:])):
            raise ValueError(f"{Path(path).name} does not match its config at {key}")
        if value.shape != target.shape:  # reads the joined features: the source's columns, then zeros
            value = torch.cat([value, value.new_zeros((value.shape[0], target.shape[1] - value.shape[1],
                                                       *value.shape[2:]))], dim=1)
        state[key] = value
    model.load_state_dict(state)


class ResidualFreeze:
    """Holds a two-branch model's residual half as loaded: the residual backbone gets no gradient, and the
    columns of the patch head and the frame attention that read residual features are written back after
    every optimiser step (AdamW's weight decay would move them even without a gradient)."""

    def __init__(self, model: ForensicDetector) -> None:
        model.backbone.requires_grad_(False)
        dim = model.patch_head.weight.shape[1] // 2  # both branches are the same backbone: residual first
        self.kept = [(w, w.detach()[:, :dim].clone()) for w in
                     (model.patch_head.weight, model.pool.value.weight, model.pool.gate.weight)]

    @torch.no_grad()
    def restore(self) -> None:
        for weight, columns in self.kept:
            weight[:, : columns.shape[1]].copy_(columns)


CALIBRATION_VARIANTS = (
    lambda rgb: jpeg(rgb, jpeg_quality_for_crf(32)),
    lambda rgb: cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA),
)


def calibrate_on_val(model: Detector, val_items: list[Item], *, target_fpr: float,
                     method: str = "temperature") -> tuple[Calibration | None, dict[str, Any]]:
    """The operating threshold for ``target_fpr`` on the val reals as given, after a JPEG re-compression at
    CRF-32 strength and after a 50% downscale (real footage as it arrives), and the temperature on all
    val items; (None, {}) without a real item in scope."""
    from .evaluate import score_items  # evaluate imports train's readers: import here, not at the top

    model.eval()
    logits = score_items(model, val_items, max_crops=model.cfg.crops_per_frame)
    labels = np.array([i.label for i in val_items])
    val_reals = [i for i in val_items if i.label == 0]
    real = np.concatenate([logits[labels == 0]] + [
        score_items(model, val_reals, max_crops=model.cfg.crops_per_frame, condition=c) for c in CALIBRATION_VARIANTS])
    real = real[~np.isnan(real)]
    keep = ~np.isnan(logits)
    logits, labels = logits[keep], labels[keep]
    if not real.size:
        return None, {}
    calibration = calibrate(real, logits, labels, target_fpr=target_fpr, method=method)
    return calibration, {"n_val": int(labels.size), "n_val_real": int(real.size),
                         "threshold_logit": calibration.threshold_logit}


# Config fields that may differ between an ensemble's members (the ensemble keeps the narrowest scope).
_MEMBER_FREE_FIELDS = ("min_crop", "version")


def build_ensemble(members: list[str | os.PathLike[str]], data_dir: str | os.PathLike[str],
                   out_path: str | os.PathLike[str], *, model_id: str, target_fpr: float = 0.01,
                   calibration_method: str = "temperature") -> dict[str, Any]:
    """Join trained detector checkpoints into one `DetectorEnsemble` and calibrate it on the val split of
    ``data_dir`` as training does; write it to ``out_path`` and return its summary.

    Members must share the input contract and backbone (every config field but ``min_crop``) and carry a
    calibration (its temperature scales the member's logits); an ensemble given as a member lends its own
    members with their temperatures (so a new model joins the shipped ensemble). The ensemble keeps the
    narrowest scope: a member without ``min_crop`` leaves it unset. Raises ValueError (a `CheckpointError`
    for unreadable files) naming the member and the field that stops it."""
    parts: list[tuple[str, str, DetectorConfig, dict[str, torch.Tensor], float]] = []  # (file, id, cfg, weights, T)
    held_out: set[str] = set()
    for path in members:
        member, name = load_checkpoint(path), Path(path).name
        if member.calibration is None:
            raise ValueError(f"{name} has no calibration: its logits have no temperature to scale by")
        held_out |= set((member.meta.get("recipe") or {}).get("held_out", []))
        if isinstance(member.model, DetectorEnsemble):  # an ensemble given as a member lends its members
            ids = member.meta["recipe"]["ensemble_of"]
            parts += [(name, mid, net.cfg, net.state_dict(), float(t))
                      for net, t, mid in zip(member.model.members, member.model.temperature, ids, strict=True)]
        else:
            parts.append((name, member.model_id, member.config, member.model.state_dict(),
                          member.calibration.temperature))
    if len(parts) < 2:
        raise ValueError("an ensemble needs at least two member models")
    first = parts[0][2].to_dict()
    for name, _, cfg, _, _ in parts:
        other = cfg.to_dict()
        for key in first:
            if key not in _MEMBER_FREE_FIELDS and other[key] != first[key]:
                raise ValueError(f"{name} differs from {parts[0][0]} in {key}: {other[key]!r} against {first[key]!r}")
    crops = [cfg.min_crop for _, _, cfg, _, _ in parts]
    cfg = replace(parts[0][2], members=len(parts), min_crop=None if None in crops else max(crops))
    ensemble = DetectorEnsemble(cfg)
    for net, (_, _, _, weights, _) in zip(ensemble.members, parts, strict=True):
        net.load_state_dict(weights)
    ensemble.temperature.copy_(torch.tensor([t for *_, t in parts]))
    items = read_items(data_dir)
    val_items = [i for i in items if i.split == "val"]
    if not val_items:
        raise ValueError(f"{data_dir} has no val split to calibrate the ensemble on")
    val_items = [i for i in val_items if i.family not in held_out]
    calibration, val_summary = calibrate_on_val(ensemble, val_items, target_fpr=target_fpr,
                                                method=calibration_method)
    recipe = {"ensemble_of": [mid for _, mid, *_ in parts], "member_temperatures": ensemble.temperature.tolist(),
              "held_out": sorted(held_out)}
    save_checkpoint(out_path, ensemble, model_id=model_id, calibration=calibration,
                    meta={"recipe": recipe, "val": val_summary})
    return {"model_id": model_id, "recipe": recipe, "config": cfg.to_dict(),
            "calibration": calibration.to_dict() if calibration else None, "val": val_summary}


def train_detector(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    config: str | DetectorConfig = DEFAULT_MODEL,
    steps: int = 1000,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    held_out: tuple[str, ...] = (),
    augment_cfg: AugmentConfig | None = None,
    target_fpr: float = 0.01,
    calibration_method: str = "temperature",
    checkpoint_every: int = 50,
    max_minutes: float | None = None,
    resume: bool = False,
    model_id: str | None = None,
    threads: int | None = None,
    small_crop_p: float = 0.25,
    init: str | os.PathLike[str] | None = None,
    freeze_residual: bool = False,
) -> dict[str, Any]:
    """Train on the ``train`` split (or everything, for data without splits), calibrate on ``val``.

    The operating threshold is set for ``target_fpr`` on the val split's reals as given, after a JPEG
    re-compression at CRF-32 strength and after a 50% downscale; the temperature on all val items.
    Writes ``out_dir/last.safetensors`` (weights + optimiser, every ``checkpoint_every`` steps; the
    ``resume`` starting point) and ``out_dir/detector.safetensors`` (weights + config + calibration +
    recipe). ``held_out`` families are never trained on. ``max_minutes`` stops early, cleanly, at a
    wall-clock budget. ``threads`` sets torch's CPU threads for the process: on a shared, oversubscribed
    CPU one thread was 8x faster per step than two (OpenMP threads waiting on each other). With the
    config's ``min_crop`` set, ``small_crop_p`` of the batches use a crop side drawn from ``min_crop``
    up to ``crop`` in steps of 8, so small frames are scored by a model that saw such crops.
    ``init``: a trained checkpoint to start from (see `init_from`; AdamW and the schedule start anew).
    ``freeze_residual`` (two-branch models grown from a residual one): the residual branch and the weights
    that read its features stay as loaded, so the RGB branch trains as a correction added to the source
    model's scores.
    Returns the training summary (also in ``out_dir/train.json``).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if torch.cuda.is_available() \
        else default_device()
    cfg = config_for(config) if isinstance(config, str) else config
    if cfg.members > 1:
        raise ValueError("an ensemble is not trained: train its members, then join them (build_ensemble)")
    if freeze_residual and (init is None or not cfg.two_branch):
        raise ValueError("freeze_residual needs a two-branch model (mnv3s-050-2b) started from a trained one (init)")
    items = read_items(data_dir)
    has_splits = any(i.split != "all" for i in items)
    train_items = [i for i in items if (i.split == "train" or not has_splits) and i.family not in held_out]
    val_items = [i for i in items if i.split == "val" and i.family not in held_out]
    torch.manual_seed(seed)
    model = build_model(cfg, device)
    assert isinstance(model, ForensicDetector)  # members > 1 was refused above
    if init is not None:
        init_from(model, init)
    keep_residual = ResidualFreeze(model) if freeze_residual else None
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    start_step, history = 0, []
    last = out / "last.safetensors"
    if resume and last.is_file():
        meta = read_metadata(last)["meta"]
        model.load_state_dict({k: v.to(device) for k, v in load_tensors(last, "model.").items()})
        _load_optim(opt, {k: v.to(device) for k, v in load_tensors(last, "optim.").items()})
        start_step, history = int(meta["step"]), list(meta.get("history", []))
        log.info("resumed from step %d", start_step)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    data = BalancedCrops(train_items, cfg.crop, seed=seed * 1000 + rank + start_step,
                         augment_cfg=augment_cfg or AugmentConfig())
    began, step = time.monotonic(), start_step
    recipe = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "held_out": list(held_out),
              "augment": (augment_cfg or AugmentConfig()).__dict__, "world_size": world,
              "small_crop_p": small_crop_p if cfg.min_crop is not None else 0.0,
              "train_items": len(train_items), "val_items": len(val_items),
              "init": read_metadata(init)["model_id"] if init is not None else None,
              "freeze_residual": freeze_residual}
    model.train()
    if keep_residual is not None:
        model.backbone.eval()  # frozen: its batch-norm statistics stay the source's too
    while step < steps:
        if max_minutes is not None and time.monotonic() - began > max_minutes * 60:
            log.info("stopping at step %d: %.1f minute budget reached", step, max_minutes)
            break
        # Cosine decay over the planned steps, after a short warm-up.
        lr_now = lr * min(1.0, (step + 1) / 20) * 0.5 * (1 + np.cos(np.pi * step / max(steps, 1)))
        for group in opt.param_groups:
            group["lr"] = lr_now
        x, y = data.batch(batch_size, _batch_side(cfg, small_crop_p, data.rng))
        loss = detector_loss(net, x.to(device), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if keep_residual is not None:
            keep_residual.restore()
        step += 1
        history.append([step, round(loss.item(), 5)])
        if step % 10 == 0:
            log.info("step %d loss %.4f (%.0fs)", step, history[-1][1], time.monotonic() - began)
        if rank == 0 and (step % checkpoint_every == 0 or step == steps):
            save_checkpoint(last, model, model_id="last", extra_tensors=_optim_tensors(opt),
                            meta={"step": step, "history": history[-2000:], "recipe": recipe})
    if rank == 0 and step % checkpoint_every:
        save_checkpoint(last, model, model_id="last", extra_tensors=_optim_tensors(opt),
                        meta={"step": step, "history": history[-2000:], "recipe": recipe})
    model.eval()
    calibration, val_summary = None, {}
    if rank == 0 and val_items:
        calibration, val_summary = calibrate_on_val(model, val_items, target_fpr=target_fpr,
                                                    method=calibration_method)
    summary = {"model_id": model_id or f"{cfg.backbone}-s{step}", "steps_done": step,
               "minutes": round((time.monotonic() - began) / 60, 2), "final_loss": history[-1][1] if history else None,
               "first_loss": history[0][1] if history else None, "recipe": recipe, "config": cfg.to_dict(),
               "calibration": calibration.to_dict() if calibration else None, "val": val_summary}
    if rank == 0:
        save_checkpoint(out / "detector.safetensors", model, model_id=summary["model_id"], calibration=calibration,
                        meta={"recipe": recipe, "steps_done": step, "val": val_summary})
        (out / "train.json").write_text(json.dumps(summary, indent=2))
    return summary


def config_from_checkpoint(path: str | os.PathLike[str]) -> DetectorConfig:
    return DetectorConfig.from_dict(read_metadata(path)["config"])


def calibrate_on_clips(weights: str | os.PathLike[str], kit_dir: str | os.PathLike[str] | None, *,
                       clips: Iterable[BaseClip] | None = None, model_id: str | None = None,
                       out: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Clip thresholds for the frame model, by band of the decoder's mean quantiser, from the whole clips
    of the clip kit's val split (`clipkit.analyse_clip_kit`): the decision `analyse_file` makes is on a
    clip's pooled logit, which the image-level threshold of training was not set on (on camera pans at
    CRF 28 that threshold flagged 1.8% of real test clips). Each band's threshold holds the training
    target for the band's real clips pooled and per encoding condition (`threshold_by_band`) and is never
    below the image-level threshold, which stills and codecs without a quantiser keep using as
    ``threshold_logit`` (the highest). The weights are untouched; writes ``out`` (default: ``weights``
    in place) under ``model_id`` (default: the file's) and returns a summary. ``clips`` (labelled base
    clips, val split) replace the kit's: then ``kit_dir`` may be None."""
    from .clipkit import analyse_clip_kit, read_clip_kit

    loaded = load_checkpoint(weights)
    if loaded.calibration is None:
        raise ValueError(f"{Path(weights).name} has no calibration to extend: train it with a val split")
    image_threshold = float(loaded.meta.get("val", {}).get("threshold_logit", loaded.calibration.threshold_logit))
    info = read_clip_kit(kit_dir).info if clips is None else {"own_clips": True}
    records = analyse_clip_kit(kit_dir, info, splits=("val",), model=loaded, clips=clips)
    reals = [r for r in records if r["label"] == 0 and r["frame_in_scope"] and r["frame_logit"] is not None
             and r["mean_qp"] is not None]
    cal = replace(loaded.calibration)  # no real clip with a quantiser in scope: threshold_by_band refuses
    cal.qp_bands = threshold_by_band(np.array([r["frame_logit"] for r in reals]), [r["condition"] for r in reals],
                                     [r["mean_qp"] for r in reals], cal.target_fpr, floor=image_threshold)
    cal.threshold_logit = cal.qp_bands[-1][1]  # the highest: the bands never fall, nor below image_threshold
    ai = [r for r in records if r["label"] == 1 and r["frame_in_scope"] and r["frame_logit"] is not None]

    def flagged(rows: list[dict[str, Any]]) -> int:
        return sum(r["frame_logit"] > cal.threshold_for(r["mean_qp"]) for r in rows)

    summary = {"model_id": model_id or loaded.model_id, "image_threshold_logit": image_threshold,
               "qp_bands": cal.qp_bands, "threshold_logit": cal.threshold_logit, "n_real_clips": len(reals),
               "val_real_flagged": flagged(reals), "val_ai_flagged": flagged(ai), "val_ai_in_scope": len(ai),
               "kit": info}
    meta = {**loaded.meta, "clip_calibration": summary}
    save_checkpoint(out or weights, loaded.model, model_id=summary["model_id"], calibration=cal, meta=meta)
    return summary
