#!/usr/bin/env python3
"""Per-family AUCs of detector checkpoints on the data kit, under the benchmark's three conditions.

    .venv/bin/python bench/detector_families.py                      # the shipped frame model
    .venv/bin/python bench/detector_families.py --weights RUN/detector.safetensors \
        --weights weights/detector/detector.safetensors       # a candidate beside it

`bench/detector.py` pools every AI family the model trained on into one in-distribution AUC; a candidate
that gains on one family and loses on another hides there. This scores each checkpoint on the val split
(where a choice between candidates is made) and the test split (for the record), as given, after an
H.264 CRF 28 re-encode and after a 50% downscale (`detector.evaluate.CONDITIONS`), and reports the pooled
in-distribution AUC and each family's AUC against all reals of the split. Items out of a model's scope
(too small after the downscale) are left out of its AUCs. Writes docs/benchmarks/detector-families.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detector.evaluate import evaluate_detector  # noqa: E402

SPLITS = ("val", "test")


def family_aucs(weights: Path, kit: Path) -> dict[str, dict[str, dict[str, float | None]]]:
    """{split: {condition: {"in-dist": auc, family: auc, ...}}} for one checkpoint, from the benchmark's own
    scoring (`evaluate_detector`)."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for split in SPLITS:
        report = evaluate_detector(kit, weights, split=split)
        out[split] = {name: {"in-dist": result["in_distribution"]["auc"], **{
            family + (" (held out)" if family in report["held_out"] else ""): metrics["auc"]
            for family, metrics in result["per_family"].items()}} for name, result in report["conditions"].items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=Path, action="append", default=None,
                    help="a detector checkpoint (repeatable) [default: weights/detector/detector.safetensors]")
    ap.add_argument("--kit", type=Path, default=ROOT / "bench" / "out" / "detector" / "kit")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "detector-families.md")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    weights = args.weights or [ROOT / "weights" / "detector" / "detector.safetensors"]
    if not (args.kit / "kit.csv").is_file():
        sys.exit(f"error: no data kit at {args.kit} (build it with `.venv/bin/python bench/detector.py` or "
                 "detector.datakit.build_kit)")
    began = time.perf_counter()
    results = {w: family_aucs(w, args.kit) for w in weights}
    columns = sorted({k for r in results.values() for s in r.values() for c in s.values() for k in c} - {"in-dist"})
    lines = [
        "# Detector AUC per AI family",
        "",
        f"- Command: `.venv/bin/python bench/detector_families.py {' '.join(f'--weights {_show(w)}' for w in weights)}`"
        f" ({(time.perf_counter() - began) / 60:.1f} min)",
        f"- Date: {dt.date.today().isoformat()}",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPU cores, {args.threads} torch threads, no GPU, "
        f"torch {torch.__version__}",
        f"- Data: {_show(args.kit)} (kit.csv sha256/16 `{_digest(args.kit / 'kit.csv')}`); each family against "
        "all reals of the split; in-dist pools the families the model trained on",
        "",
        "| model | split | condition | in-dist | " + " | ".join(columns) + " |",
        "|---|---|---|---:|" + "---:|" * len(columns),
    ]
    for w, result in results.items():
        for split, rows in result.items():
            for condition, row in rows.items():
                lines.append(f"| `{_show(w)}` | {split} | {condition} | {_fmt(row['in-dist'])} | "
                             + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _show(path: Path) -> str:
    """A path as a reader would type it: relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
