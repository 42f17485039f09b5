"""The data kit's veriframe families, built with a tiny untrained generator: deterministic and cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from generator_helpers import untrained_bundle

from detector.datakit import PACKAGE_PHOTOS, TEST_PHOTOS, VAL_PHOTOS, dit_items, package_file
from detector.generator_kit import ClipSpec, VaeReconstructor, as_issued, centre_window, clip_specs, sample_clips
from generator.generate import VideoGenerator

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained generator (4x4x4 autoencoder, 2-block DiT, hashing text encoder): 16x16, 5 frames."""
    return untrained_bundle(tmp_path_factory.mktemp("weights"), width=16, height=16, seconds=2.0)


def test_vae_reconstruction_is_a_deterministic_crop_of_multiples_of_eight(bundle: Path) -> None:
    vae = VaeReconstructor.from_bundle(bundle, side=32)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (45, 70, 3), dtype=np.uint8) for _ in range(6)]
    still = vae(frames[-1])
    assert still.shape == (32, 32, 3) and still.dtype == np.uint8
    assert centre_window(frames[-1:], 32).shape == (1, 32, 32, 3)
    assert centre_window([frames[0][:20, :30]], 32).shape == (1, 16, 24, 3)
    moving = vae(frames[-1], frames[:-1])  # the last frame of a 1 + 4 window: the temporal path
    assert np.array_equal(moving, vae(frames[-1], frames[:-1])) and np.array_equal(still, vae(frames[-1]))
    assert not np.array_equal(moving, still)
    short = vae(frames[-1], frames[-2:-1])  # a short history repeats its first frame
    assert short.shape == still.shape
    with pytest.raises(ValueError, match="too small"):
        centre_window([frames[0][:6]])


def test_specs_cycle_sizes_and_are_a_function_of_their_seeds() -> None:
    specs = clip_specs(6)
    assert [(s.width, s.height) for s in specs[:3]] == [(128, 128), (176, 96), (96, 176)]
    assert specs == clip_specs(6) and len({s.prompt for s in specs}) == 6
    assert [s.seed for s in clip_specs(2, seed_base=7)] == [7, 8]
    assert clip_specs(2, prompt_seed=81)[0].prompt != specs[0].prompt


def test_dit_clips_are_sampled_once_then_read_from_the_cache(bundle: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    specs = [ClipSpec(i, p, 5 + i, 16, 16, 80) for i, p in enumerate(("a red circle", "a blue square"))]
    first = sample_clips(specs, tmp_path / "cache", bundle=bundle)
    assert [c.shape for c in first] == [(16, 16, 16, 3)] * 2 and not np.array_equal(first[0], first[1])
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2

    def refuse(*_a, **_k):
        raise AssertionError("sampled again although cached")

    monkeypatch.setattr(VideoGenerator, "generate", refuse)
    again = sample_clips(specs, tmp_path / "cache", bundle=bundle)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_dit_items_pair_sampled_frames_with_rendered_scenes(bundle: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import detector.generator_kit as kit

    # The real specs ask for 128x128-sized clips: shrink them so the tiny model samples in a second.
    monkeypatch.setattr(kit, "SIZES", ((32, 32), (48, 32), (32, 48)))
    reals, fakes = dit_items(tmp_path, 15, bundle)
    assert len(fakes) == 15 * len(kit.DIT_FRAMES) and len(reals) == 15 * len(kit.SHAPES_FRAMES)
    assert {r[1] for r in reals} == {"cg-shapes"}
    assert [f[2] for f in fakes[:: len(kit.DIT_FRAMES)]] == ["train"] * 9 + ["val"] * 3 + ["test"] * 3  # by block
    assert {r[2] for r in reals} == {f[1] for f in fakes}  # every clip has its rendered counterpart
    assert all(len(r[4]) == 4 and r[4][0].shape == r[0].shape for r in reals)  # 4 frames before each
    again_reals, again_fakes = dit_items(tmp_path, 15, bundle)  # clips from the caches, scenes rendered again
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(fakes, again_fakes, strict=True))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(reals, again_reals, strict=True))


def test_issued_frames_went_through_the_writer_and_the_watermark_and_are_cached(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import provenance.watermark.video as video

    rng = np.random.default_rng(1)
    clip = rng.integers(0, 256, (9, 6, 8, 3), dtype=np.uint8).repeat(8, axis=1).repeat(8, axis=2)  # 48x64 blocks
    issued = as_issued(clip, tmp_path, "c")
    assert issued.shape == clip.shape and not np.array_equal(issued, clip)
    assert (tmp_path / "c.mp4").is_file() and (tmp_path / "c.marked.mp4").is_file()
    assert np.abs(issued.astype(int) - clip).mean() < 8  # a lossy copy of the clip, not another picture

    def refuse(*_a, **_k):
        raise AssertionError("encoded again although cached")

    monkeypatch.setattr(video, "embed_file", refuse)
    assert np.array_equal(issued, as_issued(clip, tmp_path, "c"))  # libx264 itself is not bit-reproducible
    with pytest.raises(AssertionError, match="encoded again"):
        as_issued(clip[:, :, ::-1], tmp_path, "c")  # another clip under the same name is issued anew


def test_package_photos_are_found_without_importing_their_package(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "photo_pkg_that_raises"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('never imported')\n")
    (pkg / "data" / "p.jpg").write_bytes(b"jpeg")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert package_file("photo_pkg_that_raises", "data/p.jpg") == pkg / "data" / "p.jpg"
    assert package_file("photo_pkg_that_raises", "data/missing.jpg") is None
    assert package_file("no_such_package_for_photos", "data/p.jpg") is None
    assert package_file("manage", "data/p.jpg") is None  # a module, not a package
    # The photos added for variety train only: the benchmark's val and test reals stay as they were.
    assert not {name for name, _, _ in PACKAGE_PHOTOS} & set(TEST_PHOTOS + VAL_PHOTOS)
