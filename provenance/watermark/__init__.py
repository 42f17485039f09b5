"""Keyed invisible luma watermark: embed and detect (see docs/watermark.md)."""

from .core import ALGORITHM, DetectionResult, Embedder, WatermarkConfig, detect_frames, embed_frames
from .keys import Keyring, KeyringError, WatermarkKey
from .payload import PayloadError, parse_payload_hex

__all__ = [
    "ALGORITHM",
    "DetectionResult",
    "Embedder",
    "Keyring",
    "KeyringError",
    "PayloadError",
    "WatermarkConfig",
    "WatermarkKey",
    "detect_frames",
    "embed_frames",
    "parse_payload_hex",
]
