"""Detector: factory, residual known answers, calibration, verdict rules, training and checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detector import DETECTOR_MODELS, build_model, config_for, load_checkpoint, residual, save_checkpoint
from detector.augment import AugmentConfig, augment, video_codec_roundtrip
from detector.calibration import (
    Calibration,
    calibrate,
    expected_fpr,
    fit_isotonic,
    fit_temperature,
    reliability,
    threshold_at_fpr,
    write_reliability_plot,
)
from detector.evaluate import score_frames
from detector.model import DetectorConfig
from detector.sampling import grid_positions, plan_frames
from detector.signals import Signal
from detector.train import _batch_side, init_from, train_detector
from detector.verdict import LABELS, verdict
from generator.evaluate import psnr
from media import write_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# --- model factory ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DETECTOR_MODELS))
def test_every_registered_model_builds_and_runs_tiny(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(config_for(name, crop=32, frames=2, crops_per_frame=2), device="cpu").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 2, 2, 3, 32, 32))
    assert out.clip_logits.shape == (1,) and out.frame_logits.shape == (1, 2) and out.crop_logits.shape == (1, 2, 2)
    assert out.patch_logits.shape[:3] == (1, 2, 2) and out.attention.shape == (1, 2)
    assert torch.isfinite(out.clip_logits).all() and torch.isfinite(out.patch_logits).all()
    assert torch.allclose(out.attention.sum(dim=1), torch.ones(1))


def test_unknown_model_and_bad_input_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown detector model"):
        config_for("resnet9000")
    with pytest.raises(ValueError, match="input mode"):
        config_for("mnv3s-050", input="rgb")
    model = build_model(config_for("mnv3s-050", crop=32), device="cpu")
    with pytest.raises(ValueError, match="expected crops"):
        model(torch.rand(2, 3, 32, 32))


def test_rgb_variant_takes_six_channels() -> None:
    cfg = config_for("mnv3s-050-rgb", crop=32)
    assert cfg.in_chans == 6
    z = build_model(cfg, device="cpu").input(torch.rand(2, 3, 32, 32))
    assert z.shape == (2, 6, 32, 32)


def test_a_residual_model_grows_into_two_branches_scoring_as_before(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_model(config_for("mnv3s-050", crop=32), device="cpu").eval()
    path = save_checkpoint(tmp_path / "r.safetensors", source, model_id="r")
    grown = build_model(config_for("mnv3s-050-2b", crop=32), device="cpu")
    init_from(grown, path)
    grown.eval()
    x = torch.rand(1, 2, 2, 3, 32, 32)
    with torch.no_grad():
        before, after = source(x), grown(x)
    # step 0 scores as the source (the RGB half is read with zero weight), yet that half is live. Equal up to
    # float rounding: the grown head sums over twice the features, and a CPU's matrix product may round that
    # sum's last bit differently (single-threaded MKL on an Intel Xeon did; AMD's was bit-identical)
    torch.testing.assert_close(after.patch_logits, before.patch_logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(after.clip_logits, before.clip_logits, rtol=0, atol=1e-6)
    assert grown.rgb_backbone is not None and grown.patch_head.weight.shape[1] == 2 * source.patch_head.weight.shape[1]
    assert grown.patch_head.weight[0, source.patch_head.weight.shape[1]:].abs().sum() == 0
    # the reverse (two branches into one), another backbone, another residual: refused
    grown_path = save_checkpoint(tmp_path / "g.safetensors", grown, model_id="g")
    for cfg, file in ((config_for("mnv3s-050", crop=32), grown_path),
                      (config_for("lcnet-035", input="residual|rgb", crop=32), path),
                      (config_for("mnv3s-050-2b", crop=32, residual_factor=4), path)):
        with pytest.raises(ValueError, match="cannot start"):
            init_from(build_model(cfg, device="cpu"), file)


def test_checkpoint_round_trip_keeps_config_and_calibration(tmp_path: Path) -> None:
    model = build_model(config_for("lcnet-035", crop=32), device="cpu").eval()
    cal = Calibration(threshold_logit=0.7, target_fpr=0.01, n_real=100, temperature=1.5)
    path = save_checkpoint(tmp_path / "d.safetensors", model, model_id="t1", calibration=cal, meta={"k": 1})
    loaded = load_checkpoint(path)
    assert loaded.config == model.cfg and loaded.model_id == "t1" and loaded.meta == {"k": 1}
    assert loaded.calibration.threshold_logit == 0.7 and loaded.calibration.temperature == 1.5
    x = torch.rand(1, 1, 2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x).clip_logits, loaded.model(x).clip_logits)


# --- residual known answers -------------------------------------------------------------------


def test_residual_known_values() -> None:
    x = torch.tensor([[1.0, 2.0, 5.0, 5.0], [3.0, 4.0, 5.0, 5.0]])
    expected = torch.tensor([[-1.5, -0.5, 0.0, 0.0], [0.5, 1.5, 0.0, 0.0]])
    assert torch.equal(residual(x), expected)


def test_residual_of_nearest_upsampled_image_is_zero_and_crops_odd_sizes() -> None:
    small = torch.rand(2, 3, 5, 7)
    up = small.repeat_interleave(2, -2).repeat_interleave(2, -1)  # (2, 3, 10, 14)
    assert torch.count_nonzero(residual(up)) == 0
    odd = torch.arange(35.0).view(5, 7)
    r = residual(odd)
    assert r.shape == (4, 6)
    # Rows step by 7 and columns by 1: each 2x2 block is mean +- (3.5 + 0.5) on its corners.
    assert torch.equal(r[:2, :2], torch.tensor([[-4.0, -3.0], [3.0, 4.0]]))
    assert torch.equal(residual(torch.rand(3, 4, 4), factor=4).sum(dim=(-2, -1)).round(decimals=5), torch.zeros(3))


def test_residual_rejects_bad_factor_and_tiny_input() -> None:
    with pytest.raises(ValueError):
        residual(torch.zeros(4, 4), factor=1)
    with pytest.raises(ValueError):
        residual(torch.zeros(1, 1))


# --- sampling and augmentation ----------------------------------------------------------------


def test_frame_plan_and_crop_grid() -> None:
    plan = plan_frames(250, 8)
    assert plan.model[0] == 0 and plan.model[-1] == 249 and len(plan.model) == 8
    assert all(w == tuple(range(w[0], w[0] + 5)) for w in plan.windows) and len(plan.windows) == 4
    assert plan_frames(1, 8).model == (0,) and plan_frames(1, 8).windows == ()
    positions, rows, cols = grid_positions(720, 1280, 64, 16)
    assert rows * cols <= 16 and len(positions) == rows * cols and positions[-1] == (656, 1216)
    assert grid_positions(40, 40, 64, 16) == ([], 0, 0)


def test_augment_keeps_uint8_rgb_and_is_seeded() -> None:
    img = np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    cfg = AugmentConfig(p_resize=1, p_blur=1, p_noise=1, p_compress=1, p_real_codec=0)
    a, b = augment(img, np.random.default_rng(3), cfg), augment(img, np.random.default_rng(3), cfg)
    assert a.dtype == np.uint8 and a.ndim == 3 and np.array_equal(a, b) and a.shape[0] < 80


def test_real_codec_augmentation_round_trips_and_keeps_small_crops_off_libx265() -> None:
    smooth = cv2.GaussianBlur(np.random.default_rng(1).uniform(0, 255, (64, 64, 3)).astype(np.float32), (0, 0), 4)
    smooth = smooth.astype(np.uint8)
    for codec in ("libx264", "libx265"):
        coded = video_codec_roundtrip(smooth, 23, codec)
        assert coded.shape == smooth.shape and psnr(coded, smooth) > 30
    # 48 px crops with every compression a real encode: libx265 would abort the process on some of these
    cfg = AugmentConfig(p_resize=0, p_blur=0, p_noise=0, p_compress=1, p_real_codec=1)
    rng = np.random.default_rng(0)
    for _ in range(12):
        assert augment(smooth[:48, :48], rng, cfg).shape == (48, 48, 3)


# --- calibration --------------------------------------------------------------------------------


def test_threshold_keeps_stated_fpr_on_held_out_reals() -> None:
    rng = np.random.default_rng(0)
    calibration_reals, held_out_reals = rng.normal(0, 1, 3000), rng.normal(0, 1, 50000)
    t = threshold_at_fpr(calibration_reals, 0.01)
    assert np.mean(calibration_reals > t) <= 0.01
    assert np.mean(held_out_reals > t) <= 0.015  # 0.01 plus sampling error of a 3000-sample quantile
    assert threshold_at_fpr(np.array([0.1, 0.5, 0.2]), 0.01) == 0.5  # too few reals: the maximum


def test_threshold_holds_the_rate_on_new_reals_not_only_on_its_own_small_set() -> None:
    # 121 reals (the temporal head's val clips per condition): the rate on the calibration scores is easy to
    # hold; the rate on *new* reals, averaged over many draws of the calibration set, is what a user gets.
    rng = np.random.default_rng(0)
    rates = [0.5 * math.erfc(threshold_at_fpr(rng.normal(0, 1, 121), 0.01) / math.sqrt(2)) for _ in range(4000)]
    assert np.mean(rates) <= 0.01  # the (floor(fpr*n)+1)-th largest score gives 2/122 = 0.016 here
    assert abs(np.mean(rates) - expected_fpr(121, 0.01)) < 0.001
    assert expected_fpr(50, 0.01) == 1 / 51 and expected_fpr(999, 0.01) == 0.01
    assert threshold_at_fpr(np.arange(1000.0), 0.01) == 990.0  # 9 of 1,000 above it; a new one: 10/1,001


def test_calibration_picks_the_threshold_of_the_clips_quantiser_band() -> None:
    cal = Calibration(4.0, 0.01, 100, qp_bands=[[30.0, 1.0], [40.0, 4.0]])
    assert cal.threshold_for(12.0) == 1.0 and cal.threshold_for(30.0) == 1.0 and cal.threshold_for(35.5) == 4.0
    assert cal.threshold_for(None) == 4.0 and cal.threshold_for(45.0) == 4.0  # no quantiser: the strictest
    assert Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    older = {k: v for k, v in cal.to_dict().items() if k != "qp_bands"}
    assert Calibration.from_dict(older).threshold_for(12.0) == 4.0  # a file from before the bands: one threshold


def test_temperature_and_isotonic_calibration(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    true_logit = rng.normal(0, 2, 4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    overconfident = true_logit * 3
    assert fit_temperature(overconfident, labels) == pytest.approx(3.0, rel=0.15)
    xs, ys = fit_isotonic(overconfident, labels)
    assert all(a <= b for a, b in zip(ys, ys[1:], strict=False)) and len(xs) == len(ys)
    for method in ("temperature", "isotonic"):
        cal = calibrate(overconfident[labels == 0], overconfident, labels, target_fpr=0.05, method=method)
        table = reliability(cal.probability(overconfident), labels)
        assert table["ece"] < 0.05, method
        assert Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    write_reliability_plot(tmp_path / "rel.png", table, title="test")
    assert cv2.imread(str(tmp_path / "rel.png")).shape[0] > 400


# --- verdict rules ---------------------------------------------------------------------------


HEAVY = "heavily compressed: mean quantiser QP 47.0 (over 40)"


class Temporal:
    """The temporal head's result; out of scope, its decision is withdrawn (never flagged)."""

    def __init__(self, p: float, flagged: bool, in_scope: bool = True) -> None:
        self.probability, self.threshold_probability, self.target_fpr = p, 0.7, 0.01
        self.flagged, self.in_scope = flagged and in_scope, in_scope
        self.scope_reasons, self.model_id = [] if in_scope else [HEAVY], "t"


