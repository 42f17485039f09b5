"""The detector's temporal head: its features, fitting, checkpoint and calibration, a clip kit built and
trained end to end, and its place in `analyse_file` and the verdict."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detector.analyse import MAX_H264_QP, analyse_file
from detector.calibration import QP_BANDS, calibrate, threshold_at_fpr, threshold_by_band
from detector.clipkit import CONDITIONS, BaseClip, build_clip_kit, camera_pan, condition_reading, read_clip_kit
from detector.signals import compensated_steps
from detector.temporal import (
    FEATURES,
    LoadedTemporalHead,
    TemporalConfig,
    TemporalHeadError,
    fit_head,
    load_head,
    save_head,
    temporal_features,
)
from detector.train_temporal import recalibrate_temporal_head, train_temporal_head
from detector.verdict import verdict
from media import VideoWriter, transcode

W, H, N = 160, 96, 12


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _texture(seed: int, w: int = W + 4 * N, h: int = H) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.float32)
    for sigma, amp in ((8, 60), (3, 30), (1, 20)):
        img += amp * cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
    img = 128 + img / img.std() * 40
    return np.clip(np.repeat(img[..., None], 3, 2), 0, 255).astype(np.uint8)


def pan(seed: int) -> np.ndarray:
    """A camera panning 3 px a frame over a texture: motion, nothing that reverses."""
    tex = _texture(seed)
    return np.stack([np.ascontiguousarray(tex[:, 3 * i : 3 * i + W]) for i in range(N)])


def boiling(seed: int) -> np.ndarray:
    """The same pan with coarse brightness patches that flip sign every frame (generated-video boiling)."""
    rng = np.random.default_rng(seed + 100)
    frames = pan(seed).astype(np.float32)
    for i in range(N):
        patches = np.kron(rng.uniform(-7, 7, (H // 16, W // 16)), np.ones((16, 16)))[..., None]
        frames[i] += patches * (-1) ** i
    return np.clip(frames, 0, 255).astype(np.uint8)


def _write(path: Path, frames: np.ndarray) -> Path:
    with VideoWriter(path, width=W, height=H, fps=8, crf=18, preset="fast") as out:
        for f in frames:
            out.write_rgb(f)
    return path


def test_features_read_reversing_change_not_motion(tmp_path: Path) -> None:
    calm, _ = condition_reading(BaseClip(pan(0), 8.0, 0, "pan", "g", "test"), 18, 1.0, tmp_path)
    boil, _ = condition_reading(BaseClip(boiling(0), 8.0, 1, "boil", "g", "test"), 18, 1.0, tmp_path)
    assert calm is not None and boil is not None and calm.shape == boil.shape == (len(FEATURES),)
    assert np.isfinite(calm).all() and np.isfinite(boil).all()
    p75, rev = FEATURES.index("flicker_p75"), FEATURES.index("reversal")
    assert boil[p75] > calm[p75] + 0.5  # log1p grey levels
    assert boil[rev] < -0.3 and boil[rev] < calm[rev] - 0.3  # changes that undo themselves anti-correlate


def test_flow_check_trusts_a_pan_and_not_a_jump() -> None:
    calm = pan(1)[..., 0].astype(np.float32)
    jump = calm.copy()
    jump[2] = np.roll(calm[2], 40, axis=1)  # frame 2 leaps 40 px: no flow follows that
    (ok,), (bad,) = (compensated_steps([w[1:4]], reliability=True) for w in (calm, jump))
    assert ok.reliable is not None and ok.reliable.mean() > 0.8
    assert bad.reliable.mean() < ok.reliable.mean() - 0.2
    assert compensated_steps([calm[:3]])[0].reliable is None  # only when asked for
    with pytest.raises(ValueError):
        temporal_features(compensated_steps([calm[:3]]))


def test_a_long_thin_strip_is_analysed_not_crashed_on(tmp_path: Path) -> None:
    from media.synthetic import make_test_clip

    strip = make_test_clip(tmp_path / "strip.mp4", width=2048, height=32, frames=12)
    report = analyse_file(strip)  # shrunk to 256 px wide it would be 4 px tall: no 8x8 block left
    flicker = next(s for s in report.signals if s.name == "temporal_flicker")
    assert flicker.score is not None
    assert report.detector is not None and report.detector.temporal is not None


def test_no_features_without_a_run_of_three_frames(tmp_path: Path) -> None:
    assert temporal_features([]) is None
    assert condition_reading(BaseClip(pan(0)[:2], 8.0, 0, "pan", "g", "test"), 18, 1.0, tmp_path)[0] is None


def test_head_fits_saves_loads_and_keeps_its_false_positive_rate(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, len(FEATURES))).astype(np.float32)
    y = (rng.random(400) < 0.5).astype(np.int64)
    x[y == 1, 1] += 2.5  # one informative feature
    head = fit_head(x[:200], y[:200], TemporalConfig(hidden=0))
    z = head.logits(x)
    weights = head.net.weight.detach().abs()[0]
    assert int(weights.argmax()) == 1  # it found the informative feature
    reals = z[200:][y[200:] == 0]
    cal = calibrate(reals, z[200:], y[200:], target_fpr=0.05)
    assert (reals > cal.threshold_logit).mean() <= 0.05
    path = save_head(tmp_path / "t.safetensors", head, cal, model_id="t-test", meta={"note": "x"})
    loaded = load_head(path)
    assert np.allclose(loaded.head.logits(x), z) and loaded.model_id == "t-test" and loaded.meta == {"note": "x"}
    result = loaded.score(x[0])
    assert result.flagged == (z[0] > cal.threshold_logit) and 0 <= result.probability <= 1
    # with thresholds by quantiser band, a clip's own compression picks its threshold
    loaded.calibration.qp_bands = [[30.0, float(z[0]) - 1], [40.0, float(z[0]) + 1]]
    light, heavy, unknown = loaded.score(x[0], 20.0), loaded.score(x[0], 38.0), loaded.score(x[0])
    assert light.flagged and not heavy.flagged and unknown.flagged == bool(z[0] > cal.threshold_logit)
    assert light.threshold_probability < heavy.threshold_probability
    assert set(result.to_dict()["features"]) == set(FEATURES)
    mlp = fit_head(x[:200], y[:200], TemporalConfig(hidden=8))
    assert save_head(tmp_path / "m.safetensors", mlp, cal, model_id="m") and load_head(tmp_path / "m.safetensors")


def test_thresholds_by_quantiser_band_hold_the_rate_where_compression_raises_real_scores() -> None:
    rng = np.random.default_rng(0)
    # lightly compressed reals (QP 15-29) and heavily compressed ones (QP 35-40) that look more "AI"
    z = np.concatenate([rng.normal(0, 1, 600), rng.normal(2.5, 1, 300)])
    qp = np.concatenate([rng.uniform(15, 29, 600), rng.uniform(35, 40, 300)])
    names = ["light"] * 600 + ["heavy"] * 300
    (u1, t1), (u2, t2) = threshold_by_band(z, names, list(qp), 0.01)
    assert (u1, u2) == QP_BANDS and t1 < t2
    assert (z[:600] > t1).mean() <= 0.01 and (z[600:] > t2).mean() <= 0.01
    assert (z[600:] > threshold_at_fpr(z, 0.01)).mean() > 0.02  # one pooled threshold: heavy clips break it
    ai = rng.normal(3.5, 1, 1000)  # lightly compressed AI clips: the heavy band's threshold would miss many
    assert (ai > t1).mean() > (ai > t2).mean() + 0.2
    # a condition with enough clips in its band holds the rate on its own, not only pooled with the band
    odd, z2 = ["light"] * 400 + ["odd"] * 200 + ["heavy"] * 300, z.copy()
    z2[400:600] += 1.0
    assert (z2[400:600] > threshold_at_fpr(z2[:600], 0.01)).mean() > 0.01
    assert (z2[400:600] > threshold_by_band(z2, odd, list(qp), 0.01)[0][1]).mean() <= 0.01
    # more compression never gets a lower threshold; clips past the bands or without a quantiser are left out
    low = np.concatenate([rng.normal(2, 1, 600), rng.normal(-3, 1, 300)])
    (_, a), (_, b) = threshold_by_band(low, names, list(qp), 0.01)
    assert a == b
    assert threshold_by_band(np.array([0.0, 9.0]), ["x", "x"], [20.0, None], 0.01) == [[30.0, 0.0], [40.0, 0.0]]
    with pytest.raises(ValueError):
        threshold_by_band(np.array([9.0]), ["x"], [55.0], 0.01)


def test_a_damaged_installed_head_is_left_out_not_fatal(tmp_path: Path, monkeypatch) -> None:
    from safetensors.torch import save_file

    import detector.analyse as analyse

    damaged = tmp_path / "temporal.safetensors"
    save_file({"x": torch.zeros(1)}, str(damaged), metadata={"format": "veriframe.detector.temporal",
                                                            "format_version": "1"})  # no config
    with pytest.raises(TemporalHeadError):
        load_head(damaged)
    monkeypatch.setenv("VERIFRAME_TEMPORAL_WEIGHTS", str(damaged))
    monkeypatch.setattr(analyse, "_defaults", {})
    report = analyse_file(_write(tmp_path / "calm.mp4", pan(7)))
    assert report.detector is not None and report.detector.temporal is None
    assert analyse.default_temporal_head() is None  # remembered: not retried on every clip


def test_foreign_files_and_bad_configs_are_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(TemporalHeadError):
        load_head(tmp_path / "junk.safetensors")
    with pytest.raises(TemporalHeadError):
        TemporalConfig(features=("no_such_feature",))
    with pytest.raises(TemporalHeadError):
        TemporalConfig.from_dict({"version": 99})
    with pytest.raises(TemporalHeadError):
        fit_head(np.zeros((4, len(FEATURES)), np.float32), np.zeros(4))  # one class


def test_camera_pan_is_a_seeded_clip_of_the_asked_size() -> None:
    photo = _texture(3, 300, 200)
    a = camera_pan(photo, np.random.default_rng(1), frames=6, size=(96, 64))
    b = camera_pan(photo, np.random.default_rng(1), frames=6, size=(96, 64))
    assert a.shape == (6, 64, 96, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1])  # fresh noise and motion every frame


@pytest.fixture(scope="module")
def trained_head(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A clip kit of synthetic pans (real) and boiling pans (AI) in every split, and a head trained on it."""
    root = tmp_path_factory.mktemp("clipkit")
    splits = ["train"] * 4 + ["val"] * 3 + ["test"] * 2
    clips = [BaseClip(pan(i), 8.0, 0, "pan", f"p{i}", s) for i, s in enumerate(splits)]
    clips += [BaseClip(boiling(i), 8.0, 1, "boil", f"b{i}", s) for i, s in enumerate(splits)]
    build_clip_kit(root, clips=clips)
    summary = train_temporal_head(root, root / "temporal.safetensors", target_fpr=0.01)
    return root, summary


