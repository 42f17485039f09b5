"""C2PA validation status codes and what each failure means, in plain language.

The codes are the C2PA 2.x specification's (section "Validation", status codes), as c2pa-rs
reports them. A failure code that is not listed here is still reported, with c2pa's own text.
"""

from __future__ import annotations

FAILURE_EXPLANATIONS: dict[str, str] = {
    # Signature and credential
    "claimSignature.missing": "The manifest has no signature.",
    "claimSignature.mismatch": (
        "The signature does not match the manifest: the manifest was changed after it was signed, "
        "or the signature was forged."
    ),
    "claimSignature.outsideValidity": "The manifest was signed outside its certificate's validity period.",
    "signingCredential.untrusted": (
        "The signing certificate does not chain to any trust anchor in this trust configuration, "
        "so who signed it cannot be confirmed."
    ),
    "signingCredential.invalid": (
        "The signing certificate is malformed or not allowed for C2PA signing (key usage, extended "
        "key usage or algorithm)."
    ),
    "signingCredential.revoked": "The issuer of the signing certificate has revoked it.",
    "signingCredential.ocsp.revoked": "The issuer of the signing certificate has revoked it (OCSP).",
    "signingCredential.expired": (
        "The signing certificate had expired when the manifest was checked, and no trusted "
        "timestamp shows it was signed while the certificate was valid."
    ),
    "timeStamp.mismatch": "The timestamp does not belong to this signature (its message imprint differs).",
    "timeStamp.untrusted": "The timestamp comes from an authority this trust configuration does not trust.",
    "timeStamp.outsideValidity": "The timestamp was issued outside its authority's certificate validity.",
    "timeStamp.malformed": "The timestamp cannot be parsed.",
    "algorithm.unsupported": "The manifest uses a hash or signature algorithm that C2PA does not allow.",
    # Claim and manifest structure
    "claim.missing": "The manifest has no claim.",
    "claim.multiple": "The manifest has more than one claim.",
    "claim.malformed": "The claim cannot be parsed.",
    "claim.cbor.invalid": "The claim is not valid CBOR.",
    "claim.hardBindings.missing": "The manifest has no hard binding: nothing ties it to this file's bytes.",
    "claim.required.missing": "The claim lacks a field the specification requires.",
    "manifest.inaccessible": "The manifest could not be retrieved.",
    "manifest.multipleParents": "The manifest names more than one parent ingredient.",
    "manifest.update.invalid": "An update manifest changes more than an update may.",
    "manifest.update.wrongParents": "An update manifest does not have exactly one parent.",
    "manifest.timestamp.invalid": "A timestamp manifest is malformed.",
    "manifest.timestamp.wrongParents": "A timestamp manifest does not have exactly one parent.",
    "manifest.compressed.invalid": "A compressed manifest cannot be decompressed.",
    "hashedURI.missing": "A hashed reference points at something that is not there.",
    "hashedURI.mismatch": "A referenced item was changed after signing (its hash differs).",
    # Assertions
    "assertion.hashedURI.mismatch": (
        "An assertion (actions, ingredient, metadata) was changed after signing: its hash no longer "
        "matches the one the signature covers."
    ),
    "assertion.missing": "The manifest refers to an assertion that is not in the file.",
    "assertion.multipleHardBindings": "The manifest has more than one hard binding.",
    "assertion.undeclared": "The file holds an assertion that the signed claim does not list.",
    "assertion.inaccessible": "An assertion stored outside the file could not be retrieved.",
    "assertion.notRedacted": "An assertion listed as redacted is still present.",
    "assertion.selfRedacted": "A manifest tries to redact one of its own assertions.",
    "assertion.cbor.invalid": "An assertion is not valid CBOR.",
    "assertion.json.invalid": "An assertion is not valid JSON.",
    "assertion.action.ingredientMismatch": "An action refers to an ingredient that does not match.",
    "assertion.action.malformed": "The actions assertion is malformed.",
    "assertion.action.redacted": "An action that may not be redacted was redacted.",
    "assertion.ingredient.malformed": "An ingredient assertion is malformed.",
    "assertion.dataHash.mismatch": (
        "The file's bytes were changed after signing: the data hash over the image or file no longer matches."
    ),
    "assertion.dataHash.malformed": "The data hash assertion is malformed.",
    "assertion.bmffHash.mismatch": (
        "The video's bytes were changed after signing: the hash over its MP4/MOV boxes no longer "
        "matches (a re-encode, a trim or a single flipped byte all cause this)."
    ),
    "assertion.bmffHash.malformed": "The MP4/MOV hash assertion is malformed.",
    "assertion.boxesHash.mismatch": "The file's boxes or chunks were changed after signing.",
    "assertion.boxesHash.unknownBox": "The file contains a box the boxes hash does not cover.",
    "assertion.collectionHash.mismatch": "A file of the signed collection was changed after signing.",
    "assertion.cloud-data.hardBinding": "A hard binding was stored as cloud data, which is not allowed.",
    "assertion.cloud-data.actions": "Actions were stored as cloud data, which is not allowed.",
    # Ingredients
    "ingredient.manifest.missing": "An ingredient claims a manifest that is not in the file.",
    "ingredient.manifest.mismatch": "An ingredient's manifest differs from the one recorded at adding.",
    "ingredient.claimSignature.mismatch": "An ingredient's signature differs from the one recorded.",
    "ingredient.hashedURI.mismatch": "An ingredient's manifest was changed after it was added.",
    # veriframe's own catch-all for a manifest c2pa cannot decode at all.
    "general.error": "The manifest is present but could not be decoded; it may be damaged or forged.",
}