class Det:
    """A detector result: the frame model's score and decision, and the temporal head's (or None)."""

    def __init__(self, p: float | None, flagged: bool, in_scope: bool = True, temporal: Temporal | None = None,
                 why: str = "too small: 48x48 is under one 64px crop") -> None:
        self.probability, self.frame_flagged, self.in_scope, self.temporal = p, flagged, in_scope, temporal
        self.flagged = flagged or bool(temporal and temporal.flagged)
        self.scope_reasons = [] if in_scope else [why]
        self.threshold_probability, self.target_fpr, self.model_id = 0.6, 0.01, "m"


def sig(flagged: bool, name: str = "temporal_flicker") -> Signal:
    return Signal(name, 2.0 if flagged else 0.1, 1.0, flagged, "x", "doc")


AI = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
NONE = {"c2pa": {"state": "absent", "recovered": False, "signature_valid": None}, "watermark": {"present": False}}
SIGNED_AI = {"c2pa": {"state": "trusted", "recovered": False, "signature_valid": True, "digital_source_type": AI,
                      "signer": {"organization": "veriframe"}}, "watermark": {"present": True, "payload": "ab"}}
RECOVERED_AI = {"c2pa": {"state": "invalid", "recovered": True, "signature_valid": True, "altered_since_signing": True,
                         "actions": [{"digital_source_type": AI}]}, "watermark": {"present": True, "payload": "ab"}}
