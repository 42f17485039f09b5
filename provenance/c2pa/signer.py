"""The signer interface: an algorithm, a certificate chain, and a function that signs bytes.

Every signer reaches c2pa-python through its callback-signer API, so a key held in a KMS or HSM
(never on disk) and the instance's local key take the same path. The private key lives only
inside the ``sign`` closure: it is not an attribute, and neither ``repr`` nor any report shows it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, PSS
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .errors import IdentityError
from .identity import CHAIN, KEY, _load_chain, _load_key, algorithm_for_key, signing_dir

logger = logging.getLogger(__name__)

ALGORITHMS = ("ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "Ed25519")
_EC_COORD_BYTES = {"ES256": 32, "ES384": 48, "ES512": 66}


@dataclass(frozen=True, repr=False)
class Signer:
    """What signing needs: ``alg``, the PEM chain (leaf first) and ``sign(data) -> signature``.

    ``sign`` returns the raw signature over ``data`` for ``alg``; ECDSA signatures may be DER
    (as KMS APIs return them) or raw ``r||s``; they are normalised to COSE's raw form.
    ``tsa_url`` is optional: without it signing is offline and the manifest carries no
    trusted timestamp.
    """

    alg: str
    certs_pem: str
    sign: Callable[[bytes], bytes] = field(compare=False)
    tsa_url: str | None = None

    def __post_init__(self) -> None:
        if self.alg not in ALGORITHMS:
            raise IdentityError(f"unknown signing algorithm {self.alg!r}; use one of {', '.join(ALGORITHMS)}")
        if "BEGIN CERTIFICATE" not in self.certs_pem:
            raise IdentityError("certs_pem holds no PEM certificate")
        key_alg = algorithm_for_key(leaf_certificate(self).public_key())
        if key_alg[:2] != self.alg[:2]:  # ES*, PS*, Ed25519 must match the certificate's key type
            raise IdentityError(
                f"signing algorithm {self.alg} does not fit the certificate's key ({key_alg})"
            )
        if self.tsa_url and not self.tsa_url.startswith(("http://", "https://")):
            raise IdentityError(f"TSA URL {self.tsa_url!r} is not an http(s) URL")

    @property
    def subject(self) -> str:
        certs = _load_chain(self.certs_pem.encode(), "certs_pem")
        return certs[0].subject.rfc4514_string()

    def __repr__(self) -> str:
        # Deliberately no closure, key or chain bytes here.
        return f"Signer(alg={self.alg!r}, subject={self.subject!r}, tsa_url={self.tsa_url!r})"

    def raw_signature(self, data: bytes) -> bytes:
        """Call ``sign`` and return the signature in the form COSE (and c2pa-rs) expects."""
        signature = self.sign(data)
        if not isinstance(signature, bytes | bytearray) or not signature:
            raise IdentityError("signer callback returned no signature bytes")
        size = _EC_COORD_BYTES.get(self.alg)
        if size is not None and len(signature) != 2 * size:
            r, s = decode_dss_signature(bytes(signature))  # DER from KMS or cryptography
            signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        return bytes(signature)


def callback_signer(
    alg: str, certs_pem: str, sign: Callable[[bytes], bytes], *, tsa_url: str | None = None
) -> Signer:
    """A signer whose key stays elsewhere (KMS, HSM): ``sign`` is called once per manifest."""
    return Signer(alg=alg, certs_pem=certs_pem, sign=sign, tsa_url=tsa_url)


def _local_sign_function(private_key: object, alg: str) -> Callable[[bytes], bytes]:
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        digest = {"ES256": hashes.SHA256, "ES384": hashes.SHA384, "ES512": hashes.SHA512}[alg]()

        def sign_ec(data: bytes) -> bytes:
            return private_key.sign(data, ec.ECDSA(digest))

        return sign_ec
    if isinstance(private_key, rsa.RSAPrivateKey):
        pss = PSS(mgf=MGF1(hashes.SHA256()), salt_length=32)

        def sign_rsa(data: bytes) -> bytes:
            return private_key.sign(data, pss, hashes.SHA256())

        return sign_rsa
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign
    raise IdentityError(f"key type {type(private_key).__name__} cannot sign C2PA manifests")


def local_signer(instance_dir: Path, *, tsa_url: str | None = None) -> Signer:
    """The instance's own signer from ``<instance>/signing/chain.pem`` and ``key.pem``."""
    directory = signing_dir(instance_dir)
    chain_path, key_path = directory / CHAIN, directory / KEY
    if not (chain_path.is_file() and key_path.is_file()):
        raise IdentityError(
            f"no signing identity in {directory}; run manage.py init or manage.py keys import"
        )
    chain_bytes = chain_path.read_bytes()
    certs = _load_chain(chain_bytes, str(chain_path))
    private_key = _load_key(key_path.read_bytes(), str(key_path))
    alg = algorithm_for_key(certs[0].public_key())
    public_der = private_key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf_der = (
        certs[0]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    if public_der != leaf_der:
        raise IdentityError(f"{key_path} does not belong to the first certificate in {chain_path}")
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs).decode()
    return Signer(alg=alg, certs_pem=pem, sign=_local_sign_function(private_key, alg), tsa_url=tsa_url)


def leaf_certificate(signer: Signer) -> x509.Certificate:
    return _load_chain(signer.certs_pem.encode(), "certs_pem")[0]