SUCCESS_CODES: frozenset[str] = frozenset(
    {
        "claimSignature.validated",
        "claimSignature.insideValidity",
        "signingCredential.trusted",
        "signingCredential.ocsp.notRevoked",
        "timeStamp.trusted",
        "timeStamp.validated",
        "assertion.hashedURI.match",
        "assertion.dataHash.match",
        "assertion.bmffHash.match",
        "assertion.boxesHash.match",
        "assertion.collectionHash.match",
        "assertion.accessible",
        "ingredient.manifest.validated",
        "ingredient.claimSignature.validated",
        "ingredient.hashedURI.match",
    }
)

INFORMATIONAL_CODES: frozenset[str] = frozenset(
    {
        "signingCredential.ocsp.skipped",
        "signingCredential.ocsp.inaccessible",
        "signingCredential.ocsp.unknown",
        "ingredient.unknownProvenance",
        "assertion.bmffHash.additionalExclusionsPresent",
        "algorithm.deprecated",
        "timeStamp.malformed.informational",
        "manifest.unknownProvenance",
    }
)

# Codes that concern who signed, not whether the content is intact.
TRUST_CODES: frozenset[str] = frozenset({"signingCredential.untrusted"})
HARD_BINDING_MISMATCH: frozenset[str] = frozenset(
    {
        "assertion.dataHash.mismatch",
        "assertion.bmffHash.mismatch",
        "assertion.boxesHash.mismatch",
        "assertion.collectionHash.mismatch",
    }
)
SIGNATURE_FAILURES: frozenset[str] = frozenset(
    {
        "claimSignature.missing",
        "claimSignature.mismatch",
        "signingCredential.invalid",
    }
)

_SUCCESS_SUFFIXES = (".validated", ".match", ".trusted", ".insideValidity", ".notRevoked", ".accessible")


def is_failure(code: str) -> bool:
    """Whether a code from a flat status list (old ingredients) reports a failure."""
    if code in FAILURE_EXPLANATIONS:
        return True
    if code in SUCCESS_CODES or code in INFORMATIONAL_CODES:
        return False
    return not code.endswith(_SUCCESS_SUFFIXES) and ".ocsp." not in code


def explain(code: str, fallback: str = "") -> str:
    """Plain-language meaning of a failure code, falling back to c2pa's text."""
    return FAILURE_EXPLANATIONS.get(code) or fallback or f"C2PA validation failure {code}."