UNTRUSTED_AI = {"c2pa": {"state": "valid", "recovered": False, "signature_valid": True, "digital_source_type": AI},
                "watermark": {"present": False}}
SIGNED_CAPTURE = {"c2pa": {"state": "trusted", "recovered": False, "signature_valid": True,
                           "digital_source_type": CAPTURE}, "watermark": {"present": False}}
MARK_ONLY = {"c2pa": {"state": "absent", "recovered": False}, "watermark": {"present": True, "payload": "ab"}}

CASES = [
    # (report, detector, signals, expected label)
    (SIGNED_AI, Det(0.1, False), [], "ai_generated_signed"),  # provenance outranks the detector
    (RECOVERED_AI, Det(0.1, False), [sig(False)], "ai_generated_watermarked"),
    (RECOVERED_AI, None, [], "ai_generated_watermarked"),
    (NONE, Det(0.9, True), [sig(False)], "likely_ai_generated"),
    (NONE, Det(0.9, True), [sig(True)], "likely_ai_generated"),
    (NONE, Det(0.1, False), [sig(False)], "no_evidence_of_ai"),
    (NONE, Det(0.1, False), [sig(True)], "uncertain"),  # detector and signals disagree
    (NONE, Det(None, False, in_scope=False), [], "uncertain"),  # out of scope
    (NONE, None, [sig(True)], "uncertain"),  # no detector: signals alone never decide
    (SIGNED_CAPTURE, Det(0.9, True), [], "uncertain"),  # signed capture vs detector
    (SIGNED_CAPTURE, Det(0.1, False), [], "no_evidence_of_ai"),  # never "authentic"
    (UNTRUSTED_AI, Det(0.9, True), [], "likely_ai_generated"),
    (UNTRUSTED_AI, Det(0.1, False), [], "uncertain"),
    (UNTRUSTED_AI, None, [], "likely_ai_generated"),
    (MARK_ONLY, Det(0.1, False), [], "no_evidence_of_ai"),
    # the temporal head: its flag counts as the detector's, its silence never clears a clip alone
    (NONE, Det(0.1, False, temporal=Temporal(0.9, True)), [], "likely_ai_generated"),
    (NONE, Det(0.1, False, temporal=Temporal(0.2, False)), [], "no_evidence_of_ai"),
    (NONE, Det(None, False, in_scope=False, temporal=Temporal(0.9, True)), [], "likely_ai_generated"),
    (NONE, Det(None, False, in_scope=False, temporal=Temporal(0.2, False)), [], "uncertain"),
    (SIGNED_CAPTURE, Det(0.1, False, temporal=Temporal(0.9, True)), [], "uncertain"),
    # heavily compressed: neither model decides, whatever the temporal head's score
    (NONE, Det(None, False, in_scope=False, why=HEAVY, temporal=Temporal(0.95, True, in_scope=False)), [],
     "uncertain"),
    (NONE, Det(None, False, in_scope=False, why=HEAVY, temporal=Temporal(0.1, False, in_scope=False)), [],
     "uncertain"),
    (UNTRUSTED_AI, Det(None, False, in_scope=False, why=HEAVY, temporal=Temporal(0.1, False, in_scope=False)), [],
     "likely_ai_generated"),
]


