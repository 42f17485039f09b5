"""The written side of `manage.py eval generator`: targets, the markdown table, the contact sheet.

Everything here reads the results dict that `evaluate.evaluate_generator` builds (the same dict the
JSON file holds), so a report can be rewritten from a saved JSON without generating anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from media import atomic_path

from .data.analyse import FACTS
from .evaluate import shown_path

# The targets: (group, fact, least share); seen and held-out name the same four facts.
ADHERENCE_TARGETS = (
    ("seen", "background", 0.95), ("seen", "colour", 0.90), ("seen", "motion", 0.80), ("seen", "count", 0.85),
    ("held-out", "background", 0.70), ("held-out", "colour", 0.70), ("held-out", "motion", 0.70),
    ("held-out", "count", 0.70),
)
PSNR_TARGET = 30.0
MAX_DEFAULT_STEPS = 16  # "the default step count (at most 16)"
STEPS_MARGIN = 0.02  # "within 2 points of the same model at 50 steps"
FACT_NAMES = {"background": "background", "count": "count", "colour": "object colour", "shape": "shape",
              "motion": "motion"}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def targets(r: dict) -> list[dict]:
    """Each target of the issue with the value measured for it and whether it is met (None: not measured)."""
    out = []
    for group, fact, least in ADHERENCE_TARGETS:
        value = r["adherence"].get(group, {}).get(fact)
        out.append({"target": f"{group}: {FACT_NAMES[fact]} >= {100 * least:.0f}%", "measured": _pct(value),
                    "met": None if value is None else value >= least})
    psnr = r["reconstruction"]["psnr_mean"]
    out.append({"target": f"autoencoder reconstruction >= {PSNR_TARGET:.0f} dB PSNR on held-out clips",
                "measured": f"{psnr:.2f} dB", "met": psnr >= PSNR_TARGET})
    steps, curve = r["generation"]["steps"], r["steps_curve"]
    most = max(int(s) for s in curve)
    at_default, at_most = curve[str(steps)]["mean"], curve[str(most)]["mean"]
    out.append({"target": f"adherence at the default step count (<= {MAX_DEFAULT_STEPS}) within "
                          f"{100 * STEPS_MARGIN:.0f} points of {most} steps",
                "measured": f"{_pct(at_default)} at {steps} vs {_pct(at_most)} at {most}",
                "met": None if most == steps else steps <= MAX_DEFAULT_STEPS and at_default >= at_most - STEPS_MARGIN})
    return out


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("met" if met else "**missed**")


def _adherence_rows(groups: dict[str, dict], label: str) -> list[str]:
    rows = []
    for name, a in groups.items():
        if name == "all":
            continue
        cells = " | ".join(_pct(a[f]) for f in FACTS)
        rows.append(f"| {label}{name} | {a['clips']} | {cells} | {_pct(a['mean'])} |")
    return rows


def render_markdown(r: dict, png_name: str | None, json_name: str | None) -> str:
    """The report: run facts, targets, adherence, stability, reconstruction, FD, the steps curve, prompts."""
    g, ck, fd, rec, st = r["generation"], r["checkpoint"], r["frechet"], r["reconstruction"], r["stability"]
    n = len(r["clips"])
    facts_header = " | ".join(FACT_NAMES[f] for f in FACTS)
    lines = [
        "# Generator quality",
        "",
        f"`{r['command']}`, run {r['date']} on {r['machine']} (device {r['device']}); wall time "
        f"{r['wall_seconds'] / 60:.1f} min. Checkpoint `{ck['path']}` (preset {ck['preset']}, text encoder "
        f"`{ck['text_encoder']}`, sha256/16 autoencoder `{ck['sha256']['autoencoder']}`, DiT "
        f"`{ck['sha256']['dit']}`)." + (f" Raw results: `{json_name}` (format {r['version']})." if json_name else ""),
        "",
        f"Generation at the model's defaults: {g['width']}x{g['height']}, {g['frames']} frames at {g['fps']:g} fps, "
        f"{g['steps']} {g['sampler']} steps, CFG {g['cfg']:g}, seeds {', '.join(map(str, g['seeds']))}: "
        f"{len(r['prompts'])} prompts x {len(g['seeds'])} seeds = {n} clips. Every other draw of the evaluation "
        f"comes from seed {r['eval_seed']} (never used for training).",
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *[f"| {t['target']} | {t['measured']} | {_verdict(t['met'])} |" for t in r["targets"]],
        "",
        "## Prompt adherence",
        "",
        "Share of clips in which the procedural analyser (`generator/data/analyse.py`) finds each fact of "
        "the prompt; a two-object clip has colour, shape and motion right only when both objects do. "
        f"`mean` is the five facts' average. With {n} clips one clip moves a whole-run share by "
        f"{100 / max(n, 1):.1f} points. The rendered rows score clips the renderer drew for the same "
        "prompts (two placements per prompt and seed): the analyser's ceiling.",
        "",
        f"| clips | n | {facts_header} | mean |",
        "|---|---|---|---|---|---|---|---|",
        *_adherence_rows(r["adherence"], "generated, "),
        *_adherence_rows({k: v for k, v in r["rendered_adherence"].items() if k in ("seen", "held-out")},
                         "rendered, "),
        "",
        "## Temporal stability",
        "",
        "Mean over clips with an object of the worst object's colour drift (mean RGB distance of its per-frame "
        "colour from its median, 0-255) and size drift (std of log area around its linear trend; 0.1 is a "
        "10% wobble).",
        "",
        "| clips | with an object | colour drift | size drift |",
        "|---|---|---|---|",
        *[f"| {name} | {s['clips']} | {_num(s['colour_drift'], 2)} | {_num(s['size_drift'], 4)} |"
          for name, s in st.items()],
        "",
        "## Autoencoder reconstruction",
        "",
        f"{rec['clips']} clips at {rec['size']} that training never drew (random scenes, held-out facts "
        f"allowed, from the evaluation seed), coded with the posterior mean: PSNR mean **{rec['psnr_mean']:.2f} dB** "
        f"(worst clip {rec['psnr_min']:.2f} dB), SSIM mean {_num(rec['ssim_mean'], 4)}.",
        "",
        "## Frechet distance",
        "",
        f"Features: {fd['extractor']}, on each frame's forensic residual at native resolution, pooled over "
        f"space; per clip the mean frame feature and the mean absolute feature change between frames "
        f"({fd['dims']} dimensions); {fd['clips']} clips a side.",
        "",
        "| pair | distance |",
        "|---|---|",
        f"| generated vs rendered (same prompts) | {_num(fd['generated_vs_rendered'], 3)} |",
        f"| rendered vs rendered (a second placement of the same prompts): the floor | "
        f"{_num(fd['rendered_vs_rendered'], 3)} |",
        "",
        "This is not FVD: FVD uses an I3D network trained on Kinetics-400, whose weights cannot be downloaded "
        "here. The extractor is veriframe's own frozen detector backbone, trained to see generator traces in "
        "pixel residuals rather than content, so it mostly measures texture, sharpness and decoder artefacts "
        "(colour and layout are the analyser's job). With fewer clips than dimensions the covariances are "
        "rank-deficient and the distance is biased upwards; only the ratio to the floor of the same run means "
        "anything, and no number here compares with published FVDs.",
        "",
        "## Quality against steps",
        "",
        f"Prompts {', '.join(map(str, r['curve_prompts']))} (one per group in turn), seed 0.",
        "",
        f"| steps | clips | {facts_header} | mean |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {s} | {a['clips']} | " + " | ".join(_pct(a[f]) for f in FACTS) + f" | {_pct(a['mean'])} |"
          for s, a in r["steps_curve"].items()],
        "",
        "## Prompts",
        "",
        "The fixed list (`generator/evaluate.py`, `PROMPT_SPECS`); held-out prompts use every `HELD_OUT` "
        "combination once.",
        "",
        "| # | group | background | prompt |",
        "|---|---|---|---|",
        *[f"| {p['index']} | {p['group']} | {p['background']}, {p['style']} | {p['text']} |" for p in r["prompts"]],
    ]
    if png_name:
        lines += ["", "## Contact sheet", "", "Seed 0 of each prompt shown; the analyser's verdict under the "
                  "prompt; the last column is a rendered clip of the same prompt.", "",
                  f"![generated frames]({png_name})"]
    return "\n".join(lines) + "\n"


def _num(x: float | None, digits: int) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


# --------------------------------------------------------------------------------------------
# Contact sheet

FONT, SCALE, LINE = cv2.FONT_HERSHEY_SIMPLEX, 0.38, 13
GAP, REF_GAP, PICKS = 4, 14, 4


def _text(canvas: np.ndarray, text: str, x: int, y: int) -> None:
    cv2.putText(canvas, text, (x, y), FONT, SCALE, (0, 0, 0), 1, cv2.LINE_AA)


def _wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels of the sheet's font."""
    lines: list[str] = []
    for word in text.split():
        if lines and cv2.getTextSize(f"{lines[-1]} {word}", FONT, SCALE, 1)[0][0] <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def contact_sheet(rows: Sequence[tuple], *, picks: int = PICKS) -> np.ndarray:
    """RGB grid: per prompt its label and verdict, `picks` frames of its seed-0 clip and a rendered frame.

    `rows` holds (EvalPrompt, generated clip, rendered clip, scores) with clips uint8 (T, H, W, 3)."""
    _, first, _, _ = rows[0]
    t, h, w, _ = first.shape
    frame_ids = np.linspace(0, t - 1, min(picks, t)).round().astype(int)
    width = len(frame_ids) * (w + GAP) + REF_GAP + w + 2 * GAP
    blocks = []
    header = np.full((LINE + 8, width, 3), 255, np.uint8)
    _text(header, "generated: frames " + ", ".join(str(i + 1) for i in frame_ids), GAP, LINE)
    _text(header, "rendered", width - w - GAP, LINE)
    blocks.append(header)
    for prompt, clip, ref, scores in rows:
        verdict = "analyser: " + "  ".join(f"{f} {'ok' if scores[f] else 'NO'}" for f in FACTS)
        label = [*_wrap(f"#{prompt.index} {prompt.group}: {prompt.text}", width - 2 * GAP),
                 *_wrap(verdict, width - 2 * GAP)]
        block = np.full((len(label) * LINE + 6 + h + GAP, width, 3), 255, np.uint8)
        for i, line in enumerate(label):
            _text(block, line, GAP, (i + 1) * LINE)
        top = len(label) * LINE + 6
        for j, k in enumerate(frame_ids):
            x = GAP + j * (w + GAP)
            block[top : top + h, x : x + w] = clip[k]
        block[top : top + h, width - w - GAP : width - GAP] = ref[len(ref) // 2]
        blocks.append(block)
    return np.concatenate(blocks)


# --------------------------------------------------------------------------------------------
# Files


def write_outputs(results: dict, sheet_rows: Sequence[tuple], *, report: str | os.PathLike[str] | None,
                  json_path: str | os.PathLike[str] | None) -> None:
    """The JSON, the markdown report and (beside it, .png) the contact sheet, each written atomically."""
    if json_path is not None:
        with atomic_path(Path(json_path)) as tmp:
            tmp.write_text(json.dumps(results, indent=2) + "\n")
    if report is None:
        return
    report = Path(report)
    png = report.with_suffix(".png") if sheet_rows else None
    if png is not None:
        ok, data = cv2.imencode(".png", cv2.cvtColor(contact_sheet(sheet_rows), cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError("OpenCV could not encode the contact sheet")
        with atomic_path(png) as tmp:
            tmp.write_bytes(data.tobytes())
    with atomic_path(report) as tmp:
        tmp.write_text(render_markdown(results, png.name if png is not None else None,
                                       None if json_path is None else shown_path(json_path)))
