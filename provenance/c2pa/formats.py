"""Which container a file is, judged from its first bytes, never from its name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MediaFormat:
    """A sniffed container: its MIME type and whether veriframe embeds manifests in it."""

    name: str
    mime: str
    embeddable: bool


JPEG = MediaFormat("jpeg", "image/jpeg", True)
PNG = MediaFormat("png", "image/png", True)
MP4 = MediaFormat("mp4", "video/mp4", True)
MOV = MediaFormat("mov", "video/quicktime", True)
WEBM = MediaFormat("webm", "video/webm", False)
MATROSKA = MediaFormat("mkv", "video/x-matroska", False)
AVI = MediaFormat("avi", "video/x-msvideo", False)
UNKNOWN = MediaFormat("unknown", "application/octet-stream", False)

_QUICKTIME_BRANDS = {b"qt  "}


def sniff_bytes(head: bytes) -> MediaFormat:
    """Classify a file from its first 64 bytes."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return MOV if head[8:12] in _QUICKTIME_BRANDS else MP4
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return MOV  # old QuickTime files start without an ftyp box
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return WEBM if b"webm" in head[:64] else MATROSKA
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return AVI
    return UNKNOWN


def sniff(path: Path) -> MediaFormat:
    with open(path, "rb") as f:
        return sniff_bytes(f.read(64))
