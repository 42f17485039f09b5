"""Sign a clip or still with a C2PA manifest describing where it came from.

The manifest is made last, after the watermark is embedded, so its hard binding covers the final
bytes. The signed file is written to a temporary name beside ``out_path`` and renamed into place
only when c2pa succeeded, so a failure never leaves a partial or unsigned output.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from storage import sha256_file

from . import _sdk
from .errors import AssetNotFoundError, ProvenanceError, SigningError, UnsupportedFormatError
from .formats import MediaFormat, sniff
from .signer import Signer

logger = logging.getLogger(__name__)

Source = Literal["generated", "capture", "edit"]

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
DIGITAL_SOURCE_TYPES: dict[str, str] = {
    "generated": IPTC + "trainedAlgorithmicMedia",
    "capture": IPTC + "digitalCapture",
}
GENERATION_LABEL = "org.veriframe.generation"
GENERATION_VERSION = 1
SOFT_BINDING_LABEL = "c2pa.soft-binding"
CLAIM_GENERATOR = "veriframe"
PARENT_ID = "parent"
# Signing never touches the network and never re-validates trust: an ingredient's recorded
# validation then states integrity only, and verification judges trust with its own config.
# Memory stays flat with file size only with the two "core" settings (measured, c2pa-rs 0.91.3):
# without a Merkle chunk size the BMFF hash reads the whole mdat in one read, at signing and at
# every later verification; without a low backing-store threshold the signed output is buffered
# in memory before it reaches the destination.
MERKLE_CHUNK_KB = 1024
SIGN_SETTINGS: dict[str, Any] = {
    "core": {"merkle_tree_chunk_size_in_kb": MERKLE_CHUNK_KB, "backing_store_memory_threshold_in_mb": 1},
    "builder": {"thumbnail": {"enabled": False}},
    "verify": {
        "verify_trust": False,
        "verify_after_sign": False,
        "ocsp_fetch": False,
        "remote_manifest_fetch": False,
    },
}


def veriframe_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("veriframe")
    except PackageNotFoundError:  # running from a source checkout
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        try:
            import tomllib

            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, ValueError):
            return "unknown"


@dataclass(frozen=True, repr=False)
class SignResult:
    """What signing produced; ``manifest_bytes`` is the manifest store a repository keeps."""

    out_path: Path
    mime: str
    manifest_label: str
    manifest_bytes: bytes = field(compare=False)
    sha256: str
    size: int
    sidecar_path: Path | None = None

    def __repr__(self) -> str:
        return (
            f"SignResult(out_path={str(self.out_path)!r}, manifest_label={self.manifest_label!r}, "
            f"sha256={self.sha256!r}, manifest_bytes=<{len(self.manifest_bytes)} bytes>)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_path": str(self.out_path),
            "mime": self.mime,
            "manifest_label": self.manifest_label,
            "manifest_size": len(self.manifest_bytes),
            "sha256": self.sha256,
            "size": self.size,
            "sidecar_path": str(self.sidecar_path) if self.sidecar_path else None,
        }


# --- manifest definition ---------------------------------------------------------------------------


def _software_agent(version: str) -> dict[str, str]:
    return {"name": CLAIM_GENERATOR, "version": version}


def _actions(source: Source, has_parent: bool, version: str) -> list[dict[str, Any]]:
    """C2PA 2.x rules: a new asset starts with c2pa.created; one with a parent with c2pa.opened."""
    agent = _software_agent(version)
    source_type = DIGITAL_SOURCE_TYPES.get(source)
    if not has_parent:
        return [{"action": "c2pa.created", "digitalSourceType": source_type, "softwareAgent": agent}]
    opened = {"action": "c2pa.opened", "parameters": {"ingredientIds": [PARENT_ID]}, "softwareAgent": agent}
    edited: dict[str, Any] = {"action": "c2pa.edited", "softwareAgent": agent}
    if source_type is not None:
        # The parent was already signed (say by a camera or a generator); the clip we sign is
        # still the capture or generation it claims to be.
        edited["digitalSourceType"] = source_type
        edited["description"] = "signed by veriframe, parent manifest kept as ingredient"
    return [opened, edited]


def _soft_binding_assertion(soft_binding: dict[str, Any]) -> dict[str, Any]:
    alg, value = soft_binding.get("alg"), soft_binding.get("value")
    if not isinstance(alg, str) or not alg or not isinstance(value, str) or not value:
        raise ProvenanceError(
            "soft_binding needs string 'alg' (e.g. veriframe.wm.v1) and 'value' (payload hex)"
        )
    block = {"scope": soft_binding.get("scope", {}), "value": value}
    return {"label": SOFT_BINDING_LABEL, "data": {"alg": alg, "blocks": [block]}}


def _generation_assertion(generation: dict[str, Any], include_prompt: bool) -> dict[str, Any]:
    """Our generation record; the prompt text only when the creator opted in, its hash always."""
    data = {k: v for k, v in generation.items() if k not in ("prompt", "version")}
    prompt = generation.get("prompt")
    if prompt is not None:
        data.setdefault("prompt_sha256", hashlib.sha256(str(prompt).encode("utf-8")).hexdigest())
        if include_prompt:
            data["prompt"] = str(prompt)
    data["version"] = GENERATION_VERSION
    try:
        json.dumps(data)
    except (TypeError, ValueError):
        raise ProvenanceError(
            "generation metadata must be JSON values (str, int, float, bool, list, dict)"
        ) from None
    return {"label": GENERATION_LABEL, "data": data}


def build_definition(
    *,
    source: Source,
    mime: str,
    title: str,
    has_parent: bool,
    author: str | None = None,
    soft_binding: dict[str, Any] | None = None,
    generation: dict[str, Any] | None = None,
    include_prompt: bool = False,
) -> dict[str, Any]:
    """The manifest definition c2pa's Builder takes (pure: unit-testable without signing)."""
    if source not in ("generated", "capture", "edit"):
        raise ProvenanceError(f"source must be generated, capture or edit, not {source!r}")
    version = veriframe_version()
    assertions: list[dict[str, Any]] = [
        {"label": "c2pa.actions", "data": {"actions": _actions(source, has_parent, version)}}
    ]
    if soft_binding is not None:
        assertions.append(_soft_binding_assertion(soft_binding))
    if generation is not None:
        assertions.append(_generation_assertion(generation, include_prompt))
    if author:
        assertions.append(
            {
                "label": "stds.schema-org.CreativeWork",
                "data": {
                    "@context": "http://schema.org/",
                    "@type": "CreativeWork",
                    "author": [{"@type": "Person", "name": author}],
                },
            }
        )
    return {
        "claim_generator_info": [{"name": CLAIM_GENERATOR, "version": version}],
        "title": title,
        "format": mime,
        "assertions": assertions,
    }


