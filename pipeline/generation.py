"""The pipeline's one door to the video generator, which may be missing or have no checkpoint.

The generator is found through the ``generator_entrypoint`` setting ("module:function", by
default ``generator.cli:generate_to_file``). The contract the pipeline relies on::

    generate_to_file(prompt, out_path, *, width, height, seconds, fps, steps, cfg, seed,
                     negative, config, checkpoint, progress, device) -> Path | dict | None

``progress(step, total)`` is called once per sampling step. A missing checkpoint raises
``generator.errors.CheckpointError`` (or ``FileNotFoundError``): the job fails as
"unavailable"; ``GeneratorError``/``ValueError`` mean bad parameters. A dict (or an object with
``to_dict``) returned is generation metadata for the manifest (model id, checkpoint sha256).
Parameters the function does not declare are not passed, so a simpler generator plugs in too.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from settings import Settings

from .errors import ComponentUnavailableError, JobInputError

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@functools.cache
def load(entrypoint: str) -> Callable[..., Any]:
    """Import ``module:function``; ComponentUnavailableError when it is not there."""
    module_name, _, attr = entrypoint.partition(":")
    if not module_name or not attr:
        raise ComponentUnavailableError(f"generator_entrypoint {entrypoint!r} is not 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ComponentUnavailableError(
            f"the video generator is not available on this worker ({module_name}: {exc})"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ComponentUnavailableError(
            f"the video generator is not available on this worker ({entrypoint} does not exist yet)"
        )
    return fn


def _device(setting: str) -> str:
    if setting != "auto":
        return setting
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _classify(exc: Exception) -> Exception | None:
    """The pipeline error a generator failure maps to, or None to let it through as a bug."""
    checkpoint_errors: tuple[type[BaseException], ...] = (FileNotFoundError,)
    input_errors: tuple[type[BaseException], ...] = (ValueError,)  # media.MediaError is one too
    if type(exc).__module__.startswith("generator"):
        from generator.errors import CheckpointError, GeneratorError

        checkpoint_errors, input_errors = (CheckpointError, FileNotFoundError), (GeneratorError, ValueError)
    if isinstance(exc, checkpoint_errors):
        return ComponentUnavailableError(f"the generator has no usable checkpoint: {exc}")
    if isinstance(exc, input_errors):
        return JobInputError(f"generation refused: {exc}")
    return None


def generate(settings: Settings, prompt: str, out_path: Path, params: dict[str, Any],
             progress: Progress) -> dict[str, Any]:
    """Run the configured generator into ``out_path``; returns JSON metadata for the manifest."""
    fn = load(settings.generator_entrypoint)
    signature = inspect.signature(fn)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    wanted: dict[str, Any] = {**params, "progress": progress}
    if "device" in signature.parameters:
        wanted["device"] = _device(settings.generator_device)  # may import torch: only when declared
    if not takes_any:
        wanted = {k: v for k, v in wanted.items() if k in signature.parameters}
    try:
        meta = fn(prompt, out_path, **wanted)
    except Exception as exc:
        mapped = _classify(exc)
        if mapped is None:
            raise
        raise mapped from None
    if not out_path.is_file():
        raise ComponentUnavailableError(f"the generator returned without writing {out_path.name}")
    if hasattr(meta, "to_dict"):
        meta = meta.to_dict()
    meta = dict(meta) if isinstance(meta, dict) else {}
    try:
        json.dumps(meta)
    except (TypeError, ValueError):
        log.warning("generator metadata is not JSON; recording the parameters only")
        meta = {}
    return meta
