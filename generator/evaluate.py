"""`manage.py eval generator`: how well a trained generator follows Shapes-world prompts.

Read top down: the fixed prompt list, the metrics (analyser scores, the Frechet distance on the
detector's frozen backbone, autoencoder PSNR/SSIM), then `evaluate_generator`, which runs them all
and hands the results to `quality_report` for the markdown table and the contact sheet.

The prompt list is fixed: `PROMPT_SPECS` names every prompt's facts, background and style, and
`eval_prompts()` turns each into a `Scene` (placement drawn from `EVAL_SEED`) and one caption of it,
so the same prompts come out on every machine (a known-answer test pins them). Seen prompts use
only combinations the trainer draws; held-out ones use every `HELD_OUT` combination once. Every
random draw of the evaluation comes from `EVAL_SEED`, which the trainer must never use.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .cli import resolve_checkpoint
from .data import Scene, analyse_clip, make_scene, render_clip, sample_scene, score, summarise
from .data.analyse import FACTS
from .errors import GeneratorError
from .generate import VideoGenerator, frames_to_tensor, tensor_to_frames

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPORT = ROOT / "docs" / "benchmarks" / "generator-quality.md"
DEFAULT_JSON = ROOT / "bench" / "out" / "generator-quality.json"
EVAL_SEED = 2_025_005  # every draw of the evaluation; the trainer must never stream with this seed
GROUPS = ("seen-1", "seen-2", "held-1", "held-2")  # seen / held-out combinations, 1 / 2 objects
AE_SIZE = (128, 128, 17)  # width, height, frames of the reconstruction clips: 1 + 4k frames code exactly
RESULTS_VERSION = 1
Progress = Callable[[int, int, str], None]


# --------------------------------------------------------------------------------------------
# The prompt list


@dataclass(frozen=True)
class PromptSpec:
    """One evaluation prompt's facts: group, background, background style and objects."""

    group: str
    background: str
    style: str
    objects: tuple[tuple[str, str, str], ...]


PROMPT_SPECS: tuple[PromptSpec, ...] = (
    PromptSpec("seen-1", "black", "solid", (("red", "circle", "right"),)),
    PromptSpec("seen-1", "navy", "gradient", (("yellow", "star", "down"),)),
    PromptSpec("seen-1", "white", "texture", (("blue", "square", "rotating"),)),
    PromptSpec("seen-2", "dark green", "gradient", (("white", "triangle", "up"), ("purple", "circle", "growing"))),
    PromptSpec("seen-2", "black", "texture", (("cyan", "square", "left"), ("orange", "star", "still"))),
    PromptSpec("seen-2", "gray", "solid", (("green", "ring", "bouncing"), ("red", "triangle", "diagonal"))),
    # Held out: the eight HELD_OUT objects, each once; two-object prompts pair two held-out objects,
    # except the last, which pairs one with a seen object.
    PromptSpec("held-1", "black", "solid", (("red", "star", "rotating"),)),
    PromptSpec("held-1", "white", "gradient", (("blue", "circle", "bouncing"),)),
    PromptSpec("held-1", "navy", "texture", (("green", "triangle", "left"),)),
    PromptSpec("held-2", "gray", "gradient", (("yellow", "square", "shrinking"), ("purple", "ring", "growing"))),
    PromptSpec("held-2", "dark green", "texture", (("cyan", "star", "up"), ("orange", "square", "diagonal"))),
    PromptSpec("held-2", "navy", "solid", (("white", "triangle", "still"), ("yellow", "circle", "shrinking"))),
)


@dataclass(frozen=True)
class EvalPrompt:
    """A prompt of the list: its text and the scene it describes (the reference the analyser scores)."""

    index: int
    group: str
    text: str
    scene: Scene

    @property
    def spec(self) -> PromptSpec:
        return PROMPT_SPECS[self.index]

    def reference(self, draw: int, seed: int) -> Scene:
        """Another scene with this prompt's facts: placement and nuisances from (draw, seed)."""
        rng = np.random.default_rng([EVAL_SEED, self.index, draw, seed])
        spec = self.spec
        return make_scene(rng, spec.background, spec.objects, background_style=spec.style, pan=False)


