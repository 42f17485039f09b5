"""Receiving an uploaded clip: write it under a name of our choosing, sniff it, then hand it on.

The client's file name is reduced by ``secure_filename`` and only ever stored as a label; the
bytes land in a temporary file we named. What the file is comes from its bytes (``media.probe``
reads the headers and asks FFmpeg), never from its name or the client's Content-Type, and the
size, resolution and duration limits are enforced here, before any job is created.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from media import probe
from media.errors import EmptyMediaError, LimitExceededError, MediaError
from media.probe import MediaInfo
from settings import Settings

from .errors import Problem

UNSUPPORTED = "the upload is not a video or image veriframe reads (MP4, MOV, WebM, MKV, AVI, MPEG-TS, PNG, JPEG)"


@dataclass(frozen=True)
class Upload:
    path: Path
    filename: str
    media_type: str
    info: MediaInfo


def sniff(head: bytes) -> str | None:
    """The media type the leading bytes announce, for the containers veriframe reads; None otherwise.

    FFmpeg alone is too willing: it opens plain text as "tty" art, so bytes decide first.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:10] == b"qt" else "video/mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "video/quicktime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "video/mp2t"
    return None


@contextlib.contextmanager
def received(file: FileStorage | None, settings: Settings) -> Iterator[Upload]:
    """The upload as a probed temporary file (deleted afterwards); Problem 400/413/415 otherwise."""
    if file is None or not file.filename:
        raise Problem(400, "send the clip as a multipart/form-data field named 'file'", errors=[
            {"field": "file", "message": "required"}])
    filename = secure_filename(file.filename) or "upload"
    with tempfile.TemporaryDirectory(prefix="veriframe-web-") as tmp:
        path = Path(tmp) / "upload"  # no extension: FFmpeg must not pick a demuxer by name
        with open(path, "wb") as out:
            shutil.copyfileobj(file.stream, out, 1024 * 1024)
        with open(path, "rb") as fh:
            head = fh.read(512)
        if not head:
            raise Problem(400, "the uploaded file is empty")
        media_type = sniff(head)
        if media_type is None:
            raise Problem(415, UNSUPPORTED, title="Unsupported Media Type")
        try:
            info = probe(path, settings.media_limits)
        except EmptyMediaError:
            raise Problem(400, "the uploaded file is empty") from None
        except LimitExceededError as exc:
            raise Problem(413, str(exc)) from None
        except MediaError:
            raise Problem(415, UNSUPPORTED, title="Unsupported Media Type") from None
        yield Upload(path, filename, media_type, info)