@pytest.mark.parametrize(("report", "det", "signals", "expected"), CASES)
def test_verdict_rules(report: dict, det: Det | None, signals: list[Signal], expected: str) -> None:
    v = verdict(report, det, signals)
    assert v.label == expected and v.label in LABELS
    assert v.reasons and all(isinstance(r, str) and r for r in v.reasons)
    assert v.to_dict()["version"] == 1


def test_a_withdrawn_temporal_decision_is_reported_with_its_reason() -> None:
    det = Det(None, False, in_scope=False, why=HEAVY, temporal=Temporal(0.95, True, in_scope=False))
    v = verdict(NONE, det, [])
    assert v.label == "uncertain" and HEAVY in v.reasons[0]
    assert "P(AI) 0.9500, not used: " + HEAVY in v.reasons[1]


def test_no_evidence_verdict_says_it_is_not_proof() -> None:
    v = verdict(NONE, Det(0.05, False), [sig(False)])
    assert "not proof" in v.reasons[-1]


# --- training -----------------------------------------------------------------------------------


def _tiny_dataset(root: Path) -> Path:
    """Real: seeded textures; AI: the same textures, area-downscaled and upsampled (content-matched)."""
    rng = np.random.default_rng(0)
    for i in range(6):
        img = cv2.GaussianBlur(rng.integers(0, 256, (72, 72, 3), dtype=np.uint8), (0, 0), 0.7)
        ai = cv2.resize(cv2.resize(img, (36, 36), interpolation=cv2.INTER_AREA), (72, 72),
                        interpolation=cv2.INTER_NEAREST)
        for label, name, arr in ((0, "real", img), (1, "ai", ai)):
            split = "val" if i >= 4 else "train"
            (root / name).mkdir(parents=True, exist_ok=True)
            write_image(root / name / f"{i}.png", arr)
            with (root / "kit.csv").open("a") as fh:
                if fh.tell() == 0:
                    fh.write("path,label,source,family,split,group\n")
                fh.write(f"{name}/{i}.png,{label},{name},{'up' if label else 'real'},{split},{i}\n")
    return root


