"""The Shapes world: seeded scenes of 1 to 3 coloured shapes in motion, rendered as anti-aliased clips.

A `Scene` holds every random choice (placement, motion amounts, background texture seed, noise,
lighting), so `render_clip(scene, width, height, frames, fps)` is a pure function of its arguments
and the same scene renders at any size, aspect ratio and length. Geometry lives in normalised
coordinates: x in [0, 1] across the width, y in [0, 1] down the height, object sizes in units of
the frame's short side. Every motion spans the whole clip (clip phase u = 0 at the first frame, 1 at
the last), so a longer clip shows the same motion more slowly; `fps` only times the light flicker.

Objects never overlap and never leave the frame, at any aspect ratio: layout checks distances in
normalised units against radii in short-side units, which can only under-state the pixel distance.
`HELD_OUT` lists (colour, shape, motion) combinations that `sample_scene` never draws for training.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch.utils.data

from .captions import caption as _caption

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 45, 45),
    "green": (45, 190, 70),
    "blue": (45, 90, 235),
    "yellow": (240, 215, 50),
    "white": (245, 245, 245),
    "orange": (250, 140, 35),
    "purple": (150, 70, 205),
    "cyan": (50, 215, 225),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (12, 12, 12),
    "gray": (120, 120, 120),
    "white": (235, 235, 235),
    "navy": (22, 32, 92),
    "dark green": (22, 78, 40),
}
BACKGROUND_STYLES = ("solid", "gradient", "texture")
SHAPES = ("circle", "square", "triangle", "star", "ring")
MOTIONS = ("left", "right", "up", "down", "diagonal", "bouncing", "rotating", "growing", "shrinking", "still")
DIRECTIONS = MOTIONS[:4]  # the motions a caption names by direction
# A turning circle or ring looks exactly like a still one, so they never take "rotating".
ROTATING_SHAPES = ("square", "triangle", "star")

# Never rendered for training: every colour, shape and motion here is still seen in other pairings,
# so these test composition. Each is (colour, shape, motion).
HELD_OUT: tuple[tuple[str, str, str], ...] = (
    ("red", "star", "rotating"),
    ("blue", "circle", "bouncing"),
    ("green", "triangle", "left"),
    ("yellow", "square", "shrinking"),
    ("purple", "ring", "growing"),
    ("cyan", "star", "up"),
    ("orange", "square", "diagonal"),
    ("white", "triangle", "still"),
)

# Circumradius per unit of `SceneObject.size`: pointed shapes get more so all look about as heavy.
SHAPE_RADIUS = {"circle": 0.9, "ring": 1.0, "square": 1.0, "triangle": 1.25, "star": 1.3}
RING_INNER = 0.55  # hole radius / outer radius
STAR_INNER = 0.42  # inner vertex radius / outer radius
SUPERSAMPLE = 4  # shapes are filled at 4x and area-averaged down: anti-aliasing with exact coverage
_SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point vertices: 1/16 of a supersampled pixel


@dataclass(frozen=True)
class SceneObject:
    """One shape and its motion; positions are normalised, `size` is in units of the short side.

    The state at clip phase u is `state(u)`: moves and diagonals travel (dx, dy) over the clip,
    bouncing lifts by |sin| along (dx, dy) `bounces` times, `spin` radians of rotation, and the
    scale goes from growth**-0.5 to growth**0.5 (growth > 1 grows, < 1 shrinks).
    """

    colour: str
    shape: str
    motion: str
    x: float
    y: float
    size: float
    angle: float = 0.0
    dx: float = 0.0
    dy: float = 0.0
    bounces: float = 0.0
    bounce_phase: float = 0.0
    spin: float = 0.0
    growth: float = 1.0

    def state(self, u: float) -> tuple[float, float, float, float]:
        """(x, y, circumradius in short-side units, angle) at clip phase u in [0, 1], world frame."""
        x, y, radius, angle = self.path(np.array([u], np.float64))[0]
        return float(x), float(y), float(radius), float(angle)

    def path(self, u: np.ndarray) -> np.ndarray:
        """`state` at many clip phases at once: (len(u), 4)."""
        if self.motion == "bouncing":
            lift = np.abs(np.sin(np.pi * (self.bounces * u + self.bounce_phase)))
            x, y = self.x + self.dx * lift, self.y + self.dy * lift
        else:
            x, y = self.x + self.dx * u, self.y + self.dy * u
        radius = self.size * SHAPE_RADIUS[self.shape] * self.growth ** (u - 0.5)
        return np.stack([x, y, radius, self.angle + self.spin * u], axis=1)

    @property
    def fact(self) -> tuple[str, str, str]:
        return (self.colour, self.shape, self.motion)


@dataclass(frozen=True)
class Scene:
    """Everything needed to render a clip: the facts a caption states plus the nuisance choices."""

    background: str
    objects: tuple[SceneObject, ...]
    background_style: str = "solid"
    pan: tuple[float, float] = (0.0, 0.0)  # camera travel over the clip, normalised (x right, y down)
    noise: float = 2.0  # pixel noise standard deviation, 0-255 levels
    flicker: float = 0.0  # relative amplitude of the global brightness wobble
    flicker_hz: float = 0.3
    light: float = 0.0  # relative strength of a static light falloff across the frame
    light_angle: float = 0.0
    seed: int = 0  # seeds the background texture, gradient direction, noise and flicker phase

    @property
    def facts(self) -> tuple[tuple[str, str, str], ...]:
        return tuple(obj.fact for obj in self.objects)

    def caption(self, rng: np.random.Generator) -> str:
        """One of several phrasings of this scene's facts, chosen with `rng`."""
        return _caption(self, rng)

    def mirrored(self, horizontal: bool, vertical: bool) -> Scene:
        """This scene reflected left-right and/or top-bottom: positions, paths, camera pan and light
        reflect, and the motion words follow (left <-> right, up <-> down); texture and noise are kept."""
        sx, sy = (-1.0 if horizontal else 1.0), (-1.0 if vertical else 1.0)
        swap = {**({"left": "right", "right": "left"} if horizontal else {}),
                **({"up": "down", "down": "up"} if vertical else {})}
        turn = -1.0 if horizontal != vertical else 1.0  # one reflection turns clockwise into anticlockwise
        objects = tuple(dataclasses.replace(
            obj, motion=swap.get(obj.motion, obj.motion),
            x=1.0 - obj.x if horizontal else obj.x, y=1.0 - obj.y if vertical else obj.y,
            dx=sx * obj.dx, dy=sy * obj.dy, angle=turn * obj.angle + (math.pi if vertical else 0.0),
            spin=turn * obj.spin) for obj in self.objects)
        light = math.atan2(sy * math.sin(self.light_angle), sx * math.cos(self.light_angle))
        return dataclasses.replace(self, objects=objects, pan=(sx * self.pan[0], sy * self.pan[1]), light_angle=light)

    def recoloured(self) -> Scene:
        """This scene with its objects' colours passed on one place (the first object's colour to the
        second, ..., the last's to the first); shapes, positions, paths and nuisances are kept."""
        colours = [obj.colour for obj in self.objects]
        objects = tuple(dataclasses.replace(obj, colour=colours[i - 1]) for i, obj in enumerate(self.objects))
        return dataclasses.replace(self, objects=objects)

    def to_dict(self) -> dict:
        """A JSON-ready description (format version 1) for shard sets and evaluation records."""
        return {"version": 1, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        if data.get("version") != 1:
            raise ValueError(f"unsupported scene format version {data.get('version')!r}")
        fields = {k: v for k, v in data.items() if k != "version"}
        fields["objects"] = tuple(SceneObject(**obj) for obj in fields["objects"])
        fields["pan"] = tuple(fields.get("pan", (0.0, 0.0)))
        return cls(**fields)


# --------------------------------------------------------------------------------------------
# Layout: facts -> a scene whose objects stay apart and inside the frame for the whole clip


def _check_fact(background: str, colour: str, shape: str, motion: str) -> None:
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r}; choose from {sorted(BACKGROUNDS)}")
    if colour not in COLOURS or shape not in SHAPES or motion not in MOTIONS:
        raise ValueError(f"unknown object {(colour, shape, motion)!r}")
    if colour == background:
        raise ValueError(f"a {colour} object on a {background} background would be invisible")
    if motion == "rotating" and shape not in ROTATING_SHAPES:
        raise ValueError(f"a rotating {shape} looks still; rotating shapes are {ROTATING_SHAPES}")


