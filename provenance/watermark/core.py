"""Keyed, invisible luma watermark: the algorithm on arrays (no file I/O here).

How it works (details in docs/watermark.md):

* **A periodic tile.** Every frame is viewed at a *working resolution* whose short side is
  ``work_short`` pixels. There the mark is a tile of ``tile_cells`` x ``tile_cells`` cells of
  ``cell`` x ``cell`` pixels, repeated over the whole frame and in every frame (redundant in space
  and time; a static pattern also costs the codec nothing to keep). Each cell carries +/-1 times a
  keyed pseudo-random carrier. ``SYNC_CELLS`` keyed cells always carry +1 (the sync pattern); the
  others carry the 258 coded bits of the message, three cells per bit, scattered by a keyed
  permutation.
* **Geometries.** Video is drawn at a working short side of 160 px, video under 160 px at 96 (so
  the pattern is never finer than the pixels), still images at 320 (one frame of evidence: more
  tiles); detection searches every geometry an input may carry (:meth:`WatermarkConfig.for_detection`).
* **Embedding** upsamples the tiled pattern to the frame size and adds it to luma, scaled by a
  perceptual mask (local activity: stronger in texture, weaker in flat areas) and a gain chosen
  so the frame's luma PSNR equals ``psnr_db``.
* **Detection** whitens each sampled frame (residual after a blur, divided by its local RMS) at
  the working resolution and averages the residuals over frames, so evidence accumulates over
  time. A crop changes where tiles start and, because the working resolution follows the short
  side, their period; pure rescaling changes neither. A search over the period (scale) folds the
  average residual into one tile per candidate and cross-correlates it with the sync pattern by
  FFT: the best peak gives scale and crop offset (sub-pixel). The aligned tile's cells then give
  soft bits for a list Viterbi decoder; the best path whose CRC and key id hold is the message.
* **Statistics.** For a decoded message with a valid CRC, ``Z = sum(s_i * c_i) / sqrt(sum(s_i^2))``
  over the payload cells' values ``s`` and the re-encoded codeword's sign ``c`` (+/-1) of each
  cell's coded bit. On unmarked video the signs of
  the soft values are symmetric and independent, so by Hoeffding's bound P(Z >= z) <= exp(-z^2/2)
  for any one codeword; a union over the 2^72 codewords with a valid CRC and over every decoding
  attempt (key x geometry) gives ``p_value = attempts * 2^72 * exp(-Z^2/2)``. ``present`` needs p < threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace

import cv2
import numpy as np

from .keys import Keyring, WatermarkKey
from .payload import (
    CODED_BITS,
    INFO_BITS,
    MESSAGE_BITS,
    Message,
    conv_encode,
    list_viterbi_decode,
    message_bits,
    parse_message_bits,
)

ALGORITHM = "veriframe.wm.v1"
_SSIM_C2 = (0.03 * 255.0) ** 2
CELLS_PER_BIT = 3


@dataclass(frozen=True)
class WatermarkConfig:
    """Geometry and strength of the mark. Changing geometry makes old marks unreadable."""

    work_short: int = 160  # short side of the working resolution, pixels
    cell: int = 2  # cell size at working resolution, pixels
    tile_cells: int = 32  # tile side in cells
    psnr_db: float = 42.0  # luma PSNR of a marked frame against the original
    # Local SSIM budget: the mark's local power is kept at (1 - ssim) / ssim * (2 var + C2), so
    # the structure term of SSIM stays >= ``ssim`` in every window, flat or textured.
    ssim: float = 0.977
    whiten_sigma: float = 1.2  # detection: residual = luma - Gaussian(luma, sigma)
    min_period_ratio: float = 0.9  # scale search: period / tile, lower bound
    max_period_ratio: float = 2.0  # upper bound (a crop of half the short side)
    scale_step: float = 0.004  # relative step of the coarse period search
    p_threshold: float = 1e-6
    decode_list: int = 4  # paths the list Viterbi decoder returns for the CRC to choose from
    # A still has one frame of evidence, not up to 96: it is marked at a finer working resolution
    # (more tiles to sum). A video whose short side is under ``work_short`` would have its pattern
    # drawn finer than its pixels: it is marked at a coarser one, whose cells survive re-encoding.
    still_work_short: int = 320
    small_work_short: int = 96
    geometry: str = "video"  # which of the three this config is: video, small or still

    @property
    def tile(self) -> int:
        return self.cell * self.tile_cells

    def for_still(self) -> WatermarkConfig:
        """The still geometry: working short side ``still_work_short``."""
        return replace(self, work_short=self.still_work_short, geometry="still")

    def for_small(self) -> WatermarkConfig:
        """The small-video geometry: working short side ``small_work_short``."""
        return replace(self, work_short=self.small_work_short, geometry="small")

    def for_embedding(self, height: int, width: int, *, still: bool) -> WatermarkConfig:
        """The geometry a picture of this size is marked at: a still at the still geometry, a video
        whose short side is under ``work_short`` at the small one, any other video at this config."""
        if still:
            return self.for_still()
        return self.for_small() if min(height, width) < self.work_short else self

    def for_detection(self, height: int, width: int, *, one_frame: bool) -> list[WatermarkConfig]:
        """Every geometry an input of this size may carry, this config's first: the small one up to a
        2x upscale of a small video, the still one for a one-frame input."""
        found = [self]
        if min(height, width) < 2 * self.work_short:
            found.append(self.for_small())
        if one_frame:
            found.append(self.for_still())
        distinct: list[WatermarkConfig] = []  # a size shared with an earlier one is the same search
        for g in found:
            if all(g.work_short != d.work_short for d in distinct):
                distinct.append(g)
        return distinct

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass
class DetectionResult:
    """What detection found; ``present`` is true only when ``p_value`` < the threshold."""

    present: bool
    payload: str | None
    key_id: int | None
    version: int | None
    confidence: float
    p_value: float
    bit_errors: int | None
    frames_used: int
    score: float = 0.0
    sync_z: float = 0.0
    scale: float | None = None
    offset: tuple[float, float] | None = None
    algorithm: str = ALGORITHM
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["offset"] = list(self.offset) if self.offset is not None else None
        d.pop("extra")
        d.update(self.extra)
        return d


def working_size(height: int, width: int, cfg: WatermarkConfig) -> tuple[int, int]:
    """(h, w) of the working resolution: short side ``work_short``, aspect kept."""
    s = cfg.work_short / min(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


class KeyLayout:
    """The keyed cell layout of one key: carrier signs, sync cells, bit-to-cell map."""

    def __init__(self, key: WatermarkKey, cfg: WatermarkConfig):
        n = cfg.tile_cells * cfg.tile_cells
        payload_cells = CODED_BITS * CELLS_PER_BIT
        if payload_cells >= n:
            raise ValueError("tile too small for the payload")
        self.cfg = cfg
        self.carrier = key.rng("carrier").choice(np.array([-1.0, 1.0], dtype=np.float32), size=n)
        perm = key.rng("cells").permutation(n)
        self.bit_of_cell = np.full(n, -1, dtype=np.int64)  # -1: sync cell
        self.bit_of_cell[perm[:payload_cells]] = np.arange(payload_cells) % CODED_BITS
        self.sync_mask = self.bit_of_cell < 0
        sync = np.where(self.sync_mask, self.carrier, 0.0).astype(np.float32)
        self.sync_tile = self._cells_to_tile(sync)
        self.sync_fft_conj = np.conj(np.fft.rfft2(self.sync_tile))

    def _cells_to_tile(self, cells: np.ndarray) -> np.ndarray:
        c = self.cfg
        grid = cells.reshape(c.tile_cells, c.tile_cells)
        return np.kron(grid, np.ones((c.cell, c.cell), dtype=np.float32)).astype(np.float32)

    def tile_for(self, coded: np.ndarray) -> np.ndarray:
        """The (tile, tile) pattern carrying ``coded`` bits, values +/-1."""
        signs = np.ones(self.bit_of_cell.shape, dtype=np.float32)
        payload = ~self.sync_mask
        signs[payload] = 1.0 - 2.0 * coded[self.bit_of_cell[payload]]
        return self._cells_to_tile(self.carrier * signs)

    def payload_cells(self, aligned_tile: np.ndarray) -> np.ndarray:
        """Carrier-corrected value of every payload cell (positive = its bit is 0)."""
        c = self.cfg
        cells = aligned_tile.reshape(c.tile_cells, c.cell, c.tile_cells, c.cell).sum(axis=(1, 3)).ravel()
        payload = ~self.sync_mask
        return (cells * self.carrier)[payload]

    @property
    def payload_bits(self) -> np.ndarray:
        """The coded-bit index of each payload cell, in :meth:`payload_cells` order."""
        return self.bit_of_cell[~self.sync_mask]

    def soft_bits(self, cell_values: np.ndarray) -> np.ndarray:
        """Per coded bit, the sum of its cells' values: the Viterbi decoder's input."""
        return np.bincount(self.payload_bits, weights=cell_values, minlength=CODED_BITS)


class Embedder:
    """Adds the mark for one message to frames of one size; build once per clip."""

    def __init__(self, key: WatermarkKey, data: bytes, height: int, width: int,
                 cfg: WatermarkConfig = WatermarkConfig()):
        self.cfg = cfg
        self.message = Message(data=data, key_id=key.key_id)
        coded = conv_encode(message_bits(self.message))
        tile = KeyLayout(key, cfg).tile_for(coded)
        hw, ww = working_size(height, width, cfg)
        reps = (math.ceil(hw / cfg.tile), math.ceil(ww / cfg.tile))
        work = np.tile(tile, reps)[:hw, :ww]
        pattern = cv2.resize(work, (width, height), interpolation=cv2.INTER_LINEAR)
        self.pattern = (pattern / max(float(np.sqrt(np.mean(pattern**2))), 1e-6)).astype(np.float32)
        # the error of round(y + w) - y is round(w): its power is about mean(w^2) + 1/12
        mse = 255.0**2 / 10 ** (cfg.psnr_db / 10.0)
        self.target_rms = math.sqrt(max(mse - 1.0 / 12.0, 0.05))
        self.shape = (height, width)
        self._mask_div = max(1, min(height, width) // 180)

    def mask(self, luma: np.ndarray) -> tuple[np.ndarray, float]:
        """Per-pixel amplitude allowed by the SSIM budget at full resolution, and its RMS.

        SSIM's structure term for ``y = x + w`` is ``(2 var + C2) / (2 var + var_w + C2)``, so a
        local mark power ``var_w = eps * (2 var + C2)`` costs ``eps`` in every window: flat areas
        get little, texture a lot (perceptual masking with a measurable bound). The local
        variance is that of windows about 5/180 of the short side across, from area averages of
        luma and its square on a grid shrunk to about 180 lines (cheap, and fine texture counts).
        """
        h, w = self.shape
        d = self._mask_div
        x = luma.astype(np.float32)
        if d == 1:
            mean, mean_sq = x, x * x
        else:  # area averages of x and x^2 keep the variance of texture finer than the shrunk grid
            size = (max(1, w // d), max(1, h // d))
            mean = cv2.resize(x, size, interpolation=cv2.INTER_AREA)
            mean_sq = cv2.resize(cv2.multiply(x, x), size, interpolation=cv2.INTER_AREA)
        k = (5, 5)
        var = np.maximum(cv2.blur(mean_sq, k) - cv2.blur(mean, k) ** 2, 0.0)
        eps = (1.0 - self.cfg.ssim) / self.cfg.ssim
        m = np.sqrt(eps * (2.0 * var + _SSIM_C2))
        rms = float(np.sqrt(np.mean(m * m)))
        return (m if d == 1 else cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)), rms

    def embed_luma(self, luma: np.ndarray) -> np.ndarray:
        """Marked copy of one (H, W) uint8 luma plane (OpenCV arithmetic: rounds and saturates).

        The mask is used as is unless its power would exceed the PSNR budget; then it is
        scaled down to it.
        """
        if luma.shape != self.shape:
            raise ValueError(f"frame size {luma.shape} differs from the clip's {self.shape}")
        m, rms = self.mask(luma)
        gain = min(1.0, self.target_rms / max(rms, 1e-6))
        w = cv2.multiply(m, self.pattern, scale=gain)
        return cv2.add(luma, w, dtype=cv2.CV_8U)


def whiten(luma: np.ndarray, cfg: WatermarkConfig) -> np.ndarray:
    """Working-resolution residual of one frame, normalised by its local RMS."""
    h, w = luma.shape
    hw, ww = working_size(h, w, cfg)
    interp = cv2.INTER_AREA if hw < h else cv2.INTER_LINEAR
    y = cv2.resize(luma, (ww, hw), interpolation=interp).astype(np.float32)
    r = y - cv2.GaussianBlur(y, (0, 0), cfg.whiten_sigma)
    local = cv2.GaussianBlur(r * r, (0, 0), 4.0)
    r /= np.sqrt(local) + 1.0
    return np.clip(r, -3.0, 3.0)


class Accumulator:
    """Running means of whitened frames (all of one size), one per geometry the input may carry
    (:meth:`WatermarkConfig.for_detection`). The first frame is kept while it is the only one: a
    one-frame input (a still) is also searched at the still geometry."""

    def __init__(self, cfg: WatermarkConfig = WatermarkConfig()):
        self.cfg = cfg
        self.frames = 0
        self.first: np.ndarray | None = None
        self.shape: tuple[int, int] | None = None
        self.geometries: list[WatermarkConfig] = []
        self.totals: dict[int, np.ndarray] = {}  # by working short side

    def add(self, luma: np.ndarray) -> None:
        if self.shape is None:
            self.shape = luma.shape
            self.geometries = self.cfg.for_detection(*luma.shape, one_frame=False)
        elif luma.shape != self.shape:
            raise ValueError("all frames of one clip must have the same size")
        for g in self.geometries:
            r = whiten(luma, g)
            self.totals[g.work_short] = r if self.frames == 0 else self.totals[g.work_short] + r
        self.frames += 1
        self.first = np.array(luma, copy=True) if self.frames == 1 else None

    def residuals(self) -> list[tuple[WatermarkConfig, np.ndarray]]:
        """(geometry, mean whitened residual) for every geometry to search, the still one included
        for a one-frame input."""
        if self.frames == 0 or self.shape is None:
            raise ValueError("no frames to detect in")
        found = [(g, self.totals[g.work_short] / self.frames) for g in self.geometries]
        if self.first is not None:
            found += [(g, whiten(self.first, g)) for g in self.cfg.for_detection(*self.shape, one_frame=True)
                      if g.work_short not in self.totals]
        return found


def _fold(residual: np.ndarray, ratio: float, tile: int) -> np.ndarray:
    """Rescale by 1/ratio (period ``ratio*tile`` -> ``tile``) and sum all tiles into one."""
    s = 1.0 / ratio
    h, w = residual.shape
    oh, ow = max(1, math.floor(h * s)), max(1, math.floor(w * s))
    m = np.array([[s, 0.0, 0.0], [0.0, s, 0.0]], dtype=np.float64)
    scaled = cv2.warpAffine(residual, m, (ow, oh), flags=cv2.INTER_LINEAR)
    ph, pw = -oh % tile, -ow % tile
    if ph or pw:
        scaled = np.pad(scaled, ((0, ph), (0, pw)))
    return scaled.reshape(scaled.shape[0] // tile, tile, scaled.shape[1] // tile, tile).sum(axis=(0, 2))


def _sync_peak(folded: np.ndarray, layout: KeyLayout) -> tuple[float, int, int, np.ndarray]:
    corr = np.fft.irfft2(np.fft.rfft2(folded) * layout.sync_fft_conj, s=folded.shape)
    idx = int(np.argmax(corr))
    dy, dx = divmod(idx, corr.shape[1])
    sd = float(corr.std())
    z = (float(corr.flat[idx]) - float(corr.mean())) / sd if sd > 0 else 0.0
    return z, dy, dx, corr


def _subpixel(corr: np.ndarray, dy: int, dx: int) -> tuple[float, float]:
    def refine(a: float, b: float, c: float) -> float:
        den = a - 2 * b + c
        return 0.0 if den >= 0 else float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))

    n, m = corr.shape
    fy = refine(corr[(dy - 1) % n, dx], corr[dy, dx], corr[(dy + 1) % n, dx])
    fx = refine(corr[dy, (dx - 1) % m], corr[dy, dx], corr[dy, (dx + 1) % m])
    return dy + fy, dx + fx


def _shift(tile: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Circularly shift so that ``out[y, x] = tile[y + dy, x + dx]`` (fractional via FFT)."""
    n, m = tile.shape
    ky = np.fft.fftfreq(n)[:, None]
    kx = np.fft.rfftfreq(m)[None, :]
    phase = np.exp(2j * np.pi * (ky * dy + kx * dx))
    return np.fft.irfft2(np.fft.rfft2(tile) * phase, s=tile.shape).astype(np.float32)


