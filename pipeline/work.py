"""The three workflows as plain functions: verify, sign, generate.

Each takes a :class:`JobContext` (settings, artifact store, a scratch directory and a progress
callback) and returns an :class:`~pipeline.jobs.Outcome`; none of them knows about Celery or the
job table, so they are tested directly. Provenance itself (watermark, C2PA, manifest store) is
``provenance.credentials``, reached through :mod:`pipeline.credentials`.

Errors they raise on purpose: ``MediaError`` and ``JobInputError`` (bad input),
``ComponentUnavailableError`` (no generator, no checkpoint, no C2PA), ``ProvenanceError``
(signing refused), ``TransientError`` (storage hiccup, retried).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from media import probe
from settings import Settings
from storage import ArtifactStore, check_sha256

from . import credentials, generation
from .errors import JobInputError
from .jobs import NewArtifact, Outcome
from .representation import clean_report

log = logging.getLogger(__name__)

SOURCES = ("capture", "edit", "generated")
STILL_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg"}

Progress = Callable[[str, float], None]


@dataclass
class JobContext:
    """What a workflow may use. ``progress(stage, percent)`` also raises when the job is cancelled."""

    job_id: str
    params: dict[str, Any]
    settings: Settings
    store: ArtifactStore
    scratch: Path
    progress: Progress

    def param(self, name: str, kind: type, default: Any = ...) -> Any:
        value = self.params.get(name, default)
        if value is ...:
            raise JobInputError(f"missing parameter {name!r}")
        if value is None and default is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise JobInputError(f"parameter {name!r} must be {kind.__name__}, not {type(value).__name__}")
        return value

    def input_sha256(self) -> str:
        ref = self.param("input", dict)
        try:
            return check_sha256(ref.get("sha256", ""))
        except Exception:
            raise JobInputError("parameter 'input' does not name a stored artifact") from None

    @contextlib.contextmanager
    def input_file(self) -> Iterator[Path]:
        """The job's input as a local file named as the user named it (so errors name it too)."""
        name = safe_filename(self.param("filename", str, ""))
        with self.store.local_copy(self.input_sha256(), self.scratch) as blob:
            named = self.scratch / "input" / name
            named.parent.mkdir(parents=True, exist_ok=True)
            named.unlink(missing_ok=True)
            named.symlink_to(blob)
            try:
                yield named
            finally:
                named.unlink(missing_ok=True)


def safe_filename(name: str, default: str = "upload") -> str:
    """A user's file name reduced to a harmless one: no directories, no leading dots, no oddities."""
    base = re.sub(r"[^A-Za-z0-9._ -]+", "_", Path(str(name).replace("\\", "/")).name).strip(" .")
    return base[:200] or default


def seed_for(job_id: str) -> int:
    """The sampling seed of a job that gave none: the same on every retry, so a rerun after a
    crash generates the same clip."""
    return int.from_bytes(hashlib.sha256(f"veriframe.seed.v1:{job_id}".encode()).digest()[:4], "big") >> 1


# --- verify -----------------------------------------------------------------------------------


def verify(ctx: JobContext) -> Outcome:
    """Probe -> C2PA read + watermark detect (+ recovery through the manifest store) -> detector
    -> the report, stored as JSON, and its keyframe pictures, stored as artifacts whose role is the
    name the report gives them (``keyframe-1``, ``heatmap-1``, ...)."""
    with ctx.input_file() as path:
        ctx.progress("probe", 2.0)
        probe(path, ctx.settings.media_limits)  # refuse bad input before the heavy stages
        ctx.progress("credentials, watermark and detector", 5.0)
        report, pictures = credentials.verify(path, ctx.settings)
    ctx.progress("store", 95.0)
    # Stored without the worker's scratch path: the report is an artifact its owner downloads as is.
    ref = ctx.store.put_bytes(json.dumps(clean_report(report), indent=2, sort_keys=True, default=str).encode())
    # Content-addressed blobs and one artifact per (job, role): a rerun stores nothing twice.
    stored = [(p, ctx.store.put_bytes(p.data)) for p in pictures]
    c2pa, mark = report.get("c2pa", {}), report.get("watermark", {})
    summary = {
        "c2pa_state": c2pa.get("state"),
        "recovered": bool(c2pa.get("recovered")),
        "watermark_present": bool(mark.get("present")),
        "payload": mark.get("payload"),
        "detector_probability": (report.get("detector") or {}).get("probability"),
        "verdict": (report.get("verdict") or {}).get("label"),
    }
    return Outcome(
        result={"report": ref.to_dict(), "summary": summary},
        artifacts=[NewArtifact("report", ref.sha256, ref.size, "application/json", "report.json"),
                   *(NewArtifact(p.name, r.sha256, r.size, p.media_type, p.filename) for p, r in stored)],
    )