def test_a_few_training_steps_reduce_loss_and_resume(tmp_path: Path) -> None:
    data = _tiny_dataset(tmp_path / "data")
    cfg = config_for("mnv3s-050", crop=32, crops_per_frame=4)
    off = AugmentConfig(p_resize=0, p_blur=0, p_noise=0, p_compress=0)
    summary = train_detector(data, tmp_path / "run", config=cfg, steps=24, batch_size=8, lr=3e-3,
                             augment_cfg=off, checkpoint_every=12)
    losses = [loss for _, loss in load_checkpoint(tmp_path / "run" / "last.safetensors").meta["history"]]
    assert np.mean(losses[-6:]) < np.mean(losses[:6])
    assert summary["calibration"] is not None and summary["steps_done"] == 24
    assert load_checkpoint(tmp_path / "run" / "detector.safetensors").calibration.n_real == 6  # 2 reals x 3 variants
    resumed = train_detector(data, tmp_path / "run", config=cfg, steps=26, batch_size=4, augment_cfg=off,
                             resume=True)
    assert resumed["steps_done"] == 26


def test_evaluation_reports_pooled_per_family_and_held_out_metrics(tmp_path: Path) -> None:
    from detector.evaluate import evaluate_detector, roc_auc

    data = _tiny_dataset(tmp_path / "data")
    with (data / "kit.csv").open("a") as fh:  # a second AI family, held out of training
        for i in (4, 5):
            ai = cv2.imread(str(data / "ai" / f"{i}.png"))[::-1]
            cv2.imwrite(str(data / "ai" / f"f{i}.png"), ai)
            fh.write(f"ai/f{i}.png,1,flip,flip,val,{i}\n")
    train_detector(data, tmp_path / "r", config=config_for("mnv3s-050", crop=32), steps=2, batch_size=4,
                   held_out=("flip",), augment_cfg=AugmentConfig(p_resize=0, p_blur=0, p_noise=0, p_compress=0))
    report = evaluate_detector(data, tmp_path / "r" / "detector.safetensors", split="val",
                               conditions=("original", "downscale_50"))
    assert report["held_out"] == ["flip"] and report["n_items"] == 6
    for name, result in report["conditions"].items():
        logits = np.array(report["logits"][name], dtype=float)
        labels = np.array([i["label"] for i in report["items"]])
        family = np.array([i["family"] for i in report["items"]])
        assert set(result["per_family"]) == {"up", "flip"}
        assert result["unseen"] == {"flip": result["per_family"]["flip"]}
        up = (labels == 0) | (family == "up")
        assert result["in_distribution"]["n"] == 4 and result["per_family"]["up"]["n_real"] == 2
        assert result["in_distribution"]["auc"] == pytest.approx(roc_auc(labels[up], logits[up]), abs=1e-3)
        assert result["per_family"]["flip"]["n_ai"] == 2 and set(result["per_source"]) == {"real", "ai", "flip"}


