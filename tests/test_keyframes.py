"""Keyframes of a verification report: picked in the shared decode pass, shrunk, encoded; the detector's
heatmaps drawn over them. Real clips from media.synthetic; the detector is the installed default model."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detector.heatmap import COLOUR_SCALE, PatchMaps, colourise, draw_heatmap
from media import MediaLimits, VideoWriter, feed_frames, probe
from media.keyframes import KeyframeStrip, pick_keyframes, thumbnail_size
from media.synthetic import make_test_clip


def strip_of(path: Path, **kwargs) -> KeyframeStrip:
    info = probe(path)
    strip = KeyframeStrip(info, **kwargs)
    feed_frames(path, MediaLimits(), [strip.request()])
    return strip


def decoded(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


# --- picking and shrinking --------------------------------------------------------------------------


def test_picks_are_spread_evenly_and_never_more_than_the_frames() -> None:
    assert pick_keyframes(60, 6) == [5, 15, 25, 35, 45, 55]  # the middle of six equal stretches
    assert pick_keyframes(4, 6) == [0, 1, 2, 3] and pick_keyframes(1, 6) == [0] and pick_keyframes(0, 6) == [0]
    # With enough frames another consumer decodes anyway, the picks are spread over those.
    detector_frames = (0, 9, 17, 26, 34, 43, 51, 59)
    assert pick_keyframes(60, 6, detector_frames) == [0, 9, 26, 34, 51, 59]
    assert pick_keyframes(60, 6, (0, 30)) == [5, 15, 25, 35, 45, 55]  # too few: spread over the clip


def test_thumbnails_keep_the_aspect_and_never_grow() -> None:
    assert thumbnail_size(1920, 1080) == (240, 135) and thumbnail_size(1080, 1920) == (135, 240)
    assert thumbnail_size(160, 96) == (160, 96)


def test_strip_of_a_clip_from_one_pass(tmp_path: Path) -> None:
    clip = make_test_clip(tmp_path / "c.mp4", width=640, height=360, frames=48, fps=24, pattern="moving")
    strip = strip_of(clip)
    frames = strip.keyframes
    assert [f.index for f in frames] == [4, 12, 20, 28, 36, 44] and not strip.from_candidates
    assert [f.time_s for f in frames] == pytest.approx([i / 24 for i in (4, 12, 20, 28, 36, 44)], abs=1e-3)
    for frame in frames:
        assert frame.size == (240, 135) and frame.source_size == (640, 360)
        image = decoded(frame.jpeg())
        assert image.shape == (135, 240, 3)
    # The white square crosses the frame: the keyframes show it moving from left to right.
    xs = [np.argmax(decoded(f.jpeg())[67, :, 0] > 230) for f in frames]
    assert xs == sorted(xs) and xs[0] < xs[-1]


def test_a_still_gives_one_keyframe(tmp_path: Path) -> None:
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8))
    frames = strip_of(still).keyframes
    assert len(frames) == 1 and frames[0].index == 0 and frames[0].size == (240, 144)


def test_a_rotated_clip_is_shown_upright(tmp_path: Path) -> None:
    rotated = tmp_path / "rotated.mp4"
    with VideoWriter(rotated, width=320, height=180, fps=24, rotation=90, preset="ultrafast") as writer:
        for _ in range(3):
            writer.write_rgb(np.full((180, 320, 3), 90, np.uint8))
    frame = strip_of(rotated, count=1).keyframes[0]
    assert frame.thumbnail.shape[:2] == (135, 240) and frame.size == (135, 240)
    assert decoded(frame.jpeg()).shape == (240, 135, 3)


# --- heatmaps ---------------------------------------------------------------------------------------


def test_heatmap_colours_the_examined_cells_and_greys_the_rest() -> None:
    assert colourise(np.array([0.0, 1.0])).tolist() == [[0x44, 0x01, 0x54], [0xFD, 0xE7, 0x25]]
    assert COLOUR_SCALE[0][0] == 0.0 and COLOUR_SCALE[-1][0] == 1.0
    # One 64 px crop at the top left of a 128x64 frame, 2x2 cells; the frame's right half unexamined.
    probabilities = np.array([[[0.0, 1.0], [1.0, 0.0]]])
    maps = PatchMaps((128, 64), 64, ((0, 0),), {0: probabilities}, probabilities)
    picture = np.full((32, 64, 3), 200, np.uint8)  # a half-size thumbnail
    drawn = draw_heatmap(picture, maps, maps.frames[0])
    assert drawn.shape == picture.shape and maps.cell_px() == 32
    low, high, unexamined = drawn[4, 4], drawn[4, 20], drawn[16, 48]
    assert high.sum() > low.sum() and high[2] < high[0]  # yellow over purple
    assert np.all(unexamined == unexamined[0]) and unexamined[0] < 200  # grey, not coloured


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory):
    from pipeline_helpers import upgrade_instance

    from settings import init_instance, load_settings

    tmp = tmp_path_factory.mktemp("kf")
    init_instance(tmp / "inst")
    settings = load_settings(tmp / "inst", env={})
    upgrade_instance(settings)
    return settings, tmp


def test_verification_gets_keyframes_and_a_heatmap_on_each_from_one_pass(instance, monkeypatch) -> None:
    import media.decode
    from provenance.credentials import verify_clip_pictured

    settings, tmp = instance
    clip = make_test_clip(tmp / "noise.mp4", width=320, height=180, frames=40, pattern="noise")
    passes = []
    open_input = media.decode.open_input
    monkeypatch.setattr(media.decode, "open_input", lambda *a, **k: passes.append(a[0]) or open_input(*a, **k))
    pictured = verify_clip_pictured(settings, clip)
    assert passes == [clip]  # C2PA, watermark, detector and keyframes: one decode
    report, section = pictured.report, pictured.report["keyframes"]
    analysed = {f["index"] for f in report["detector"]["frames"]}
    items = section["items"]
    assert len(items) == 6 and {i["index"] for i in items} <= analysed and "detector" in section["selection"]
    assert section["heatmaps"]["state"] == "per_frame" and section["heatmaps"]["scale"][0] == [0.0, "#440154"]
    pictures = {p.name: p for p in pictured.pictures}
    assert sorted(pictures) == sorted([i["image"] for i in items] + [i["heatmap"] for i in items])
    for item in items:
        assert item["heatmap_source"] == "frame" and (item["width"], item["height"]) == (240, 135)
        thumb, heat = pictures[item["image"]], pictures[item["heatmap"]]
        assert thumb.media_type == "image/jpeg" and thumb.data[:3] == b"\xff\xd8\xff"
        assert heat.media_type == "image/png" and heat.data[:8] == b"\x89PNG\r\n\x1a\n"
        assert decoded(heat.data).shape == decoded(thumb.data).shape == (135, 240, 3)


def test_out_of_scope_clip_gets_keyframes_and_says_why_there_is_no_heatmap(instance) -> None:
    from provenance.credentials import verify_clip_pictured

    settings, tmp = instance
    tiny = make_test_clip(tmp / "tiny.mp4", width=48, height=32, frames=3, pattern="noise")
    pictured = verify_clip_pictured(settings, tiny)
    section = pictured.report["keyframes"]
    assert [i["index"] for i in section["items"]] == [0, 1, 2] and all(i["heatmap"] is None for i in section["items"])
    assert section["heatmaps"]["state"] == "none" and "outside the detector's scope" in section["heatmaps"]["message"]
    assert [p.name for p in pictured.pictures] == ["keyframe-1", "keyframe-2", "keyframe-3"]