# --- sign (and the tail of generate) ----------------------------------------------------------


def _output_name(src: Path, filename: str, settings: Settings) -> tuple[str, str]:
    """(file name, media type) of what we write: an MP4 for video, the still's own format."""
    info = probe(src, settings.media_limits)
    stem = Path(filename).stem or "clip"
    if info.is_still:
        ext = Path(filename).suffix.lower().lstrip(".")
        ext = ext if ext in STILL_TYPES else "png"
        return f"{stem}.signed.{ext}", STILL_TYPES[ext]
    return f"{stem}.signed.mp4", "video/mp4"


def _issue_and_store(
    ctx: JobContext,
    src: Path,
    *,
    filename: str,
    source: str,
    watermark: bool,
    generation_meta: dict[str, Any] | None,
    include_prompt: bool,
    percent: float,
) -> Outcome:
    """Watermark + sign ``src`` (manifest stored by payload), then store the file and manifest."""
    name, media_type = _output_name(src, filename, ctx.settings)
    ctx.progress("watermark and sign", percent)
    issued = credentials.issue(
        src, ctx.scratch / name, ctx.settings, source=source, title=ctx.param("title", str, None) or name,
        author=ctx.param("author", str, None), generation=generation_meta, include_prompt=include_prompt,
        watermark=watermark,
    )
    ctx.progress("store", 95.0)
    ref = ctx.store.put_file(issued.path)
    mref = ctx.store.put_bytes(issued.manifest_bytes)
    return Outcome(
        result={
            "artifact": ref.to_dict(),
            "media_type": media_type,
            "manifest": {"label": issued.manifest_label, **mref.to_dict()},
            "watermark": {"payload": issued.payload_hex} if issued.payload_hex else None,
        },
        artifacts=[
            NewArtifact("output", ref.sha256, ref.size, media_type, name),
            NewArtifact("manifest", mref.sha256, mref.size, "application/c2pa", f"{Path(name).stem}.c2pa"),
        ],
    )


def sign(ctx: JobContext) -> Outcome:
    """A creator's clip -> watermark -> C2PA sign (manifest stored by payload) -> store."""
    source = ctx.param("source", str, "capture")
    if source not in SOURCES:
        raise JobInputError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    with ctx.input_file() as src:
        ctx.progress("probe", 2.0)
        return _issue_and_store(
            ctx, src, filename=safe_filename(ctx.param("filename", str, ""), "clip.mp4"), source=source,
            watermark=ctx.param("watermark", bool, True), generation_meta=None, include_prompt=False, percent=5.0,
        )


# --- generate ---------------------------------------------------------------------------------

GENERATE_PARAMS: dict[str, type] = {
    "width": int, "height": int, "seconds": float, "fps": float, "steps": int, "cfg": float, "seed": int,
    "negative": str, "config": str, "checkpoint": str,
}


def generate(ctx: JobContext) -> Outcome:
    """Prompt -> generator (progress per sampling step) -> watermark -> C2PA sign -> store."""
    prompt = ctx.param("prompt", str)
    if not prompt.strip():
        raise JobInputError("the prompt is empty")
    params = {name: ctx.param(name, kind, None) for name, kind in GENERATE_PARAMS.items()}
    params = {k: v for k, v in params.items() if v is not None}
    params.setdefault("seed", seed_for(ctx.job_id))
    ctx.progress("loading model", 1.0)

    def on_step(step: int, total: int) -> None:
        ctx.progress("sampling", 2.0 + 78.0 * min(step / max(total, 1), 1.0))

    raw = ctx.scratch / "generated.mp4"
    meta = generation.generate(ctx.settings, prompt, raw, params, on_step)
    record = {"prompt": prompt, **{k: params[k] for k in ("seed", "steps", "cfg") if k in params}, **meta}
    outcome = _issue_and_store(ctx, raw, filename="generated.mp4", source="generated", watermark=True,
                               generation_meta=record, include_prompt=ctx.param("include_prompt", bool, False),
                               percent=80.0)
    outcome.result["generation"] = {k: v for k, v in record.items() if k != "prompt"}
    return outcome


WORKFLOWS: dict[str, Callable[[JobContext], Outcome]] = {"verify": verify, "sign": sign, "generate": generate}
