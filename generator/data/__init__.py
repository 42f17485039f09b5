"""The Shapes world: seeded captioned clips to train on (`shapes`, `captions`) and the procedural
analyser that scores a clip against the facts of its caption (`analyse`).
"""

from .analyse import Analysis, ObjectAnalysis, analyse_clip, score, summarise
from .captions import MOTION_PHRASES
from .shapes import (
    BACKGROUND_STYLES,
    BACKGROUNDS,
    COLOURS,
    DIRECTIONS,
    HELD_OUT,
    MOTIONS,
    ROTATING_SHAPES,
    SHAPES,
    Scene,
    SceneObject,
    ShapesStream,
    binding_twin,
    direction_twin,
    make_scene,
    render_clip,
    sample_fact,
    sample_scene,
)

__all__ = [
    "BACKGROUNDS",
    "BACKGROUND_STYLES",
    "COLOURS",
    "DIRECTIONS",
    "HELD_OUT",
    "MOTIONS",
    "MOTION_PHRASES",
    "ROTATING_SHAPES",
    "SHAPES",
    "Analysis",
    "ObjectAnalysis",
    "Scene",
    "SceneObject",
    "ShapesStream",
    "analyse_clip",
    "binding_twin",
    "direction_twin",
    "make_scene",
    "render_clip",
    "sample_fact",
    "sample_scene",
    "score",
    "summarise",
]