def _search_scale(residual: np.ndarray, layout: KeyLayout) -> tuple[float, float]:
    """(ratio, z) of the best sync peak over periods ``ratio * tile``."""
    cfg = layout.cfg
    lo, hi = math.log(cfg.min_period_ratio), math.log(cfg.max_period_ratio)
    coarse = np.exp(np.arange(lo, hi + 1e-9, cfg.scale_step))
    zs = np.array([_sync_peak(_fold(residual, r, cfg.tile), layout)[0] for r in coarse])
    best = float(coarse[int(np.argmax(zs))])
    fine = best * np.exp(np.linspace(-cfg.scale_step, cfg.scale_step, 9))
    zf = np.array([_sync_peak(_fold(residual, r, cfg.tile), layout)[0] for r in fine])
    return float(fine[int(np.argmax(zf))]), float(zf.max())


def score_threshold(cfg: WatermarkConfig = WatermarkConfig(), attempts: int = 1) -> float:
    """The score ``Z`` at which the p-value of :func:`_decide` reaches ``cfg.p_threshold`` when
    ``attempts`` decodings (keys x geometries) were tried: 11.29 for one, 11.39 for three."""
    return math.sqrt(2.0 * (INFO_BITS * math.log(2.0) + math.log(attempts / cfg.p_threshold)))