def eval_prompts() -> list[EvalPrompt]:
    """Every prompt of `PROMPT_SPECS`, each with its scene and one caption of it (deterministic)."""
    prompts = []
    for index, spec in enumerate(PROMPT_SPECS):
        rng = np.random.default_rng([EVAL_SEED, index])
        scene = make_scene(rng, spec.background, spec.objects, background_style=spec.style, pan=False)
        prompts.append(EvalPrompt(index, spec.group, scene.caption(rng), scene))
    return prompts


def select_prompts(prompts: Sequence[EvalPrompt], per_group: int | None = None,
                   total: int | None = None) -> list[EvalPrompt]:
    """The first `per_group` prompts of each group, or the first `total` taken round-robin over groups."""
    by_group = [[p for p in prompts if p.group == g] for g in GROUPS]
    if per_group is not None:
        return [p for group in by_group for p in group[:per_group]]
    rounds = [p for i in range(max(map(len, by_group))) for group in by_group for p in group[i : i + 1]]
    return sorted(rounds[:total], key=lambda p: p.index)


# --------------------------------------------------------------------------------------------
# Metrics


def clip_record(prompt: EvalPrompt, clip: np.ndarray, **extra: object) -> dict:
    """The analyser's verdict on one clip against its prompt's scene, with its temporal stability."""
    analysis = analyse_clip(clip)
    return {"prompt": prompt.index, "group": prompt.group, **extra, "scores": score(analysis, prompt.scene),
            "count": analysis.count, "colour_drift": analysis.colour_drift, "size_drift": analysis.size_drift}


def adherence(records: Sequence[dict]) -> dict[str, float]:
    """Share of clips with each fact right, and `mean`: the five facts' average, in [0, 1]."""
    shares = summarise(r["scores"] for r in records)
    return {**shares, "mean": sum(shares.values()) / len(FACTS), "clips": len(records)}


def stability(records: Sequence[dict]) -> dict[str, float | None]:
    """Mean colour and size drift over the clips in which the analyser found an object."""
    found = [r for r in records if r["count"] > 0]
    if not found:
        return {"colour_drift": None, "size_drift": None, "clips": 0}
    return {"colour_drift": float(np.mean([r["colour_drift"] for r in found])),
            "size_drift": float(np.mean([r["size_drift"] for r in found])), "clips": len(found)}


class ClipFeatures:
    """Clip features for the Frechet distance: the shipped detector's frozen timm backbone.

    Each frame goes through the detector's own input transform (its config's forensic residual) and
    backbone (an ensemble's first member's) at native resolution; the feature map is averaged over space.
    A clip is the mean frame feature concatenated with the mean absolute change of the features between
    consecutive frames, so both appearance and temporal behaviour count. This is not FVD: FVD's I3D (Kinetics-400)
    weights cannot be downloaded here, and this backbone was trained to see generator traces in
    pixel residuals, not content, so colour and layout are left to the analyser and the numbers
    mean something only against the rendered-vs-rendered floor of the same run.
    """

    def __init__(self, weights: str | os.PathLike[str] | None = None, device: torch.device | str = "cpu") -> None:
        from detector import load_checkpoint
        from detector.analyse import DEFAULT_WEIGHTS

        loaded = load_checkpoint(weights or DEFAULT_WEIGHTS, device)
        # An ensemble's first member: in the shipped v2 that is v1, whose backbone every recorded distance used.
        net = loaded.model.feature_network()
        self.input, self.backbone = net.input, net.backbone
        self.device, self.model_id = torch.device(device), loaded.model_id

    @torch.no_grad()
    def __call__(self, clip: np.ndarray) -> np.ndarray:
        """uint8 (T, H, W, 3) -> float64 (2D,)."""
        x = torch.from_numpy(np.ascontiguousarray(clip)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        f = self.backbone.forward_features(self.input(x)).mean(dim=(2, 3))  # (T, D)
        change = (f[1:] - f[:-1]).abs().mean(0) if len(f) > 1 else torch.zeros_like(f[0])  # (D,)
        return torch.cat([f.mean(0), change]).double().cpu().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2) between two feature sets (N, D), N >= 2.

    tr (S_a S_b)^1/2 is the sum of the square roots of the eigenvalues of S_a^1/2 S_b S_a^1/2, which
    is symmetric: unlike a general matrix square root it stays real when N < D (rank-deficient S)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a Frechet distance needs at least two clips on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(cov_a)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root @ cov_b @ root
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(max(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross, 0.0))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 arrays, dB (the whole clip's mean squared error)."""
    mse = max(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)), 1e-10)  # finite for JSON
    return float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean per-frame SSIM of two uint8 clips (scikit-image); None where scikit-image is missing."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        return None
    frames = zip(a, b, strict=True)
    return float(np.mean([structural_similarity(x, y, channel_axis=-1, data_range=255) for x, y in frames]))


