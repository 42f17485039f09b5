#!/usr/bin/env python3
"""Generator benchmark: denoiser speed against diffusers' Latte, Patch n' Pack, sampling cost, memory.

    .venv/bin/pip install diffusers          # the anchor (LatteTransformer3DModel); bench only
    .venv/bin/python bench/generator.py      # writes docs/benchmarks/generator.md and bench/out/generator.json
    .venv/bin/python bench/generator.py --quick   # fewer repetitions (a smoke run)

Sections (all on random weights: speed and memory do not depend on training):
1. Peak: this CPU's fp32 and bf16 matmul throughput, measured in the same run.
2. Denoiser vs Latte: one forward at matched width, blocks, heads and token count, fp32 and bf16
   autocast, the two models timed alternately. FLOPs = matmuls (torch's FLOP counter) plus attention
   (counted at the `scaled_dot_product_attention` call, which the counter does not see on CPU).
3. Patch n' Pack: mixed clip sizes packed into one sequence vs padded to the largest size.
4. Sampling cost vs steps and vs frames (tiny, CFG batched), and the peak memory (max RSS of a fresh
   process) and wall time of a whole `tiny` generation at 128x128, 2 s, 16 steps.
5. On a CUDA machine: B and XL forward in bf16 with torch.compile, and model FLOPs utilisation.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generator.autoencoder import AE_models  # noqa: E402
from generator.dit import DiTConfig, VideoDiT, dit_config  # noqa: E402
from generator.flow import RectifiedFlow  # noqa: E402
from generator.generate import VideoGenerator  # noqa: E402
from generator.sampler import SamplerConfig, initial_noise, sample  # noqa: E402
from generator.text import HashingTextEncoder, TextEmbedding  # noqa: E402

# ------------------------------------------------------------------------------------ helpers


@contextlib.contextmanager
def attention_flops() -> Iterator[list[int]]:
    """Count 4 * B * heads * Lq * Lk * Dh FLOPs per `F.scaled_dot_product_attention` call (QK^T and AV)."""
    counter, original = [0], F.scaled_dot_product_attention

    def counting(q, k, v, *args, **kwargs):
        counter[0] += 4 * q.shape[:-2].numel() * q.shape[-2] * k.shape[-2] * q.shape[-1]
        return original(q, k, v, *args, **kwargs)

    F.scaled_dot_product_attention = counting
    try:
        yield counter
    finally:
        F.scaled_dot_product_attention = original


def count_flops(fn: Callable[[], object]) -> int:
    with attention_flops() as attn, FlopCounterMode(display=False) as fc, torch.no_grad():
        fn()
    return fc.get_total_flops() + attn[0]


def timed(fn: Callable[[], object], sync: Callable[[], None] = lambda: None) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def alternate(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each fn, run in turn (A B A B ...) so machine load hits all alike."""
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(reps):
            for name, fn in fns.items():
                times[name].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def matmul_peak(dtype: torch.dtype, n: int, reps: int, device: str = "cpu") -> float:
    """Best FLOP/s of an n x n x n matmul in `dtype`."""
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.matmul(a, b)
    best = min(timed(lambda: torch.matmul(a, b), sync) for _ in range(reps))
    return 2 * n**3 / best


def cpu_bf16_flags() -> str:
    """The CPU's native bf16 features from /proc/cpuinfo ("none" if it has neither)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    found = [f for f in ("avx512_bf16", "amx_bf16") if f in flags.split()]
    return ", ".join(found) or "none (no avx512_bf16, no amx_bf16)"


def autocast_linear_peak(n: int, reps: int) -> float:
    """Best FLOP/s of an n x n x n `F.linear` under CPU bf16 autocast: the path the models take, which on
    CPUs without native bf16 can be faster than a plain bf16 matmul."""
    a, w = torch.randn(n, n), torch.randn(n, n)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        F.linear(a, w)
        best = min(timed(lambda: F.linear(a, w)) for _ in range(reps))
    return 2 * n**3 / best


def wake(model: torch.nn.Module) -> torch.nn.Module:
    """Fill the zero-initialised (adaLN-Zero) weights with small noise: a fresh DiT outputs exactly 0,
    which would make any output comparison vacuous. Speed is unaffected."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    return model


def linear_fit(xs: list[float], ys: list[float]) -> dict:
    """Least-squares y = a + b x, with R^2."""
    n, mx, my = len(xs), statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys) or 1.0
    return {"intercept": a, "slope": b, "r2": 1 - ss_res / ss_tot, "n": n}


