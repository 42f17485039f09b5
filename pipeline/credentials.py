"""The pipeline's one door to Content Credentials (``provenance.credentials``), which may be missing.

Signing and verification are ``provenance.credentials.issue_credentials`` and ``verify_clip`` —
the same code ``manage.py sign``/``verify`` run, so a job's report is the CLI's report. The
manifest store they share is ``provenance.manifest_store`` (indexed by watermark payload and by
file hash). Where the C2PA wrapper or its native library is not installed, :func:`available` is
false: verification falls back to a watermark-only report and signing fails the job with a clear
"unavailable" error instead of producing an unsigned file silently.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from settings import Settings

from .errors import ComponentUnavailableError

log = logging.getLogger(__name__)

UNAVAILABLE: dict[str, Any] = {"state": "unavailable", "message": "C2PA support is not installed on this worker"}


@dataclass(frozen=True)
class Issued:
    """What issuing credentials produced: the signed file and its manifest store."""

    path: Path
    payload_hex: str | None
    manifest_label: str
    manifest_bytes: bytes


@functools.cache
def available() -> bool:
    """True when ``provenance.credentials`` (and c2pa-python under it) import on this worker."""
    try:
        import provenance.credentials  # noqa: F401
    except (ImportError, OSError) as exc:  # OSError: the native library failed to load
        log.warning("Content Credentials unavailable on this worker: %s", exc)
        return False
    return True


def issue(
    src: Path,
    dst: Path,
    settings: Settings,
    *,
    source: str,
    title: str | None = None,
    author: str | None = None,
    generation: dict[str, Any] | None = None,
    include_prompt: bool = False,
    watermark: bool = True,
) -> Issued:
    """Watermark ``src`` (unless told not to), sign it into ``dst``, store its manifest."""
    if not available():
        raise ComponentUnavailableError(UNAVAILABLE["message"] + ": cannot sign")
    from provenance.credentials import issue_credentials
    from provenance.manifest_store import ManifestStore

    issued = issue_credentials(settings, src, dst, source=source, title=title, author=author,
                               generation=generation, include_prompt=include_prompt, watermark=watermark)
    stored = ManifestStore(settings).by_label(issued.manifest_label)
    if stored is None:  # issue_credentials stores it before returning: this is a bug, not bad input
        raise RuntimeError(f"manifest {issued.manifest_label} missing from the manifest store")
    return Issued(Path(issued.out_path), issued.payload_hex, issued.manifest_label, stored.read())


def find_manifest(settings: Settings, *, payload: str | None = None, asset_sha256: str | None = None) -> bytes | None:
    """The newest manifest store veriframe signed for a watermark payload or a signed file's hash."""
    if not available() or not (payload or asset_sha256):
        return None
    from provenance.manifest_store import ManifestStore

    store = ManifestStore(settings)
    found = store.by_payload(payload) if payload else store.by_asset(str(asset_sha256))
    return found[0].read() if found else None


def verify(path: Path, settings: Settings) -> tuple[dict[str, Any], list[Any]]:
    """The provenance report of ``path`` (file facts, C2PA recovered through the watermark when
    stripped, watermark, detector) and the pictures its ``keyframes`` section names
    (``provenance.keyframes.ReportPicture``); watermark-only, without pictures, when C2PA is not
    installed."""
    if available():
        from provenance.credentials import verify_clip_pictured

        pictured = verify_clip_pictured(settings, path)
        return pictured.report, pictured.pictures
    return _watermark_only(path, settings), []


def _watermark_only(path: Path, settings: Settings) -> dict[str, Any]:
    from media import probe
    from provenance.watermark.video import detect_for_instance
    from storage import sha256_file

    info = probe(path, settings.media_limits)
    mark = detect_for_instance(settings, path)
    facts = {"sha256": sha256_file(path).sha256, **{k: v for k, v in info.to_dict().items() if k != "path"}}
    return {"version": 1, "file": facts, "c2pa": dict(UNAVAILABLE), "watermark": mark.to_dict()}
