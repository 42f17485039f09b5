"""Component tests of provenance.c2pa against the real c2pa-python (tiny files, all offline)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import stat
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provenance.c2pa import (
    AssetNotFoundError,
    IdentityError,
    ProvenanceError,
    SigningError,
    TrustConfig,
    TrustConfigError,
    UnsupportedFormatError,
    build_definition,
    callback_signer,
    ensure_dev_identity,
    import_identity,
    local_signer,
    sign_file,
    verify_bytes,
    verify_file,
)
from provenance.c2pa.identity import check_chain

GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
SOFT_BINDING = {"alg": "veriframe.wm.v1", "value": "00112233445566778899aabbccddeeff"}
GENERATION = {
    "model_id": "vf-dit-s",
    "checkpoint_sha256": "ab" * 32,
    "seed": 7,
    "steps": 20,
    "prompt": "a red fox",
}


# --- media fixtures ----------------------------------------------------------------------------------


def _write_clip(path: Path, *, codec: str = "libx264", fmt: str | None = None) -> Path:
    """A 64x48, 10-frame clip written with PyAV (used when media.synthetic is unavailable)."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            rgb = np.zeros((48, 64, 3), np.uint8)
            rgb[:, : 6 * i + 4] = (200, 40 + 20 * i, 90)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_clip(path: Path) -> Path:
    try:
        from media.synthetic import make_test_clip
    except ImportError:
        return _write_clip(path, fmt="mp4")
    return make_test_clip(path, width=64, height=48, frames=10, fps=10)


def make_png(path: Path) -> Path:
    """A 16x16 RGB PNG written by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    rows = b"".join(b"\x00" + b"".join(bytes([x * 16, y * 16, 128]) for x in range(16)) for y in range(16))
    header = (16).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


def make_jpeg(path: Path) -> Path:
    import cv2

    image = np.zeros((24, 32, 3), np.uint8)
    image[:, :16] = (30, 160, 220)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def mdat_payload_offset(data: bytes) -> int:
    """Offset of the top-level mdat box's payload (walks box headers: "mdat" also occurs as text
    inside the manifest's BMFF hash exclusions, so a plain search can land in the manifest)."""
    offset = 0
    while offset + 8 <= len(data):
        size, kind = int.from_bytes(data[offset : offset + 4], "big"), data[offset + 4 : offset + 8]
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[offset + 8 : offset + 16], "big"), 16
        elif size == 0:
            size = len(data) - offset
        if kind == b"mdat":
            return offset + header
        offset += size
    raise AssertionError("no top-level mdat box")


