"""A procedural analyser of Shapes-world clips: which facts of a caption does a clip show?

`analyse_clip` reads a clip (rendered or generated) without knowing its scene:

1. Background: the median of the border pixels, refined by a smooth per-frame background model
   (normalised convolution over the pixels near the background colour, so gradients and soft
   textures are followed), named by the nearest colour in `BACKGROUNDS`.
2. Objects: per frame, connected components of pixels far from the background model (RGB distance
   above `threshold`), ignoring blobs under 0.12% of the frame. The count is the most common
   per-frame count; components are linked across frames by position and colour.
3. Per object and frame: the colour is the median of the component's core (its most contrasting
   pixels), named by the colour in `COLOURS` that explains it best, alone or partly mixed with the
   background (blur leaves thin rings short of full contrast). A soft coverage map (each pixel's
   position on the background -> object colour line) gives the centroid, the area and the shape: a
   hole or an uncovered centre -> ring; otherwise the strongest n-fold complex moment
   (n = 3 triangle, 4 square, 5 star) unless all are weak -> circle. Frames vote, weighted by size.
4. Motion, from the track (3-tap median on 12+ frames): a direction reversal larger than 10% of
   the frame -> bouncing; else a fitted travel over the clip above 12% of the frame -> left /
   right / up / down, or diagonal when both axes move comparably; else a fitted area change beyond
   1.5x -> growing / shrinking; else a turn of the n-fold moment's phase above 0.3 rad ->
   rotating; else still. The renderer's slow camera pan (at most 4%) stays under every threshold.
5. Temporal stability: per object, the mean RGB distance of its per-frame colour from its median
   colour, and the spread of its log area around a straight-line trend (so intended growth is not
   counted as drift).

`score(analysis, scene)` compares the result with the scene's facts, one bool per fact.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from .shapes import BACKGROUNDS, COLOURS, Scene

SYMMETRY = {"triangle": 3, "square": 4, "star": 5}
FACTS = ("background", "count", "colour", "shape", "motion")

_BG_NAMES = list(BACKGROUNDS)
_BG_RGB = np.array([BACKGROUNDS[n] for n in _BG_NAMES], np.float32)
_COLOUR_NAMES = list(COLOURS)
_COLOUR_RGB = np.array([COLOURS[n] for n in _COLOUR_NAMES], np.float32)

REVERSAL = 0.1  # a bounce must swing back at least this far (fraction of the frame; bounces are >= 0.25)
TRAVEL = 0.12  # fitted travel over the clip that counts as moving
DIAGONAL = 0.45  # smaller / larger axis travel above this -> diagonal
GROWTH = 1.5  # fitted last / first area beyond this -> growing or shrinking
ROTATION = 0.3  # radians of tracked turn that count as rotating
MIX = 0.6  # least share of an object colour in a blurred pixel that still names it
HARMONIC = 0.08  # n-fold moment strength below which an outline counts as round
MIN_AREA = 0.0012  # blobs smaller than this fraction of the frame are ignored


@dataclass(frozen=True)
class ObjectAnalysis:
    """One tracked object: named facts, the measurements behind them and its temporal stability."""

    colour: str
    shape: str
    motion: str
    rgb: tuple[float, float, float]  # median colour over the clip
    displacement: tuple[float, float]  # fitted travel over the clip, fraction of width / height
    reversals: int  # direction reversals larger than REVERSAL
    area_ratio: float  # fitted area at the last frame / at the first
    rotation: float  # tracked turn over the clip, radians (0 for circles and rings)
    colour_drift: float  # mean RGB distance (0-255) of the per-frame colour from the median
    size_drift: float  # std of log area around its linear trend (0.1 ~ 10% size wobble)
    frames: int  # frames in which the object was found
    shape_votes: tuple[tuple[str, float], ...]  # area-weighted share of frames per shape


@dataclass(frozen=True)
class Analysis:
    """What `analyse_clip` recovered from a clip."""

    background: str
    background_rgb: tuple[float, float, float]
    count: int
    objects: tuple[ObjectAnalysis, ...]
    frame_counts: tuple[int, ...]  # objects found in each frame

    @property
    def colour_drift(self) -> float:
        """The worst object colour drift (0 when there is no object)."""
        return max((o.colour_drift for o in self.objects), default=0.0)

    @property
    def size_drift(self) -> float:
        return max((o.size_drift for o in self.objects), default=0.0)


@dataclass
class _Blob:
    x: float  # coverage-weighted centroid, pixels
    y: float
    area: float  # soft area, pixels
    rgb: np.ndarray
    background: np.ndarray  # local background colour
    shape: str
    moments: dict[int, complex]  # normalised n-fold complex moments of the coverage


def _nearest(rgb: np.ndarray, names: list[str], table: np.ndarray) -> str:
    return names[int(np.argmin(np.linalg.norm(table - rgb, axis=1)))]


def _name_colour(rgb: np.ndarray, background: np.ndarray) -> str:
    """The named colour that best explains `rgb` as itself or partly mixed with the background.

    Blur leaves thin parts (a ring, a star's points) short of full contrast: a mix of at least
    MIX colour with the background still counts as that colour.
    """
    span = _COLOUR_RGB - background  # (K, 3)
    mix = np.clip((span @ (rgb - background)) / np.maximum((span * span).sum(1), 1e-6), MIX, 1.0)
    residual = np.linalg.norm(background + mix[:, None] * span - rgb, axis=1)
    return _COLOUR_NAMES[int(np.argmin(residual))]


def _background_model(frame: np.ndarray, colour: np.ndarray, exclude: np.ndarray, sigma: float) -> np.ndarray:
    """A smooth background under the objects: normalised convolution of the non-excluded pixels.

    Computed at a quarter of the resolution (the model is smooth at that scale anyway) for speed.
    """
    h, w = exclude.shape
    f = 4 if min(h, w) >= 32 else 1
    keep = (~exclude).astype(np.float32)
    small = (max(w // f, 1), max(h // f, 1))
    num = cv2.GaussianBlur(cv2.resize(frame * keep[..., None], small, interpolation=cv2.INTER_AREA), (0, 0), sigma / f)
    den = cv2.GaussianBlur(cv2.resize(keep, small, interpolation=cv2.INTER_AREA), (0, 0), sigma / f)[..., None]
    eps = 0.02  # where no background is near (inside a big object) lean on the global colour
    return cv2.resize((num + eps * colour) / (den + eps), (w, h), interpolation=cv2.INTER_LINEAR)


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    diff = a - b
    return np.sqrt(np.einsum("...c,...c->...", diff, diff))


def _hole_fraction(mask: np.ndarray) -> float:
    """Area of the holes inside the largest outline of a binary mask, as a share of that outline."""
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 0.0
    outer_ids = [i for i, h in enumerate(hierarchy[0]) if h[3] < 0]
    outer = max(outer_ids, key=lambda i: cv2.contourArea(contours[i]))
    area = cv2.contourArea(contours[outer])
    holes = sum(cv2.contourArea(contours[i]) for i, h in enumerate(hierarchy[0]) if h[3] == outer)
    return holes / max(area, 1e-6)


def _classify(alpha: np.ndarray, cx: float, cy: float, moments: dict[int, complex]) -> str:
    """Shape from a coverage patch (centroid in patch pixels) and its n-fold moments.

    A hole, or a centre less than half covered, makes a ring. Otherwise the n-fold symmetry
    decides: a triangle's outline has only 3k-fold harmonics, a square's 4k-fold and a star's
    5k-fold, so the strongest of |m3|, |m4|, |m5| names it, and a circle has none above HARMONIC.
    These moments survive blur that rounds every corner (a 5 px triangle blurred by 2 px keeps
    |m3| ~ 0.25 while every circle stays under 0.05), unlike polygon fits of the outline.
    """
    up = cv2.resize(alpha, None, fx=4, fy=4, interpolation=cv2.INTER_LINEAR)
    centre = float(cv2.getRectSubPix(alpha, (1, 1), (cx - 0.5, cy - 0.5))[0, 0])
    if centre < 0.5 or _hole_fraction((up > 0.5).astype(np.uint8)) > 0.06:
        return "ring"
    n, strength = max(((n, abs(m)) for n, m in moments.items()), key=lambda item: item[1])
    if strength < HARMONIC:
        return "circle"
    return {3: "triangle", 4: "square", 5: "star"}[n]


def _measure(frame, model, dist, labels, k, box) -> _Blob | None:
    """Colour, soft coverage, centroid, area, n-fold moments and shape of component k of a frame."""
    h, w = labels.shape
    x, y, bw, bh = box
    x0, y0, x1, y1 = max(x - 3, 0), max(y - 3, 0), min(x + bw + 3, w), min(y + bh + 3, h)
    lab = labels[y0:y1, x0:x1]
    own = (lab == k).astype(np.uint8)
    d = dist[y0:y1, x0:x1]
    inside = np.sort(d[own > 0])
    core = (own > 0) & (d >= 0.7 * inside[int(0.9 * (inside.size - 1))])  # the most contrasting pixels
    pix = frame[y0:y1, x0:x1]
    rgb = np.median(pix[core], axis=0)
    bg = model[y0:y1, x0:x1]
    local = np.median(bg.reshape(-1, 3), axis=0)
    v = rgb - local
    # Coverage: each pixel's position between the background and the object colour.
    alpha = np.clip(((pix - bg) @ v) / max(float(v @ v), 1e-6), 0.0, 1.0).astype(np.float32)
    near = cv2.dilate(own, np.ones((5, 5), np.uint8)) > 0
    alpha[~near | ((lab > 0) & (lab != k))] = 0.0
    total = float(alpha.sum())
    if total <= 0:
        return None
    xx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
    yy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
    cx, cy = float((alpha * xx).sum() / total), float((alpha * yy).sum() / total)
    z = (xx - cx) + 1j * (yy - cy)
    r = np.abs(z)
    z3, r3 = z * z * z, r * r * r
    moments = {
        3: complex((alpha * z3).sum() / max(float((alpha * r3).sum()), 1e-9)),
        4: complex((alpha * z3 * z).sum() / max(float((alpha * r3 * r).sum()), 1e-9)),
        5: complex((alpha * z3 * z * z).sum() / max(float((alpha * r3 * r * r).sum()), 1e-9)),
    }
    return _Blob(cx, cy, total, rgb, local, _classify(alpha, cx - x0, cy - y0, moments), moments)


def _assign(cost: np.ndarray) -> list[int]:
    """Blob for each track: the cheapest permutation for up to 6 tracks (the Shapes world has 1 to 3
    objects), greedy cheapest-pair-first beyond: a noisy generated clip can show dozens of blobs, and
    trying all their permutations never ends."""
    n = len(cost)
    if n <= 6:
        return list(min(itertools.permutations(range(n)), key=lambda p: sum(cost[i, j] for i, j in enumerate(p))))
    order, free_rows, free_cols = [0] * n, set(range(n)), set(range(n))
    for flat in np.argsort(cost, axis=None, kind="stable"):
        i, j = divmod(int(flat), n)
        if i in free_rows and j in free_cols:
            order[i] = j
            free_rows.discard(i)
            free_cols.discard(j)
            if not free_rows:
                break
    return order


def _link(frames_blobs: list[list[_Blob]], count: int, short: float) -> list[list[_Blob | None]]:
    """Tracks of `count` objects across the frames that show exactly `count` blobs."""
    tracks: list[list[_Blob | None]] = [[] for _ in range(count)]
    last: list[_Blob] | None = None
    for blobs in frames_blobs:
        if len(blobs) != count:
            for track in tracks:
                track.append(None)
            continue
        if last is None:
            order = list(range(count))
        else:
            cost = np.array([[math.hypot(b.x - a.x, b.y - a.y) / short + float(np.linalg.norm(b.rgb - a.rgb)) / 100.0
                              for b in blobs] for a in last])  # (previous track, current blob)
            order = _assign(cost)
        for i, j in enumerate(order):
            tracks[i].append(blobs[j])
        last = [blobs[j] for j in order]
    return tracks


def _reversals(series: np.ndarray, tau: float) -> int:
    """Direction changes of a zigzag whose legs are at least `tau` long."""
    count, direction, lo, hi, extreme = 0, 0, series[0], series[0], series[0]
    for v in series[1:]:
        if direction == 0:
            lo, hi = min(lo, v), max(hi, v)
            if v - lo >= tau:
                direction, extreme = 1, v
            elif hi - v >= tau:
                direction, extreme = -1, v
        elif direction * (v - extreme) > 0:
            extreme = v
        elif abs(v - extreme) >= tau:
            count, direction, extreme = count + 1, -direction, v
    return count


def _steady(series: np.ndarray) -> np.ndarray:
    """A 3-tap running median on tracks of 12 points or more: one-frame jumps (a generator's
    position jitter) are not bounces, while a bounce still spans T / 2.5 >= 5 frames."""
    if len(series) < 12:
        return series
    middle = np.median(np.stack([series[:-2], series[1:-1], series[2:]]), axis=0)
    return np.concatenate([series[:1], middle, series[-1:]])


def _slope(u: np.ndarray, values: np.ndarray) -> float:
    return float(np.polyfit(u, values, 1)[0]) if len(u) >= 2 else 0.0


def _object(track: list[_Blob | None], width: int, height: int) -> ObjectAnalysis:
    t = np.array([i for i, b in enumerate(track) if b is not None])
    blobs = [b for b in track if b is not None]
    u = t / max(len(track) - 1, 1)
    xs = np.array([b.x / width for b in blobs])
    ys = np.array([b.y / height for b in blobs])
    areas = np.array([b.area for b in blobs])
    rgbs = np.array([b.rgb for b in blobs])
    rgb = np.median(rgbs, axis=0)
    votes = Counter()
    for b in blobs:
        votes[b.shape] += math.sqrt(b.area)
    shape = votes.most_common(1)[0][0]
    dx, dy = _slope(u, xs), _slope(u, ys)
    reversals = max(_reversals(_steady(xs), REVERSAL), _reversals(_steady(ys), REVERSAL))
    log_area = np.log(np.maximum(areas, 1e-6))
    growth = _slope(u, log_area)
    size_drift = float(np.std(log_area - np.polyval(np.polyfit(u, log_area, 1), u))) if len(u) >= 2 else 0.0
    rotation = 0.0
    n = SYMMETRY.get(shape)
    if n is not None and len(blobs) >= 2:
        turn = np.unwrap(np.array([np.angle(b.moments[n]) for b in blobs])) / n
        rotation = _slope(u, turn)
    if reversals >= 1:
        motion = "bouncing"
    elif math.hypot(dx, dy) >= TRAVEL:
        if min(abs(dx), abs(dy)) >= DIAGONAL * max(abs(dx), abs(dy)):
            motion = "diagonal"
        elif abs(dx) > abs(dy):
            motion = "right" if dx > 0 else "left"
        else:
            motion = "down" if dy > 0 else "up"
    elif growth >= math.log(GROWTH):
        motion = "growing"
    elif growth <= -math.log(GROWTH):
        motion = "shrinking"
    elif abs(rotation) >= ROTATION:
        motion = "rotating"
    else:
        motion = "still"
    total = sum(votes.values())
    return ObjectAnalysis(
        colour=_name_colour(rgb, np.median(np.array([b.background for b in blobs]), axis=0)),
        shape=shape,
        motion=motion,
        rgb=tuple(float(c) for c in rgb),
        displacement=(dx, dy),
        reversals=reversals,
        area_ratio=float(math.exp(growth)),
        rotation=float(rotation),
        colour_drift=float(np.mean(np.linalg.norm(rgbs - rgb, axis=1))),
        size_drift=size_drift,
        frames=len(blobs),
        shape_votes=tuple((name, v / total) for name, v in votes.most_common()),
    )


def analyse_clip(frames: np.ndarray, *, threshold: float = 45.0) -> Analysis:
    """Recover background, object count, colours, shapes, motions and stability from RGB frames.

    `frames` is uint8 (T, H, W, 3); `threshold` is the RGB distance from the background above
    which a pixel belongs to an object (every object colour is >= 100 from every background).
    """
    clip = np.asarray(frames)
    if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8 or min(clip.shape[:3]) < 1:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {clip.dtype} {clip.shape}")
    count_t, height, width, _ = clip.shape
    short = min(height, width)
    b = max(2, round(0.03 * short))
    edges = (clip[:, :b], clip[:, -b:], clip[:, :, :b], clip[:, :, -b:])
    border = np.concatenate([e.reshape(-1, 3) for e in edges])
    bg_colour = np.median(border, axis=0).astype(np.float32)
    sigma = 0.06 * short
    min_area = max(4.0, MIN_AREA * height * width)
    bg_pixels, frames_blobs, counts = [], [], []
    kernel = np.ones((3, 3), np.uint8)
    for frame_u8 in clip:
        frame = frame_u8.astype(np.float32)
        # Three cuts: pixels far from the clip's background colour, then far from a first model
        # (so gradients and textures stop looking like objects), then the final distance.
        exclude = _distance(frame, bg_colour) > 1.5 * threshold
        model = _background_model(frame, bg_colour, exclude, sigma)
        exclude = cv2.dilate((_distance(frame, model) > 0.6 * threshold).astype(np.uint8), kernel) > 0
        model = _background_model(frame, bg_colour, exclude, sigma)
        dist = _distance(frame, model)
        fg = (dist > threshold).astype(np.uint8)
        bg_pixels.append(frame[cv2.dilate(fg, kernel) == 0][:: max(1, (height * width) // 4096)])
        n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        blobs = []
        for k in range(1, n):
            if stats[k, cv2.CC_STAT_AREA] >= min_area:
                blob = _measure(frame, model, dist, labels, k, stats[k, :4])
                if blob is not None:
                    blobs.append(blob)
        frames_blobs.append(blobs)
        counts.append(len(blobs))
    pixels = np.concatenate(bg_pixels) if any(len(p) for p in bg_pixels) else border.astype(np.float32)
    bg_rgb = np.median(pixels, axis=0)
    tally = Counter(counts)
    count = max(tally, key=lambda c: (tally[c], c))
    objects = [] if count == 0 else [_object(tr, width, height) for tr in _link(frames_blobs, count, short)]
    return Analysis(
        background=_nearest(bg_rgb, _BG_NAMES, _BG_RGB),
        background_rgb=tuple(float(c) for c in bg_rgb),
        count=count,
        objects=tuple(objects),
        frame_counts=tuple(counts),
    )


def score(analysis: Analysis, scene: Scene) -> dict[str, bool]:
    """Per fact, whether the clip shows what the scene (or its caption) says.

    Detected objects are matched to the scene's objects by the assignment that agrees most
    (colour counts most, then shape, then motion); "colour", "shape" and "motion" are true when
    every scene object has a matched detection with that fact right, "count" when the numbers
    agree. Only `background` and each object's colour, shape and motion are read from `scene`.
    """
    wanted = [(o.colour, o.shape, o.motion) for o in scene.objects]
    found = list(analysis.objects)
    slots: list[int | None] = list(range(len(found))) + [None] * max(0, len(wanted) - len(found))

    def agreement(assign) -> int:
        return sum(
            4 * (found[j].colour == c) + 2 * (found[j].shape == s) + (found[j].motion == m)
            for (c, s, m), j in zip(wanted, assign, strict=True)
            if j is not None
        )

    best = max(dict.fromkeys(itertools.permutations(slots, len(wanted))), key=agreement) if wanted else ()
    pairs = [(fact, found[j] if j is not None else None) for fact, j in zip(wanted, best, strict=True)]
    return {
        "background": analysis.background == scene.background,
        "count": analysis.count == len(wanted),
        "colour": all(o is not None and o.colour == c for (c, _, _), o in pairs),
        "shape": all(o is not None and o.shape == s for (_, s, _), o in pairs),
        "motion": all(o is not None and o.motion == m for (_, _, m), o in pairs),
    }


def summarise(scores: Iterable[Mapping[str, bool]]) -> dict[str, float]:
    """The share of clips with each fact right."""
    rows = list(scores)
    return {fact: sum(bool(r[fact]) for r in rows) / max(len(rows), 1) for fact in FACTS}