_STATE_SAMPLES = np.linspace(0.0, 1.0, 25)
_MARGIN = 0.02  # keep this far (normalised) from the frame edge
_GAP = 0.04  # and this far (short-side units) between object outlines


def _propose(rng: np.random.Generator, colour: str, shape: str, motion: str, pan: tuple[float, float]):
    """A random placement and motion for one object with its on-screen path (x, y, radius) at
    `_STATE_SAMPLES`, or None if this draw cannot fit the frame."""
    size = float(rng.uniform(0.085, 0.13))
    kw: dict[str, float] = {"angle": float(rng.uniform(0, 2 * math.pi))}
    if motion in DIRECTIONS:
        d = float(rng.uniform(0.3, 0.5))
        kw["dx"], kw["dy"] = {"left": (-d, 0), "right": (d, 0), "up": (0, -d), "down": (0, d)}[motion]
    elif motion == "diagonal":
        d = float(rng.uniform(0.25, 0.38))
        kw["dx"], kw["dy"] = d * rng.choice([-1, 1]), d * rng.choice([-1, 1])
    elif motion == "bouncing":
        h = float(rng.uniform(0.25, 0.4))
        # Mostly a ball bouncing on a floor; sometimes bouncing off a side wall.
        kw["dx"], kw["dy"] = ((0.0, -h) if rng.random() < 0.7 else (h * rng.choice([-1, 1]), 0.0))
        kw["bounces"] = float(rng.uniform(1.5, 2.5))
        kw["bounce_phase"] = float(rng.uniform(0, 1))
    elif motion == "rotating":
        kw["spin"] = float(rng.uniform(0.5, 1.0) * math.pi * rng.choice([-1, 1]))
    elif motion in ("growing", "shrinking"):
        g = float(rng.uniform(1.8, 2.3))
        kw["growth"] = g if motion == "growing" else 1 / g
        size *= 0.85  # the largest frame is sqrt(growth) times this
    # Choose the start so the whole path (including the camera's drift) stays inside the frame.
    probe = SceneObject(colour, shape, motion, 0.0, 0.0, size, **kw)
    path = probe.path(_STATE_SAMPLES)[:, :3]  # (S, 3), relative to the start
    path[:, 0] -= pan[0] * _STATE_SAMPLES
    path[:, 1] -= pan[1] * _STATE_SAMPLES
    r = path[:, 2]
    lo_x, hi_x = np.max(_MARGIN + r - path[:, 0]), np.min(1 - _MARGIN - r - path[:, 0])
    lo_y, hi_y = np.max(_MARGIN + r - path[:, 1]), np.min(1 - _MARGIN - r - path[:, 1])
    if lo_x > hi_x or lo_y > hi_y:
        return None
    x, y = float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y))
    path[:, 0] += x
    path[:, 1] += y
    return dataclasses.replace(probe, x=x, y=y), path


