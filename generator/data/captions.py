"""Captions for Shapes-world scenes: several phrasings of the same facts.

Every caption names each object's colour and shape as "<colour> <shape>", one phrase from
`MOTION_PHRASES[motion]` for its motion, and "<background> background"; the rest (word order,
verb form, an optional background style and camera pan) varies. Objects are joined with "and".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .shapes import Scene, SceneObject

# (participle, finite verb) per motion: "a red circle moving right" / "a red circle moves right".
MOTION_PHRASES: dict[str, tuple[tuple[str, str], ...]] = {
    "left": (
        ("moving left", "moves left"),
        ("moving to the left", "moves to the left"),
        ("drifting to the left", "drifts to the left"),
        ("sliding left", "slides left"),
        ("travelling left", "travels left"),
    ),
    "right": (
        ("moving right", "moves right"),
        ("moving to the right", "moves to the right"),
        ("drifting to the right", "drifts to the right"),
        ("sliding right", "slides right"),
        ("travelling right", "travels right"),
    ),
    "up": (
        ("moving up", "moves up"),
        ("rising", "rises"),
        ("drifting upward", "drifts upward"),
        ("floating up", "floats up"),
    ),
    "down": (
        ("moving down", "moves down"),
        ("falling", "falls"),
        ("sinking", "sinks"),
        ("drifting downward", "drifts downward"),
    ),
    "diagonal": (
        ("moving diagonally", "moves diagonally"),
        ("drifting diagonally", "drifts diagonally"),
        ("sliding diagonally across the frame", "slides diagonally across the frame"),
    ),
    "bouncing": (
        ("bouncing", "bounces"),
        ("bouncing like a ball", "bounces like a ball"),
        ("bouncing back and forth", "bounces back and forth"),
    ),
    "rotating": (
        ("rotating", "rotates"),
        ("spinning", "spins"),
        ("turning in place", "turns in place"),
        ("rotating slowly", "rotates slowly"),
    ),
    "growing": (
        ("growing", "grows"),
        ("getting bigger", "gets bigger"),
        ("expanding", "expands"),
        ("growing larger", "grows larger"),
    ),
    "shrinking": (
        ("shrinking", "shrinks"),
        ("getting smaller", "gets smaller"),
        ("shrinking away", "shrinks away"),
        ("contracting", "contracts"),
    ),
    "still": (
        ("standing still", "stands still"),
        ("staying still", "stays still"),
        ("resting in place", "rests in place"),
        ("sitting motionless", "sits motionless"),
    ),
}
STYLE_WORDS = {"solid": ("plain", "solid"), "gradient": ("softly lit", "gradient"), "texture": ("textured", "mottled")}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _object_phrases(obj: SceneObject, rng: np.random.Generator) -> tuple[str, str]:
    participle, finite = _pick(rng, MOTION_PHRASES[obj.motion])
    if obj.motion == "bouncing" and participle == "bouncing back and forth" and obj.dx == 0:
        participle, finite = "bouncing up and down", "bounces up and down"
    noun = f"{_article(obj.colour)} {obj.colour} {obj.shape}"
    return f"{noun} {participle}", f"{noun} {finite}"


def _pan_phrase(pan: tuple[float, float]) -> str:
    x, y = pan
    direction = ("right" if x > 0 else "left") if abs(x) >= abs(y) else ("down" if y > 0 else "up")
    return f"as the camera pans slowly {direction}"


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A lower-case caption of `scene`; the phrasing is drawn from `rng`."""
    phrases = [_object_phrases(obj, rng) for obj in scene.objects]
    participles, clauses = [p for p, _ in phrases], [c for _, c in phrases]
    background = f"{scene.background} background"
    if rng.random() < 0.4:
        background = f"{_pick(rng, STYLE_WORDS[scene.background_style])} {background}"
    bg = f"{_article(background)} {background}"
    template = int(rng.integers(5))
    if template == 0:
        text = f"{_join(participles)} on {bg}"
    elif template == 1:
        text = f"on {bg}, {_join(clauses)}"
    elif template == 2:
        text = f"{_join(participles)} against {bg}"
    elif template == 3:
        text = f"{bg} with {_join(participles)}"
    else:
        text = f"{_join(clauses)} on {bg}"
    if scene.pan != (0.0, 0.0) and rng.random() < 0.5:
        text = f"{text}, {_pan_phrase(scene.pan)}"
    return text