def detect_accumulated(acc: Accumulator, keyring: Keyring) -> DetectionResult:
    """Detect in what ``acc`` gathered, trying every key at every geometry the input may carry; the
    p-value counts every attempt."""
    tries = acc.residuals()
    results = [detect_residual(residual, keyring, acc.frames, g, geometries=len(tries)) for g, residual in tries]
    return min(results, key=lambda r: r.p_value)


def detect_residual(residual: np.ndarray, keyring: Keyring, frames_used: int,
                    cfg: WatermarkConfig = WatermarkConfig(), *, geometries: int = 1) -> DetectionResult:
    """Detect in an averaged whitened residual (see :class:`Accumulator`), trying every key.

    ``geometries`` is how many working resolutions the caller tries in all: the p-value's union
    runs over every key and geometry tried."""
    attempts = len(keyring.keys) * geometries
    best: DetectionResult | None = None
    for key in keyring.keys:
        layout = KeyLayout(key, cfg)
        ratio, sync_z = _search_scale(residual, layout)
        folded = _fold(residual, ratio, cfg.tile)
        _, dy, dx, corr = _sync_peak(folded, layout)
        fy, fx = _subpixel(corr, dy, dx)
        cells = layout.payload_cells(_shift(folded, fy, fx))
        result = _decide(cells, layout, key.key_id, attempts, frames_used, cfg)
        result.sync_z = round(sync_z, 3)
        result.scale = round(1.0 / ratio, 5)
        result.offset = (round(fy * ratio, 2), round(fx * ratio, 2))
        result.extra["geometry"] = cfg.geometry
        if best is None or result.p_value < best.p_value:
            best = result
    assert best is not None
    return best


