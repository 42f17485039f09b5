"""Durable Content Credentials end to end: sign, verify, lose the manifest, recover it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_helpers import upgrade_instance

import media.decode
from detector import analyse_file, verdict
from media import transcode
from media.synthetic import make_test_clip
from provenance.c2pa import TrustConfig, verify_file
from provenance.credentials import issue_credentials, verify_clip
from provenance.manifest_store import ManifestStore
from provenance.watermark.video import detect_for_instance
from settings import init_instance, load_settings


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("cred")
    init_instance(tmp / "inst")
    settings = load_settings(tmp / "inst", env={})
    upgrade_instance(settings)  # the manifests table comes from the migrations
    src = make_test_clip(tmp / "in.mp4", width=320, height=180, frames=16, audio=True, pattern="noise")
    issued = issue_credentials(settings, src, tmp / "out.mp4", source="generated",
                               generation={"model_id": "tiny", "seed": 1, "steps": 4, "prompt": "a red circle"})
    return settings, tmp, issued


def test_signed_clip_is_trusted_and_watermarked(signed) -> None:
    settings, tmp, issued = signed
    report = verify_clip(settings, tmp / "out.mp4")
    assert report["c2pa"]["state"] == "trusted" and not report["c2pa"]["recovered"]
    assert report["c2pa"]["signer"]["organization"]
    assert report["c2pa"]["digital_source_type"].endswith("trainedAlgorithmicMedia")
    assert report["watermark"]["present"] and report["watermark"]["payload"] == issued.payload_hex
    assert report["file"]["has_audio"] and len(report["file"]["sha256"]) == 64
    soft = report["c2pa"]["soft_bindings"][0]
    assert soft["alg"] == "veriframe.wm.v1" and issued.payload_hex in soft["values"]


def test_without_our_ca_it_is_only_valid(signed) -> None:
    _, tmp, _ = signed
    assert verify_file(tmp / "out.mp4", TrustConfig()).state == "valid"


def test_manifest_is_stored_by_payload_and_hash(signed) -> None:
    settings, _, issued = signed
    store = ManifestStore(settings)
    by_payload = store.by_payload(issued.payload_hex)
    assert [m.label for m in by_payload] == [issued.manifest_label]
    assert store.by_asset(issued.sha256)[0].label == issued.manifest_label
    assert by_payload[0].read()  # the bytes are there
    assert ManifestStore(settings).engine is store.engine  # one engine per process, not one per store


def test_reencoded_clip_is_recovered_through_the_watermark(signed) -> None:
    settings, tmp, issued = signed
    transcode(tmp / "out.mp4", tmp / "reencoded.mp4", crf=23)
    assert verify_file(tmp / "reencoded.mp4", TrustConfig()).state == "absent"
    report = verify_clip(settings, tmp / "reencoded.mp4")
    assert report["c2pa"]["recovered"] is True
    assert report["c2pa"]["manifest_label"] == issued.manifest_label
    assert report["c2pa"]["altered_since_signing"] is True  # hard binding broken, signature fine
    assert report["watermark"]["payload"] == issued.payload_hex


def test_unsigned_clip_is_absent_and_unmarked(signed) -> None:
    settings, tmp, _ = signed
    report = verify_clip(settings, tmp / "in.mp4")
    assert report["c2pa"]["state"] == "absent" and not report["watermark"]["present"]


@pytest.mark.parametrize("name", ["out.mp4", "in.mp4"])
def test_verify_decodes_once_with_the_results_of_separate_passes(signed, monkeypatch, name: str) -> None:
    """The watermark and the detector share one decode pass, and report what each finds alone."""
    settings, tmp, _ = signed
    path = tmp / name
    passes = []
    open_input = media.decode.open_input  # every decode pass opens the file here (probe has its own)

    def counted(*args, **kwargs):
        passes.append(args[0])
        return open_input(*args, **kwargs)

    monkeypatch.setattr(media.decode, "open_input", counted)
    report = verify_clip(settings, path)
    assert passes == [path]
    monkeypatch.undo()
    mark = detect_for_instance(settings, path)
    alone = analyse_file(path, settings.media_limits)
    assert report["watermark"] == mark.to_dict()
    expected = alone.to_dict()
    for section in (report["detector"], expected["detector"]):
        assert section.pop("timings_s")["decode"] > 0
    assert report["detector"] == expected["detector"] and report["artifacts"] == expected["artifacts"]
    assert report["detector"]["in_scope"] and report["detector"]["frames"]  # the model did run
    assert report["verdict"] == verdict({**report, **alone.to_dict()}, alone.detector, alone.signals).to_dict()


def test_failed_signing_leaves_nothing(tmp_path: Path) -> None:
    init_instance(tmp_path / "inst")
    settings = load_settings(tmp_path / "inst", env={})
    src = make_test_clip(tmp_path / "in.mp4", width=128, height=96, frames=4)
    with pytest.raises(Exception):  # noqa: B017 - any typed error; the point is what is left behind
        issue_credentials(settings, src, tmp_path / "out.webm", source="capture")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "inst"]
