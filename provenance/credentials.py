"""Durable Content Credentials: watermark + signed manifest + manifest store, both directions.

``issue_credentials`` marks a clip with a fresh random payload, signs it with a manifest whose
``c2pa.soft-binding`` names that payload, and stores the manifest indexed by payload and by the
signed file's hash. ``verify_clip`` reads the embedded manifest, looks for the watermark and,
when the manifest is gone but the mark decodes, validates the stored manifest against the clip
(``recovered``; "altered since signing" when only the hard binding fails, as after a re-encode).
The watermark and the AI-origin detector read their frames from one decode pass (`scan_frames`);
`verify_clip_pictured` takes the report's keyframes (and the detector's heatmaps over them) from it too.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from media import FrameRequest, MediaInfo, MediaLimits, feed_frames, probe
from media.keyframes import KEYFRAMES, KeyframeStrip
from settings import Settings
from storage import sha256_file

from .c2pa import TrustConfig, local_signer, sign_file, verify_file
from .keyframes import ReportPicture, keyframes_section
from .manifest_store import ManifestStore
from .watermark import ALGORITHM, DetectionResult
from .watermark.video import WatermarkScan, embed_for_instance, scan_for_instance

if TYPE_CHECKING:  # the detector is optional: imported where it is used, see _start_detector
    from detector import ClipAnalysis, DetectorReport

log = logging.getLogger(__name__)
# 2: detector, artifacts and verdict sections; 3: keyframes section; 4: the detector's temporal head
# (`detector.temporal`, `detector.frame_flagged`; `detector.flagged` is either model's decision);
# 5: `detector.mean_qp`, and heavy compression takes the temporal head out of scope too
REPORT_VERSION = 5


def trust_config(settings: Settings, extra_anchors: tuple[Path, ...] = (),
                 allowed_ekus: Path | None = None) -> TrustConfig:
    """The instance's trust (its dev CA and configured anchors), plus extras for one call."""
    configured = tuple(Path(p) for p in settings.trust_anchor_files.split(",") if p.strip())
    ekus = Path(settings.allowed_ekus_file) if settings.allowed_ekus_file else None
    trust = TrustConfig.for_instance(settings.instance, anchor_files=configured, allowed_ekus_file=ekus)
    return trust.with_extra(extra_anchors, allowed_ekus) if (extra_anchors or allowed_ekus) else trust


@dataclass(frozen=True)
class IssuedCredentials:
    out_path: Path
    payload_hex: str | None
    manifest_label: str
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"out_path": str(self.out_path), "payload": self.payload_hex, "manifest_label": self.manifest_label,
                "sha256": self.sha256}


def issue_credentials(settings: Settings, src: Path, dst: Path, *, source: str, title: str | None = None,
                      author: str | None = None, generation: dict[str, Any] | None = None,
                      include_prompt: bool = False, watermark: bool = True) -> IssuedCredentials:
    """Watermark ``src`` (unless told not to), sign it into ``dst`` and store the manifest."""
    payload = secrets.token_bytes(8) if watermark else None
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".veriframe-") as tmp:
        signed_input = src
        if payload is not None:
            signed_input = Path(tmp) / f"marked{dst.suffix}"
            embed_for_instance(settings, src, signed_input, payload)
        else:
            probe(src, settings.media_limits)
        result = sign_file(
            signed_input, dst, local_signer(settings.instance, tsa_url=settings.tsa_url or None),
            source=source, title=title or src.name, author=author,
            soft_binding={"alg": ALGORITHM, "value": payload.hex()} if payload else None,
            generation=generation, include_prompt=include_prompt,
            parent_path=src if source == "edit" else None,
        )
    ManifestStore(settings).put(label=result.manifest_label, manifest=result.manifest_bytes,
                                asset_sha256=result.sha256, payload_hex=payload.hex() if payload else None,
                                source=source)
    return IssuedCredentials(dst, payload.hex() if payload else None, result.manifest_label, result.sha256)


@dataclass(frozen=True)
class PicturedReport:
    """A verification report and the pictures its ``keyframes`` section names."""

    report: dict[str, Any]
    pictures: list[ReportPicture]


