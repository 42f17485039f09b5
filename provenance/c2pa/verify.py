"""Verify a file's Content Credentials under an explicit trust configuration.

``verify_file`` always returns a :class:`C2paReport` (never a bare bool) with one of five states:

- ``trusted``: c2pa's validation_state is Trusted: signature, hard binding and every assertion
  check out and the signer chains to an anchor of the trust configuration;
- ``valid``: c2pa says Valid: everything checks out except trust (``signingCredential.untrusted``);
- ``invalid``: c2pa says Invalid (any other failure code, e.g. a hash mismatch, a bad or expired
  signing credential), or a manifest is present but cannot be decoded (``general.error``);
- ``absent``: the file parses but carries no manifest (and no sidecar or stored manifest was given);
- ``unreadable``: c2pa cannot parse the file as any media format it knows.

The active manifest's failure codes come from ``validation_results.activeManifest.failure``; an
ingredient's failures are those recorded inside its ingredient assertion (``validation_results``
for 2.x ingredients, ``validation_status`` for 1.x ones). What re-validating the ingredient's
manifest under today's trust config found (c2pa's ``ingredientDeltas``) is reported beside them.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import _sdk
from .codes import HARD_BINDING_MISMATCH, SIGNATURE_FAILURES, TRUST_CODES, explain, is_failure
from .errors import AssetNotFoundError, TrustConfigError
from .formats import MediaFormat, sniff, sniff_bytes
from .identity import CA_CERT, signing_dir

logger = logging.getLogger(__name__)

STATES = ("trusted", "valid", "invalid", "absent", "unreadable")
REPORT_VERSION = 1
_C2PA_STATES = {"Trusted": "trusted", "Valid": "valid", "Invalid": "invalid"}
_OID = re.compile(r"^[0-2](\.\d+)+$")


# --- trust configuration ---------------------------------------------------------------------------


def _read_anchor_file(path: Path) -> str:
    try:
        text = Path(path).read_text()
    except OSError:
        raise TrustConfigError(f"trust anchor file {path} cannot be read") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise TrustConfigError(f"trust anchor file {path} holds no PEM certificate")
    return text if text.endswith("\n") else text + "\n"


def _read_eku_file(path: Path) -> list[str]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        raise TrustConfigError(f"allowed-EKU file {path} cannot be read") from None
    oids = [line.split("#", 1)[0].strip() for line in lines]
    oids = [oid for oid in oids if oid]
    bad = [oid for oid in oids if not _OID.match(oid)]
    if bad:
        raise TrustConfigError(f"allowed-EKU file {path} has a line that is not a dotted OID: {bad[0]!r}")
    if not oids:
        raise TrustConfigError(f"allowed-EKU file {path} lists no OID")
    return oids


@dataclass(frozen=True)
class TrustConfig:
    """What a verification trusts. Offline unless told otherwise.

    ``anchors_pem``: PEM text of our own CA(s); ``anchor_files``: extra PEM bundles (such as the
    C2PA trust list); ``allowed_ekus_file``: one OID per line, replacing c2pa-rs's default list of
    signer EKUs. All anchors are given to c2pa-rs as user anchors. Remote manifest fetch and
    OCSP stay off unless enabled here.
    """

    anchors_pem: tuple[str, ...] = ()
    anchor_files: tuple[Path, ...] = ()
    allowed_ekus_file: Path | None = None
    remote_manifest_fetch: bool = False
    ocsp_fetch: bool = False

    @classmethod
    def for_instance(
        cls,
        instance_dir: Path,
        *,
        anchor_files: Iterable[Path] = (),
        allowed_ekus_file: Path | None = None,
    ) -> TrustConfig:
        """Trust our instance's development CA (if it exists) plus the given anchor files."""
        ca = signing_dir(instance_dir) / CA_CERT
        anchors = (_read_anchor_file(ca),) if ca.is_file() else ()
        return cls(
            anchors_pem=anchors,
            anchor_files=tuple(Path(p) for p in anchor_files),
            allowed_ekus_file=Path(allowed_ekus_file) if allowed_ekus_file else None,
        )

    def with_extra(
        self, anchor_files: Iterable[Path] = (), allowed_ekus_file: Path | None = None
    ) -> TrustConfig:
        """This config plus more anchors (and another EKU list) for one call, as the CLI adds them."""
        return dataclasses.replace(
            self,
            anchor_files=self.anchor_files + tuple(Path(p) for p in anchor_files),
            allowed_ekus_file=Path(allowed_ekus_file) if allowed_ekus_file else self.allowed_ekus_file,
        )

    def settings(self) -> dict[str, Any]:
        """The c2pa-rs settings document this trust configuration stands for."""
        pem = "".join(self.anchors_pem) + "".join(_read_anchor_file(p) for p in self.anchor_files)
        trust: dict[str, Any] = {}
        if pem:
            trust["user_anchors"] = pem
        if self.allowed_ekus_file is not None:
            trust["trust_config"] = "\n".join(_read_eku_file(self.allowed_ekus_file)) + "\n"
        return {
            "trust": trust,
            "verify": {
                "verify_trust": True,
                "ocsp_fetch": self.ocsp_fetch,
                "remote_manifest_fetch": self.remote_manifest_fetch,
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "anchors": len(self.anchors_pem),
            "anchor_files": [str(p) for p in self.anchor_files],
            "allowed_ekus_file": str(self.allowed_ekus_file) if self.allowed_ekus_file else None,
            "remote_manifest_fetch": self.remote_manifest_fetch,
            "ocsp_fetch": self.ocsp_fetch,
        }


# --- report ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One failure code: the code, what it means, and c2pa's own detail and location."""

    code: str
    explanation: str
    detail: str = ""
    url: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "explanation": self.explanation, "detail": self.detail, "url": self.url}