def text_for(batch: int, dim: int = 384, tokens: int = 12) -> TextEmbedding:
    return HashingTextEncoder(dim=dim).encode([" ".join(["word"] * tokens)] * batch)


# ------------------------------------------------------------------------------------ sections


def section_vs_latte(reps: int) -> dict:
    """Our denoiser against diffusers' LatteTransformer3DModel, both 384 wide, 12 blocks, 6 heads."""
    from diffusers import LatteTransformer3DModel

    width, heads, blocks, frames, size = 384, 6, 12, 4, 32  # 4 x (32/2)^2 = 1024 tokens
    torch.manual_seed(0)
    config = dict(in_channels=4, patch_size=(1, 2, 2), width=width, depth=blocks, heads=heads, text_dim=384)
    full = wake(VideoDiT(DiTConfig(**config)).eval())
    factorized = wake(VideoDiT(DiTConfig(**config, attention="factorized")).eval())
    latte = LatteTransformer3DModel(  # Latte-1's layout; num_layers spatial + num_layers temporal blocks
        num_attention_heads=heads, attention_head_dim=width // heads, in_channels=4, out_channels=4,
        num_layers=blocks // 2, cross_attention_dim=width, attention_bias=True, sample_size=size, patch_size=2,
        activation_fn="gelu-approximate", norm_type="ada_norm_single", norm_elementwise_affine=False,
        norm_eps=1e-6, caption_channels=384, video_length=frames,
    ).eval()
    x = torch.randn(1, 4, frames, size, size)
    text = text_for(1)
    t = torch.tensor([0.5])
    runs = {
        "veriframe (full attention)": lambda: full(x, t, text),
        "veriframe (factorized)": lambda: factorized(x, t, text),
        "latte": lambda: latte(x, timestep=torch.tensor([500]), encoder_hidden_states=text.tokens,
                               return_dict=False),
    }
    tokens = frames * (size // 2) ** 2
    result = {"width": width, "blocks": blocks, "heads": heads, "tokens": tokens, "models": {}}
    flops = {name: count_flops(fn) for name, fn in runs.items()}
    params = {"veriframe (full attention)": full.num_params(), "veriframe (factorized)": factorized.num_params(),
              "latte": sum(p.numel() for p in latte.parameters())}
    for precision in ("fp32", "bf16"):
        ctx = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext())
        with ctx:
            secs = alternate(runs, reps)
        for name, s in secs.items():
            result["models"].setdefault(name, {"params": params[name], "flops": flops[name]})[precision] = {
                "seconds": s, "tokens_per_s": tokens / s, "flops_per_s": flops[name] / s,
            }
    return result


def section_packing(reps: int) -> dict:
    """128x128x17, 96x160x17 and 160x96x9 clips (4x8x8 latents) through the tiny DiT."""
    sizes = [(5, 16, 16), (5, 12, 20), (3, 20, 12)]
    torch.manual_seed(0)
    model = wake(VideoDiT(dit_config("tiny", in_channels=8)).eval())
    xs = [torch.randn(8, *s) for s in sizes]
    t = torch.tensor([0.3, 0.6, 0.9])
    text = text_for(3)
    big = tuple(max(s[i] for s in sizes) for i in range(3))
    padded = torch.zeros(3, 8, *big)
    for i, (x, (T, H, W)) in enumerate(zip(xs, sizes, strict=True)):
        padded[i, :, :T, :H, :W] = x
    runs = {
        "packed (split attention)": lambda: model.forward_packed(xs, list(t), text, attention="split"),
        "packed (block-diagonal mask)": lambda: model.forward_packed(xs, list(t), text, attention="mask"),
        "padded to the largest": lambda: model(padded, t, text, sizes=sizes),
    }
    secs = alternate(runs, reps)
    with torch.no_grad():
        packed = model.forward_packed(xs, list(t), text)
        pad_out = model(padded, t, text, sizes=sizes)
    diff = max((p - pad_out[i, :, :T, :H, :W]).abs().max().item()
               for i, (p, (T, H, W)) in enumerate(zip(packed, sizes, strict=True)))
    return {"sizes": sizes, "padded_to": big, "packed_tokens": sum(s[0] * s[1] * s[2] // 4 for s in sizes),
            "padded_tokens": 3 * big[0] * big[1] * big[2] // 4, "seconds": secs, "max_abs_diff": diff,
            "speedup": secs["padded to the largest"] / secs["packed (split attention)"]}


def section_sampling(reps: int) -> dict:
    """Seconds to sample latents with the tiny DiT (CFG 5, cond + uncond batched), 128x128."""
    torch.manual_seed(0)
    model = wake(VideoDiT(dit_config("tiny", in_channels=8)).eval())
    text, uncond = text_for(1), text_for(1, tokens=2)
    flow = RectifiedFlow()

    def run(steps: int, latent_frames: int) -> float:
        noise = initial_noise((1, 8, latent_frames, 16, 16), 0)
        cfg = SamplerConfig(steps=steps, cfg=5.0)
        return min(timed(lambda: sample(model, noise, text, flow=flow, config=cfg, uncond=uncond))
                   for _ in range(reps))

    run(2, 5)  # warm-up
    by_steps = {s: run(s, 5) for s in (4, 8, 16, 32)}  # 17 frames
    by_frames = {1 + 4 * (t - 1): run(8, t) for t in (3, 5, 9, 17)}  # 9, 17, 33, 65 frames
    return {"by_steps": by_steps, "by_frames": by_frames,
            "fit_steps": linear_fit(list(by_steps), list(by_steps.values())),
            "fit_frames": linear_fit(list(by_frames), list(by_frames.values()))}


def child_generate() -> None:
    """Run in a fresh process: one whole default generation; prints wall time and max RSS."""
    torch.manual_seed(0)
    ae, dit = AE_models["4x8x8"](), VideoDiT(dit_config("tiny", in_channels=8))
    try:
        from generator.text import load_text_encoder

        encoder, spec = load_text_encoder("minilm"), "minilm"
        encoder.encode(["warm-up"])
    except Exception:  # noqa: BLE001 - the bench still measures the rest without MiniLM
        encoder, spec = HashingTextEncoder(), "hash"
    gen = VideoGenerator(ae, dit, encoder)
    start = time.perf_counter()
    frames = gen.generate("a red circle moving right on a black background", width=128, height=128, frames=16,
                          steps=16, cfg=5.0, seed=0)
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": wall, "max_rss_bytes": rss, "frames": list(frames.shape), "text": spec,
                      "ae_params": sum(p.numel() for p in ae.parameters()), "dit_params": dit.num_params()}))