def _apart(a: np.ndarray, b: np.ndarray) -> bool:
    dist = np.hypot(a[:, 0] - b[:, 0], a[:, 1] - b[:, 1])
    return bool(np.all(dist > a[:, 2] + b[:, 2] + _GAP))


def _layout(rng, facts, pan, attempts: int = 60) -> tuple[SceneObject, ...] | None:
    for _ in range(attempts):
        placed: list[SceneObject] = []
        paths: list[np.ndarray] = []
        for colour, shape, motion in facts:
            for _ in range(40):
                proposal = _propose(rng, colour, shape, motion, pan)
                if proposal is None:
                    continue
                obj, path = proposal
                if all(_apart(path, other) for other in paths):
                    placed.append(obj)
                    paths.append(path)
                    break
            else:
                break
        if len(placed) == len(facts):
            return tuple(placed)
    return None


def make_scene(
    rng: np.random.Generator,
    background: str,
    objects: Sequence[tuple[str, str, str]],
    *,
    background_style: str | None = None,
    pan: bool | None = None,
) -> Scene:
    """A scene with the given facts; placement, motion amounts and nuisances are drawn from `rng`.

    `objects` holds (colour, shape, motion) triples; `background_style` and `pan` are random when
    None. Raises ValueError for unknown names, invisible objects or an unplaceable set.
    """
    if not 1 <= len(objects) <= 3:
        raise ValueError(f"a scene holds 1 to 3 objects, not {len(objects)}")
    for fact in objects:
        _check_fact(background, *fact)
    style = background_style or str(rng.choice(BACKGROUND_STYLES, p=[0.4, 0.3, 0.3]))
    if style not in BACKGROUND_STYLES:
        raise ValueError(f"unknown background style {style!r}; choose from {BACKGROUND_STYLES}")
    camera = (0.0, 0.0)
    if pan is None:
        pan = bool(rng.random() < 0.25)
    if pan:
        # Slow: at most 4% of the frame over the clip, well under any object motion (>= 25%).
        a, m = rng.uniform(0, 2 * math.pi), rng.uniform(0.02, 0.04)
        camera = (float(m * math.cos(a)), float(m * math.sin(a)))
    placed = _layout(rng, objects, camera)
    if placed is None:
        raise ValueError(f"cannot place {list(objects)} without overlap")
    return Scene(
        background=background,
        objects=placed,
        background_style=style,
        pan=camera,
        noise=float(rng.uniform(1.0, 3.0)),
        flicker=float(rng.uniform(0.0, 0.04)),
        flicker_hz=float(rng.uniform(0.15, 0.5)),
        light=float(rng.uniform(0.0, 0.06)),
        light_angle=float(rng.uniform(0, 2 * math.pi)),
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def sample_fact(rng: np.random.Generator, background: str, *, allow_held_out: bool = False,
                exclude_colours: Sequence[str] = (), motions: Sequence[str] = MOTIONS) -> tuple[str, str, str]:
    """A random (colour, shape, motion) visible on `background`, never held out unless allowed; the
    motion is one of `motions`."""
    held = set() if allow_held_out else set(HELD_OUT)
    colours = [c for c in COLOURS if c != background and c not in exclude_colours]
    while True:
        # Motion first, so "rotating" (which only three shapes take) is as common as the rest.
        motion = _pick(rng, motions)
        fact = (_pick(rng, colours), _pick(rng, ROTATING_SHAPES if motion == "rotating" else SHAPES), motion)
        if fact not in held:
            return fact


def sample_scene(rng: np.random.Generator, *, allow_held_out: bool = False,
                 motions: Sequence[str] = MOTIONS) -> Scene:
    """A random scene of 1 to 3 objects with distinct colours, each moving in one of `motions`;
    held-out facts only if allowed."""
    while True:
        background = _pick(rng, list(BACKGROUNDS))
        count = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
        facts: list[tuple[str, str, str]] = []
        for _ in range(count):
            taken = [f[0] for f in facts]
            facts.append(sample_fact(rng, background, allow_held_out=allow_held_out, exclude_colours=taken,
                                     motions=motions))
        try:
            return make_scene(rng, background, facts)
        except ValueError:  # rare: no room for this set of paths; draw another set
            continue


def direction_twin(scene: Scene, *, allow_held_out: bool = False) -> Scene | None:
    """The mirror image of `scene` whose caption differs from its own in every direction word.

    Reflected left-right when an object moves left or right, top-bottom when one moves up or down
    (both when both), left-right for a scene without such words. Trained beside the scene, the pair
    differs in the direction words and the way things move and in nothing the caption names besides:
    the contrast that teaches a model which way "left" is. None if the twin would show a held-out fact.
    """
    motions = {obj.motion for obj in scene.objects}
    vertical = bool(motions & {"up", "down"})
    horizontal = bool(motions & {"left", "right"}) or not vertical
    twin = scene.mirrored(horizontal, vertical)
    if not allow_held_out and set(twin.facts) & set(HELD_OUT):
        return None
    return twin


def binding_twin(scene: Scene, *, allow_held_out: bool = False) -> Scene | None:
    """The same scene with its objects' colours exchanged, for a scene of 2 or 3 objects that do
    different things: the pair shows the same paths and differs only in which coloured object takes
    which, so only the caption's binding of colour to shape and motion tells them apart (what a
    two-object prompt needs and a mirror twin does not teach). None for one object, for objects that
    all move alike, or if the twin would show a held-out fact."""
    if len(scene.objects) < 2 or len({obj.motion for obj in scene.objects}) < 2:
        return None
    twin = scene.recoloured()
    if not allow_held_out and set(twin.facts) & set(HELD_OUT):
        return None
    return twin


# --------------------------------------------------------------------------------------------
# Rendering


def _outline(shape: str, angle: float) -> list[np.ndarray]:
    """Unit-circumradius polygons: the outline, then (for the ring) the hole."""
    if shape in ("circle", "ring"):
        t = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        unit = np.stack([np.cos(t), np.sin(t)], 1)
        return [unit, unit * RING_INNER] if shape == "ring" else [unit]
    if shape == "square":
        t = angle + math.pi / 4 + np.arange(4) * math.pi / 2
        return [np.stack([np.cos(t), np.sin(t)], 1)]
    if shape == "triangle":
        t = angle - math.pi / 2 + np.arange(3) * 2 * math.pi / 3
        return [np.stack([np.cos(t), np.sin(t)], 1)]
    t = angle - math.pi / 2 + np.arange(10) * math.pi / 5  # star: outer and inner vertices alternate
    r = np.where(np.arange(10) % 2 == 0, 1.0, STAR_INNER)
    return [np.stack([r * np.cos(t), r * np.sin(t)], 1)]


def coverage(shape: str, cx: float, cy: float, radius: float, angle: float, width: int, height: int):
    """Anti-aliased coverage of one shape (centre and radius in pixels) as (alpha, x0, y0), or None.

    `alpha` is float32 in [0, 1] for the pixel box starting at (x0, y0); pixel (i, j) spans
    [j, j+1) x [i, i+1), so a shape centred at (w/2, h/2) sits in the middle of the frame.
    """
    x0, y0 = max(math.floor(cx - radius) - 1, 0), max(math.floor(cy - radius) - 1, 0)
    x1, y1 = min(math.ceil(cx + radius) + 2, width), min(math.ceil(cy + radius) + 2, height)
    if x1 <= x0 or y1 <= y0:
        return None
    s, scale = SUPERSAMPLE, 1 << _SUBPIXEL_BITS
    mask = np.zeros(((y1 - y0) * s, (x1 - x0) * s), np.uint8)
    for k, poly in enumerate(_outline(shape, angle)):
        # Continuous point X maps to supersampled pixel index X*s - 0.5 (pixel centres at k + 0.5).
        pts = ((poly * radius + (cx - x0, cy - y0)) * s - 0.5) * scale
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255 if k == 0 else 0, cv2.LINE_8, _SUBPIXEL_BITS)
    alpha = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    return alpha.astype(np.float32) / 255.0, x0, y0


