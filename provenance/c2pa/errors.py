"""Typed errors raised by veriframe's C2PA wrapper.

Every message is one line and names what went wrong and, where it helps, what to do. No message
ever carries key material: errors coming out of c2pa-python or cryptography are summarised, not
passed through verbatim, wherever they could echo a key.
"""

from __future__ import annotations


class ProvenanceError(Exception):
    """Base class for every provenance failure veriframe raises on purpose."""

    def __init__(self, message: str) -> None:
        # One line, always: multi-line messages from native code are folded.
        super().__init__(" ".join(str(message).split()))


class UnsupportedFormatError(ProvenanceError):
    """The container cannot carry an embedded manifest (WebM, MKV, ...) or is not recognised."""


class SigningError(ProvenanceError):
    """Building or signing a manifest failed; no output file was written."""


class IdentityError(ProvenanceError):
    """A signing certificate or key is missing, malformed, mismatched or unusable for C2PA."""


class TrustConfigError(ProvenanceError):
    """A trust anchor or allowed-EKU file is missing or malformed."""


class AssetNotFoundError(ProvenanceError, FileNotFoundError):
    """The file to sign or verify does not exist."""