@torch.no_grad()
def reconstruct(gen: VideoGenerator, clip: np.ndarray) -> np.ndarray:
    """The clip through the generator's autoencoder (posterior mean), coded two latent frames at a time."""
    ae = gen.autoencoder
    z = ae.encode(frames_to_tensor(clip).to(gen.device), chunk_latents=2).mean
    return tensor_to_frames(ae.decode(z, frames=len(clip), chunk_latents=2))


def ae_clips(n: int) -> list[Scene]:
    """Reconstruction clips never trained on: any scene (held-out facts allowed) drawn from `EVAL_SEED`."""
    return [sample_scene(np.random.default_rng([EVAL_SEED, 1, i]), allow_held_out=True) for i in range(n)]


# --------------------------------------------------------------------------------------------
# The run


@dataclass(frozen=True)
class EvalOptions:
    """How much work a run does; `quick()` is the smoke-test size, the defaults ~15 min on 2 CPU cores."""

    seeds: int = 3
    steps: int | None = None  # None: the model's default
    steps_curve: tuple[int, ...] = (4, 8, 16, 32, 50)
    prompts_per_group: int = 3
    curve_prompts: int = 4  # round-robin over the groups, seed 0
    ae_clips: int = 8
    contact_rows: int = 8  # prompts shown in the contact sheet, round-robin over the groups

    def __post_init__(self) -> None:
        counts = {"seeds": self.seeds, "prompts per group": self.prompts_per_group,
                  "curve prompts": self.curve_prompts, "autoencoder clips": self.ae_clips,
                  "contact sheet rows": self.contact_rows}
        for name, value in counts.items():
            if value < 1:
                raise GeneratorError(f"{name} must be at least 1, got {value}")
        most = min(sum(spec.group == g for spec in PROMPT_SPECS) for g in GROUPS)
        if self.prompts_per_group > most:
            raise GeneratorError(f"the prompt list has {most} prompts per group, not {self.prompts_per_group}")
        if self.curve_prompts > self.prompts_per_group * len(GROUPS):
            raise GeneratorError(f"the curve can use at most the {self.prompts_per_group * len(GROUPS)} prompts "
                                 f"of the run, not {self.curve_prompts}")
        if self.steps is not None and not 1 <= self.steps <= 1000:
            raise GeneratorError(f"steps must be 1..1000, got {self.steps}")
        if not self.steps_curve or any(not 1 <= s <= 1000 for s in self.steps_curve):
            raise GeneratorError(f"the steps curve needs step counts in 1..1000, got {list(self.steps_curve)}")

    @classmethod
    def quick(cls, **overrides: object) -> EvalOptions:
        """One prompt per group, one seed, one curve prompt, two reconstruction clips."""
        base = {"seeds": 1, "prompts_per_group": 1, "curve_prompts": 1, "ae_clips": 2, "contact_rows": 4}
        return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