def _background_canvas(scene: Scene, width: int, height: int, pad_x: int, pad_y: int) -> np.ndarray:
    """The background over the frame plus a pan margin, float32 (H + 2 pad_y, W + 2 pad_x, 3)."""
    rng = np.random.default_rng([scene.seed, 1])
    h, w = height + 2 * pad_y, width + 2 * pad_x
    canvas = np.empty((h, w, 3), np.float32)
    canvas[:] = BACKGROUNDS[scene.background]
    short = min(width, height)
    if scene.background_style == "gradient":
        a, amp = rng.uniform(0, 2 * math.pi), rng.uniform(10, 22)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = ((xx - w / 2) * math.cos(a) + (yy - h / 2) * math.sin(a)) / max(width, height)
        canvas += (amp * 2 * ramp)[..., None]
    elif scene.background_style == "texture":
        cell = short / rng.uniform(4, 8)  # soft blobs a quarter to an eighth of the short side
        grid = rng.standard_normal((math.ceil(h / cell) + 3, math.ceil(w / cell) + 3)).astype(np.float32)
        big = cv2.resize(grid, None, fx=cell, fy=cell, interpolation=cv2.INTER_CUBIC)
        tex = big[int(cell) : int(cell) + h, int(cell) : int(cell) + w]
        tex = cv2.GaussianBlur(tex, (0, 0), cell / 3)
        tex *= rng.uniform(4, 7) / max(float(tex.std()), 1e-6)
        tint = 1.0 + 0.15 * rng.standard_normal(3).astype(np.float32)  # slightly coloured, mostly luma
        canvas += tex[..., None] * tint
    return canvas