def _decide(cells: np.ndarray, layout: KeyLayout, key_id: int, attempts: int, frames_used: int,
            cfg: WatermarkConfig) -> DetectionResult:
    """Decode the payload cells and score the decoded codeword (see the module docstring).

    The list decoder's paths are tried best first; the first whose CRC holds and whose key id is
    the key being tried is the message (the ML path when none holds, scored but absent). Its score
    is its path metric over the cells' norm, so no later path could score higher, and the p-value's
    union over every CRC-valid codeword already covers picking one from a list.

    The score runs over cells, not coded bits: each cell has its own independent carrier sign,
    so the Hoeffding bound holds per cell, and at a given total energy more, weaker terms give a
    larger score than fewer, stronger ones (Z^2 ~ E / (1 + SNR per term)).
    """
    norm = float(np.sqrt(np.sum(cells * cells)))
    if norm == 0.0:
        return DetectionResult(False, None, None, None, 0.0, 1.0, None, frames_used)
    soft = layout.soft_bits(cells)
    paths = list_viterbi_decode(soft, cfg.decode_list)
    bits, msg = paths[0], None
    for path in paths:
        found = parse_message_bits(path)
        if found is not None and found.key_id == key_id:
            bits, msg = path, found
            break
    # scored even when no path holds, so unmarked video shows where its scores lie
    code = 1.0 - 2.0 * conv_encode(bits[:MESSAGE_BITS]).astype(np.float64)
    z = float(np.dot(cells, code[layout.payload_bits])) / norm
    log_p = math.log(attempts) + INFO_BITS * math.log(2.0) - 0.5 * z * z if z > 0 else 0.0
    p = float(min(1.0, math.exp(min(log_p, 0.0))))
    errors = int(np.sum(np.sign(soft) != code))
    present = msg is not None and p < cfg.p_threshold
    if msg is None:
        return DetectionResult(False, None, None, None, round(1.0 - p, 12), p, errors, frames_used,
                               score=round(z, 3))
    return DetectionResult(
        present=present,
        payload=msg.hex if present else None,
        key_id=msg.key_id if present else None,
        version=msg.version if present else None,
        confidence=round(1.0 - p, 12),
        p_value=p,
        bit_errors=errors,
        frames_used=frames_used,
        score=round(z, 3),
    )


def detect_frames(lumas: Iterable[np.ndarray], keyring: Keyring,
                  cfg: WatermarkConfig = WatermarkConfig()) -> DetectionResult:
    """Detect the mark in a sequence of (H, W) uint8 luma planes of one clip."""
    acc = Accumulator(cfg)
    for y in lumas:
        acc.add(y)
    return detect_accumulated(acc, keyring)


def embed_frames(lumas: Sequence[np.ndarray], key: WatermarkKey, data: bytes,
                 cfg: WatermarkConfig = WatermarkConfig()) -> list[np.ndarray]:
    """Marked copies of a list of luma planes (convenience for tests and stills); a single plane is
    a still. The geometry is :meth:`WatermarkConfig.for_embedding`'s."""
    if not lumas:
        return []
    emb = Embedder(key, data, *lumas[0].shape, cfg=cfg.for_embedding(*lumas[0].shape, still=len(lumas) == 1))
    return [emb.embed_luma(y) for y in lumas]