# --- signing ---------------------------------------------------------------------------------------


def _carries_manifest(path: Path, fmt: MediaFormat) -> bool:
    with open(path, "rb") as f:
        outcome = _sdk.read_store(f, fmt.mime, SIGN_SETTINGS)
    if outcome.kind == "malformed":
        logger.warning(
            "%s carries a manifest c2pa cannot decode; it is replaced, not kept (%s)",
            path.name,
            outcome.message,
        )
    return outcome.kind == "store"


class _HashingSink(io.RawIOBase):
    """The destination file, hashed as c2pa writes it, which saves reading the output again.

    c2pa-rs writes the signed asset front to back; should it ever seek back and rewrite, the
    running hash no longer describes the file and ``sha256()`` re-reads it instead.
    """

    def __init__(self, f: io.BufferedRandom) -> None:
        super().__init__()
        self._f = f
        self._hash = hashlib.sha256()
        self._hashed = 0  # bytes [0, _hashed) went through the hash, in order
        self._sequential = True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        position = self._f.tell()
        written = self._f.write(data)
        if self._sequential and position == self._hashed:
            self._hash.update(memoryview(data)[:written])
            self._hashed += written
        elif position < self._hashed:
            self._sequential = False
        return written

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        return self._f.readinto(buffer)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def flush(self) -> None:
        self._f.flush()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def sha256(self, path: Path) -> str:
        self._f.flush()
        if self._sequential and self._hashed == os.fstat(self._f.fileno()).st_size:
            return self._hash.hexdigest()
        return sha256_file(path).sha256


