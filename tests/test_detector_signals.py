"""Each training-free signal flags a synthetic clip built with its artifact and not the same clip without."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from detector.analyse import analyse_file
from detector.signals import encoding_history, metadata_bytes, noise_consistency, spectral_peaks, temporal_flicker
from media import VideoWriter, iter_frames

W, H, N = 256, 192, 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _texture(seed: int = 0, w: int = W + 64, h: int = H, fine: bool = True) -> np.ndarray:
    """A camera-like texture: multi-scale smooth noise, with fine detail unless ``fine`` is off."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.float32)
    for sigma, amp in ((8, 60), (3, 30), (1, 20), (0.6, 10)) if fine else ((8, 60), (4, 30)):
        img += amp * cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
    img = 128 + img / img.std() * 40
    return np.clip(np.repeat(img[..., None], 3, 2) * [1.0, 0.95, 0.9], 0, 255).astype(np.uint8)


def _pan(tex: np.ndarray, i: int) -> np.ndarray:
    return np.ascontiguousarray(tex[:, 4 * i : 4 * i + W])


def _write(path: Path, frames: list[np.ndarray], crf: int = 10) -> Path:
    with VideoWriter(path, width=W, height=H, fps=25, crf=crf, preset="ultrafast") as out:
        for f in frames:
            out.write_rgb(f)
    return path


def _luma(path: Path) -> list[np.ndarray]:
    return [f.array.astype(np.float32) for f in iter_frames(path, fmt="gray")]


def _upsampled(frame: np.ndarray) -> np.ndarray:
    small = cv2.resize(frame, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp, tex = tmp_path_factory.mktemp("signals"), _texture()
    plain = [_pan(tex, i) for i in range(N)]
    rng = np.random.default_rng(1)
    flicker = []
    for i, f in enumerate(plain):
        gain = np.kron(rng.uniform(-8, 8, (H // 32, W // 32)), np.ones((32, 32)))[..., None] * (-1) ** i
        flicker.append(np.clip(f + gain, 0, 255).astype(np.uint8))
    smooth = [_pan(_texture(fine=False), i) for i in range(N)]
    noisy = []
    for f in smooth:
        sigma = np.where(np.arange(W) < W // 2, 12.0, 0.7)[None, :, None]
        noisy.append(np.clip(f + rng.standard_normal(f.shape) * sigma, 0, 255).astype(np.uint8))
    even = [np.clip(f + rng.standard_normal(f.shape) * 4.0, 0, 255).astype(np.uint8) for f in smooth]
    return {
        "plain": _write(tmp / "plain.mp4", plain),
        "upsampled": _write(tmp / "upsampled.mp4", [_upsampled(f) for f in plain]),
        "flicker": _write(tmp / "flicker.mp4", flicker),
        "noise_split": _write(tmp / "noise_split.mp4", noisy),
        "noise_even": _write(tmp / "noise_even.mp4", even),
    }


def test_spectral_peaks_flag_upsampling(clips: dict[str, Path]) -> None:
    assert spectral_peaks(_luma(clips["upsampled"])).flagged
    clean = spectral_peaks(_luma(clips["plain"]))
    assert not clean.flagged and clean.score is not None


def test_temporal_flicker_flags_reversals_not_motion(clips: dict[str, Path]) -> None:
    assert temporal_flicker([np.stack(_luma(clips["flicker"]))]).flagged
    assert not temporal_flicker([np.stack(_luma(clips["plain"]))]).flagged


def test_noise_consistency_flags_two_noise_levels(clips: dict[str, Path]) -> None:
    assert noise_consistency(_luma(clips["noise_split"])).flagged
    assert not noise_consistency(_luma(clips["noise_even"])).flagged


def _with_metadata(src: Path, dst: Path, tags: dict[str, str]) -> Path:
    """Remux ``src`` into ``dst`` with container tags (a test fixture's own file crafting)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        for k, v in tags.items():
            out.metadata[k] = v
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return dst


def test_encoding_history_flags_generator_tag(clips: dict[str, Path], tmp_path: Path) -> None:
    tagged = _with_metadata(clips["plain"], tmp_path / "tagged.mp4", {"comment": "Generated with Sora"})
    plain = _with_metadata(clips["plain"], tmp_path / "plain.mp4", {"comment": "holiday, day 2"})
    hit = encoding_history(metadata_bytes(tagged), codec="h264")
    miss = encoding_history(metadata_bytes(plain), codec="h264")
    assert hit.flagged and hit.details["generator_names"] == ["sora"]
    assert not miss.flagged and miss.details["encoders"]  # the x264 banner is found, and is no flag


def test_encoding_history_known_bytes() -> None:
    camera = encoding_history(b"\x00\x00com.apple.quicktime.make\x00Apple\x00x264 - core 164")
    assert camera.score == 0.0 and "com.apple.quicktime.make" in camera.details["camera_fields"]
    assert encoding_history(b"\x00\x01dev0 veoX sorat\x00").details["generator_names"] == []
    assert encoding_history(b"\x00\x00Lavf60.16.100\x00").score == 0.25


def test_signals_out_of_scope_say_so() -> None:
    tiny = [np.zeros((32, 32), np.float32)] * 3
    assert spectral_peaks(tiny).score is None
    assert temporal_flicker([np.stack(tiny[:2])]).score is None
    assert noise_consistency(tiny).score is None


def test_analyse_file_reports_signals_without_weights(clips: dict[str, Path], monkeypatch) -> None:
    monkeypatch.setenv("VERIFRAME_DETECTOR_WEIGHTS", "/nonexistent/detector.safetensors")
    import detector.analyse as analyse

    monkeypatch.setattr(analyse, "_defaults", {})
    report = analyse_file(clips["flicker"])
    assert report.detector is None and "no detector weights installed" in report.scope_reasons
    out = report.to_dict()
    assert set(out["artifacts"]) == {"spectral_peaks", "temporal_flicker", "noise_consistency", "encoding_history"}
    assert out["artifacts"]["temporal_flicker"]["flagged"]