def test_clip_kit_rows_cover_every_condition(trained_head: tuple[Path, dict]) -> None:
    root, _ = trained_head
    kit = read_clip_kit(root)
    assert kit.x.shape == (len(kit.rows), len(FEATURES))
    assert kit.info["own_clips"] and kit.info["rows"] == len(kit.rows)
    assert set(kit.info["conditions"]) == set(CONDITIONS)
    test = [r for r in kit.rows if r["split"] == "test"]
    assert {r["condition"] for r in test} == set(CONDITIONS)
    assert {r["condition"] for r in kit.rows if r["split"] == "train"} == {*CONDITIONS, "random"}
    with pytest.raises(FileNotFoundError):
        read_clip_kit(root / "nowhere")


def test_trained_head_separates_the_test_split(trained_head: tuple[Path, dict]) -> None:
    root, summary = trained_head
    assert summary["test"]["all"]["auc"] > 0.95
    kit = read_clip_kit(root)
    scoped = [r for r in kit.rows if r["split"] == "val" and r["label"] == "0" and float(r["mean_qp"]) <= MAX_H264_QP]
    assert summary["n_real_val"] == len(scoped) >= 3 * (len(CONDITIONS) - 2)  # calibrated within the scope
    assert summary["val"]["all"]["scoped_fpr"] == 0.0  # too few val reals to resolve 1%: above all of them
    # one threshold per quantiser band, never lower for more compression; the highest for unknown quantisers
    bands = summary["qp_bands"]
    assert [u for u, _ in bands] == list(QP_BANDS) and bands[0][1] <= bands[1][1] == summary["threshold_logit"]
    assert summary["test"]["all"]["tpr"] >= 0.9
    assert isinstance(load_head(root / "temporal.safetensors"), LoadedTemporalHead)