def test_a_frozen_residual_half_stays_as_loaded_while_the_rgb_branch_trains(tmp_path: Path) -> None:
    data = _tiny_dataset(tmp_path / "data")
    off = AugmentConfig(p_resize=0, p_blur=0, p_noise=0, p_compress=0)
    train_detector(data, tmp_path / "r", config=config_for("mnv3s-050", crop=32), steps=3, batch_size=4,
                   augment_cfg=off)
    source = load_checkpoint(tmp_path / "r" / "detector.safetensors").model.state_dict()
    summary = train_detector(data, tmp_path / "g", config=config_for("mnv3s-050-2b", crop=32), steps=4,
                             batch_size=4, lr=1e-2, augment_cfg=off, init=tmp_path / "r" / "detector.safetensors",
                             freeze_residual=True)
    grown = load_checkpoint(tmp_path / "g" / "detector.safetensors").model.state_dict()
    assert summary["recipe"]["freeze_residual"] is True
    frozen = [k for k in source if k.startswith(("backbone.", "patch_head.weight", "pool.value.weight",
                                                 "pool.gate.weight"))]
    for key in frozen:  # backbone weights and batch-norm statistics, the readout columns of its features
        value = source[key]
        kept = grown[key][:, : value.shape[1]] if grown[key].shape != value.shape else grown[key]
        assert torch.equal(kept, value), key
    assert grown["patch_head.weight"][0, source["patch_head.weight"].shape[1]:].abs().sum() > 0  # RGB is read now
    with pytest.raises(ValueError, match="freeze_residual needs"):
        train_detector(data, tmp_path / "x", config=config_for("mnv3s-050", crop=32), steps=1, freeze_residual=True)


def test_an_ensemble_is_the_mean_of_its_members_calibrated_logits_and_loads_as_one(tmp_path: Path) -> None:
    from detector import DetectorEnsemble, analyse_file, build_ensemble
    from media.synthetic import make_test_clip

    data = _tiny_dataset(tmp_path / "data")
    cfg = config_for("mnv3s-050", crop=32, frames=2, crops_per_frame=4)
    members = []
    for k, temperature in enumerate((0.5, 2.0)):
        torch.manual_seed(k)
        cal = Calibration(threshold_logit=0.0, target_fpr=0.01, n_real=10, temperature=temperature)
        members.append(save_checkpoint(tmp_path / f"m{k}.safetensors", build_model(cfg, device="cpu"),
                                       model_id=f"m{k}", calibration=cal))
    summary = build_ensemble(members, data, tmp_path / "ens.safetensors", model_id="ens")
    ens = load_checkpoint(tmp_path / "ens.safetensors")
    assert isinstance(ens.model, DetectorEnsemble) and ens.config.members == 2 and ens.model_id == "ens"
    assert ens.model.feature_network() is ens.model.members[0]  # what the generator's Frechet features read
    assert summary["recipe"]["ensemble_of"] == ["m0", "m1"] and ens.calibration.n_real == 6  # fitted on val
    x = torch.rand(1, 2, 4, 3, 32, 32)
    with torch.no_grad():
        one, two = (load_checkpoint(p).model(x) for p in members)
        out = ens.model(x)
    assert torch.allclose(out.clip_logits, (one.clip_logits / 0.5 + two.clip_logits / 2.0) / 2, atol=1e-5)
    assert torch.allclose(out.patch_logits, (one.patch_logits / 0.5 + two.patch_logits / 2.0) / 2, atol=1e-5)
    clip = make_test_clip(tmp_path / "c.mp4", width=96, height=64, frames=6, pattern="moving")
    det = analyse_file(clip, model=tmp_path / "ens.safetensors").detector
    assert det.in_scope and det.model_id == "ens" and len(det.heatmap) >= 1
    # members must read the same input with the same backbone; ensembles are joined, never trained
    lcnet = save_checkpoint(tmp_path / "lc.safetensors", build_model(config_for("lcnet-035", crop=32), device="cpu"),
                            model_id="lc", calibration=cal)
    grown = build_ensemble([tmp_path / "ens.safetensors", members[0]], data, tmp_path / "ens3.safetensors",
                           model_id="ens3")  # an ensemble lends its members, temperatures included
    assert grown["recipe"]["ensemble_of"] == ["m0", "m1", "m0"] and grown["config"]["members"] == 3
    assert grown["recipe"]["member_temperatures"] == [0.5, 2.0, 0.5]
    for bad, match in (([members[0], lcnet], "backbone"), ([members[0]], "at least two")):
        with pytest.raises(ValueError, match=match):
            build_ensemble(bad, data, tmp_path / "bad.safetensors", model_id="bad")
    assert not (tmp_path / "bad.safetensors").exists()
    with pytest.raises(ValueError, match="not trained"):
        train_detector(data, tmp_path / "t", config=config_for("mnv3s-050", crop=32, members=2), steps=1)


