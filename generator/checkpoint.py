"""Checkpoints: safetensors weights with their JSON config, and the model bundle that ties them.

A component file (`autoencoder.safetensors`, `dit.safetensors`) is self-describing: its header
metadata holds the format name, the format version, the component kind and the config dict, so it
loads with nothing but safetensors and never unpickles anything. A bundle is a directory with a
`model.json` (format, version, DiT preset, text encoder, flow settings, generation defaults) and the
two component files it names; that directory is what `generate --checkpoint` takes.

Loading checks the format, the version, every tensor name and every shape against the network the
config describes before copying anything, and names the first tensor that does not fit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from media import atomic_path

from .autoencoder import AutoencoderConfig, VideoAutoencoder
from .dit import DiTConfig, VideoDiT
from .errors import CheckpointError, CheckpointMismatchError

FORMAT = "veriframe-generator"
VERSION = 1  # bump when the layout changes; loaders refuse newer versions and migrate older ones
BUNDLE_FILE = "model.json"
COMPONENTS: dict[str, tuple[type, type]] = {
    "autoencoder": (AutoencoderConfig, VideoAutoencoder),
    "dit": (DiTConfig, VideoDiT),
}


def _kind_of(model: nn.Module) -> str:
    for kind, (_, cls) in COMPONENTS.items():
        if isinstance(model, cls):
            return kind
    raise TypeError(f"not a generator component: {type(model).__name__}")


def save_component(path: str | os.PathLike[str], model: VideoAutoencoder | VideoDiT, *,
                   dtype: torch.dtype = torch.float32) -> Path:
    """Write the weights (cast to `dtype`, e.g. bfloat16 to halve the file) and config, atomically."""
    path = Path(path)
    metadata = {"format": FORMAT, "version": str(VERSION), "kind": _kind_of(model),
                "config": json.dumps(model.config.to_dict())}
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous().clone()
               for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_component_header(path: str | os.PathLike[str]) -> tuple[str, dict, dict[str, tuple[int, ...]]]:
    """(kind, config dict, {tensor name: shape}) of a component file, without reading its weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path.name} is not a readable safetensors file: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path.name} is not a veriframe generator checkpoint (format {meta.get('format')!r})")
    _check_version(path.name, meta.get("version"))
    kind = meta.get("kind")
    if kind not in COMPONENTS:
        raise CheckpointError(f"{path.name}: unknown component kind {kind!r}")
    try:
        config = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path.name}: config metadata missing or not JSON") from exc
    return kind, config, shapes


def _check_version(name: str, version: object) -> None:
    try:
        v = int(version)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{name}: missing or invalid format version {version!r}") from exc
    if v > VERSION:
        raise CheckpointError(f"{name} has format version {v}; this veriframe reads up to {VERSION}: upgrade it")
    if v < 1:
        raise CheckpointError(f"{name}: invalid format version {v}")


def validate_shapes(name: str, expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> None:
    """Raise `CheckpointMismatchError` naming the first missing, unexpected or misshapen tensor."""
    for key, shape in expected.items():
        if key not in found:
            raise CheckpointMismatchError(f"{name}: tensor '{key}' {list(shape)} is missing", key)
        if tuple(found[key]) != tuple(shape):
            raise CheckpointMismatchError(
                f"{name}: tensor '{key}' has shape {list(found[key])} but the config expects {list(shape)}", key
            )
    for key in found:
        if key not in expected:
            raise CheckpointMismatchError(f"{name}: unexpected tensor '{key}' (not in the configured network)", key)


def load_component(path: str | os.PathLike[str], kind: str | None = None, *,
                   device: torch.device | str = "cpu") -> VideoAutoencoder | VideoDiT:
    """Build the network its config describes, check every tensor, load the weights (as float32)."""
    path = Path(path)
    found_kind, config_dict, shapes = read_component_header(path)
    if kind is not None and found_kind != kind:
        raise CheckpointError(f"{path.name} holds a {found_kind}, not a {kind}")
    config_cls, model_cls = COMPONENTS[found_kind]
    try:
        config = config_cls.from_dict(config_dict)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: invalid {found_kind} config: {exc}") from exc
    with torch.device("meta"):  # the expected shapes, without allocating the network twice
        expected = {k: tuple(v.shape) for k, v in model_cls(config).state_dict().items()}
    validate_shapes(path.name, expected, shapes)
    model = model_cls(config)
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def save_bundle(directory: str | os.PathLike[str], *, autoencoder: VideoAutoencoder, dit: VideoDiT,
                text_encoder: str, flow: dict, defaults: dict, preset: str | None = None,
                dtype: torch.dtype = torch.float32, extra: dict | None = None) -> Path:
    """Write a complete generator (two component files and model.json) into `directory`."""
    directory = Path(directory)
    save_component(directory / "autoencoder.safetensors", autoencoder, dtype=dtype)
    save_component(directory / "dit.safetensors", dit, dtype=dtype)
    bundle = {"format": FORMAT, "version": VERSION, "preset": preset, "text_encoder": text_encoder,
              "autoencoder": "autoencoder.safetensors", "dit": "dit.safetensors", "flow": flow,
              "defaults": defaults, **(extra or {})}
    with atomic_path(directory / BUNDLE_FILE) as tmp:
        tmp.write_text(json.dumps(bundle, indent=2) + "\n")
    return directory


def read_bundle(directory: str | os.PathLike[str]) -> dict:
    """model.json of a bundle directory (or the file itself), checked for format and version."""
    path = Path(directory)
    path = path / BUNDLE_FILE if path.is_dir() else path
    if not path.is_file():
        raise CheckpointError(f"no {BUNDLE_FILE} at {path.parent}")
    try:
        bundle = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a veriframe generator bundle")
    _check_version(path.name, bundle.get("version"))
    for key in ("autoencoder", "dit", "text_encoder"):
        if key not in bundle:
            raise CheckpointError(f"{path}: missing '{key}'")
    bundle["_dir"] = str(path.parent)
    return bundle