def section_generation(threads: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child-generate", "--threads", str(threads)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _gpu_model(name: str, reps: int, peak: float) -> dict:
    torch.manual_seed(0)
    model = VideoDiT(dit_config(name, in_channels=16)).cuda().eval()
    x, t = torch.randn(2, 16, 8, 64, 64, device="cuda"), torch.rand(2, device="cuda")
    text = text_for(2).to("cuda")
    compiled = torch.compile(model)
    flops = count_flops(lambda: model(x, t, text))
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):
            compiled(x, t, text)
        secs = statistics.median(timed(lambda: compiled(x, t, text), torch.cuda.synchronize) for _ in range(reps))
    return {"params": model.num_params(), "flops": flops, "seconds": secs, "tokens_per_s": 2 * 8192 / secs,
            "mfu_measured_peak": flops / secs / peak, "mfu_h100_989tf": flops / secs / 989e12}


def section_gpu(reps: int) -> dict:
    """B and XL forward, bf16 autocast, torch.compile, 8 x 32 x 32 = 8192 tokens, batch 2."""
    peak = matmul_peak(torch.bfloat16, 8192, 10, "cuda")
    result = {"device": torch.cuda.get_device_name(), "bf16_matmul_peak": peak, "models": {}}
    for name in ("B", "XL"):
        result["models"][name] = _gpu_model(name, reps, peak)
        torch.cuda.empty_cache()
    return result


# ------------------------------------------------------------------------------------ report


