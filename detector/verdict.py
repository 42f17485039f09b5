"""One verdict from all the evidence, with the reasons that produced it.

Order of authority (issue 8): a signed manifest or our watermark stating AI origin > the detector >
the training-free signals. Labels:

* ``ai_generated_signed``: an embedded manifest, trusted and intact, declares AI origin;
* ``ai_generated_watermarked``: our watermark leads to a stored manifest that declares AI origin;
* ``likely_ai_generated``: the detector flags the clip (or a signed-but-unverifiable declaration says
  AI) and nothing speaks against it;
* ``uncertain``: the evidence disagrees, or the input is outside the detector's scope (too small for
  the frame model, or compressed past what either model's threshold was set on);
* ``no_evidence_of_ai``: the detector ran in scope below its threshold and no signal flagged.

There is deliberately no "authentic" label: a detector that finds nothing is not proof of capture,
and a signed capture claim only removes doubt where the detector agrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

VERDICT_VERSION = 1
LABELS = ("ai_generated_signed", "ai_generated_watermarked", "likely_ai_generated", "uncertain",
          "no_evidence_of_ai")
# IPTC digital source types that state AI origin (C2PA 2.x guidance).
AI_SOURCE_TYPES = ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia")
CAPTURE_SOURCE_TYPES = ("digitalCapture", "computationalCapture")


class TemporalEvidence(Protocol):
    """What the verdict reads from the temporal head's result (see `detector.temporal.TemporalResult`)."""

    model_id: str
    probability: float
    flagged: bool
    threshold_probability: float
    target_fpr: float
    in_scope: bool
    scope_reasons: list[str]


class DetectorEvidence(Protocol):
    """What the verdict reads from a detector result (see `detector.analyse.DetectorResult`): the frame
    model's score and scope, ``frame_flagged`` (its decision), ``temporal`` (the temporal head's result
    or None) and ``flagged`` (either decision)."""

    probability: float | None
    flagged: bool
    frame_flagged: bool
    in_scope: bool
    scope_reasons: list[str]
    threshold_probability: float | None
    target_fpr: float | None
    model_id: str

    @property
    def temporal(self) -> TemporalEvidence | None: ...  # read-only: a result's own type may be narrower


class SignalEvidence(Protocol):
    name: str
    score: float | None
    flagged: bool
    summary: str


@dataclass(frozen=True)
class Verdict:
    """The label, the reasons in order of weight, and the evidence each level contributed."""

    label: str
    reasons: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)
    version: int = VERDICT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _source_types(c2pa: dict[str, Any]) -> list[str]:
    types = [c2pa.get("digital_source_type")] + [a.get("digital_source_type") for a in c2pa.get("actions") or []]
    return [str(t) for t in types if t]


def _declares(c2pa: dict[str, Any], kinds: Sequence[str]) -> bool:
    return any(t.rsplit("/", 1)[-1] in kinds for t in _source_types(c2pa))


def _signer(c2pa: dict[str, Any]) -> str:
    signer = c2pa.get("signer") or {}
    return signer.get("organization") or signer.get("common_name") or "an unnamed signer"


