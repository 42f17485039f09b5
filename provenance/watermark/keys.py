"""Watermark keys: derived by HMAC from secrets kept in the instance's ``secrets.toml``.

A keyring holds one or more master secrets, each with a small integer id (0..15, it travels in
the payload). Embedding uses the active id; detection tries every id in the ring, so rotating
to a new secret keeps old marks readable. The per-purpose keys (sync pattern, carrier, cell
permutation) are HMAC-SHA256 derivations of the master secret, never the secret itself.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

KEY_ID_BITS = 4
MAX_KEY_ID = (1 << KEY_ID_BITS) - 1


class KeyringError(ValueError):
    """The watermark section of the secrets file is missing or malformed."""


@dataclass(frozen=True)
class WatermarkKey:
    """One master secret and its id. ``repr`` never shows the secret."""

    key_id: int
    secret: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= MAX_KEY_ID:
            raise KeyringError(f"watermark key id must be within 0..{MAX_KEY_ID}, got {self.key_id}")
        if len(self.secret) < 16:
            raise KeyringError("watermark secret must be at least 16 bytes")

    def __repr__(self) -> str:
        return f"WatermarkKey(key_id={self.key_id}, secret=<hidden>)"

    def derive(self, purpose: str) -> bytes:
        return hmac.new(self.secret, f"veriframe-watermark-v1|{purpose}".encode(), hashlib.sha256).digest()

    def rng(self, purpose: str) -> np.random.Generator:
        """A NumPy generator seeded from a purpose-specific derived key."""
        return np.random.Generator(np.random.PCG64(int.from_bytes(self.derive(purpose), "big")))


@dataclass(frozen=True)
class Keyring:
    """The keys an instance embeds with (``active``) and accepts at detection (all)."""

    keys: tuple[WatermarkKey, ...]
    active_id: int

    def __post_init__(self) -> None:
        ids = [k.key_id for k in self.keys]
        if not ids:
            raise KeyringError("watermark keyring is empty")
        if len(set(ids)) != len(ids):
            raise KeyringError("watermark keyring has duplicate key ids")
        if self.active_id not in ids:
            raise KeyringError(f"active watermark key id {self.active_id} is not in the keyring")

    @property
    def active(self) -> WatermarkKey:
        return next(k for k in self.keys if k.key_id == self.active_id)

    @classmethod
    def from_secrets(cls, secrets: Mapping[str, object]) -> Keyring:
        section = secrets.get("watermark")
        if not isinstance(section, Mapping):
            raise KeyringError("secrets file has no [watermark] section")
        raw_keys = section.get("keys")
        if not isinstance(raw_keys, Mapping) or not raw_keys:
            raise KeyringError("secrets file has no [watermark.keys]")
        keys = []
        for kid, hexsecret in raw_keys.items():
            try:
                keys.append(WatermarkKey(int(kid), bytes.fromhex(str(hexsecret))))
            except ValueError as exc:
                raise KeyringError(f"watermark key {kid!r}: {exc}") from None
        try:
            active = int(section.get("active_key_id", keys[-1].key_id))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise KeyringError("watermark active_key_id is not an integer") from None
        return cls(tuple(sorted(keys, key=lambda k: k.key_id)), active)

    def to_toml(self) -> str:
        lines = ["[watermark]", f"active_key_id = {self.active_id}", "", "[watermark.keys]"]
        lines += [f'"{k.key_id}" = "{k.secret.hex()}"' for k in self.keys]
        return "\n".join(lines) + "\n"

    def rotated(self, new_secret: bytes) -> Keyring:
        """A ring with a new active key added; the old keys stay accepted for detection."""
        used = {k.key_id for k in self.keys}
        free = [i for i in range(MAX_KEY_ID + 1) if i not in used]
        if not free:
            raise KeyringError("all 16 watermark key ids are in use; remove an old key first")
        new = WatermarkKey(free[0], new_secret)
        return Keyring(self.keys + (new,), new.key_id)


def new_keyring_toml(secret: bytes) -> str:
    """The secrets-file text of a fresh instance: one watermark key with id 0."""
    return Keyring((WatermarkKey(0, secret),), 0).to_toml()
