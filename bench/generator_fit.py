#!/usr/bin/env python3
"""Does a generator bundle memorise its training clips? Velocity loss on clips it trained on vs fresh ones.

    .venv/bin/python bench/generator_fit.py                          # the shipped weights/generator-tiny
    .venv/bin/python bench/generator_fit.py --bundle runs/dit9 --bundle weights/generator-tiny

The DiT trains on `latent_cache` batches of Shapes-world clips coded once (data seed 0, batches 0, 1, ...),
seen many times each. This scores batches 0..N-1 (in every cache) and batches 5000.. (never drawn) with the
rectified-flow training loss under fixed noise draws, no dropped captions and no given frames, so the
two numbers differ only by the clips. A large gap says the model memorised its clips and more data would
help; a small one that it is limited elsewhere (capacity, the latent). Writes
docs/benchmarks/generator-fit.md (one row per bundle; rows of other bundles are kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generator.checkpoint import load_component, read_bundle  # noqa: E402
from generator.data.batches import BatchSpec, ClipBatches, ShapesSource  # noqa: E402
from generator.flow import FlowConfig, RectifiedFlow  # noqa: E402
from generator.generate import clips_to_tensor  # noqa: E402
from generator.text import load_text_encoder  # noqa: E402

FRESH_START = 5000  # far past any latent cache (the largest recipe codes 240 batches)
OUT = ROOT / "docs" / "benchmarks" / "generator-fit.md"


@torch.no_grad()
def fit(bundle_dir: Path, batches: int, draws: int) -> dict[str, float]:
    bundle = read_bundle(bundle_dir)
    training = bundle.get("training", {}).get("config", {})
    ae = load_component(bundle_dir / bundle["autoencoder"], "autoencoder")
    dit = load_component(bundle_dir / bundle["dit"], "dit")
    text = load_text_encoder(bundle["text_encoder"], "cpu")
    flow = RectifiedFlow(FlowConfig.from_dict(bundle.get("flow") or {}))
    spec = BatchSpec(training.get("batch_size", 8), training.get("sizes", [[128, 128]]), training.get("frames", 17),
                     training.get("fps", 8.0))
    data = ClipBatches(ShapesSource(training.get("data_seed", 0)), spec, training.get("data_seed", 0))

    def loss(b: int) -> float:
        clips, captions = data.batch(b)
        z, emb = ae.encode_latents(clips_to_tensor(clips)), text.encode(captions)
        return float(np.mean([flow.training_loss(dit, z, emb, generator=torch.Generator().manual_seed(1000 + r)).item()
                              for r in range(draws)]))

    seen = [loss(b) for b in range(batches)]
    fresh = [loss(b) for b in range(FRESH_START, FRESH_START + batches)]
    return {"seen": float(np.mean(seen)), "fresh": float(np.mean(fresh)),
            "seen_sem": float(np.std(seen) / np.sqrt(batches)), "fresh_sem": float(np.std(fresh) / np.sqrt(batches)),
            "trained_on": (f"{training['latent_cache'] * spec.batch_size}" if training.get("latent_cache")
                           else "streamed (every batch once)")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, action="append", help="generator bundle folder (repeatable)")
    ap.add_argument("--batches", type=int, default=8, help="batches of 8 clips on each side")
    ap.add_argument("--draws", type=int, default=4, help="fixed noise draws per batch")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bundles = args.bundle or [ROOT / "weights" / "generator-tiny"]
    header = ["# Generator fit: trained-on clips vs fresh clips", "",
              "Velocity loss (rectified flow, fixed noise draws, full captions, no given frames) of each bundle on "
              "Shapes-world batches its DiT trained on and on batches it never drew (`bench/generator_fit.py`). "
              "The gap is memorisation; the fresh loss is what generalises.", "",
              "| bundle | clips trained on | loss, trained-on batches | loss, fresh batches | gap | date | command | "
              "machine |", "|---|---:|---:|---:|---:|---|---|---|"]
    rows = {}
    if OUT.is_file():  # keep other bundles' rows
        for line in OUT.read_text().splitlines():
            if line.startswith("| `"):
                rows[line.split("|")[1].strip()] = line
    for bundle in bundles:
        began = time.perf_counter()
        m = fit(bundle, args.batches, args.draws)
        name = f"`{bundle.resolve().relative_to(ROOT) if bundle.resolve().is_relative_to(ROOT) else bundle}`"
        command = f"`bench/generator_fit.py --bundle {bundle} --batches {args.batches} --draws {args.draws}`"
        rows[name] = (f"| {name} | {m['trained_on']} | {m['seen']:.4f} ± {m['seen_sem']:.4f} | "
                      f"{m['fresh']:.4f} ± {m['fresh_sem']:.4f} | {m['fresh'] - m['seen']:+.4f} | "
                      f"{dt.date.today().isoformat()} | {command} ({(time.perf_counter() - began) / 60:.1f} min) | "
                      f"{platform.machine()}, {args.threads} CPU threads |")
        print(json.dumps({"bundle": str(bundle), **m}), flush=True)
    OUT.write_text("\n".join([*header, *rows.values()]) + "\n\n± is the standard error over batches (each the mean "
                   f"of {args.draws} draws); the same batches and draws for every bundle.\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