def verdict(report: dict[str, Any], detector_result: DetectorEvidence | None,
            signals: Sequence[SignalEvidence]) -> Verdict:
    """Combine a `verify_clip` report, the detector's result and the signals (pure: no I/O)."""
    c2pa, mark = report.get("c2pa") or {}, report.get("watermark") or {}
    state, recovered = c2pa.get("state"), bool(c2pa.get("recovered"))
    signature_ok = c2pa.get("signature_valid") is True
    evidence: dict[str, Any] = {"c2pa_state": state, "manifest_recovered": recovered,
                                "watermark_present": bool(mark.get("present"))}

    # 1. Provenance that states AI origin decides on its own.
    if state == "trusted" and not recovered and _declares(c2pa, AI_SOURCE_TYPES):
        return Verdict("ai_generated_signed", [
            f"Content Credentials signed by {_signer(c2pa)} (trusted, unchanged since signing) declare AI "
            f"origin ({', '.join(_source_types(c2pa))})."], evidence)
    if mark.get("present") and recovered and signature_ok and _declares(c2pa, AI_SOURCE_TYPES):
        altered = " The file was re-encoded or edited since signing." if c2pa.get("altered_since_signing") else ""
        return Verdict("ai_generated_watermarked", [
            f"Our watermark (payload {mark.get('payload')}) leads to a stored manifest signed by "
            f"{_signer(c2pa)} that declares AI origin.{altered}"], evidence)

    reasons: list[str] = []
    ai_claim = signature_ok and _declares(c2pa, AI_SOURCE_TYPES)  # signed but untrusted or altered
    capture_claim = signature_ok and state in ("trusted", "valid") and _declares(c2pa, CAPTURE_SOURCE_TYPES)
    if ai_claim:
        reasons.append(f"A manifest signed by {_signer(c2pa)} declares AI origin, but it is {state}"
                       f"{' (altered since signing)' if c2pa.get('altered_since_signing') else ''}.")
    if capture_claim:
        reasons.append(f"A manifest signed by {_signer(c2pa)} ({state}) declares camera capture.")
    if mark.get("present") and not ai_claim and not capture_claim:
        reasons.append("Our watermark is present, but no manifest stating the clip's origin was found for it.")

    # 2. The detector, then 3. the signals.
    flagged = [s for s in signals if s.flagged]
    evidence["signals_flagged"] = [s.name for s in flagged]
    for s in flagged:
        reasons.append(f"Signal {s.name}: {s.summary}.")
    det = detector_result
    temporal = det.temporal if det is not None else None
    judged = det is not None and det.in_scope and det.probability is not None  # the frame model's scope
    if det is None or not (judged or (temporal is not None and temporal.flagged)):
        why = "; ".join(det.scope_reasons) if det is not None and det.scope_reasons else "no detector result"
        evidence["detector"] = None
        reasons.insert(0, f"The detector could not judge this input ({why}).")
        if temporal is not None:
            reasons.insert(1, f"{_temporal_line(temporal)} The temporal head alone never clears a clip.")
        return Verdict("likely_ai_generated" if ai_claim and not capture_claim else "uncertain", reasons, evidence)
    evidence["detector"] = {"probability": det.probability, "flagged": det.flagged, "model_id": det.model_id,
                            "temporal": None if temporal is None else {
                                "probability": temporal.probability, "flagged": temporal.flagged,
                                "model_id": temporal.model_id}}
    at = (f"threshold {det.threshold_probability:.4f}, set for {det.target_fpr:.1%} false positives on real "
          f"footage" if det.threshold_probability is not None and det.target_fpr is not None else "its threshold")
    lead = [f"Detector {det.model_id}: P(AI) {det.probability:.4f} is {'above' if det.frame_flagged else 'below'} "
            f"{at}." if judged else f"The frame model could not judge this input ({'; '.join(det.scope_reasons)})."]
    if temporal is not None:
        lead.append(_temporal_line(temporal))
    reasons[:0] = lead
    if det.flagged:
        if capture_claim:
            return Verdict("uncertain", reasons + ["The detector and the signed capture claim disagree."], evidence)
        return Verdict("likely_ai_generated", reasons, evidence)
    if ai_claim:
        return Verdict("uncertain", reasons + ["The signed AI declaration and the detector disagree."], evidence)
    if flagged:
        return Verdict("uncertain", reasons + ["The detector found nothing, but forensic signals flagged."],
                       evidence)
    reasons.append("No forensic signal flagged. This is absence of evidence, not proof that the clip is "
                   "a camera recording.")
    return Verdict("no_evidence_of_ai", reasons, evidence)


def _temporal_line(t: TemporalEvidence) -> str:
    if not t.in_scope:
        return (f"Temporal head {t.model_id}: P(AI) {t.probability:.4f}, not used: {'; '.join(t.scope_reasons)} "
                f"(its threshold {t.threshold_probability:.4f} holds {t.target_fpr:.1%} false positives only on "
                f"clips compressed less).")
    return (f"Temporal head {t.model_id}: P(AI) {t.probability:.4f} is {'above' if t.flagged else 'below'} "
            f"threshold {t.threshold_probability:.4f}, set for {t.target_fpr:.1%} false positives on real clips "
            f"(frame-to-frame change that motion does not explain).")
