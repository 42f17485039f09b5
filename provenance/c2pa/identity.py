"""Signing identity of a veriframe instance: a development CA, its end-entity certificate, imports.

Files live under ``<instance>/signing/``, every one written 0600 to a temporary name and renamed
into place, so a crash never leaves half a key behind:

- ``ca.pem`` / ``ca.key``: the development CA (self-signed, EC P-256). Its key stays so the CA can
  issue a new end-entity certificate later; ``ca.pem`` is "our CA" in a trust configuration.
- ``chain.pem``: the end-entity certificate followed by its issuers (leaf first, root last).
- ``key.pem``: the end-entity private key (PKCS#8, unencrypted: protected by the file mode).

A real certificate replaces ``chain.pem`` and ``key.pem`` through :func:`import_identity`, which
checks everything a C2PA validator will check first, so a bad certificate fails at import rather
than on the first verification.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from .errors import IdentityError

logger = logging.getLogger(__name__)

SIGNING_DIR = "signing"
CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CHAIN = "chain.pem"
KEY = "key.pem"

DEV_ORGANIZATION = "veriframe development"
DEV_CA_NAME = "veriframe development CA"
DEV_SIGNER_NAME = "veriframe dev signer"

# Extended key usages c2pa-rs 0.91 accepts for a claim signer by default (its built-in
# trust config); allowed-EKU files used with TrustConfig list the same OIDs.
EKU_EMAIL_PROTECTION = ExtendedKeyUsageOID.EMAIL_PROTECTION  # 1.3.6.1.5.5.7.3.4
EKU_DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
EKU_C2PA_CLAIM_SIGNING = ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
C2PA_SIGNER_EKUS: frozenset[str] = frozenset(
    {
        "1.3.6.1.5.5.7.3.4",  # emailProtection
        "1.3.6.1.5.5.7.3.36",  # documentSigning
        "1.3.6.1.4.1.62558.2.1",  # c2pa-kp-claimSigning
        "1.3.6.1.4.1.311.76.59.1.9",  # Microsoft C2PA signing
        "1.3.6.1.5.5.7.3.8",  # timeStamping (accepted by c2pa-rs)
        "1.3.6.1.5.5.7.3.9",  # OCSPSigning (accepted by c2pa-rs)
    }
)


@dataclass(frozen=True)
class IdentityInfo:
    """What an installed signing identity says about itself (public facts only)."""

    alg: str
    organization: str | None
    common_name: str | None
    not_after: dt.datetime
    chain_length: int
    fingerprint_sha256: str

    def to_dict(self) -> dict[str, object]:
        return {
            "alg": self.alg,
            "organization": self.organization,
            "common_name": self.common_name,
            "not_after": self.not_after.isoformat(),
            "chain_length": self.chain_length,
            "fingerprint_sha256": self.fingerprint_sha256,
        }


def signing_dir(instance_dir: Path) -> Path:
    return Path(instance_dir) / SIGNING_DIR


# --- files ---------------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` 0600 to a temporary sibling, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # an existing tmp file keeps its old mode through O_CREAT
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _ensure_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# --- development CA ------------------------------------------------------------------------------


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )


def _make_ca(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(DEV_CA_NAME, DEV_ORGANIZATION)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue_signer(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    organization: str,
    common_name: str,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """An ES256 end-entity certificate with the profile C2PA validators check (KU, EKU, AKI)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organization))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=730), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # C2PA: the KU extension must be present, critical, and assert digitalSignature.
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([EKU_C2PA_CLAIM_SIGNING, EKU_DOCUMENT_SIGNING, EKU_EMAIL_PROTECTION]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def ensure_dev_identity(
    instance_dir: Path,
    *,
    organization: str = DEV_ORGANIZATION,
    common_name: str = DEV_SIGNER_NAME,
) -> list[str]:
    """Create the development CA and an ES256 signer chained to it, where missing.

    Existing files are kept (running this twice changes nothing); a missing end-entity
    certificate is issued by the existing CA. Returns the file names created, for the CLI to
    report.
    """
    directory = signing_dir(instance_dir)
    _ensure_dir(directory)
    created: list[str] = []
    now = dt.datetime.now(dt.UTC)

    chain_path, key_path = directory / CHAIN, directory / KEY
    if chain_path.exists() and key_path.exists():
        return created  # a signer is installed (ours or imported): nothing to issue
    ca_cert_path, ca_key_path = directory / CA_CERT, directory / CA_KEY
    if ca_cert_path.exists() != ca_key_path.exists():
        raise IdentityError(
            f"{directory} has only one of ca.pem and ca.key; restore the other or remove both"
        )
    if ca_cert_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        ca_key = _load_key(ca_key_path.read_bytes(), str(ca_key_path))
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise IdentityError(f"{ca_key_path} is not an EC key; remove ca.pem and ca.key to recreate")
    else:
        ca_cert, ca_key = _make_ca(now)
        _write_private(ca_key_path, _key_pem(ca_key))
        _write_private(ca_cert_path, _cert_pem(ca_cert))
        created += [CA_KEY, CA_CERT]

    cert, key = _issue_signer(ca_cert, ca_key, now, organization, common_name)
    _write_private(key_path, _key_pem(key))
    _write_private(chain_path, _cert_pem(cert) + _cert_pem(ca_cert))
    created += [KEY, CHAIN]
    if created:
        logger.info("signing identity: created %s in %s", ", ".join(created), directory)
    return created


# --- validation and import -----------------------------------------------------------------------


def algorithm_for_key(public_key: object) -> str:
    """The C2PA signing algorithm a key is used with; IdentityError for keys C2PA cannot use."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        alg = by_curve.get(public_key.curve.name)
        if alg is None:
            raise IdentityError(
                f"EC curve {public_key.curve.name} is not allowed by C2PA (use P-256 or P-384)"
            )
        return alg
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < 2048:
            raise IdentityError(f"RSA key of {public_key.key_size} bits is too short (C2PA needs 2048+)")
        return "PS256"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    raise IdentityError(f"key type {type(public_key).__name__} cannot sign C2PA manifests")


def _ext(cert: x509.Certificate, ext_type: type) -> object | None:
    try:
        return cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound:
        return None


def _attr(name: x509.Name, oid: ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_chain(certs: list[x509.Certificate], *, now: dt.datetime | None = None) -> str:
    """Check a leaf-first chain against the C2PA signer profile; returns the signing algorithm."""
    if not certs:
        raise IdentityError("the chain file holds no PEM certificate")
    now = now or dt.datetime.now(dt.UTC)
    leaf = certs[0]
    alg = algorithm_for_key(leaf.public_key())
    subject = leaf.subject.rfc4514_string()
    if leaf.version != x509.Version.v3:
        raise IdentityError(f"signing certificate {subject} is not X.509 v3")
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise IdentityError(
            f"signing certificate {subject} is not valid now (valid {leaf.not_valid_before_utc:%Y-%m-%d}"
            f" to {leaf.not_valid_after_utc:%Y-%m-%d})"
        )
    constraints = _ext(leaf, x509.BasicConstraints)
    if isinstance(constraints, x509.BasicConstraints) and constraints.ca:
        raise IdentityError(
            f"signing certificate {subject} is a CA certificate; C2PA needs an end-entity one"
        )
    if leaf.issuer == leaf.subject:
        raise IdentityError(f"signing certificate {subject} is self-signed; C2PA needs one issued by a CA")
    usage = _ext(leaf, x509.KeyUsage)
    if not isinstance(usage, x509.KeyUsage) or not usage.digital_signature:
        raise IdentityError(f"signing certificate {subject} lacks the digitalSignature key usage")
    ekus = _ext(leaf, x509.ExtendedKeyUsage)
    if not isinstance(ekus, x509.ExtendedKeyUsage):
        raise IdentityError(f"signing certificate {subject} has no extended key usage extension")
    eku_oids = {oid.dotted_string for oid in ekus}
    if "2.5.29.37.0" in eku_oids:
        raise IdentityError(f"signing certificate {subject} has anyExtendedKeyUsage, which C2PA forbids")
    if not eku_oids & C2PA_SIGNER_EKUS:
        raise IdentityError(
            f"signing certificate {subject} has no C2PA signer EKU (emailProtection, documentSigning "
            "or c2pa claimSigning)"
        )
    for position, (cert, issuer) in enumerate(zip(certs, certs[1:], strict=False), start=1):
        if not _issued_by(cert, issuer):
            raise IdentityError(
                f"chain out of order: certificate {position + 1} did not issue certificate {position}"
                " (the chain must run leaf first, then each issuer)"
            )
    return alg


def _load_chain(chain_pem: bytes, source: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise IdentityError(f"{source} is not a PEM certificate chain") from None


def _load_key(key_pem: bytes, source: str) -> object:
    try:
        return serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise IdentityError(
            f"{source} is encrypted; install an unencrypted key or use a callback signer"
        ) from None
    except (ValueError, UnsupportedAlgorithm):  # never echo the bytes
        raise IdentityError(f"{source} is not a PEM private key") from None


def _public_bytes(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def describe_chain(certs: list[x509.Certificate], alg: str) -> IdentityInfo:
    leaf = certs[0]
    return IdentityInfo(
        alg=alg,
        organization=_attr(leaf.subject, NameOID.ORGANIZATION_NAME),
        common_name=_attr(leaf.subject, NameOID.COMMON_NAME),
        not_after=leaf.not_valid_after_utc,
        chain_length=len(certs),
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
    )


def _check_key_signs(private_key: object, alg: str) -> None:
    """Sign and verify a probe, which catches mismatched RSA-PSS / curve setups early."""
    probe = b"veriframe identity probe"
    public = private_key.public_key()  # type: ignore[attr-defined]
    try:
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            digest = {"ES256": hashes.SHA256(), "ES384": hashes.SHA384(), "ES512": hashes.SHA512()}[alg]
            public.verify(private_key.sign(probe, ec.ECDSA(digest)), probe, ec.ECDSA(digest))
        elif isinstance(private_key, rsa.RSAPrivateKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            public.verify(private_key.sign(probe, pss, hashes.SHA256()), probe, pss, hashes.SHA256())
        elif isinstance(private_key, ed25519.Ed25519PrivateKey):
            public.verify(private_key.sign(probe), probe)
    except InvalidSignature:
        raise IdentityError("the private key cannot produce a signature its certificate verifies") from None


def import_identity(instance_dir: Path, chain_pem: Path, key_pem: Path) -> IdentityInfo:
    """Validate a real certificate chain and key, then install them as the instance's signer.

    Checks: the key matches the leaf certificate, the key type is one C2PA signs with
    (ES256/ES384/PS256/Ed25519), the leaf has the C2PA profile (v3, end-entity, digitalSignature,
    an allowed EKU, currently valid) and the chain runs leaf first with each certificate issued
    by the next. Nothing is written unless all pass. The development CA files are left alone.
    """
    chain_pem, key_pem = Path(chain_pem), Path(key_pem)
    for path in (chain_pem, key_pem):
        if not path.is_file():
            raise IdentityError(f"{path} does not exist")
    chain_bytes, key_bytes = chain_pem.read_bytes(), key_pem.read_bytes()
    certs = _load_chain(chain_bytes, str(chain_pem))
    private_key = _load_key(key_bytes, str(key_pem))
    alg = check_chain(certs)
    if _public_bytes(private_key.public_key()) != _public_bytes(certs[0].public_key()):  # type: ignore[attr-defined]
        raise IdentityError(f"{key_pem} does not belong to the first certificate in {chain_pem}")
    _check_key_signs(private_key, alg)

    directory = signing_dir(instance_dir)
    _ensure_dir(directory)
    # Re-serialise both so the installed files are canonical PEM with no stray text.
    _write_private(
        directory / KEY,
        private_key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    _write_private(directory / CHAIN, b"".join(_cert_pem(c) for c in certs))
    info = describe_chain(certs, alg)
    logger.info("signing identity: imported %s (%s, %s)", info.common_name, info.organization, alg)
    return info


def load_identity_info(instance_dir: Path) -> IdentityInfo:
    """Describe the installed signer (for ``manage.py keys`` listings)."""
    chain_path = signing_dir(instance_dir) / CHAIN
    if not chain_path.is_file():
        raise IdentityError(f"no signing identity in {signing_dir(instance_dir)}; run manage.py init")
    certs = _load_chain(chain_path.read_bytes(), str(chain_path))
    return describe_chain(certs, algorithm_for_key(certs[0].public_key()))
