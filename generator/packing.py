"""Spacetime patches, and grouping clips of mixed sizes into model calls.

`patchify` cuts a latent (B, C, T, H, W) into p_t x p_h x p_w patches in (t, h, w) raster order
(zero-padding each axis up to a whole patch; `unpatchify` crops it away again) and `patch_grid`
gives each patch its integer (t, h, w) coordinates for the rotary embedding.

`VideoDiT.forward_packed` runs any mix of (T, H, W) in one sequence; `pack_by_tokens` decides which
clips share a sequence so each stays under a token budget (first-fit decreasing, as NaViT). The
simpler alternative, `bucket_by_tokens`, batches clips of identical latent size, with the batch size
set so every batch holds about the same number of tokens (as Open-Sora's buckets): no masks, but
clips must come in a few fixed sizes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Size = tuple[int, int, int]  # latent (T, H, W)
Patch = tuple[int, int, int]  # (p_t, p_h, p_w)


def pad_to_patches(x: Tensor, patch: Patch) -> Tensor:
    """Zero-pad the (T, H, W) axes of (B, C, T, H, W) up to multiples of the patch size."""
    T, H, W = x.shape[-3:]
    pt, ph, pw = patch
    return F.pad(x, (0, -W % pw, 0, -H % ph, 0, -T % pt))


def patchify(x: Tensor, patch: Patch) -> Tensor:
    """(B, C, T, H, W) -> (B, T'*H'*W', C*p_t*p_h*p_w), tokens in (t, h, w) raster order."""
    x = pad_to_patches(x, patch)
    B, C, T, H, W = x.shape
    pt, ph, pw = patch
    x = x.reshape(B, C, T // pt, pt, H // ph, ph, W // pw, pw)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, T', H', W', C, pt, ph, pw)
    return x.reshape(B, (T // pt) * (H // ph) * (W // pw), C * pt * ph * pw)


def unpatchify(tokens: Tensor, size: tuple[int, int, int], channels: int, patch: Patch) -> Tensor:
    """Inverse of `patchify`: (B, N, C*p) -> (B, C, T, H, W), cropping the padding away."""
    T, H, W = size
    pt, ph, pw = patch
    gt, gh, gw = -(-T // pt), -(-H // ph), -(-W // pw)
    B = tokens.shape[0]
    x = tokens.reshape(B, gt, gh, gw, channels, pt, ph, pw)
    x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)  # (B, C, T', pt, H', ph, W', pw)
    return x.reshape(B, channels, gt * pt, gh * ph, gw * pw)[:, :, :T, :H, :W]


def patch_grid(size: tuple[int, int, int], patch: Patch, device: torch.device | None = None) -> Tensor:
    """Integer (t, h, w) coordinates of every patch of a latent of `size`, in token order: (N, 3)."""
    gt, gh, gw = (-(-s // p) for s, p in zip(size, patch, strict=True))
    axes = [torch.arange(n, device=device) for n in (gt, gh, gw)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def pad_to_frames(t: Tensor, pt: int) -> Tensor:
    """Pad per-frame values (B, T) at the end (repeating the last) to a multiple of p_t."""
    return F.pad(t[:, None], (0, -t.shape[1] % pt), mode="replicate")[:, 0] if t.shape[1] % pt else t


def tokens_of(size: Size, patch: Sequence[int]) -> int:
    """Number of DiT tokens of a latent of `size` (padding to whole patches included)."""
    return math.prod(-(-s // p) for s, p in zip(size, patch, strict=True))


def pack_by_tokens(sizes: Sequence[Size], patch: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices of `sizes` grouped into packs of at most `max_tokens` tokens (a clip larger than the
    budget gets a pack of its own). Largest clips are placed first, each into the first pack with
    room, which wastes little of the budget."""
    order = sorted(range(len(sizes)), key=lambda i: -tokens_of(sizes[i], patch))
    packs: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = tokens_of(sizes[i], patch)
        for p, free in enumerate(room):
            if n <= free:
                packs[p].append(i)
                room[p] -= n
                break
        else:
            packs.append([i])
            room.append(max_tokens - n)
    return packs


def bucket_by_tokens(sizes: Sequence[Size], patch: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices of `sizes` grouped into batches of one latent size each, of about `batch_tokens`
    tokens: batch size = max(1, batch_tokens // tokens per clip)."""
    groups: dict[Size, list[int]] = defaultdict(list)
    for i, size in enumerate(sizes):
        groups[tuple(size)].append(i)
    batches = []
    for size, members in sorted(groups.items()):
        per_batch = max(1, batch_tokens // tokens_of(size, patch))
        batches += [members[j : j + per_batch] for j in range(0, len(members), per_batch)]
    return batches
