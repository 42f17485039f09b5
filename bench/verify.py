#!/usr/bin/env python3
"""``verify_clip`` end to end on a 10 s 720p clip: wall time and peak RSS, optionally against an older revision.

    nice -n 19 .venv/bin/python bench/verify.py                       # this tree only
    nice -n 19 .venv/bin/python bench/verify.py --baseline ac481b1    # and that commit, runs interleaved

The clip is ``media.synthetic.make_test_clip`` at 1280x720, 300 frames at 30 fps (a moving square on a
gradient: cheap to decode, so decoding weighs less here than in real footage). Every run is a fresh
child process on one throw-away instance (so the same watermark keys throughout): it verifies a small
clip once (imports, the detector's weights, the keyring and the C2PA library are not per-clip cost),
resets its peak RSS, then times one ``verify_clip`` of the 720p clip. The baseline is the given
commit's tree (``git archive``, nothing in the checkout changes) run by the same interpreter; before
and after runs alternate so that the load of a shared machine falls on both. Each run also hashes
the report's watermark, detector, artifacts and verdict sections (timings left out), so the two
revisions can be checked to agree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "verify"


def status_mb(field: str) -> float:
    """A memory line of /proc/self/status: VmHWM is the peak RSS (ru_maxrss would carry the parent's
    peak across exec), VmRSS the current one."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise OSError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> bool:
    """Start VmHWM again from the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(root: Path, clip: Path, small: Path, instance: Path) -> dict:
    """One measured run, importing veriframe from ``root``, with the parent's instance (its keys)."""
    sys.path[:] = [str(root)] + [p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "bench")]
    import torch

    torch.set_num_threads(1)  # as bench/detector.py: one thread is fastest on a shared 2-core machine
    import media
    from provenance.credentials import verify_clip
    from settings import load_settings

    settings = load_settings(instance, env={})
    verify_clip(settings, small)  # warm-up
    rss_before = status_mb("VmRSS")
    reset = reset_peak_rss()
    began, cpu = time.perf_counter(), time.process_time()
    report = verify_clip(settings, clip)
    seconds, cpu_s = time.perf_counter() - began, time.process_time() - cpu
    sections = {k: report.get(k) for k in ("watermark", "detector", "artifacts", "verdict")}
    if isinstance(sections["detector"], dict):
        sections["detector"] = {k: v for k, v in sections["detector"].items() if k != "timings_s"}
    digest = hashlib.sha256(json.dumps(sections, sort_keys=True).encode()).hexdigest()[:16]
    scope = (report.get("detector") or {}).get("scope_reasons") or []
    return {"seconds": seconds, "cpu_s": cpu_s, "detector_scope": "; ".join(scope) or "in scope",
            "peak_mb": status_mb("VmHWM"), "peak_reset": reset, "rss_before_mb": rss_before, "report_sha256": digest,
            "code": str(Path(media.__file__).parents[1])}


def run_child(root: Path, clip: Path, small: Path, instance: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", str(root), str(clip), str(small), str(instance)]
    env = {k: v for k, v in os.environ.items() if k != "VERIFRAME_DETECTOR_WEIGHTS"}  # each tree's own weights
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=instance, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def export_tree(rev: str, dest: Path) -> Path:
    """The committed tree of ``rev`` under ``dest`` (git archive: the checkout is left alone)."""
    archive = dest.with_suffix(".tar")
    with archive.open("wb") as f:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, stdout=f)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    return dest


def render(results: dict[str, list[dict]], args: argparse.Namespace, clip: Path) -> str:
    label = f" --baseline {args.baseline}" if args.baseline else ""
    lines = [
        "# verify_clip end to end: a 10 s 720p clip", "",
        f"- Command: `nice -n 19 .venv/bin/python bench/verify.py{label} --repeat {args.repeat}`",
        f"- Date: {dt.date.today().isoformat()}",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other work (a model was "
        f"training in the background), no GPU, Python {platform.python_version()}, torch with 1 thread",
        f"- Clip: `media.synthetic.make_test_clip`, 1280x720, 300 frames at 30 fps, H.264 "
        f"({clip.stat().st_size / 2**20:.1f} MiB); the instance's defaults (96 watermark frames, detector on)",
        "- Each run is a fresh process, after one warm-up verify of a small clip; CPU s is the process's CPU "
        "time (all threads) over the verify, steadier than wall time on a loaded machine; peak RSS is the "
        "process's VmHWM during the measured verify (reset just before it), next to its RSS before.", "",
        "| code | run | wall s | CPU s | peak RSS during verify (MB) | RSS before (MB) | report sha256 |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, runs in results.items():
        for i, r in enumerate(runs, 1):
            peak = f"{r['peak_mb']:.0f}" + ("" if r["peak_reset"] else " (process peak)")
            lines.append(f"| {name} | {i} | {r['seconds']:.2f} | {r['cpu_s']:.2f} | {peak} | "
                         f"{r['rss_before_mb']:.0f} | `{r['report_sha256']}` |")
    lines += ["", "| code | median wall s | min | max | median CPU s | max peak RSS (MB) |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, runs in results.items():
        s = [r["seconds"] for r in runs]
        lines.append(f"| {name} | {statistics.median(s):.2f} | {min(s):.2f} | {max(s):.2f} | "
                     f"{statistics.median(r['cpu_s'] for r in runs):.2f} | {max(r['peak_mb'] for r in runs):.0f} |")
    digests = {r["report_sha256"] for runs in results.values() for r in runs}
    scopes = sorted({r["detector_scope"] for runs in results.values() for r in runs})
    lines += ["", f"The detector's model on this clip: {', '.join(scopes)} (the signals run either way)."]
    lines += ["", "Reports agree across every run." if len(digests) == 1 else
              f"**Reports differ**: {len(digests)} distinct digests.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=4, metavar=("ROOT", "CLIP", "SMALL", "INSTANCE"), help=argparse.SUPPRESS)
    ap.add_argument("--baseline", help="a commit to measure too, e.g. the one before a change")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "verify.md")
    args = ap.parse_args()
    if args.child:
        root, clip, small, instance = map(Path, args.child)
        print(json.dumps(child(root, clip, small, instance)))
        return
    sys.path.insert(0, str(ROOT))
    from media.synthetic import make_test_clip
    from settings import init_instance

    OUT.mkdir(parents=True, exist_ok=True)
    clip, small = OUT / "synthetic-10s-720p.mp4", OUT / "synthetic-small.mp4"
    if not clip.is_file():
        make_test_clip(clip, width=1280, height=720, frames=300, fps=30)
    if not small.is_file():
        make_test_clip(small, width=320, height=180, frames=16)
    with tempfile.TemporaryDirectory(prefix="vf-bench-verify-") as tmp:
        instance = init_instance(Path(tmp) / "instance")[0]  # one set of watermark keys for every run
        roots = {"this tree": ROOT}
        if args.baseline:
            rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline], check=True,
                                 capture_output=True, text=True).stdout.strip()
            roots = {f"baseline {rev}": export_tree(args.baseline, Path(tmp) / "baseline"), **roots}
        results: dict[str, list[dict]] = {name: [] for name in roots}
        for _ in range(args.repeat):
            for name, root in roots.items():
                results[name].append(run_child(root, clip, small, instance))
                print(name, json.dumps(results[name][-1]), flush=True)
    report = render(results, args, clip)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