def machine() -> str:
    """CPU model and cores, torch threads, and the GPU if there is one."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = torch.get_num_threads()
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {threads} thread{'s' * (threads != 1)}"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name()}"
    return text


def shown_path(path: str | os.PathLike[str]) -> str:
    """`path` relative to the repository when it lies inside it (reports name repo files portably)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _checkpoint_facts(directory: Path) -> dict:
    from storage import sha256_file

    from .checkpoint import read_bundle

    bundle = read_bundle(directory)
    files = {key: bundle[key] for key in ("autoencoder", "dit")}
    return {"path": shown_path(directory), "preset": bundle.get("preset"), "text_encoder": bundle["text_encoder"],
            "sha256": {key: sha256_file(directory / name).sha256[:16] for key, name in files.items()}}


def evaluate_generator(
    checkpoint: str | os.PathLike[str] | None = None,
    options: EvalOptions | None = None,
    *,
    report: str | os.PathLike[str] | None = DEFAULT_REPORT,
    json_path: str | os.PathLike[str] | None = DEFAULT_JSON,
    detector_weights: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    command: str = "manage.py eval generator",
    progress: Progress | None = None,
) -> dict:
    """Generate the prompt list with every seed, score it, and write the report, contact sheet and JSON.

    `checkpoint` None is the shipped default bundle (`NoCheckpointError` if there is none). The
    contact sheet is written beside `report` with the suffix .png. Returns the results dict that
    the JSON holds."""
    from . import quality_report

    options = options or EvalOptions()
    started, start_date = time.perf_counter(), dt.datetime.now().astimezone()
    directory = resolve_checkpoint(None, checkpoint)
    gen = VideoGenerator.from_pretrained(directory, device=device)
    features = ClipFeatures(detector_weights, device)
    d = gen.defaults
    width, height, fps = int(d["width"]), int(d["height"]), float(d["fps"])
    frames, steps = round(d["seconds"] * fps), int(options.steps or d["steps"])
    curve_steps = sorted({*options.steps_curve, steps})
    prompts = select_prompts(eval_prompts(), per_group=options.prompts_per_group)
    curve = select_prompts(prompts, total=options.curve_prompts)
    todo = len(prompts) * options.seeds + len(curve) * (len(curve_steps) - 1) + options.ae_clips
    done = 0

    def tick(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, todo, what)

    def generate(prompt: EvalPrompt, seed: int, n_steps: int) -> np.ndarray:
        clip = gen.generate(prompt.text, width=width, height=height, frames=frames, steps=n_steps, seed=seed)
        tick(f"prompt {prompt.index} seed {seed} at {n_steps} steps")
        return clip

    # 1. Adherence and stability at the default step count; rendered references for the ceiling and FD.
    generated, rendered, floor, sheet = [], [], [], []
    feats: dict[str, list[np.ndarray]] = {"generated": [], "rendered": [], "floor": []}
    for prompt in prompts:
        for seed in range(options.seeds):
            clip = generate(prompt, seed, steps)
            generated.append(clip_record(prompt, clip, seed=seed, steps=steps))
            ref = render_clip(prompt.reference(1, seed), width, height, frames, fps)
            rendered.append(clip_record(prompt, ref, seed=seed))
            feats["generated"].append(features(clip))
            feats["rendered"].append(features(ref))
            floor_clip = render_clip(prompt.reference(2, seed), width, height, frames, fps)
            floor.append(clip_record(prompt, floor_clip, seed=seed))
            feats["floor"].append(features(floor_clip))
            if seed == 0:
                sheet.append((prompt, clip, ref, generated[-1]["scores"]))
    shown = {p.index for p in select_prompts(prompts, total=options.contact_rows)}
    sheet = [row for row in sheet if row[0].index in shown]
    # 2. Adherence against steps on a subset (seed 0; the default step count is already generated).
    by_steps: dict[int, list[dict]] = {steps: [r for r in generated if r["seed"] == 0 and
                                               r["prompt"] in {p.index for p in curve}]}
    for n_steps in curve_steps:
        if n_steps != steps:
            by_steps[n_steps] = [clip_record(p, generate(p, 0, n_steps), seed=0, steps=n_steps) for p in curve]
    # 3. Autoencoder reconstruction of clips it never saw.
    recon = []
    aw, ah, af = AE_SIZE
    for i, scene in enumerate(ae_clips(options.ae_clips)):
        clip = render_clip(scene, aw, ah, af, fps)
        out = reconstruct(gen, clip)
        recon.append({"clip": i, "facts": [list(f) for f in scene.facts], "psnr": psnr(clip, out),
                      "ssim": ssim(clip, out)})
        tick(f"reconstruction {i}")
    # 4. Frechet distances: generated vs rendered, and the floor (two rendered draws of the same prompts).
    fd = {"generated_vs_rendered": None, "rendered_vs_rendered": None, "clips": len(generated),
          "dims": int(feats["generated"][0].shape[0]), "extractor": f"{features.model_id} backbone (frozen)"}
    if len(generated) >= 2:
        fd["generated_vs_rendered"] = frechet_distance(np.stack(feats["generated"]), np.stack(feats["rendered"]))
        fd["rendered_vs_rendered"] = frechet_distance(np.stack(feats["floor"]), np.stack(feats["rendered"]))

    results = {
        "version": RESULTS_VERSION,
        "command": command,
        "date": start_date.isoformat(timespec="seconds"),
        "machine": machine(),
        "device": str(gen.device),
        "checkpoint": _checkpoint_facts(directory),
        "options": {**asdict(replace(options, steps=steps)), "steps_curve": curve_steps},
        "generation": {"width": width, "height": height, "frames": frames, "fps": fps, "steps": steps,
                       "cfg": d["cfg"], "sampler": d["sampler"], "seeds": list(range(options.seeds))},
        "eval_seed": EVAL_SEED,
        "prompts": [{"index": p.index, "group": p.group, "text": p.text, "background": p.spec.background,
                     "style": p.spec.style, "objects": [list(o) for o in p.spec.objects]} for p in prompts],
        "adherence": _by_group(generated),
        "rendered_adherence": _by_group(rendered + floor),
        "stability": {"generated": stability(generated), "rendered": stability(rendered + floor)},
        "steps_curve": {str(s): adherence(by_steps[s]) for s in curve_steps},
        "curve_prompts": [p.index for p in curve],
        "reconstruction": _summarise_reconstruction(recon),
        "frechet": fd,
        "clips": generated,
        "reconstruction_clips": recon,
    }
    results["targets"] = quality_report.targets(results)
    results["wall_seconds"] = time.perf_counter() - started
    quality_report.write_outputs(results, sheet, report=report, json_path=json_path)
    return results


def _by_group(records: Sequence[dict]) -> dict[str, dict]:
    groups = {"seen": ("seen-1", "seen-2"), "held-out": ("held-1", "held-2"),
              **{g: (g,) for g in GROUPS}, "all": GROUPS}
    out = {}
    for name, members in groups.items():
        rows = [r for r in records if r["group"] in members]
        if rows:
            out[name] = adherence(rows)
    return out


def _summarise_reconstruction(recon: Sequence[dict]) -> dict:
    psnrs = [r["psnr"] for r in recon]
    ssims = [r["ssim"] for r in recon if r["ssim"] is not None]
    w, h, f = AE_SIZE
    return {"clips": len(recon), "size": f"{w}x{h}x{f}", "psnr_mean": float(np.mean(psnrs)),
            "psnr_min": float(np.min(psnrs)), "ssim_mean": float(np.mean(ssims)) if ssims else None}
