"""Detector checkpoints: safetensors weights with the config, calibration and training facts as JSON metadata.

Nothing is pickled: the file loads with ``safetensors`` alone, and the model is rebuilt from the
stored `DetectorConfig` (backbone name and input contract) before the weights are loaded into it.
Files are written beside the target and renamed into place only when complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from media import atomic_path

from .calibration import Calibration
from .model import Detector, DetectorConfig, build_model

FORMAT = "veriframe.detector"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """The file is not a veriframe detector checkpoint this version can read."""


@dataclass
class LoadedDetector:
    """A model ready for inference, with what was stored beside it."""

    model: Detector
    config: DetectorConfig
    calibration: Calibration | None
    model_id: str
    meta: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Detector,
    *,
    model_id: str,
    calibration: Calibration | None = None,
    meta: dict[str, Any] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` (and optional extra tensors, e.g. optimiser state under ``optim.``) atomically."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors.update({k: v.detach().contiguous().cpu() for k, v in (extra_tensors or {}).items()})
    return write_checkpoint(path, tensors, model_id=model_id, config=model.cfg.to_dict(), calibration=calibration,
                            meta=meta)


def write_checkpoint(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], *, model_id: str,
                     config: dict[str, Any], calibration: Calibration | None, meta: dict[str, Any] | None,
                     fmt: tuple[str, int] = (FORMAT, FORMAT_VERSION)) -> Path:
    """Any of the detector's components (``fmt``: format name and version) as safetensors, atomically, with
    its config, calibration and facts as JSON metadata: the frame model here, the temporal head in
    `detector.temporal`."""
    path = Path(path)
    metadata = {
        "format": fmt[0],
        "format_version": str(fmt[1]),
        "model_id": model_id,
        "config": json.dumps(config),
        "calibration": json.dumps(calibration.to_dict() if calibration else None),
        "meta": json.dumps(meta or {}),
    }
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return path


def read_metadata(path: str | os.PathLike[str], fmt: tuple[str, int] = (FORMAT, FORMAT_VERSION)) -> dict[str, Any]:
    """The checkpoint's metadata, JSON fields decoded; raises `CheckpointError` for foreign or damaged files."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own SafetensorError for bad headers
        raise CheckpointError(f"{Path(path).name} is not a readable safetensors file") from exc
    if raw.get("format") != fmt[0] or raw.get("format_version") != str(fmt[1]):
        raise CheckpointError(f"{Path(path).name} is not a {fmt[0]} v{fmt[1]} checkpoint")
    try:
        return {
            "model_id": raw.get("model_id", Path(path).stem),
            "config": json.loads(raw["config"]),
            "calibration": json.loads(raw.get("calibration") or "null"),
            "meta": json.loads(raw.get("meta") or "{}"),
        }
    except (KeyError, ValueError) as exc:  # metadata missing or not JSON
        raise CheckpointError(f"{Path(path).name} is a damaged {fmt[0]} checkpoint: {exc!r}") from None


def load_tensors(path: str | os.PathLike[str], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors stored under ``prefix`` (``"model."``, ``"optim."``), prefix removed."""
    out = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            if key.startswith(prefix):
                out[key[len(prefix):]] = f.get_tensor(key)
    return out


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device | None = None) -> LoadedDetector:
    """Rebuild the model from the stored config and load its weights, in eval mode."""
    info = read_metadata(path)
    cfg = DetectorConfig.from_dict(info["config"])
    model = build_model(cfg, device="cpu")
    missing, unexpected = model.load_state_dict(load_tensors(path, "model."), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{Path(path).name} does not match its config: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
    model = model.to(device or "cpu").eval()
    calibration = Calibration.from_dict(info["calibration"]) if info["calibration"] else None
    return LoadedDetector(model, cfg, calibration, info["model_id"], info["meta"])