def report(r: dict) -> str:
    p = r["peak"]
    lines = [
        "# Generator benchmark",
        "",
        f"Run {r['date']} on {r['machine']}, torch {r['torch']}, {r['threads']} CPU threads, load average "
        f"{', '.join(f'{x:.1f}' for x in r['load_average'])} at the start "
        "(`bench/generator.py`; raw numbers in `bench/out/generator.json`). Random weights: speed and "
        "memory do not depend on training.",
        "",
        "**Load.** The machine was shared with other benchmarks (load average above) while this ran, so "
        "absolute numbers (peaks included) move by 20-50% from run to run; one thread avoids the far worse "
        "slow-down of two threads competing with the other jobs. Comparisons are made within the run, with "
        "the compared models timed alternately, and are the numbers to trust.",
        "",
        *targets(r),
        "## Peak matmul throughput (this CPU, this run)",
        "",
        f"fp32: {p['fp32'] / 1e9:.1f} GFLOP/s; bf16: {p['bf16'] / 1e9:.1f} GFLOP/s (best of "
        f"{r['reps']} 1024^3 matmuls; for bf16 the faster of a bf16 matmul and an autocast linear). "
        f"CPU bf16 support: {r.get('cpu_bf16', 'unknown')}; without AVX512-BF16 or AMX, bf16 matmuls are "
        "emulated and bf16 autocast is slower than fp32 for every model here.",
        "",
    ]
    v = r["vs_latte"]
    lines += [
        "## Denoiser forward vs diffusers' LatteTransformer3DModel",
        "",
        f"Both {v['width']} wide, {v['blocks']} blocks (Latte: {v['blocks'] // 2} spatial + {v['blocks'] // 2} "
        f"temporal), {v['heads']} heads, {v['tokens']} tokens (4 latent frames x 16 x 16 patches), "
        "batch 1, timed alternately; median of the runs.",
        "",
        "| model | params | GFLOP / forward | fp32 s | fp32 tokens/s | fp32 % of fp32 peak "
        "| bf16 s | bf16 tokens/s | bf16 % of bf16 peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in v["models"].items():
        lines.append(
            f"| {name} | {m['params'] / 1e6:.1f}M | {m['flops'] / 1e9:.1f} | {m['fp32']['seconds']:.3f} | "
            f"{m['fp32']['tokens_per_s']:.0f} | {100 * m['fp32']['flops_per_s'] / p['fp32']:.0f}% | "
            f"{m['bf16']['seconds']:.3f} | {m['bf16']['tokens_per_s']:.0f} | "
            f"{100 * m['bf16']['flops_per_s'] / p['bf16']:.0f}% |"
        )
    latte = v["models"]["latte"]

    def ratio(name: str, precision: str) -> float:
        return v["models"][name][precision]["tokens_per_s"] / latte[precision]["tokens_per_s"]

    lines += [
        "",
        "Speed ratio against Latte (tokens/s): "
        + "; ".join(f"{name}: fp32 {ratio(name, 'fp32'):.2f}x, bf16 {ratio(name, 'bf16'):.2f}x"
                    for name in v["models"] if name != "latte") + ".",
        "",
        "`factorized` has Latte's layout (blocks alternate attention within a frame and across frames, text "
        "cross-attention in the spatial blocks only) and so its FLOPs; `full` attends over all 1024 tokens in "
        "every block (Sora-style spacetime attention, the default), which costs the extra attention FLOPs shown.",
        "",
    ]
    k = r["packing"]
    lines += [
        "## Patch n' Pack vs padding",
        "",
        f"Three clips, latents {k['sizes']} (128x128x17, 96x160x17, 160x96x9 at 4x8x8), tiny DiT: packed "
        f"into one sequence of {k['packed_tokens']} tokens, or padded to {tuple(k['padded_to'])} each "
        f"({k['padded_tokens']} tokens, padding masked out as keys).",
        "",
        "| layout | seconds |",
        "|---|---|",
        *[f"| {name} | {s:.3f} |" for name, s in k["seconds"].items()],
        "",
        f"Packed (split) is {k['speedup']:.2f}x faster than padded; largest output difference "
        f"{k['max_abs_diff']:.1e} (fp32).",
        "",
    ]
    s = r["sampling"]
    lines += [
        "## Sampling cost (tiny DiT, 128x128, CFG batched, Euler)",
        "",
        "| steps (17 frames) | seconds | seconds / step |",
        "|---|---|---|",
        *[f"| {n} | {sec:.2f} | {sec / int(n):.3f} |" for n, sec in s["by_steps"].items()],
        "",
        "| frames (8 steps) | seconds | seconds / frame |",
        "|---|---|---|",
        *[f"| {n} | {sec:.2f} | {sec / int(n):.3f} |" for n, sec in s["by_frames"].items()],
        "",
        f"Least-squares fits: seconds = {s['fit_steps']['intercept']:.2f} + {s['fit_steps']['slope']:.3f} x steps "
        f"(R^2 {s['fit_steps']['r2']:.3f}); seconds = {s['fit_frames']['intercept']:.2f} + "
        f"{s['fit_frames']['slope']:.3f} x frames (R^2 {s['fit_frames']['r2']:.3f}). Full attention makes the "
        "per-step cost grow faster than linearly in frames once attention dominates (quadratic in tokens); at "
        "these sizes the linear layers dominate.",
        "",
    ]
    g = r["generation"]
    lines += [
        "## A whole `tiny` generation",
        "",
        f"128x128, 16 frames (2 s at 8 fps), 16 Euler steps, CFG 5, text encoder `{g['text']}`, autoencoder "
        f"4x8x8 ({g['ae_params'] / 1e6:.1f}M), DiT tiny ({g['dit_params'] / 1e6:.1f}M), fresh process: "
        f"**{g['seconds']:.1f} s**, peak memory (max RSS) **{g['max_rss_bytes'] / 2**30:.2f} GiB**.",
        "",
    ]
    if r.get("gpu"):
        gpu = r["gpu"]
        lines += ["## GPU", "", f"{gpu['device']}, bf16 autocast, torch.compile, batch 2 x 8192 tokens; measured bf16 "
                  f"matmul peak {gpu['bf16_matmul_peak'] / 1e12:.0f} TFLOP/s.", "",
                  "| model | params | TFLOP / forward | seconds | tokens/s | MFU (measured peak) | MFU (989 TF) |",
                  "|---|---|---|---|---|---|---|"]
        for name, m in gpu["models"].items():
            lines.append(f"| {name} | {m['params'] / 1e6:.0f}M | {m['flops'] / 1e12:.2f} | {m['seconds']:.4f} | "
                         f"{m['tokens_per_s']:.0f} | {100 * m['mfu_measured_peak']:.0f}% | "
                         f"{100 * m['mfu_h100_989tf']:.0f}% |")
    else:
        lines += ["## GPU", "", "Not run: no CUDA device in this run.", ""]
    return "\n".join(lines) + "\n"


def targets(r: dict) -> list[str]:
    """Issue 4's targets, each with this run's verdict."""
    p, v, k, s, g = r["peak"], r["vs_latte"], r["packing"], r["sampling"], r["generation"]
    latte = v["models"]["latte"]

    def ok(flag: bool) -> str:
        return "met" if flag else "**not met**"

    rows = []
    for name, m in v["models"].items():
        if name == "latte":
            continue
        for prec in ("fp32", "bf16"):
            ratio = m[prec]["tokens_per_s"] / latte[prec]["tokens_per_s"]
            rows.append(f"| {name} no slower than Latte, {prec} | {ratio:.2f}x | {ok(ratio >= 0.98)} |")
        frac = m["bf16"]["flops_per_s"] / p["bf16"]
        rows.append(f"| {name} bf16 >= 75% of measured bf16 matmul peak | {100 * frac:.0f}% | {ok(frac >= 0.75)} |")
    rows += [
        f"| Patch n' Pack >= 1.3x faster than padding, equal outputs | {k['speedup']:.2f}x, max diff "
        f"{k['max_abs_diff']:.0e} | {ok(k['speedup'] >= 1.3 and k['max_abs_diff'] < 1e-4)} |",
        f"| sampling linear in steps | R^2 {s['fit_steps']['r2']:.3f} | {ok(s['fit_steps']['r2'] >= 0.98)} |",
        f"| sampling about linear in frames | R^2 {s['fit_frames']['r2']:.3f} | {ok(s['fit_frames']['r2'] >= 0.95)} |",
        f"| `tiny` generation peak memory < 2 GB | {g['max_rss_bytes'] / 1e9:.2f} GB | "
        f"{ok(g['max_rss_bytes'] < 2e9)} |",
    ]
    return ["## Targets", "", "| target | this run | verdict |", "|---|---|---|", *rows,
            "", "\"No slower\" allows 2% for timing noise. GPU targets: see the GPU section.", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "generator.md")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from bench/out/generator.json")
    parser.add_argument("--child-generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report_only:
        args.out.write_text(report(json.loads((ROOT / "bench" / "out" / "generator.json").read_text())))
        return
    torch.set_num_threads(args.threads)
    if args.child_generate:
        child_generate()
        return
    reps = 3 if args.quick else 7
    r = {"date": dt.date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, "
         f"{os.cpu_count()} cores", "torch": torch.__version__, "threads": args.threads, "reps": reps}
    print("peak ...", flush=True)
    r["load_average"] = os.getloadavg()
    r["cpu_bf16"] = cpu_bf16_flags()
    r["peak"] = {"fp32": matmul_peak(torch.float32, 1024, reps),
                 "bf16": max(matmul_peak(torch.bfloat16, 1024, reps), autocast_linear_peak(1024, reps))}
    print("denoiser vs Latte ...", flush=True)
    r["vs_latte"] = section_vs_latte(reps)
    print("packing ...", flush=True)
    r["packing"] = section_packing(reps)
    print("sampling ...", flush=True)
    r["sampling"] = section_sampling(max(1, reps // 3))
    print("generation ...", flush=True)
    r["generation"] = section_generation(args.threads)
    if torch.cuda.is_available():
        print("gpu ...", flush=True)
        r["gpu"] = section_gpu(reps)
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "generator.json").write_text(json.dumps(r, indent=2, default=str) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(r))
    print(report(r))


if __name__ == "__main__":
    main()