def test_analyse_file_reports_the_temporal_head_and_the_verdict_uses_it(trained_head: tuple[Path, dict],
                                                                        tmp_path: Path) -> None:
    root, _ = trained_head
    head = load_head(root / "temporal.safetensors")
    boil, calm = _write(tmp_path / "boil.mp4", boiling(50)), _write(tmp_path / "calm.mp4", pan(50))
    for path, expect in ((boil, True), (calm, False)):
        report = analyse_file(path, temporal=head)
        det = report.detector
        assert det is not None and det.temporal is not None and det.temporal.flagged is expect
        assert det.flagged == (det.frame_flagged or expect)
        out = report.to_dict()["detector"]
        assert out["temporal"]["model_id"] == head.model_id and "temporal" in out["timings_s"]
        v = verdict({"c2pa": {"state": "absent"}, "watermark": {"present": False}}, det, report.signals)
        assert any(r.startswith("Temporal head") for r in v.reasons)
        if expect:
            assert v.label == "likely_ai_generated"


def test_heavy_compression_withdraws_the_temporal_heads_decision(trained_head: tuple[Path, dict],
                                                                 tmp_path: Path) -> None:
    root, _ = trained_head
    head = load_head(root / "temporal.safetensors")
    boil = _write(tmp_path / "boil.mp4", boiling(50))
    transcode(boil, tmp_path / "heavy.mp4", crf=51, preset="ultrafast")
    det = analyse_file(tmp_path / "heavy.mp4", temporal=head).detector
    assert det is not None and det.temporal is not None and det.mean_qp > MAX_H264_QP
    assert det.temporal.logit > head.calibration.threshold_logit  # a flag the scope rule had to withdraw
    assert not det.temporal.in_scope and not det.temporal.flagged and not det.flagged
    assert det.temporal.scope_reasons == det.scope_reasons and "heavily compressed" in det.scope_reasons[0]
    v = verdict({"c2pa": {"state": "absent"}, "watermark": {"present": False}}, det, [])
    assert v.label == "uncertain" and any("not used: heavily compressed" in r for r in v.reasons)


def test_recalibrating_keeps_the_heads_weights_and_sets_new_thresholds(trained_head: tuple[Path, dict],
                                                                       tmp_path: Path) -> None:
    root, summary = trained_head
    path = tmp_path / "temporal.safetensors"
    path.write_bytes((root / "temporal.safetensors").read_bytes())
    before = load_head(path)
    again = recalibrate_temporal_head(root, path, model_id="t-v1.1", target_fpr=0.2)
    after = load_head(path)
    kit = read_clip_kit(root)
    assert after.model_id == again["model_id"] == "t-v1.1" and after.meta["training"]["recalibrated_from"] == \
        before.model_id
    assert np.array_equal(after.head.logits(kit.x), before.head.logits(kit.x))  # the same head
    assert after.calibration.target_fpr == 0.2 and after.calibration.qp_bands == again["qp_bands"]
    assert after.calibration.threshold_logit <= before.calibration.threshold_logit  # 20% flags more than 1%
