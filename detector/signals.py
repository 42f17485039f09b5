"""Training-free forensic signals, each a documented computation with its own score and threshold.

Every signal is evidence, reported separately (never folded into the detector's score): it says
what it measured, how, and whether that crossed its threshold. Thresholds were set on the project's
real footage (the data kit's real side and bundled clips, see docs/detector.md) so that real clips
stay below them; they are deliberately conservative, because the verdict treats a flag as a reason
for doubt, not as proof.

Inputs are luma frames (H, W) as float32 in [0, 255]: ``frames`` spread over the clip and
``windows``, short runs of consecutive frames, for the temporal signals.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SIGNAL_VERSION = 1


@dataclass
class Signal:
    """One signal's result; ``score`` is None when the input is out of this signal's scope."""

    name: str
    score: float | None
    threshold: float
    flagged: bool
    summary: str
    computation: str
    details: dict[str, Any] = field(default_factory=dict)
    version: int = SIGNAL_VERSION

    def __post_init__(self) -> None:
        # Plain Python types only: the report is JSON (numpy's bool_ is not serialisable).
        self.flagged = bool(self.flagged)
        self.score = None if self.score is None else float(self.score)
        self.threshold = float(self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- 1. periodic peaks in the residual spectrum -------------------------------------------------

SPECTRAL_COMPUTATION = (
    "Per axis, residual maps of luma: |first difference| (nearest-neighbour upsampling repeats pixels, "
    "so every other difference is zero) and |second difference [1, -2, 1]| (linear and cubic "
    "interpolation put new pixels on the line between old ones); each map is divided by its mean. "
    "P(f) = mean over rows (for x; columns for y) and frames of |FFT|^2 of the map minus its mean. "
    "peak(f) = 10 log10(P(f) / median of P over f +- 12 bins without f +- 1). For periods 2, 3, 4 "
    "(resampling by 2, 1.5 or 3, 4) the peak is the mean of the x and y axes; a peak counts only if it "
    "exceeds the 8-pixel block-coding grid's own fundamental (1/8, 3/8) by 3 dB, since JPEG and MPEG "
    "block edges put harmonics at every multiple of 1/8. score = the largest counted peak in dB."
)
SPECTRAL_THRESHOLD_DB = 8.0
_PERIOD_FREQS = {2: (1 / 2,), 3: (1 / 3,), 4: (1 / 4,)}


def _axis_spectrum(frames: Sequence[np.ndarray], axis: int, n: int) -> np.ndarray:
    """Row-averaged (axis=1) or column-averaged (axis=0) power spectrum of the difference maps (n//2+1)."""
    window = np.hanning(n)
    power = np.zeros(n // 2 + 1)
    for g in frames:
        g = g.astype(np.float32).T if axis == 0 else g.astype(np.float32)
        d1 = np.abs(np.diff(g, axis=1))[:, :n]
        d2 = np.abs(g[:, 2:] - 2 * g[:, 1:-1] + g[:, :-2])[:, :n]
        for m in (d1, d2):
            m = m / (m.mean() + 1e-6)
            m = (m - m.mean(axis=1, keepdims=True)) * window
            power += (np.abs(np.fft.rfft(m, axis=1)) ** 2).mean(axis=0)
    return power


def _peak_db(power: np.ndarray, freq: float, n: int) -> float:
    k = round(freq * n)
    lo, hi = max(1, k - 12), min(n // 2, k + 12)
    around = [power[i] for i in range(lo, hi + 1) if abs(i - k) > 1]
    return float(10 * np.log10((power[max(1, k - 1) : k + 2].max() + 1e-12) / (np.median(around) + 1e-12)))


def spectral_peaks(frames: Sequence[np.ndarray], threshold_db: float = SPECTRAL_THRESHOLD_DB) -> Signal:
    """Upsampling traces: periodic peaks in the spectrum of directional residuals."""
    name = "spectral_peaks"
    size = min(min(f.shape[:2]) for f in frames) if frames else 0
    if size < 66:
        return Signal(name, None, threshold_db, False, "frame too small for a spectrum (< 66 px)",
                      SPECTRAL_COMPUTATION)
    n = min(size - 2, 1024) // 8 * 8  # a multiple of 8 puts every period's frequency on a bin
    spectra = {ax: _axis_spectrum(frames, ax, n) for ax in (0, 1)}
    block = max(np.mean([_peak_db(spectra[ax], f, n) for ax in (0, 1)]) for f in (1 / 8, 3 / 8))
    peaks, counted = {}, {}
    for period, freqs in _PERIOD_FREQS.items():
        value = max(float(np.mean([_peak_db(spectra[ax], f, n) for ax in (0, 1)])) for f in freqs)
        peaks[str(period)] = round(value, 2)
        if value > block + 3.0:
            counted[str(period)] = value
    best = max(counted, key=counted.get, default=None)
    score = counted[best] if best else 0.0
    flagged = score > threshold_db
    summary = (f"periodic residual peak of {score:.1f} dB at period {best} px (resampling trace)" if flagged
               else f"no periodic residual peak above {threshold_db:.0f} dB (max counted {score:.1f} dB)")
    details = {"n": n, "frames": len(frames), "block_grid_db": round(float(block), 2), "peaks_db": peaks}
    return Signal(name, round(score, 3), threshold_db, flagged, summary, SPECTRAL_COMPUTATION, details)


# --- 2. temporal flicker --------------------------------------------------------------------------

FLICKER_COMPUTATION = (
    "Luma downscaled (area) to at most 256 px wide, never under 32 px tall; for each frame t of a run of "
    "consecutive frames, frames t-1 and t+1 are warped onto t with Farneback optical flow, and the motion-compensated "
    "second-order difference d2 = warp(x[t-1]) + warp(x[t+1]) - 2 x[t] is averaged over 8x8 blocks "
    "(sensor noise averages out, smooth motion is compensated, what is left is change that reverses "
    "frame to frame). score = median over t of the 75th percentile over blocks of |d2|, in grey levels."
)
FLICKER_THRESHOLD = 3.0


@dataclass(frozen=True)
class CompensatedStep:
    """Frame t of a run of consecutive frames with its neighbours warped onto it (optical flow), all luma
    float32 at the signal's working size (at most 256 px wide, at least 32 px tall). Shared by
    `temporal_flicker` and the learned temporal head (`detector.temporal`): one Farneback pass serves both."""

    prev: np.ndarray  # warp(x[t-1]) onto x[t]
    cur: np.ndarray  # x[t]
    next: np.ndarray  # warp(x[t+1]) onto x[t]
    reliable: np.ndarray | None = None  # bool: both flows pass the forward-backward check (when asked for)

    @property
    def d2(self) -> np.ndarray:
        """The motion-compensated second-order difference: change that reverses from frame to frame."""
        return self.prev + self.next - 2 * self.cur


def block_means(a: np.ndarray, size: int = 8) -> np.ndarray:
    """``a`` averaged over non-overlapping ``size x size`` blocks (the edge remainder is dropped)."""
    h, w = a.shape[0] // size * size, a.shape[1] // size * size
    return a[:h, :w].reshape(h // size, size, w // size, size).mean(axis=(1, 3))


def _runs(windows: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The windows the temporal computations can use: at least 3 frames of at least 32 px."""
    return [w for w in windows if w.shape[0] >= 3 and min(w.shape[1:]) >= 32]


def compensated_steps(windows: Sequence[np.ndarray], *, reliability: bool = False) -> list[CompensatedStep]:
    """Every inner frame of every run (>= 3 frames of >= 32 px) with both neighbours motion-compensated;
    ``reliability`` also marks the pixels whose flows pass a forward-backward check (twice the flow
    work: occlusions and failed flow on fast or spinning objects look like flicker without it)."""
    steps: list[CompensatedStep] = []
    for run in _runs(windows):
        # at most 256 px wide, but never under 32 px tall: a 2048x32 strip keeps whole 8x8 blocks
        scale = min(1.0, max(256 / run.shape[2], 32 / run.shape[1]))
        small = [cv2.resize(f.astype(np.float32), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                 if scale < 1 else f.astype(np.float32) for f in run]
        u8 = [np.clip(f, 0, 255).astype(np.uint8) for f in small]
        for t in range(1, len(small) - 1):
            (prev, ok_p), (nxt, ok_n) = (_warp(small[s], u8[s], u8[t], reliability) for s in (t - 1, t + 1))
            steps.append(CompensatedStep(prev, small[t], nxt, ok_p & ok_n if reliability else None))
    return steps


def temporal_flicker(windows: Sequence[np.ndarray], threshold: float = FLICKER_THRESHOLD, *,
                     steps: Sequence[CompensatedStep] | None = None) -> Signal:
    """Frame-to-frame changes that motion does not explain and that reverse (flicker, boiling texture).

    ``steps``: the `compensated_steps` of ``windows`` when the caller has them already."""
    name = "temporal_flicker"
    steps = compensated_steps(windows) if steps is None else steps
    if not steps:
        return Signal(name, None, threshold, False, "needs at least 3 consecutive frames of 32 px or more",
                      FLICKER_COMPUTATION)
    per_t = [float(np.percentile(np.abs(block_means(s.d2)), 75)) for s in steps]
    score = float(np.median(per_t))
    flagged = score > threshold
    summary = (f"local brightness flickers frame to frame ({score:.2f} grey levels after motion compensation)"
               if flagged else f"no temporal flicker above {threshold:.1f} grey levels ({score:.2f})")
    details = {"windows": len(_runs(windows)), "steps": len(per_t), "p90": round(float(np.percentile(per_t, 90)), 3)}
    return Signal(name, round(score, 4), threshold, flagged, summary, FLICKER_COMPUTATION, details)


def _flow(ref_u8: np.ndarray, src_u8: np.ndarray) -> np.ndarray:
    """(h, w, 2): where each pixel of the reference is in ``src`` (Farneback on the 8-bit frames)."""
    return cv2.calcOpticalFlowFarneback(ref_u8, src_u8, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def _remap(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _warp(src: np.ndarray, src_u8: np.ndarray, ref_u8: np.ndarray,
          check: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Float ``src`` warped onto the reference, and (with ``check``) where its flow is trustworthy: the
    backward flow, read where the forward flow lands, must bring the pixel back (within 0.5 px + 5%)."""
    flow = _flow(ref_u8, src_u8)
    warped = _remap(src, flow)
    if not check:
        return warped, None
    back = _remap(_flow(src_u8, ref_u8), flow)
    err = np.hypot(*(flow + back).transpose(2, 0, 1))
    return warped, err < 0.5 + 0.05 * np.hypot(*flow.transpose(2, 0, 1))


# --- 3. noise-residual consistency ------------------------------------------------------------------

NOISE_COMPUTATION = (
    "Noise level per region (4x4 grid) and frame: sigma = sqrt(pi/2)/6 * mean|g * K| over the flattest "
    "half of the region's pixels (Immerkaer's Laplacian-difference kernel K, flatness by local "
    "gradient). score = the largest gap between the regions' log2 sigma, as max - min of each "
    "region's median over frames, after removing the linear trend of log sigma with region brightness "
    "(sensors are noisier where brighter). A camera's noise changes smoothly; pasted or generated "
    "regions often have none or another level. Regions too flat or saturated (median sigma < 0.3 or "
    "brightness outside 16..239) are left out."
)
NOISE_THRESHOLD = 3.0
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def _region_sigma(g: np.ndarray) -> float:
    r = cv2.filter2D(g, -1, _IMMERKAER, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0)[1:-1, 1:-1], cv2.Sobel(g, cv2.CV_32F, 0, 1)[1:-1, 1:-1]
    grad = np.abs(gx) + np.abs(gy)
    flat = grad <= np.median(grad)
    return float(np.sqrt(np.pi / 2) / 6 * np.abs(r[flat]).mean()) if flat.any() else 0.0


def noise_consistency(frames: Sequence[np.ndarray], threshold: float = NOISE_THRESHOLD, grid: int = 4) -> Signal:
    """Does the noise level agree across regions (and frames), as one sensor's would?"""
    name = "noise_consistency"
    if not frames or min(frames[0].shape[:2]) < grid * 16:
        return Signal(name, None, threshold, False, f"frame too small for a {grid}x{grid} noise map",
                      NOISE_COMPUTATION)
    h, w = frames[0].shape[:2]
    sig = np.zeros((len(frames), grid * grid))
    bright = np.zeros_like(sig)
    for i, g in enumerate(frames):
        g = g.astype(np.float32)
        for j in range(grid * grid):
            ry, rx = divmod(j, grid)
            region = g[ry * h // grid : (ry + 1) * h // grid, rx * w // grid : (rx + 1) * w // grid]
            sig[i, j], bright[i, j] = _region_sigma(region), float(region.mean())
    med_sig, med_bright = np.median(sig, axis=0), np.median(bright, axis=0)
    keep = (med_sig >= 0.3) & (med_bright >= 16) & (med_bright <= 239)
    temporal = float(np.median(np.std(np.log2(np.maximum(sig[:, keep], 1e-3)), axis=0))) if keep.any() else 0.0
    if keep.sum() < 3:
        # Too few regions carry measurable noise: if some do and others are flat, that is the finding.
        return Signal(name, None, threshold, False, "too few regions with measurable noise to compare",
                      NOISE_COMPUTATION, {"regions_measured": int(keep.sum()), "temporal_std_log2": temporal})
    logs, br = np.log2(med_sig[keep]), med_bright[keep]
    slope = np.polyfit(br, logs, 1)[0] if np.ptp(br) > 1 else 0.0
    slope = float(np.clip(slope, 0.0, 0.02))  # only the physically plausible direction, bounded
    detrended = logs - slope * br
    score = float(detrended.max() - detrended.min())
    flagged = score > threshold
    summary = (f"noise level differs by {2 ** score:.1f}x between regions" if flagged
               else f"noise level consistent across regions (spread {2 ** score:.1f}x)")
    details = {"regions_measured": int(keep.sum()), "sigma_by_region": [round(float(s), 3) for s in med_sig],
               "temporal_std_log2": round(temporal, 3), "brightness_slope": round(slope, 4)}
    return Signal(name, round(score, 4), threshold, flagged, summary, NOISE_COMPUTATION, details)


# --- 4. encoding history and container metadata --------------------------------------------------

ENCODING_COMPUTATION = (
    "Metadata bytes are read without a decoder: for MP4/MOV the udta, meta, uuid (XMP) and handler boxes "
    "of moov and its tracks, plus encoder banners in the first 64 KiB of mdat; for other files the "
    "first and last 64 KiB. Generator names in metadata (whole words, in printable runs) score 1.0 and "
    "flag; camera fields (QuickTime make/model keys, Android capture fps, EXIF, GPS) are recorded; "
    "without camera fields a software encoder (x264/x265 SEI, Lavf/Lavc tags) adds 0.25 and a "
    "double-compression hint (an 8x8 blocking grid in decoded luma off the current H.264 coding grid, "
    "or strong 8x8 blocking in a still) adds 0.25. Only a generator name flags: re-encoded real footage "
    "also lacks camera fields and carries a software encoder."
)
ENCODING_THRESHOLD = 0.75
GENERATOR_NAMES = (
    "sora", "runway", "runwayml", "gen-2", "gen-3", "pika", "kling", "veo", "dream machine",
    "stable video diffusion", "svd", "hailuo", "minimax", "haiper", "synthesia", "heygen", "midjourney",
    "dall-e", "imagen", "firefly", "animatediff", "modelscope", "zeroscope", "hunyuanvideo", "cogvideox",
    "ltx-video", "mochi", "stable diffusion", "comfyui", "veriframe-generator",
)
CAMERA_FIELDS = (
    b"com.apple.quicktime.make", b"com.apple.quicktime.model", b"com.android.capture.fps",
    b"com.android.manufacturer", b"com.android.model", b"\xa9mak", b"\xa9mod",
    b"com.apple.quicktime.location.ISO6709", b"\xa9xyz", b"Exif\x00\x00",
)
_METADATA_BOXES = {b"udta", b"meta", b"uuid", b"hdlr", b"keys", b"ilst", b"XMP_"}


def metadata_bytes(path: str | os.PathLike[str], span: int = 64 << 10) -> bytes:
    """The parts of a file where metadata lives (see ``ENCODING_COMPUTATION``), concatenated."""
    size = os.stat(path).st_size
    with open(path, "rb") as f:
        head = f.read(min(size, span))
        if head[4:8] not in (b"ftyp", b"wide", b"moov", b"mdat", b"free"):
            f.seek(max(size - span, len(head)))
            return head + f.read(span)
        out: list[bytes] = []
        _walk_mp4(f, 0, size, out, depth=0, budget=[8 << 20])
        return b"".join(out)


def _walk_mp4(f: Any, start: int, end: int, out: list[bytes], depth: int, budget: list[int]) -> None:
    """Collect metadata boxes under ``[start, end)``; descends moov/trak/mdia only, at most 8 MiB read."""
    pos = start
    for _ in range(4096):
        if pos + 8 > end or budget[0] <= 0:
            return
        f.seek(pos)
        header = f.read(16)
        if len(header) < 8:
            return
        size, kind, skip = int.from_bytes(header[:4], "big"), header[4:8], 8
        if size == 1 and len(header) == 16:
            size, skip = int.from_bytes(header[8:16], "big"), 16
        elif size == 0:
            size = end - pos
        if size < skip:
            return
        if kind in _METADATA_BOXES:
            f.seek(pos)
            take = min(size, budget[0], 1 << 20)
            out.append(f.read(take))
            budget[0] -= take
        elif kind == b"mdat":
            f.seek(pos + skip)
            out.append(_encoder_banners(f.read(min(size - skip, 64 << 10))))
        elif kind in (b"moov", b"trak", b"mdia") and depth < 3:
            _walk_mp4(f, pos + skip, min(pos + size, end), out, depth + 1, budget)
        pos += size


def _encoder_banners(data: bytes) -> bytes:
    """Only the encoder banners of compressed data: anything else there is entropy-coded noise."""
    return b"\n".join(re.findall(rb"x26[45] - core \d+[ -~]{0,200}|Lavc\d+\.\d+\.\d+ [a-z0-9]+", data))


def encoding_history(data: bytes, *, container: str = "", codec: str = "",
                     frames: Sequence[np.ndarray] = ()) -> Signal:
    """Metadata facts from the bytes of the file (see `metadata_bytes`) and blocking in decoded luma."""
    name = "encoding_history"
    text = b"\n".join(re.findall(rb"[ -~\xa9]{4,}", data)).lower()  # printable runs only
    generators = sorted({g for g in GENERATOR_NAMES if _word_in(g, text)})
    camera = sorted({f.decode("latin-1") for f in CAMERA_FIELDS if f in data})
    encoders = sorted({m.group(0).decode("latin-1", "replace") for m in
                       re.finditer(rb"x26[45] - core \d+|Lavf\d+\.\d+\.\d+|Lavc\d+\.\d+\.\d+|HandBrake[ \d.]*", data)})
    software = bool(encoders)
    grid = _blocking_grid(frames) if frames else None
    double = bool(grid and grid["strength"] > 1.15 and (codec in ("h264", "hevc") and grid["offset"] != [0, 0]))
    if codec == "mjpeg" and grid and grid["strength"] > 1.3:
        double = True
    score = 1.0 if generators else 0.0
    if not generators and not camera:
        score += 0.25 * software + 0.25 * double
    flagged = score >= ENCODING_THRESHOLD
    if generators:
        summary = f"metadata names a generator: {', '.join(generators)}"
    else:
        parts = ["camera fields present" if camera else "no camera fields"]
        parts.append(f"software encoder {encoders[0]}" if software else "no encoder tag")
        if double:
            parts.append("double-compression hint")
        summary = "; ".join(parts)
    details = {"container": container, "codec": codec, "generator_names": generators, "camera_fields": camera,
               "encoders": encoders[:4], "double_compression_hint": double, "blocking_grid": grid}
    return Signal(name, score, ENCODING_THRESHOLD, flagged, summary, ENCODING_COMPUTATION, details)


def _word_in(word: str, data: bytes) -> bool:
    """``word`` as a whole word in ``data`` (case already folded), so "veo" does not match "dev0"."""
    return re.search(rb"(?<![a-z0-9])" + re.escape(word.encode()) + rb"(?![a-z0-9])", data) is not None


def _blocking_grid(frames: Sequence[np.ndarray]) -> dict[str, Any]:
    """Where an 8x8 blocking grid sits: mean |horizontal/vertical step| on each of the 8 column and row
    phases, relative to the median phase; ``offset`` is the strongest phase (y, x)."""
    cols, rows = np.zeros(8), np.zeros(8)
    for g in frames:
        g = g.astype(np.float32)
        dx, dy = np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0))
        for p in range(8):
            cols[p] += dx[:, (p + 7) % 8 :: 8].mean()  # step between column p-1 and p
            rows[p] += dy[(p + 7) % 8 :: 8, :].mean()
    cx, cy = int(np.argmax(cols)), int(np.argmax(rows))
    strength = float(np.sqrt(cols[cx] / np.median(cols) * rows[cy] / np.median(rows)))
    return {"offset": [cy, cx], "strength": round(strength, 3)}


def compute_signals(path: str | os.PathLike[str], *, frames: Sequence[np.ndarray], windows: Sequence[np.ndarray],
                    container: str = "", codec: str = "",
                    steps: Sequence[CompensatedStep] | None = None) -> list[Signal]:
    """All four signals for one file, in report order (``steps``: the windows' `compensated_steps`)."""
    return [
        spectral_peaks(frames),
        temporal_flicker(windows, steps=steps),
        noise_consistency(frames),
        encoding_history(metadata_bytes(Path(path)), container=container, codec=codec, frames=frames),
    ]
