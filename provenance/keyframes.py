"""The verification report's ``keyframes`` section and the pictures it names.

`verify_clip_pictured` (provenance.credentials) collects keyframes in its one decode pass
(`media.keyframes.KeyframeStrip`); here they become JPEG thumbnails and, where the AI-origin detector
ran on the clip, PNG heatmaps of its patch probabilities drawn over them (`detector.heatmap`). The
report names each picture (``keyframe-1``, ``heatmap-1``, ...); whoever stores the pictures says
where they are (the pipeline stores them as the job's artifacts under those names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from media import encode_image
from media.keyframes import THUMBNAIL_PX, Keyframe

if TYPE_CHECKING:
    from detector import DetectorReport

SECTION_VERSION = 1


@dataclass(frozen=True)
class ReportPicture:
    """A picture the report names: ``name`` is what its ``keyframes`` items call it."""

    name: str
    filename: str
    media_type: str
    data: bytes


def keyframes_section(keyframes: list[Keyframe], *, shared_with_detector: bool,
                      detected: DetectorReport | None, detector_note: str | None
                      ) -> tuple[dict[str, Any], list[ReportPicture]]:
    """The report's ``keyframes`` section and its pictures.

    ``detected`` is the detector's analysis of the same pass (None when it did not run, with
    ``detector_note`` saying why). A keyframe the model analysed gets its own heatmap; when it analysed
    none of them, the middle keyframe gets the heatmap averaged over the frames it did analyse.
    """
    pictures: list[ReportPicture] = []
    items: list[dict[str, Any]] = []
    for n, frame in enumerate(keyframes, start=1):
        name = f"keyframe-{n}"
        pictures.append(ReportPicture(name, f"{name}.jpg", "image/jpeg", frame.jpeg()))
        width, height = frame.size
        items.append({"index": frame.index, "time_s": frame.time_s, "width": width, "height": height,
                      "image": name, "heatmap": None, "heatmap_source": None})
    heatmaps = _heatmaps(keyframes, items, pictures, detected, detector_note)
    section = {
        "version": SECTION_VERSION,
        "selection": "evenly spaced over the clip" + (" (frames the detector analysed)" if shared_with_detector
                                                      else ""),
        "thumbnail_max_px": THUMBNAIL_PX,
        "items": items,
        "heatmaps": heatmaps,
    }
    return section, pictures


def _heatmaps(keyframes: list[Keyframe], items: list[dict[str, Any]], pictures: list[ReportPicture],
              detected: DetectorReport | None, note: str | None) -> dict[str, Any]:
    """Draw the heatmaps into ``items`` and ``pictures``; the section's ``heatmaps`` summary."""
    det = detected.detector if detected is not None else None
    maps = detected.patches if detected is not None else None
    if detected is None:
        return {"state": "none", "message": note or "the AI-origin detector did not run"}
    if det is None:
        return {"state": "none", "message": "no AI-origin detector model is installed"}
    if not det.in_scope:
        return {"state": "none", "message": "the clip is outside the detector's scope: " + "; ".join(det.scope_reasons)}
    if maps is None or not keyframes:
        return {"state": "none", "message": "the detector gave no patch scores for these frames"}
    from detector.heatmap import COLOUR_SCALE, OPACITY, draw_heatmap

    chosen = [(k, maps.frames[f.index], "frame") for k, f in enumerate(keyframes) if f.index in maps.frames]
    if not chosen:
        chosen = [(len(keyframes) // 2, maps.mean, "clip_average")]
    for k, probabilities, source in chosen:
        frame, name = keyframes[k], f"heatmap-{k + 1}"
        drawn = frame.image(draw_heatmap(frame.thumbnail, maps, probabilities))
        pictures.append(ReportPicture(name, f"{name}.png", "image/png", encode_image(drawn, "png")))
        items[k].update(heatmap=name, heatmap_source=source)
    per_frame = chosen[0][2] == "frame"
    return {
        "state": "per_frame" if per_frame else "clip_average",
        "message": None if per_frame else "the detector analysed none of these keyframes: the middle one shows "
                                          "its patch scores averaged over the frames it analysed",
        "scale": [[stop, colour] for stop, colour in COLOUR_SCALE], "opacity": OPACITY,
        "cell_px": maps.cell_px(), "model_id": det.model_id,
    }
