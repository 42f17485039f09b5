"""`manage.py eval generator`: the fixed prompt list, the metrics, and a quick run end to end on a tiny
randomly initialised bundle (its numbers are bad; the test checks the plumbing, not the model)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from generator_helpers import untrained_bundle

from generator.data import HELD_OUT, analyse_clip, render_clip, score, summarise
from generator.errors import GeneratorError
from generator.evaluate import (
    GROUPS,
    ClipFeatures,
    EvalOptions,
    eval_prompts,
    frechet_distance,
    psnr,
    select_prompts,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """An untrained generator with the hash text encoder, generating 64x64x8 clips in 2 steps."""
    return untrained_bundle(tmp_path_factory.mktemp("weights"), width=64, height=64, seconds=1.0)


@pytest.fixture(scope="module")
def features() -> ClipFeatures:
    return ClipFeatures()


# ---------------------------------------------------------------------------------------------
# The prompt list


def test_the_prompt_list_is_fixed_and_covers_the_held_out_combinations():
    prompts = eval_prompts()
    assert [p.text for p in prompts] == [p.text for p in eval_prompts()]  # deterministic
    assert prompts[0].text == "on a black background, a red circle slides right"  # known answer
    assert prompts[-1].text == ("a plain navy background with a white triangle standing still and a yellow circle "
                                "shrinking")
    held = [fact for p in prompts if p.group.startswith("held") for fact in p.scene.facts if fact in HELD_OUT]
    assert sorted(held) == sorted(HELD_OUT)  # every held-out combination, once
    for p in prompts:
        assert p.group in GROUPS and len(p.scene.objects) == int(p.group[-1])
        assert any(f in HELD_OUT for f in p.scene.facts) == p.group.startswith("held"), p.text
        assert p.scene.pan == (0.0, 0.0)
    assert len({p.scene.background for p in prompts}) == 5  # every background
    assert [p.index for p in select_prompts(prompts, per_group=1)] == [0, 3, 6, 9]
    assert [p.index for p in select_prompts(prompts, total=5)] == [0, 1, 3, 6, 9]


def test_rendered_prompts_score_full_marks_against_their_own_scenes():
    """Validates prompt -> scene plumbing: the prompt's scene and both reference draws render what it says."""
    rows = []
    for p in eval_prompts():
        for scene in (p.scene, p.reference(1, 0), p.reference(2, 1)):
            assert scene.facts == p.scene.facts and scene.background == p.scene.background
            rows.append(score(analyse_clip(render_clip(scene, 128, 128, 16, 8.0)), p.scene))
    shares = summarise(rows)
    assert min(shares.values()) >= 0.97, shares


# ---------------------------------------------------------------------------------------------
# Metrics


def test_frechet_distance_known_answer():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4000, 3)), rng.standard_normal((4000, 3)) + [2.0, 0.0, 0.0]
    assert frechet_distance(a, b) == pytest.approx(4.0, abs=0.15)  # identity covariances: |mu_a - mu_b|^2
    assert frechet_distance(a, 3 * a) == pytest.approx(4.0 * 3, rel=0.05)  # tr(S + 9S - 2*3S) = 4 tr S
    with pytest.raises(ValueError):
        frechet_distance(a[:1], b)


def test_frechet_on_detector_features_separates_noise_from_rendered_clips(features):
    prompts = eval_prompts()[:6]
    clips = {draw: [render_clip(p.reference(draw, 0), 64, 64, 8, 8.0) for p in prompts] for draw in (1, 2)}
    rng = np.random.default_rng(0)
    # The same pixels shuffled within each clip: equal colour statistics, no structure.
    noise = [rng.permutation(c.reshape(-1, 3)).reshape(c.shape) for c in clips[1]]
    a, b, n = (np.stack([features(c) for c in group]) for group in (clips[1], clips[2], noise))
    assert a.shape == (6, 576)
    assert abs(frechet_distance(a, a)) < 1e-6 * np.trace(np.cov(a, rowvar=False))
    floor, far = frechet_distance(a, b), frechet_distance(a, n)
    assert far > 10 * floor, (floor, far)


def test_psnr():
    a = np.full((2, 4, 4, 3), 100, np.uint8)
    assert psnr(a, a + 1) == pytest.approx(10 * np.log10(255**2))
    assert psnr(a, a) > 140  # identical: capped, finite for JSON


@pytest.mark.parametrize("bad", [{"seeds": 0}, {"steps_curve": ()}, {"steps_curve": (4, 0)},
                                 {"prompts_per_group": 4}, {"curve_prompts": 5, "prompts_per_group": 1}])
def test_bad_options_are_refused(bad):
    with pytest.raises(GeneratorError):
        EvalOptions(**bad)


# ---------------------------------------------------------------------------------------------
# The command


def test_eval_generator_quick_end_to_end(bundle, tmp_path, capsys):
    import manage

    out, raw = tmp_path / "docs" / "quality.md", tmp_path / "raw.json"
    code = manage.main(["eval", "generator", "--checkpoint", str(bundle), "--quick", "--steps-curve", "1,2",
                        "--out", str(out), "--json", str(raw), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert "autoencoder reconstruction" in capsys.readouterr().out
    r = json.loads(raw.read_text())
    assert r["version"] == 1 and r["generation"]["width"] == 64 and r["generation"]["steps"] == 2
    assert len(r["clips"]) == 4 and {c["group"] for c in r["clips"]} == set(GROUPS)
    for group in ("seen", "held-out", *GROUPS):
        assert all(0 <= r["adherence"][group][f] <= 1 for f in ("background", "count", "colour", "shape", "motion"))
    assert r["rendered_adherence"]["all"]["mean"] >= 0.95  # the references are rendered: the analyser's ceiling
    assert set(r["steps_curve"]) == {"1", "2"}
    assert 0 < r["reconstruction"]["psnr_mean"] < 100 and r["reconstruction"]["clips"] == 2
    fd = r["frechet"]
    assert fd["generated_vs_rendered"] > fd["rendered_vs_rendered"] >= 0  # noise from random weights is far off
    assert len(r["targets"]) == 10 and all(t["met"] in (True, False, None) for t in r["targets"])
    text = out.read_text()
    assert "| seen: background >= 95% |" in text and "not FVD" in text and "![generated frames](quality.png)" in text
    sheet = cv2.imread(str(out.with_suffix(".png")))
    assert sheet is not None and sheet.shape[1] >= 5 * 64 and sheet.shape[0] > 4 * 64
    assert not list(tmp_path.rglob(".*tmp"))  # atomic writes leave nothing behind


@pytest.mark.parametrize("args,message", [
    (["--checkpoint", "{tmp}/nowhere"], "no generator bundle"),
    (["--steps-curve", "4,x"], "step counts"),
    (["--seeds", "0"], "--seeds"),
    (["--prompts-per-group", "9"], "prompts per group"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message, bundle):
    import manage

    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--checkpoint" not in args:
        args = ["--checkpoint", str(bundle), *args]
    outputs = ["--out", str(tmp_path / "r.md"), "--json", str(tmp_path / "r.json")]
    code = manage.main(["eval", "generator", *args, *outputs])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r.md").exists()