def test_some_training_batches_use_crops_down_to_min_crop() -> None:
    rng = np.random.default_rng(0)
    cfg = config_for("mnv3s-050")
    assert (cfg.crop, cfg.min_crop) == (64, 48)
    assert {_batch_side(cfg, 1.0, rng) for _ in range(50)} == {48, 56}
    assert {_batch_side(cfg, 0.0, rng) for _ in range(50)} == {64}
    assert {_batch_side(DetectorConfig(crop=64), 1.0, rng) for _ in range(20)} == {64}
    with pytest.raises(ValueError, match="min_crop"):
        DetectorConfig(crop=64, min_crop=80)


# --- analyse_file end to end (random tiny model: checks plumbing, not accuracy) --------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(config_for("mnv3s-050", crop=32, frames=3, crops_per_frame=4), device="cpu").eval()
    cal = Calibration(threshold_logit=0.0, target_fpr=0.01, n_real=10)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model, model_id="tiny",
                           calibration=cal)


def test_analyse_file_gives_frames_clip_heatmap_and_a_verdict(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from detector import analyse_file
    from media.synthetic import make_test_clip

    clip = make_test_clip(tmp_path / "c.mp4", width=160, height=96, frames=12, pattern="moving")
    report = analyse_file(clip, model=tiny_checkpoint)
    det = report.detector
    assert det.in_scope and det.model_id == "tiny" and 0.0 <= det.probability <= 1.0
    assert [f["index"] for f in det.frames] == [0, 6, 11] and 1 <= det.crops_per_frame <= 4
    assert pytest.approx(sum(f["attention"] for f in det.frames), abs=1e-3) == 1.0
    assert len(det.heatmap) >= 1 and all(len(row) == len(det.heatmap[0]) for row in det.heatmap)
    out = json.loads(json.dumps(report.to_dict()))  # the report section is plain JSON
    assert out["detector"]["probability"] == det.probability and len(out["artifacts"]) == 4
    full = {"c2pa": {"state": "absent"}, "watermark": {"present": False}, **out}
    assert verdict(full, det, report.signals).label in LABELS


def test_frames_between_min_crop_and_crop_are_scored_with_their_own_side(tiny_checkpoint: Path,
                                                                        tmp_path: Path) -> None:
    from detector import analyse_file
    from media.synthetic import make_test_clip

    cfg = load_checkpoint(tiny_checkpoint).config  # crop 32, min_crop 24
    assert (cfg.crop_for(96, 160), cfg.crop_for(28, 48), cfg.crop_for(27, 48), cfg.crop_for(22, 48)) == \
        (32, 28, 26, None)
    assert DetectorConfig(crop=64).crop_for(48, 88) is None  # v1 checkpoints: crop is the smallest scope
    clip = make_test_clip(tmp_path / "small.mp4", width=48, height=28, frames=4, pattern="noise")
    det = analyse_file(clip, model=tiny_checkpoint).detector
    assert det.in_scope and det.crops_per_frame == 1 and len(det.heatmap) >= 1
    model = load_checkpoint(tiny_checkpoint).model
    assert np.isfinite(score_frames(model, [np.zeros((28, 48, 3), np.uint8)], 4))
    assert np.isnan(score_frames(model, [np.zeros((22, 48, 3), np.uint8)], 4))


def test_analyse_file_marks_tiny_input_out_of_scope(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from detector import analyse_file
    from media.synthetic import make_test_clip

    clip = make_test_clip(tmp_path / "s.mp4", width=20, height=20, frames=4, pattern="noise")
    det = analyse_file(clip, model=tiny_checkpoint).detector
    assert not det.in_scope and "too small" in det.scope_reasons[0]
    assert verdict({"c2pa": {}, "watermark": {}}, det, []).label == "uncertain"


def test_heavy_compression_is_out_of_scope_by_the_decoders_quantiser(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from detector import analyse_file
    from detector.analyse import MAX_H264_QP
    from media import transcode
    from media.synthetic import make_test_clip

    clip = make_test_clip(tmp_path / "c.mp4", width=160, height=96, frames=12, pattern="moving")
    light = analyse_file(clip, model=tiny_checkpoint).detector
    assert light.in_scope and light.mean_qp is not None and light.mean_qp <= MAX_H264_QP
    transcode(clip, tmp_path / "heavy.mp4", crf=51, preset="ultrafast")
    heavy = analyse_file(tmp_path / "heavy.mp4", model=tiny_checkpoint).detector
    assert heavy.mean_qp > MAX_H264_QP and not heavy.in_scope and heavy.probability is None
    assert heavy.scope_reasons == [f"heavily compressed: mean quantiser QP {heavy.mean_qp:.1f} (over {MAX_H264_QP:g})"]
    assert verdict({"c2pa": {}, "watermark": {}}, heavy, []).label == "uncertain"
    # H.265 exports no quantiser: the bit-rate floor stands in (these bits are plenty)
    transcode(clip, tmp_path / "h.mp4", codec="libx265", crf=28, preset="ultrafast")
    hevc = analyse_file(tmp_path / "h.mp4", model=tiny_checkpoint).detector
    assert hevc.mean_qp is None and hevc.in_scope


def _smooth_pan(seed: int, frames: int = 8, w: int = 96, h: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (h, w + 2 * frames, 3)).astype(np.float32), (0, 0), 3)
    return np.stack([np.clip(tex[:, 2 * i : 2 * i + w], 0, 255).astype(np.uint8) for i in range(frames)])


def test_frame_model_clip_thresholds_come_from_whole_real_clips(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from detector import analyse_file
    from detector.analyse import MAX_H264_QP
    from detector.calibration import QP_BANDS
    from detector.clipkit import BaseClip
    from detector.train import calibrate_on_clips

    assert QP_BANDS[-1] == MAX_H264_QP  # the last band ends where the compression scope does
    clips = [BaseClip(_smooth_pan(i), 8.0, 0, "pan", f"p{i}", "val") for i in range(3)]
    clips += [BaseClip(_smooth_pan(9), 8.0, 1, "ai", "a9", "val"), BaseClip(_smooth_pan(5), 8.0, 0, "pan", "t", "test")]
    out = tmp_path / "clips.safetensors"
    summary = calibrate_on_clips(tiny_checkpoint, None, clips=clips, model_id="tiny-v1.1", out=out)
    before, after = load_checkpoint(tiny_checkpoint), load_checkpoint(out)
    assert after.model_id == "tiny-v1.1" and after.meta["clip_calibration"]["n_real_clips"] == summary["n_real_clips"]
    assert 0 < summary["n_real_clips"] <= 3 * 6  # val real clips at the kit's six encodings, within the scope
    for a, b in zip(before.model.state_dict().values(), after.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the weights are untouched
    bands = after.calibration.qp_bands
    assert [u for u, _ in bands] == list(QP_BANDS) and bands[0][1] <= bands[1][1] == after.calibration.threshold_logit
    assert bands[0][1] >= before.calibration.threshold_logit  # never below the image-level threshold
    assert summary["val_real_flagged"] == 0  # too few reals to resolve 1%: above every one of them
    clip = write_clip(tmp_path / "c.mp4", _smooth_pan(7))
    det = analyse_file(clip, model=out).detector
    threshold = after.calibration.threshold_for(det.mean_qp)
    assert det.frame_flagged == (det.logit > threshold)
    assert det.threshold_probability == round(float(after.calibration.probability(threshold)), 4)
    with pytest.raises(ValueError):  # no real clip to calibrate on
        calibrate_on_clips(tiny_checkpoint, None, clips=clips[3:4], out=tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def write_clip(path: Path, frames: np.ndarray) -> Path:
    from media import VideoWriter

    with VideoWriter(path, width=frames.shape[2], height=frames.shape[1], fps=8, crf=18, preset="fast") as out:
        for f in frames:
            out.write_rgb(f)
    return path