def render_clip(scene: Scene, width: int, height: int, frames: int, fps: float) -> np.ndarray:
    """Render `scene` as uint8 RGB frames (T, H, W, 3); identical pixels for identical arguments."""
    if width < 8 or height < 8 or frames < 1 or not fps > 0:
        raise ValueError(f"need width, height >= 8, frames >= 1 and fps > 0, got {width}x{height}x{frames}@{fps}")
    pan_px = (scene.pan[0] * width, scene.pan[1] * height)
    pad_x, pad_y = math.ceil(abs(pan_px[0])) + 2, math.ceil(abs(pan_px[1])) + 2
    canvas = _background_canvas(scene, width, height, pad_x, pad_y)
    rng = np.random.default_rng([scene.seed, 2])
    flicker_phase = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = ((xx - width / 2) * math.cos(scene.light_angle) + (yy - height / 2) * math.sin(scene.light_angle))
    light = 1.0 + scene.light * 2 * ramp / max(width, height)  # (H, W) static light falloff
    short = min(width, height)
    out = np.empty((frames, height, width, 3), np.uint8)
    for i in range(frames):
        u = i / (frames - 1) if frames > 1 else 0.0
        ox, oy = pan_px[0] * u, pan_px[1] * u
        if scene.background_style == "solid":
            frame = canvas[pad_y : pad_y + height, pad_x : pad_x + width].copy()
        else:
            shift = np.float32([[1, 0, pad_x + ox], [0, 1, pad_y + oy]])
            frame = cv2.warpAffine(canvas, shift, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        for obj in scene.objects:
            x, y, r, angle = obj.state(u)
            cov = coverage(obj.shape, x * width - ox, y * height - oy, r * short, angle, width, height)
            if cov is None:
                continue
            alpha, x0, y0 = cov
            patch = frame[y0 : y0 + alpha.shape[0], x0 : x0 + alpha.shape[1]]
            a = alpha[..., None]
            patch *= 1 - a
            patch += a * np.float32(COLOURS[obj.colour])
        gain = 1.0 + scene.flicker * math.sin(2 * math.pi * scene.flicker_hz * i / fps + flicker_phase)
        frame *= (light * gain)[..., None]
        frame += rng.standard_normal(frame.shape, dtype=np.float32) * scene.noise
        out[i] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------------------------
# Streaming for training


class ShapesStream(torch.utils.data.IterableDataset):
    """An endless stream of (clip uint8 (T, H, W, 3), caption) pairs, a pure function of (seed, index).

    Item `index` draws from `np.random.default_rng([seed, index])`, so there is no global state
    and DataLoader workers need no seeding. The stream of rank `rank` (of `world_size`) visits
    positions start, start+1, ... and position p is item p * world_size + rank. Worker w of n takes
    blocks of `chunk` positions round-robin; with `chunk` equal to the DataLoader's batch size the
    loader yields positions in order for any number of workers, so resuming after k samples is
    `start=k`.
    """

    def __init__(
        self,
        seed: int,
        width: int = 128,
        height: int = 128,
        frames: int = 16,
        fps: float = 8.0,
        *,
        start: int = 0,
        chunk: int = 1,
        rank: int = 0,
        world_size: int = 1,
        allow_held_out: bool = False,
    ) -> None:
        super().__init__()
        if chunk < 1 or world_size < 1 or not 0 <= rank < world_size or start < 0:
            raise ValueError("need chunk >= 1, start >= 0 and 0 <= rank < world_size")
        self.seed, self.width, self.height, self.frames, self.fps = seed, width, height, frames, fps
        self.start, self.chunk, self.rank, self.world_size = start, chunk, rank, world_size
        self.allow_held_out = allow_held_out

    def scene(self, index: int) -> tuple[Scene, str]:
        """The scene and caption of item `index` (without rendering)."""
        rng = np.random.default_rng([self.seed, index])
        scene = sample_scene(rng, allow_held_out=self.allow_held_out)
        return scene, scene.caption(rng)

    def item(self, index: int) -> tuple[np.ndarray, str]:
        scene, text = self.scene(index)
        return render_clip(scene, self.width, self.height, self.frames, self.fps), text

    def positions(self, worker: int = 0, workers: int = 1) -> Iterator[int]:
        """The stream positions worker `worker` of `workers` produces, in order."""
        block = worker
        while True:
            first = self.start + block * self.chunk
            yield from range(first, first + self.chunk)
            block += workers

    def __iter__(self) -> Iterator[tuple[np.ndarray, str]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for position in self.positions(worker, workers):
            yield self.item(position * self.world_size + self.rank)