def flip_mdat_byte(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    data[mdat_payload_offset(data) + 40] ^= 0x01
    dst.write_bytes(bytes(data))
    return dst


def reencode(src: Path, dst: Path) -> Path:
    """Decode and re-encode the video: the bytes change, the picture barely does."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in inp.decode(video=0):
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dst


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("instance")
    ensure_dev_identity(directory)
    return directory


@pytest.fixture(scope="module")
def trust(instance: Path) -> TrustConfig:
    return TrustConfig.for_instance(instance)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("media") / "clip.mp4")


@pytest.fixture(scope="module")
def signed(instance: Path, clip: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("signed") / "signed.mp4"
    return sign_file(
        clip,
        out,
        local_signer(instance),
        source="generated",
        title="fox",
        author="Ada",
        soft_binding=SOFT_BINDING,
        generation=GENERATION,
    )


# --- identity ---------------------------------------------------------------------------------------


def test_dev_identity_files_are_private_and_chain_validates(tmp_path: Path) -> None:
    created = ensure_dev_identity(tmp_path)
    assert sorted(created) == ["ca.key", "ca.pem", "chain.pem", "key.pem"]
    signing = tmp_path / "signing"
    for name in created:
        assert stat.S_IMODE((signing / name).stat().st_mode) == 0o600, name
    assert not list(signing.glob(".*.tmp"))
    assert ensure_dev_identity(tmp_path) == []  # idempotent

    certs = x509.load_pem_x509_certificates((signing / "chain.pem").read_bytes())
    leaf, ca = certs
    assert check_chain(certs) == "ES256"
    leaf.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    ekus = {oid.dotted_string for oid in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value}
    assert "1.3.6.1.5.5.7.3.4" in ekus and "1.3.6.1.4.1.62558.2.1" in ekus
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)


def test_import_identity_installs_a_valid_chain(tmp_path: Path) -> None:
    ensure_dev_identity(tmp_path / "other")
    source = tmp_path / "other" / "signing"
    info = import_identity(tmp_path / "inst", source / "chain.pem", source / "key.pem")
    assert info.alg == "ES256" and info.organization == "veriframe development"
    installed = tmp_path / "inst" / "signing"
    assert stat.S_IMODE((installed / "key.pem").stat().st_mode) == 0o600
    assert local_signer(tmp_path / "inst").alg == "ES256"


def test_import_identity_rejects_bad_input_in_one_line(tmp_path: Path) -> None:
    ensure_dev_identity(tmp_path / "a")
    ensure_dev_identity(tmp_path / "b")
    a, b = tmp_path / "a" / "signing", tmp_path / "b" / "signing"
    reversed_chain = tmp_path / "reversed.pem"
    leaf, ca = x509.load_pem_x509_certificates((a / "chain.pem").read_bytes())
    reversed_chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (ca, leaf)))
    leaf_only_ca = tmp_path / "leaf_ca.pem"
    leaf_only_ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")

    cases = [
        (a / "chain.pem", b / "key.pem", "does not belong"),
        (reversed_chain, a / "ca.key", "CA certificate"),
        (leaf_only_ca, a / "ca.key", "CA certificate"),
        (a / "chain.pem", garbage, "not a PEM private key"),
        (tmp_path / "missing.pem", a / "key.pem", "does not exist"),
    ]
    key_text = (a / "key.pem").read_text()
    for chain, key, expected in cases:
        with pytest.raises(IdentityError) as caught:
            import_identity(tmp_path / "inst", chain, key)
        message = str(caught.value)
        assert expected in message and "\n" not in message
        assert key_text.splitlines()[1] not in message
    assert not (tmp_path / "inst" / "signing" / "key.pem").exists()


def test_import_identity_rejects_wrong_chain_order(tmp_path: Path) -> None:
    ensure_dev_identity(tmp_path / "a")
    ensure_dev_identity(tmp_path / "b")
    leaf, _ = x509.load_pem_x509_certificates((tmp_path / "a/signing/chain.pem").read_bytes())
    _, other_ca = x509.load_pem_x509_certificates((tmp_path / "b/signing/chain.pem").read_bytes())
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, other_ca)))
    with pytest.raises(IdentityError, match="chain out of order"):
        import_identity(tmp_path / "inst", mixed, tmp_path / "a/signing/key.pem")


# --- signing and verification --------------------------------------------------------------------------


def test_sign_then_verify_is_trusted_under_our_ca_and_valid_without(signed, trust: TrustConfig) -> None:
    report = verify_file(signed.out_path, trust)
    assert report.state == "trusted", report.to_dict()
    assert report.codes == [] and report.manifest_label == signed.manifest_label
    assert report.signer_organization == "veriframe development"
    assert report.signer_common_name == "veriframe dev signer"
    assert report.digital_source_type == GENERATED
    assert [a["action"] for a in report.actions] == ["c2pa.created"]
    assert report.soft_bindings == ({"alg": "veriframe.wm.v1", "values": [SOFT_BINDING["value"]]},)
    assert report.claim_generator[0]["name"] == "veriframe"
    generation = report.generation or {}
    assert generation["version"] == 1 and generation["seed"] == 7
    assert generation["prompt_sha256"] == hashlib.sha256(b"a red fox").hexdigest()
    assert "prompt" not in generation  # not opted in
    assert signed.sha256 == hashlib.sha256(signed.out_path.read_bytes()).hexdigest()

    untrusted = verify_file(signed.out_path, TrustConfig())
    assert untrusted.state == "valid"
    assert untrusted.codes == ["signingCredential.untrusted"]
    assert "not in this trust configuration" in untrusted.message


def test_stored_manifest_bytes_verify_the_signed_file(signed, trust: TrustConfig) -> None:
    report = verify_file(signed.out_path, trust, manifest_bytes=signed.manifest_bytes)
    assert report.state == "trusted" and report.recovered
    in_memory = verify_bytes(signed.out_path.read_bytes(), trust, name="upload.mp4")
    assert in_memory.state == "trusted" and in_memory.manifest_source == "embedded"


def test_flipped_mdat_byte_is_invalid_with_bmff_hash_mismatch(
    signed, trust: TrustConfig, tmp_path: Path
) -> None:
    tampered = flip_mdat_byte(signed.out_path, tmp_path / "tampered.mp4")
    report = verify_file(tampered, trust)
    assert report.state == "invalid"
    assert "assertion.bmffHash.mismatch" in report.codes
    assert report.altered_since_signing and report.signature_valid
    failure = next(f for f in report.failures if f.code == "assertion.bmffHash.mismatch")
    assert "changed after signing" in failure.explanation


def test_reencoded_clip_is_absent_but_stored_manifest_shows_alteration(
    signed, trust: TrustConfig, tmp_path: Path
) -> None:
    copy = reencode(signed.out_path, tmp_path / "reencoded.mp4")
    assert verify_file(copy, trust).state == "absent"
    report = verify_file(copy, trust, manifest_bytes=signed.manifest_bytes)
    assert report.recovered and report.manifest_source == "store"
    assert report.state == "invalid" and "assertion.bmffHash.mismatch" in report.codes
    assert report.signature_valid and report.altered_since_signing
    assert report.soft_bindings[0]["values"] == [SOFT_BINDING["value"]]


def test_prompt_included_only_when_opted_in(
    instance: Path, clip: Path, trust: TrustConfig, tmp_path: Path
) -> None:
    result = sign_file(
        clip,
        tmp_path / "p.mp4",
        local_signer(instance),
        source="generated",
        generation=GENERATION,
        include_prompt=True,
    )
    assert verify_file(result.out_path, trust).generation["prompt"] == "a red fox"


@pytest.mark.parametrize(
    "maker, name, mime", [(make_jpeg, "still.jpg", "image/jpeg"), (make_png, "still.png", "image/png")]
)
def test_still_images_sign_and_verify(
    maker, name, mime, instance: Path, trust: TrustConfig, tmp_path: Path
) -> None:
    source = maker(tmp_path / name)
    result = sign_file(source, tmp_path / f"signed-{name}", local_signer(instance), source="capture")
    assert result.mime == mime
    assert result.sha256 == hashlib.sha256(result.out_path.read_bytes()).hexdigest()
    report = verify_file(result.out_path, trust)
    assert report.state == "trusted", report.to_dict()
    assert report.digital_source_type == CAPTURE


def test_mov_signs_and_verifies(instance: Path, trust: TrustConfig, tmp_path: Path) -> None:
    source = _write_clip(tmp_path / "clip.mov", fmt="mov")
    result = sign_file(source, tmp_path / "signed.mov", local_signer(instance), source="capture")
    assert result.mime == "video/quicktime"
    assert result.sha256 == hashlib.sha256(result.out_path.read_bytes()).hexdigest()
    assert verify_file(result.out_path, trust).state == "trusted"


def test_webm_is_refused_without_output(instance: Path, tmp_path: Path) -> None:
    webm = _write_clip(tmp_path / "clip.webm", codec="libvpx", fmt="webm")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(UnsupportedFormatError, match="WEBM.*sidecar=True"):
        sign_file(webm, out_dir / "signed.webm", local_signer(instance), source="generated")
    assert list(out_dir.iterdir()) == []


def test_webm_sidecar_manifest(instance: Path, trust: TrustConfig, tmp_path: Path) -> None:
    webm = _write_clip(tmp_path / "clip.webm", codec="libvpx", fmt="webm")
    result = sign_file(
        webm, tmp_path / "signed.webm", local_signer(instance), source="generated", sidecar=True
    )
    assert result.sidecar_path == tmp_path / "signed.c2pa"
    assert result.sidecar_path.read_bytes() == result.manifest_bytes
    assert result.out_path.read_bytes() == webm.read_bytes()
    report = verify_file(result.out_path, trust)
    assert report.state == "trusted" and report.manifest_source == "sidecar"
    data = bytearray(result.out_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    result.out_path.write_bytes(bytes(data))
    assert verify_file(result.out_path, trust).codes == ["assertion.dataHash.mismatch"]


def test_signing_failure_leaves_no_output(instance: Path, clip: Path, tmp_path: Path) -> None:
    good = local_signer(instance)

    def broken_kms(data: bytes) -> bytes:
        raise RuntimeError("KMS unavailable")

    signer = callback_signer(good.alg, good.certs_pem, broken_kms)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(SigningError, match="signer callback failed: RuntimeError: KMS unavailable"):
        sign_file(clip, out_dir / "signed.mp4", signer, source="generated")
    assert list(out_dir.iterdir()) == []

    existing = out_dir / "keep.mp4"
    existing.write_bytes(b"previous")
    with pytest.raises(SigningError):
        sign_file(clip, existing, signer, source="generated")
    assert existing.read_bytes() == b"previous"
    assert sorted(p.name for p in out_dir.iterdir()) == ["keep.mp4"]


def test_callback_signer_rejects_mismatched_algorithm(instance: Path) -> None:
    good = local_signer(instance)
    with pytest.raises(IdentityError, match="does not fit"):
        callback_signer("PS256", good.certs_pem, good.sign)
    with pytest.raises(IdentityError, match="no PEM certificate"):
        callback_signer("ES256", "nonsense", good.sign)


def test_callback_signer_with_key_outside_instance(tmp_path: Path, clip: Path) -> None:
    """A KMS-like signer: the key exists only in the callback's closure and returns DER."""
    ensure_dev_identity(tmp_path / "inst")
    chain = (tmp_path / "inst/signing/chain.pem").read_text()
    key = serialization.load_pem_private_key((tmp_path / "inst/signing/key.pem").read_bytes(), None)
    (tmp_path / "inst/signing/key.pem").unlink()
    signer = callback_signer("ES256", chain, lambda data: key.sign(data, ec.ECDSA(hashes.SHA256())))
    result = sign_file(clip, tmp_path / "kms.mp4", signer, source="generated")
    assert verify_file(result.out_path, TrustConfig.for_instance(tmp_path / "inst")).state == "trusted"


def test_tampered_ingredient_is_reported_while_active_manifest_is_valid(
    signed, instance: Path, clip: Path, trust: TrustConfig, tmp_path: Path
) -> None:
    tampered_parent = flip_mdat_byte(signed.out_path, tmp_path / "parent.mp4")
    result = sign_file(
        clip, tmp_path / "edit.mp4", local_signer(instance), source="edit", parent_path=tampered_parent
    )
    report = verify_file(result.out_path, trust)
    assert report.state == "trusted" and report.codes == []
    assert [a["action"] for a in report.actions] == ["c2pa.opened", "c2pa.edited"]
    (ingredient,) = report.ingredients
    assert ingredient.relationship == "parentOf" and ingredient.state == "invalid"
    assert "assertion.bmffHash.mismatch" in ingredient.codes
    assert report.ingredient_codes == ingredient.codes


def test_edit_of_an_intact_parent_keeps_a_trusted_ingredient(
    signed, instance: Path, clip: Path, trust: TrustConfig, tmp_path: Path
) -> None:
    result = sign_file(
        clip, tmp_path / "edit.mp4", local_signer(instance), source="edit", parent_path=signed.out_path
    )
    (ingredient,) = verify_file(result.out_path, trust).ingredients
    assert ingredient.state == "trusted" and ingredient.manifest_label == signed.manifest_label


def test_already_signed_input_is_kept_as_parent(
    signed, instance: Path, trust: TrustConfig, tmp_path: Path
) -> None:
    result = sign_file(signed.out_path, tmp_path / "resigned.mp4", local_signer(instance), source="generated")
    report = verify_file(result.out_path, trust)
    assert report.state == "trusted"
    assert [i.manifest_label for i in report.ingredients] == [signed.manifest_label]
    assert report.digital_source_type == GENERATED


def test_signed_input_with_explicit_parent_keeps_both(
    signed, instance: Path, clip: Path, trust: TrustConfig, tmp_path: Path
) -> None:
    parent = sign_file(clip, tmp_path / "parent.mp4", local_signer(instance), source="capture")
    result = sign_file(
        signed.out_path,
        tmp_path / "both.mp4",
        local_signer(instance),
        source="edit",
        parent_path=parent.out_path,
    )
    report = verify_file(result.out_path, trust)
    assert report.state == "trusted"
    assert [(i.relationship, i.manifest_label, i.state) for i in report.ingredients] == [
        ("parentOf", parent.manifest_label, "trusted"),
        ("componentOf", signed.manifest_label, "trusted"),
    ]


def test_edit_without_parent_is_refused(instance: Path, clip: Path, tmp_path: Path) -> None:
    with pytest.raises(ProvenanceError, match="parent_path"):
        sign_file(clip, tmp_path / "x.mp4", local_signer(instance), source="edit")
    assert not (tmp_path / "x.mp4").exists()


def test_unreadable_absent_and_missing(trust: TrustConfig, clip: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video")
    assert verify_file(junk, trust).state == "unreadable"
    assert verify_file(clip, trust).state == "absent"
    with pytest.raises(AssetNotFoundError):
        verify_file(tmp_path / "nope.mp4", trust)


def test_trust_config_errors(tmp_path: Path) -> None:
    bad_ekus = tmp_path / "ekus.txt"
    bad_ekus.write_text("1.3.6.1.5.5.7.3.4\nemailProtection\n")
    with pytest.raises(TrustConfigError, match="not a dotted OID"):
        TrustConfig(allowed_ekus_file=bad_ekus).settings()
    with pytest.raises(TrustConfigError, match="cannot be read"):
        TrustConfig(anchor_files=(tmp_path / "none.pem",)).settings()
    settings = TrustConfig().settings()
    assert settings["verify"] == {"verify_trust": True, "ocsp_fetch": False, "remote_manifest_fetch": False}


def test_build_definition_actions() -> None:
    created = build_definition(source="capture", mime="video/mp4", title="t", has_parent=False)
    (actions,) = [a["data"]["actions"] for a in created["assertions"] if a["label"] == "c2pa.actions"]
    assert actions[0]["action"] == "c2pa.created" and actions[0]["digitalSourceType"] == CAPTURE
    edited = build_definition(source="edit", mime="video/mp4", title="t", has_parent=True)
    (actions,) = [a["data"]["actions"] for a in edited["assertions"] if a["label"] == "c2pa.actions"]
    assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.edited"]
    with pytest.raises(ProvenanceError):
        build_definition(source="painted", mime="video/mp4", title="t", has_parent=False)  # type: ignore[arg-type]


# --- secrets never leak ---------------------------------------------------------------------------------


def test_private_key_never_appears_in_reports_reprs_or_logs(
    instance: Path, clip: Path, trust: TrustConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key_pem = (instance / "signing" / "key.pem").read_text()
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    secret = key.private_numbers().private_value
    needles = [line for line in key_pem.splitlines() if not line.startswith("-----")]
    needles += [f"{secret:x}", str(secret)]

    signer = local_signer(instance)
    result = sign_file(clip, tmp_path / "s.mp4", signer, source="generated", soft_binding=SOFT_BINDING)
    report = verify_file(result.out_path, trust)
    haystacks = [
        repr(signer),
        str(signer),
        repr(result),
        json.dumps(result.to_dict()),
        repr(report),
        json.dumps(report.to_dict()),
        caplog.text,
        result.manifest_bytes.decode("latin-1"),
    ]
    for haystack in haystacks:
        for needle in needles:
            assert needle not in haystack
    assert "BEGIN PRIVATE KEY" not in "".join(haystacks)


def test_expired_certificate_is_refused_at_import(tmp_path: Path) -> None:
    ensure_dev_identity(tmp_path / "a")
    signing = tmp_path / "a" / "signing"
    ca = x509.load_pem_x509_certificate((signing / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((signing / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "old")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(past)
        .not_valid_after(past + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    chain, key_file = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(IdentityError, match="not valid now"):
        import_identity(tmp_path / "inst", chain, key_file)
