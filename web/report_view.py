"""A verification report (version 3) turned into what the portal's report page shows.

The report itself stays the source of truth (it is what the JSON export holds); this only picks
headlines, tones and plain words, so the template stays free of logic.
"""

from __future__ import annotations

from typing import Any

# Verdict labels of detector.verdict, in words, with the banner's tone.
VERDICTS: dict[str, tuple[str, str]] = {
    "ai_generated_signed": ("AI-generated, declared in signed Content Credentials", "ai"),
    "ai_generated_watermarked": ("AI-generated, marked by a veriframe watermark", "ai"),
    "likely_ai_generated": ("Likely AI-generated", "warn"),
    "uncertain": ("Uncertain", "neutral"),
    "no_evidence_of_ai": ("No evidence of AI generation found", "ok"),
}

C2PA_STATES: dict[str, tuple[str, str]] = {
    "trusted": ("Content Credentials valid, from a trusted signer", "ok"),
    "valid": ("Content Credentials valid, but the signer is not on the trust list", "warn"),
    "invalid": ("Content Credentials present but failed validation", "bad"),
    "absent": ("No Content Credentials", "neutral"),
    "unreadable": ("Content Credentials could not be read", "bad"),
    "unavailable": ("Content Credentials could not be checked on this server", "neutral"),
}

SOURCE_TYPES = {
    "digitalCapture": "Captured with a camera",
    "computationalCapture": "Captured with computational photography",
    "trainedAlgorithmicMedia": "Created by a generative AI model",
    "compositeWithTrainedAlgorithmicMedia": "Edited with generative AI",
    "algorithmicMedia": "Created by an algorithm (not trained on data)",
    "composite": "A composite of several sources",
    "minorHumanEdits": "Captured, with minor human edits",
}


def source_type_text(uri: str | None) -> str | None:
    if not uri:
        return None
    name = str(uri).rstrip("/").rsplit("/", 1)[-1]
    return SOURCE_TYPES.get(name, name)


def _signer(c2pa: dict[str, Any]) -> str | None:
    signer = c2pa.get("signer") or {}
    parts = [signer.get("organization"), signer.get("common_name")]
    text = " · ".join(p for p in dict.fromkeys(parts) if p)
    return text or None


def _timeline(frames: list[dict[str, Any]], width: int = 600, height: int = 80) -> list[dict[str, float]]:
    """Bars of the per-frame score plot (an SVG drawn by the template; no script needed)."""
    points = [f for f in frames if isinstance(f.get("probability"), int | float)]
    if not points:
        return []
    step = width / len(points)
    return [{"x": round(i * step, 2), "w": round(max(step - 1, 1), 2), "h": round(height * p["probability"], 2),
             "y": round(height * (1 - p["probability"]), 2), "t": p.get("time_s", 0.0), "p": p["probability"]}
            for i, p in enumerate(points)]


def clock(seconds: float) -> str:
    """A time in the clip as people read it: "4.20 s", "1:05.3" past a minute."""
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}"


def _keyframes(section: Any, still: bool) -> dict[str, Any] | None:
    """The keyframe strip and the heatmaps over keyframes, from a report whose pictures are linked
    (``pipeline.representation.link_pictures``); None when the report has no strip."""
    if not isinstance(section, dict):
        return None
    frames, heatmaps = [], []
    for item in section.get("items") or []:
        image, heat = item.get("image_artifact") or {}, item.get("heatmap_artifact") or {}
        if not image.get("href"):
            continue
        when = "the still image" if still else clock(float(item.get("time_s") or 0.0))
        frame = {"src": image["href"], "width": item.get("width"), "height": item.get("height"), "when": when,
                 "index": item.get("index"), "time_s": item.get("time_s")}
        frames.append(frame)
        if heat.get("href"):
            heatmaps.append({**frame, "src": heat["href"], "averaged": item.get("heatmap_source") == "clip_average"})
    summary = section.get("heatmaps") or {}
    return {"frames": frames, "heatmaps": heatmaps, "selection": section.get("selection"),
            "heatmap_note": summary.get("message"), "scale": summary.get("scale") or [],
            "cell_px": summary.get("cell_px")}


def present(report: dict[str, Any]) -> dict[str, Any]:
    """The view model of the report page; keyframe pictures show when the report's are linked
    (``pipeline.representation.link_pictures``)."""
    c2pa = report.get("c2pa") or {}
    mark = report.get("watermark") or {}
    detector = report.get("detector") or {}
    verdict = report.get("verdict") or {}
    state = c2pa.get("state") or "unavailable"

    if verdict.get("label"):
        headline, tone = VERDICTS.get(verdict["label"], (verdict["label"], "neutral"))
        reasons = list(verdict.get("reasons") or [])
    else:
        headline, tone = C2PA_STATES.get(state, (state, "neutral"))
        reasons = [c2pa["message"]] if c2pa.get("message") else []
        if mark.get("present"):
            reasons.append(f"A veriframe watermark was found (payload {mark.get('payload')}).")
    actions = [
        {"action": str(a.get("action") or "").removeprefix("c2pa."), "description": a.get("description"),
         "source": source_type_text(a.get("digital_source_type")), "agent": a.get("software_agent")}
        for a in c2pa.get("actions") or []
    ]
    return {
        "headline": headline, "tone": tone, "reasons": reasons, "verdict": verdict,
        "c2pa": {
            "state": state, "state_text": C2PA_STATES.get(state, (state, ""))[0], "tone": C2PA_STATES.get(
                state, ("", "neutral"))[1], "message": c2pa.get("message"), "signer": _signer(c2pa),
            "signing_time": c2pa.get("signing_time"), "title": c2pa.get("title"),
            "source": source_type_text(c2pa.get("digital_source_type")), "actions": actions,
            "ingredients": c2pa.get("ingredients") or [], "failures": c2pa.get("failures") or [],
            "recovered": bool(c2pa.get("recovered")), "manifest_source": c2pa.get("manifest_source"),
            "altered": c2pa.get("altered_since_signing"), "label": c2pa.get("manifest_label"),
            "present": state not in ("absent", "unavailable"),
        },
        "watermark": mark,
        "detector": detector if detector and detector.get("state") != "disabled" else None,
        "signals": [v for v in (report.get("artifacts") or {}).values() if isinstance(v, dict)],
        "timeline": _timeline(detector.get("frames") or []),
        "detector_note": detector.get("message") if detector.get("state") == "disabled" else None,
        "file": report.get("file") or {},
        "keyframes": _keyframes(report.get("keyframes"), bool((report.get("file") or {}).get("is_still"))),
        "raw": report,
    }