@dataclass(frozen=True)
class IngredientReport:
    """An ingredient of the active manifest, with its own state and failures."""

    title: str | None
    relationship: str | None
    format: str | None
    manifest_label: str | None
    state: str
    failures: tuple[Failure, ...] = ()
    revalidation_failures: tuple[Failure, ...] = ()

    @property
    def codes(self) -> list[str]:
        return sorted({f.code for f in self.failures})

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "relationship": self.relationship,
            "format": self.format,
            "manifest_label": self.manifest_label,
            "state": self.state,
            "codes": self.codes,
            "failures": [f.to_dict() for f in self.failures],
            "revalidation_failures": [f.to_dict() for f in self.revalidation_failures],
        }


@dataclass(frozen=True)
class C2paReport:
    """Everything a verification found; ``state`` is one of :data:`STATES`."""

    state: str
    path: str
    manifest_source: str | None = None  # "embedded", "sidecar", "store" or None
    manifest_label: str | None = None
    signer_organization: str | None = None
    signer_common_name: str | None = None
    signer_alg: str | None = None
    signing_time: str | None = None
    title: str | None = None
    claim_generator: tuple[dict[str, Any], ...] = ()
    actions: tuple[dict[str, Any], ...] = ()
    digital_source_type: str | None = None
    soft_bindings: tuple[dict[str, Any], ...] = ()
    generation: dict[str, Any] | None = None
    ingredients: tuple[IngredientReport, ...] = ()
    failures: tuple[Failure, ...] = ()
    message: str = ""
    sdk: dict[str, str] = field(default_factory=dict)

    @property
    def codes(self) -> list[str]:
        """The active manifest's failure codes, sorted and unique."""
        return sorted({f.code for f in self.failures})

    @property
    def ingredient_codes(self) -> list[str]:
        """Failure codes recorded inside the ingredients, sorted and unique."""
        return sorted({code for ingredient in self.ingredients for code in ingredient.codes})

    @property
    def recovered(self) -> bool:
        """The manifest came from our store (found through the watermark), not from the file."""
        return self.manifest_source == "store"

    @property
    def signature_valid(self) -> bool | None:
        if self.manifest_source is None:
            return None
        return not (set(self.codes) & (SIGNATURE_FAILURES | {"general.error"}))

    @property
    def altered_since_signing(self) -> bool:
        """The signature holds but the hard binding does not: the bytes changed after signing."""
        return bool(self.signature_valid and set(self.codes) & HARD_BINDING_MISMATCH)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": REPORT_VERSION,
            "state": self.state,
            "message": self.message,
            "path": self.path,
            "manifest_source": self.manifest_source,
            "recovered": self.recovered,
            "manifest_label": self.manifest_label,
            "signer": {
                "organization": self.signer_organization,
                "common_name": self.signer_common_name,
                "alg": self.signer_alg,
            },
            "signing_time": self.signing_time,
            "title": self.title,
            "claim_generator": list(self.claim_generator),
            "actions": list(self.actions),
            "digital_source_type": self.digital_source_type,
            "soft_bindings": list(self.soft_bindings),
            "generation": self.generation,
            "ingredients": [i.to_dict() for i in self.ingredients],
            "codes": self.codes,
            "failures": [f.to_dict() for f in self.failures],
            "ingredient_codes": self.ingredient_codes,
            "signature_valid": self.signature_valid,
            "altered_since_signing": self.altered_since_signing,
            "sdk": dict(self.sdk),
        }


