"""veriframe's one wrapper around the pinned c2pa-python: identities, signing and verification.

Public API::

    ensure_dev_identity(instance_dir) -> list[str]
    import_identity(instance_dir, chain_pem, key_pem) -> IdentityInfo
    local_signer(instance_dir, tsa_url=None) -> Signer
    callback_signer(alg, certs_pem, sign, tsa_url=None) -> Signer
    sign_file(in_path, out_path, signer, *, source, ...) -> SignResult
    TrustConfig.for_instance(instance_dir, anchor_files=..., allowed_ekus_file=...)
    verify_file(path, trust, *, manifest_bytes=None) -> C2paReport

Importing this package has no side effects beyond loading c2pa-python's native library when
signing or verification is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AssetNotFoundError,
    IdentityError,
    ProvenanceError,
    SigningError,
    TrustConfigError,
    UnsupportedFormatError,
)
from .identity import IdentityInfo, ensure_dev_identity, import_identity, load_identity_info
from .signer import Signer, callback_signer, local_signer

if TYPE_CHECKING:
    from .sign import SignResult, sign_file
    from .verify import C2paReport, Failure, IngredientReport, TrustConfig, verify_bytes, verify_file

# sign/verify import c2pa-python (a native library): load them on first use only.
_LAZY = {
    "SignResult": "sign",
    "sign_file": "sign",
    "build_definition": "sign",
    "C2paReport": "verify",
    "Failure": "verify",
    "IngredientReport": "verify",
    "TrustConfig": "verify",
    "verify_file": "verify",
    "verify_bytes": "verify",
    "STATES": "verify",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "STATES",
    "AssetNotFoundError",
    "C2paReport",
    "Failure",
    "IdentityError",
    "IdentityInfo",
    "IngredientReport",
    "ProvenanceError",
    "SignResult",
    "Signer",
    "SigningError",
    "TrustConfig",
    "TrustConfigError",
    "UnsupportedFormatError",
    "build_definition",
    "callback_signer",
    "ensure_dev_identity",
    "import_identity",
    "load_identity_info",
    "local_signer",
    "sign_file",
    "verify_bytes",
    "verify_file",
]