def verify_clip(settings: Settings, path: Path, *, extra_anchors: tuple[Path, ...] = (),
                allowed_ekus: Path | None = None) -> dict[str, Any]:
    """The full provenance report of one file: file facts, C2PA, watermark, recovery, AI-origin detector."""
    return verify_clip_pictured(settings, path, keyframes=0, extra_anchors=extra_anchors,
                                allowed_ekus=allowed_ekus).report


def verify_clip_pictured(settings: Settings, path: Path, *, keyframes: int = KEYFRAMES,
                         extra_anchors: tuple[Path, ...] = (), allowed_ekus: Path | None = None) -> PicturedReport:
    """`verify_clip`'s report plus, from the same decode pass, up to ``keyframes`` keyframe thumbnails
    and the detector's heatmaps over them (the report's ``keyframes`` section names the pictures)."""
    info = probe(path, settings.media_limits)
    trust = trust_config(settings, extra_anchors, allowed_ekus)
    report = verify_file(path, trust)
    analysis = _start_detector(settings, path, info)
    detector = None if isinstance(analysis, dict) else analysis
    strip = None
    if keyframes > 0:
        # The detector's frames, when it runs, so that each keyframe gets its own heatmap.
        strip = KeyframeStrip(info, keyframes, candidates=detector.plan.model if detector else ())
    mark, detected = scan_frames(path, info, settings.media_limits, scan_for_instance(settings), detector,
                                 extra=[strip.request()] if strip else ())
    if report.state == "absent" and mark.present and mark.payload:
        stored = ManifestStore(settings).by_payload(mark.payload)
        if stored:
            report = verify_file(path, trust, manifest_bytes=stored[0].read())
    c2pa = report.to_dict()
    file_facts = {"sha256": sha256_file(path).sha256, **{k: v for k, v in info.to_dict().items() if k != "path"}}
    out = {"version": REPORT_VERSION, "file": file_facts, "c2pa": c2pa, "watermark": mark.to_dict()}
    if detected is None:
        out["detector"] = analysis
    else:
        from detector import verdict

        out.update(detected.to_dict())
        out["verdict"] = verdict(out, detected.detector, detected.signals).to_dict()
    pictures: list[ReportPicture] = []
    if strip is not None:
        note = analysis.get("message") if isinstance(analysis, dict) else None
        out["keyframes"], pictures = keyframes_section(strip.keyframes, shared_with_detector=strip.from_candidates,
                                                       detected=detected, detector_note=note)
    return PicturedReport(out, pictures)


def scan_frames(path: Path, info: MediaInfo, limits: MediaLimits, mark: WatermarkScan,
                analysis: ClipAnalysis | None = None, *,
                extra: Sequence[FrameRequest] = ()) -> tuple[DetectionResult, DetectorReport | None]:
    """The watermark and (given one) the AI-origin detector's analysis from one decode pass over ``path``,
    whose probe is ``info``: each is handed the frames it samples and keeps only what it needs, as are
    the ``extra`` consumers (the keyframe strip). The pass reads to the clip's end, checking every frame
    against ``limits`` as the watermark's own did. The detector's ``decode`` timing is the whole pass,
    the watermark's accumulation included."""
    requests = [mark.request(path, info), *(analysis.requests() if analysis else ()), *extra]
    began = time.perf_counter()
    feed_frames(path, limits, requests)
    decode_s = time.perf_counter() - began
    return mark.result(), analysis.finish(decode_s) if analysis else None


def _start_detector(settings: Settings, path: Path, info: MediaInfo) -> ClipAnalysis | dict[str, str]:
    """The AI-origin detector, ready for the decode pass (its sections, ``detector`` and ``artifacts``,
    and the ``verdict`` that weighs all evidence come after it); a note for the report's ``detector``
    instead when it is switched off or not installed."""
    if not settings.verify_detector:
        return {"state": "disabled", "message": "the detector is switched off (verify_detector)"}
    try:
        from detector import ClipAnalysis
    except ImportError as exc:
        return {"state": "unavailable", "message": f"the AI-origin detector is not installed ({exc})"}
    return ClipAnalysis(path, info)  # the model loads once per process