# --- deriving the report from c2pa's manifest store JSON ---------------------------------------------


def _failures(entries: Iterable[dict[str, Any]] | None) -> tuple[Failure, ...]:
    out: dict[tuple[str, str], Failure] = {}
    for entry in entries or ():
        code = str(entry.get("code", ""))
        detail = str(entry.get("explanation") or "")
        out.setdefault(
            (code, str(entry.get("url", ""))),
            Failure(code, explain(code, detail), detail, str(entry.get("url", ""))),
        )
    return tuple(out.values())


def _assertions(manifest: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """Assertions whose label is ``prefix`` or a version/instance of it (``.v2``, ``__1``)."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\.v\d+)?(__\d+)?$")
    return [a for a in manifest.get("assertions", []) if pattern.match(str(a.get("label", "")))]


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = []
    for assertion in _assertions(manifest, "c2pa.actions"):
        for action in (assertion.get("data") or {}).get("actions", []):
            agent = action.get("softwareAgent")
            actions.append(
                {
                    "action": action.get("action"),
                    "digital_source_type": action.get("digitalSourceType"),
                    "description": action.get("description"),
                    "software_agent": agent.get("name") if isinstance(agent, dict) else agent,
                }
            )
    return actions


def _claim_generator(manifest: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    info = manifest.get("claim_generator_info")
    if info:
        return tuple(info)
    legacy = manifest.get("claim_generator")  # C2PA 1.x: a single user-agent string
    return ({"name": legacy},) if legacy else ()


def _soft_bindings(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    bindings = []
    for assertion in _assertions(manifest, "c2pa.soft-binding"):
        data = assertion.get("data") or {}
        bindings.append(
            {
                "alg": data.get("alg"),
                "values": [block.get("value") for block in data.get("blocks", []) if isinstance(block, dict)],
            }
        )
    return bindings


def _ingredient_state(
    recorded: tuple[Failure, ...], deltas: dict[str, Any] | None, has_manifest: bool
) -> str:
    if not has_manifest and not recorded:
        return "absent"
    delta_failures = {f.get("code") for f in (deltas or {}).get("failure", [])}
    delta_success = {f.get("code") for f in (deltas or {}).get("success", [])}
    integrity = {f.code for f in recorded} | delta_failures
    if integrity - TRUST_CODES:
        return "invalid"
    if "signingCredential.trusted" in delta_success:
        return "trusted"
    return "valid"


def _ingredients(store: dict[str, Any], label: str, manifest: dict[str, Any]) -> list[IngredientReport]:
    deltas_by_label: dict[str, dict[str, Any]] = {}
    for delta in (store.get("validation_results") or {}).get("ingredientDeltas") or []:
        uri = str(delta.get("ingredientAssertionURI", ""))
        if f"/{label}/c2pa.assertions/" in uri:
            deltas_by_label[uri.rsplit("/", 1)[-1]] = delta.get("validationDeltas") or {}
    reports = []
    for ingredient in manifest.get("ingredients", []):
        results = ingredient.get("validation_results")
        if isinstance(results, dict):
            recorded = _failures((results.get("activeManifest") or {}).get("failure"))
        else:
            recorded = _failures(
                s for s in ingredient.get("validation_status") or [] if is_failure(str(s.get("code")))
            )
        deltas = deltas_by_label.get(str(ingredient.get("label", "")))
        reports.append(
            IngredientReport(
                title=ingredient.get("title"),
                relationship=ingredient.get("relationship"),
                format=ingredient.get("format"),
                manifest_label=ingredient.get("active_manifest"),
                state=_ingredient_state(recorded, deltas, bool(ingredient.get("active_manifest"))),
                failures=recorded,
                revalidation_failures=_failures((deltas or {}).get("failure")),
            )
        )
    return reports


def _message(report: C2paReport) -> str:
    who = report.signer_organization or report.signer_common_name or "an unnamed signer"
    if report.state == "trusted":
        return f"Signed by {who}, a trusted signer; the content is unchanged since signing."
    if report.state == "valid":
        return f"Signed by {who}; the signature is intact but the signer is not in this trust configuration."
    if report.state == "invalid":
        if report.altered_since_signing:
            return f"Signed by {who}, but the file was altered since signing."
        return f"The Content Credentials fail validation: {', '.join(report.codes) or 'see failures'}."
    if report.state == "absent":
        return "The file carries no Content Credentials."
    return "The file could not be parsed as a supported media format."


def report_from_store(
    path: str, store: dict[str, Any], manifest_source: str, sdk: dict[str, str] | None = None
) -> C2paReport:
    """Turn c2pa's manifest store JSON into a report (pure: testable with recorded JSON)."""
    label = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(label) if label else None
    results = store.get("validation_results") or {}
    if manifest is None:
        failures = (Failure("general.error", explain("general.error"), "no active manifest in the store"),)
        report = C2paReport(
            state="invalid", path=path, manifest_source=manifest_source, failures=failures, sdk=sdk or {}
        )
        return dataclasses.replace(report, message=_message(report))
    failures = _failures((results.get("activeManifest") or {}).get("failure"))
    state = _C2PA_STATES.get(str(store.get("validation_state")))
    if state is None:  # no validation_state: derive it the way c2pa-rs does
        codes = {f.code for f in failures}
        state = "invalid" if codes - TRUST_CODES else ("valid" if codes else "trusted")
    signature = manifest.get("signature_info") or {}
    actions = _actions(manifest)
    generation = next((a.get("data") for a in _assertions(manifest, "org.veriframe.generation")), None)
    report = C2paReport(
        state=state,
        path=path,
        manifest_source=manifest_source,
        manifest_label=label,
        signer_organization=signature.get("issuer"),  # c2pa-rs names the subject's O "issuer"
        signer_common_name=signature.get("common_name"),
        signer_alg=signature.get("alg"),
        signing_time=signature.get("time"),
        title=manifest.get("title"),
        claim_generator=_claim_generator(manifest),
        actions=tuple(actions),
        digital_source_type=next(
            (a["digital_source_type"] for a in actions if a["digital_source_type"]), None
        ),
        soft_bindings=tuple(_soft_bindings(manifest)),
        generation=generation,
        ingredients=tuple(_ingredients(store, label, manifest)),
        failures=failures,
        sdk=sdk or {},
    )
    return dataclasses.replace(report, message=_message(report))


# --- verification ----------------------------------------------------------------------------------


def _no_manifest_report(path: str, state: str, message: str, sdk: dict[str, str]) -> C2paReport:
    report = C2paReport(state=state, path=path, sdk=sdk)
    text = _message(report)
    return dataclasses.replace(
        report, message=f"{text} ({message})" if message and state == "unreadable" else text
    )


def _malformed_report(path: str, source: str, message: str, sdk: dict[str, str]) -> C2paReport:
    failure = Failure("general.error", explain("general.error"), message)
    report = C2paReport(state="invalid", path=path, manifest_source=source, failures=(failure,), sdk=sdk)
    return dataclasses.replace(report, message=_message(report))


def _read(
    stream: IO[bytes], mime: str | None, settings: dict[str, Any], manifest: bytes | None
) -> _sdk.ReadOutcome:
    stream.seek(0)
    return _sdk.read_store(stream, mime, settings, manifest)


def _verify_stream(
    stream: IO[bytes],
    fmt: MediaFormat,
    name: str,
    trust: TrustConfig,
    manifest_bytes: bytes | None,
    sidecar: Path | None,
) -> C2paReport:
    settings = trust.settings()
    sdk = _sdk.versions()
    mime = fmt.mime if fmt.embeddable else None  # None: let c2pa detect the container itself
    if manifest_bytes is not None:
        outcome, source = _read(stream, mime or fmt.mime, settings, manifest_bytes), "store"
    else:
        outcome, source = _read(stream, mime, settings, None), "embedded"
        if outcome.kind in ("absent", "unreadable") and sidecar is not None and sidecar.is_file():
            side = _read(stream, mime or fmt.mime, settings, sidecar.read_bytes())
            if side.kind in ("store", "malformed"):
                outcome, source = side, "sidecar"
    if outcome.kind == "store" and outcome.store is not None:
        report = report_from_store(name, outcome.store, source, sdk)
    elif outcome.kind == "malformed":
        report = _malformed_report(name, source, outcome.message, sdk)
    elif source == "store":
        # A stored manifest that c2pa cannot even apply to this file: say so rather than "absent".
        report = _malformed_report(name, source, outcome.message or outcome.kind, sdk)
    else:
        report = _no_manifest_report(name, outcome.kind, outcome.message, sdk)
    logger.info("verified %s: %s %s", Path(name).name, report.state, ",".join(report.codes))
    return report


def verify_file(
    path: Path,
    trust: TrustConfig,
    *,
    manifest_bytes: bytes | None = None,
    sidecar_path: Path | None = None,
) -> C2paReport:
    """Verify ``path`` and report what its Content Credentials say and whether they hold.

    Without ``manifest_bytes`` the embedded manifest is read; if there is none, a sidecar
    (``sidecar_path``, or ``<path>.c2pa`` beside the file) is used when present. With
    ``manifest_bytes`` (a manifest store veriframe kept, found through the watermark), that store
    is validated against the file instead, and the report says ``recovered``. The file is
    streamed, never read whole by us.
    """
    path = Path(path)
    if not path.is_file():
        raise AssetNotFoundError(f"{path} does not exist")
    sidecar = Path(sidecar_path) if sidecar_path else path.with_suffix(".c2pa")
    with open(path, "rb") as stream:
        return _verify_stream(
            stream, sniff(path), str(path), trust, manifest_bytes, None if sidecar == path else sidecar
        )


def verify_bytes(
    data: bytes, trust: TrustConfig, *, name: str = "<bytes>", manifest_bytes: bytes | None = None
) -> C2paReport:
    """Verify an in-memory asset (small uploads); same rules as :func:`verify_file`, no sidecar."""
    return _verify_stream(io.BytesIO(data), sniff_bytes(data[:64]), name, trust, manifest_bytes, None)