def _temp_beside(path: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    return Path(name)


def sign_file(
    in_path: Path,
    out_path: Path,
    signer: Signer,
    *,
    source: Source,
    title: str | None = None,
    author: str | None = None,
    soft_binding: dict[str, Any] | None = None,
    generation: dict[str, Any] | None = None,
    include_prompt: bool = False,
    parent_path: Path | None = None,
    sidecar: bool = False,
) -> SignResult:
    """Sign ``in_path`` (MP4, MOV, JPEG, PNG) into ``out_path`` with a veriframe manifest.

    ``source``: ``generated`` (c2pa.created, trainedAlgorithmicMedia), ``capture`` (c2pa.created,
    digitalCapture) or ``edit`` (c2pa.opened + c2pa.edited with ``parent_path`` as parent
    ingredient). An input that already carries a manifest is kept as an ingredient (the parent,
    unless ``parent_path`` names another), so its history survives. WebM/MKV cannot embed a
    manifest: they raise UnsupportedFormatError unless ``sidecar=True``, which copies the file
    and writes ``<out>.c2pa`` beside it.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.is_file():
        raise AssetNotFoundError(f"{in_path} does not exist")
    fmt = sniff(in_path)
    if not fmt.embeddable and not sidecar:
        what = fmt.name.upper() if fmt.name != "unknown" else "not a recognised media format"
        raise UnsupportedFormatError(
            f"{in_path.name} is {what}, which cannot carry an embedded C2PA manifest (veriframe embeds"
            " in MP4, MOV, JPEG and PNG); pass sidecar=True to write a .c2pa manifest beside it"
        )

    ingredients: list[_sdk.IngredientSource] = []
    parent = Path(parent_path) if parent_path is not None else None
    if parent is not None and not parent.is_file():
        raise AssetNotFoundError(f"parent {parent} does not exist")
    input_signed = fmt.embeddable and _carries_manifest(in_path, fmt)
    if parent is None and input_signed:
        parent = in_path  # keep the input's own history as the parent
    elif input_signed and parent is not None and parent.resolve() != in_path.resolve():
        # An explicit parent, and the input carries a manifest of its own: keep both.
        ingredients.append(
            _sdk.IngredientSource(
                {"title": in_path.name, "relationship": "componentOf"}, fmt.mime, str(in_path)
            )
        )
    if source == "edit" and parent is None:
        raise ProvenanceError("source 'edit' needs parent_path (or an input that already carries a manifest)")
    if parent is not None:
        ingredients.insert(
            0,
            _sdk.IngredientSource(
                {"title": parent.name, "relationship": "parentOf", "label": PARENT_ID},
                sniff(parent).mime,
                str(parent),
            ),
        )

    definition = build_definition(
        source=source,
        mime=fmt.mime,
        title=title or out_path.name,
        has_parent=parent is not None,
        author=author,
        soft_binding=soft_binding,
        generation=generation,
        include_prompt=include_prompt,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(out_path)
    sidecar_path = out_path.with_suffix(".c2pa") if not fmt.embeddable else None
    try:
        with open(in_path, "rb") as src, open(tmp, "w+b") as dst:
            sink = _HashingSink(dst)
            manifest_bytes = _sdk.sign_stream(
                definition, ingredients, fmt.mime, src, sink, signer, SIGN_SETTINGS, embed=fmt.embeddable
            )
            digest = sink.sha256(tmp)
            os.fsync(dst.fileno())
        if not manifest_bytes:
            raise SigningError("c2pa returned no manifest store")
        label = _sdk.active_manifest_label(manifest_bytes)
        if label is None:
            raise SigningError("the manifest store c2pa returned has no active manifest")
        os.chmod(tmp, stat.S_IMODE(in_path.stat().st_mode) | stat.S_IRUSR | stat.S_IWUSR)
        size = tmp.stat().st_size
        if sidecar_path is not None:
            side_tmp = _temp_beside(sidecar_path)
            try:
                side_tmp.write_bytes(manifest_bytes)
                os.chmod(side_tmp, 0o644)
                os.replace(side_tmp, sidecar_path)
            finally:
                side_tmp.unlink(missing_ok=True)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)

    logger.info("signed %s -> %s (%s, %s, manifest %s)", in_path.name, out_path.name, fmt.name, source, label)
    return SignResult(
        out_path=out_path,
        mime=fmt.mime,
        manifest_label=label,
        manifest_bytes=manifest_bytes,
        sha256=digest,
        size=size,
        sidecar_path=sidecar_path,
    )
