"""The only module that imports c2pa-python (pinned 0.38.1, c2pa-rs 0.91.3).

c2pa-python changes its API between minor releases, so every call into it goes through the few
functions here; the rest of ``provenance.c2pa`` works with plain dicts, bytes and our own types.
Nothing runs at import time beyond importing the library.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import c2pa as _c2pa

from .errors import SigningError
from .signer import Signer

logger = logging.getLogger(__name__)

_ALGS = {
    "ES256": _c2pa.C2paSigningAlg.ES256,
    "ES384": _c2pa.C2paSigningAlg.ES384,
    "ES512": _c2pa.C2paSigningAlg.ES512,
    "PS256": _c2pa.C2paSigningAlg.PS256,
    "PS384": _c2pa.C2paSigningAlg.PS384,
    "PS512": _c2pa.C2paSigningAlg.PS512,
    "Ed25519": _c2pa.C2paSigningAlg.ED25519,
}

MANIFEST_STORE_FORMAT = "application/c2pa"


def versions() -> dict[str, str]:
    """The c2pa-python and c2pa-rs versions doing the work (reports record them)."""
    return {"c2pa_python": str(_c2pa.__version__), "c2pa_rs": str(_c2pa.sdk_version())}


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300]


@contextmanager
def context(settings: dict[str, Any]) -> Iterator[Any]:
    """A c2pa Context built from a settings dict, closed on exit."""
    with _c2pa.Settings.from_dict(settings) as native_settings:
        ctx = _c2pa.Context(settings=native_settings)
    try:
        yield ctx
    finally:
        ctx.close()


# --- reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadOutcome:
    """What c2pa made of an asset: the manifest store JSON, or why there is none.

    ``kind`` is ``"store"`` (``store`` holds the parsed JSON), ``"absent"`` (no manifest),
    ``"unreadable"`` (not a parsable asset) or ``"malformed"`` (a manifest is there but cannot be
    decoded); ``message`` is c2pa's one-line reason for the last three.
    """

    kind: str
    store: dict[str, Any] | None = None
    message: str = ""


def read_store(
    stream: IO[bytes], mime: str | None, settings: dict[str, Any], manifest_data: bytes | None = None
) -> ReadOutcome:
    """Parse and validate the manifest store in ``stream`` (or ``manifest_data`` against it)."""
    with context(settings) as ctx:
        try:
            with _c2pa.Reader(mime, stream, manifest_data, ctx) as reader:
                return ReadOutcome("store", json.loads(reader.json()))
        except _c2pa.C2paError.ManifestNotFound as e:
            return ReadOutcome("absent", message=_one_line(e))
        except (_c2pa.C2paError.NotSupported, _c2pa.C2paError.Io, _c2pa.C2paError.FileNotFound) as e:
            return ReadOutcome("unreadable", message=_one_line(e))
        except _c2pa.C2paError.Other as e:
            # c2pa-rs reports container damage as Other("asset could not be parsed: ...").
            kind = "unreadable" if "could not be parsed" in str(e) else "malformed"
            return ReadOutcome(kind, message=_one_line(e))
        except _c2pa.C2paError as e:  # Verify, Decoding, Json, Manifest, ...: a broken manifest
            return ReadOutcome("malformed", message=_one_line(e))


def active_manifest_label(manifest_store: bytes) -> str | None:
    """The active manifest's label, read from manifest store bytes alone (no asset, no hashing)."""
    settings = {
        "verify": {
            "verify_trust": False,
            "verify_after_reading": False,
            "ocsp_fetch": False,
            "remote_manifest_fetch": False,
        }
    }
    outcome = read_store(io.BytesIO(manifest_store), MANIFEST_STORE_FORMAT, settings)
    return (outcome.store or {}).get("active_manifest")


# --- signing ---------------------------------------------------------------------------------------


class _CallbackGuard:
    """Wrap ``Signer.raw_signature`` so an exception in a KMS/HSM callback is kept for our error.

    c2pa-python logs callback exceptions at ERROR with their text; catching them here keeps the
    message out of its log and lets sign_file raise one typed SigningError instead.
    """

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self.error: BaseException | None = None

    def __call__(self, data: bytes) -> bytes:
        try:
            return self._signer.raw_signature(data)
        except Exception as e:  # noqa: BLE001 - any failure means "no signature"
            self.error = e
            return b""


@dataclass(frozen=True)
class IngredientSource:
    """An ingredient to add: its JSON definition, MIME type and the file it is read from."""

    definition: dict[str, Any]
    mime: str
    path: str


def sign_stream(
    definition: dict[str, Any],
    ingredients: list[IngredientSource],
    mime: str,
    source: IO[bytes],
    dest: IO[bytes],
    signer: Signer,
    settings: dict[str, Any],
    *,
    embed: bool = True,
) -> bytes:
    """Build a manifest from ``definition``, sign ``source`` into ``dest``; returns the store bytes.

    With ``embed=False`` the asset is copied unchanged and the returned store is meant for a
    ``.c2pa`` sidecar (bound to the asset by a data hash over all of it).
    """
    guard = _CallbackGuard(signer)
    try:
        native_signer = _c2pa.Signer.from_callback(guard, _ALGS[signer.alg], signer.certs_pem, signer.tsa_url)
    except _c2pa.C2paError as e:
        raise SigningError(f"c2pa refused the signer ({signer.alg}): {_one_line(e)}") from None
    try:
        with context(settings) as ctx, native_signer, _c2pa.Builder(definition, context=ctx) as builder:
            for ingredient in ingredients:
                with open(ingredient.path, "rb") as f:
                    builder.add_ingredient(ingredient.definition, ingredient.mime, f)
            if not embed:
                builder.set_no_embed()
            return builder.sign(native_signer, mime, source, dest)
    except _c2pa.C2paError as e:
        if guard.error is not None:
            raise SigningError(
                f"the signer callback failed: {type(guard.error).__name__}: {_one_line(guard.error)}"
            ) from None
        raise SigningError(f"c2pa could not sign the {mime} asset: {_one_line(e)}") from None
