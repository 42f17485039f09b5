"""Attention for the video DiT: 3D rotary positions, the per-forward attention plan, and the self-
and cross-attention layers, all through `scaled_dot_product_attention` (no flash-attn/xformers).

Self-attention comes in three kinds: "full" (over the whole clip, spacetime), "spatial" (within a
frame) and "temporal" (across the frames at one patch position). A batch of same-size clips runs
them as plain (regrouped) attention; Patch n' Pack runs them clip by clip ("split") or through one
block-diagonal mask per kind ("mask"), which give the same result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --------------------------------------------------------------------------- rotary positions


class Rope3D(nn.Module):
    """Rotary position embedding over (t, h, w): the head dimension is split into three bands.

    Each band rotates by its own axis coordinate, so q.k depends only on the (dt, dh, dw) offset
    between two patches. There is no table of learned positions, hence no largest size: any grid,
    including ones never seen in training, gets valid positions (the angles are computed on demand).
    """

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        band_hw = 2 * (3 * head_dim // 16)  # 3/8 of the dims each to h and w, 1/4 to t (all even)
        self.bands = (head_dim - 2 * band_hw, band_hw, band_hw)
        for axis, dim in zip("thw", self.bands, strict=True):
            inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
            self.register_buffer(f"inv_freq_{axis}", inv_freq, persistent=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """positions (L, 3) -> cos, sin (L, head_dim) in the rotate-half layout."""
        pos = positions.float()
        freqs = (self.inv_freq_t, self.inv_freq_h, self.inv_freq_w)
        angles = torch.cat([pos[:, i, None] * f[None] for i, f in enumerate(freqs)], dim=-1)  # (L, Dh/2)
        angles = torch.cat([angles, angles], dim=-1)  # (L, Dh)
        return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate (B, L, heads, Dh) by the angles of each position (cos, sin (L, Dh)); pairs are (i, i + Dh/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos[:, None].to(x.dtype) + rotated * sin[:, None].to(x.dtype)


# --------------------------------------------------------------------------- attention


@dataclass
class AttentionPlan:
    """What every block needs to know about the token sequence, computed once per forward."""

    rope: tuple[Tensor, Tensor]  # cos, sin (L, Dh)
    grids: list[tuple[int, int, int]]  # patch grid (T', H', W') of the batch, or of each packed clip
    segments: list[int] | None = None  # "split" packing: attention runs per clip of these lengths
    key_mask: Tensor | None = None  # (B, L) bool: padded batches, False on padding tokens
    self_masks: dict[str, Tensor] | None = None  # "mask" packing: (1, 1, L, L) per attention kind
    cross_mask: Tensor | None = None  # bool, broadcastable to (B, heads, L, S); True = may attend
    row_index: Tensor | None = None  # (L,) conditioning row of each token; None: one row per batch item


def _heads(x: Tensor, heads: int) -> Tensor:
    B, L, D = x.shape
    return x.view(B, L, heads, D // heads)  # (B, L, heads, Dh)


def _merge_heads(x: Tensor) -> Tensor:
    B, H, L, Dh = x.shape
    return x.transpose(1, 2).reshape(B, L, H * Dh)


def _grouped_attention(q: Tensor, k: Tensor, v: Tensor, grid: tuple[int, int, int], kind: str,
                       key_mask: Tensor | None) -> Tensor:
    """Attention within each frame ("spatial") or across the frames of each position ("temporal") of
    one (T', H', W') grid in raster order. Groups are folded into the head axis so the call stays 4D,
    which the fused CPU kernel needs (5D inputs fall back to the unfused path)."""
    B, H, L, D = q.shape
    T, S = grid[0], grid[1] * grid[2]
    G, n = (T, S) if kind == "spatial" else (S, T)

    def group(a: Tensor) -> Tensor:
        a = a.reshape(B, H, T, S, D)
        a = a if kind == "spatial" else a.transpose(2, 3)  # (B, H, G, n, Dh)
        return a.reshape(B, H * G, n, D)  # a view for "spatial"

    mask = None
    if key_mask is not None:
        m = key_mask.reshape(B, 1, T, S)
        m = m if kind == "spatial" else m.transpose(2, 3)  # (B, 1, G, n)
        m = m | ~m.any(-1, keepdim=True)  # an all-padding group attends to itself: finite garbage, not NaN
        mask = m.expand(B, H, G, n).reshape(B, H * G, 1, n)
    out = F.scaled_dot_product_attention(group(q), group(k), group(v), attn_mask=mask).reshape(B, H, G, n, D)
    return (out if kind == "spatial" else out.transpose(2, 3)).reshape(B, H, L, D)


class SelfAttention(nn.Module):
    """Self-attention with QK-norm (RMSNorm per head, which keeps logits bounded in long
    low-precision training) and 3D RoPE, through `scaled_dot_product_attention`. `kind` is "full"
    (spacetime), "spatial" (within a frame) or "temporal" (across frames at one position)."""

    def __init__(self, width: int, heads: int, kind: str = "full") -> None:
        super().__init__()
        self.heads, self.kind = heads, kind
        self.qkv = nn.Linear(width, 3 * width)
        self.q_norm, self.k_norm = nn.RMSNorm(width // heads, eps=1e-6), nn.RMSNorm(width // heads, eps=1e-6)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, plan: AttentionPlan) -> Tensor:
        B, L, _ = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, -1).unbind(2)  # (B, L, H, Dh) each
        cos, sin = plan.rope
        # norm and rotate in the (B, L, H, Dh) layout, where the last axis is contiguous (no copies)
        q, k = apply_rope(self.q_norm(q), cos, sin), apply_rope(self.k_norm(k), cos, sin)
        q, k, v = (a.transpose(1, 2) for a in (q, k, v))  # (B, H, L, Dh)
        if plan.self_masks is not None:  # packed with one block-diagonal mask per kind
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=plan.self_masks[self.kind])
        elif plan.segments is None:  # a batch of clips of one grid
            if self.kind == "full":
                mask = None if plan.key_mask is None else plan.key_mask[:, None, None, :]  # (B, 1, 1, L)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            else:
                out = _grouped_attention(q, k, v, plan.grids[0], self.kind, plan.key_mask)
        else:  # packed, clip by clip: block-diagonal attention without computing the zero blocks
            parts = zip(*(a.split(plan.segments, dim=2) for a in (q, k, v)), plan.grids, strict=True)
            out = torch.cat([F.scaled_dot_product_attention(qi, ki, vi) if self.kind == "full"
                             else _grouped_attention(qi, ki, vi, grid, self.kind, None)
                             for qi, ki, vi, grid in parts], dim=2)
        return self.proj(_merge_heads(out))  # (B, L, D)


class CrossAttention(nn.Module):
    """Video tokens attend to the text tokens of their own clip."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.kv = nn.Linear(width, width), nn.Linear(width, 2 * width)
        self.q_norm, self.k_norm = nn.RMSNorm(width // heads, eps=1e-6), nn.RMSNorm(width // heads, eps=1e-6)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, context: Tensor, plan: AttentionPlan) -> Tensor:
        q = self.q_norm(_heads(self.q(x), self.heads)).transpose(1, 2)  # (B, H, L, Dh)
        k, v = (_heads(a, self.heads) for a in self.kv(context).chunk(2, dim=-1))  # (Bc, S, H, Dh)
        k, v = self.k_norm(k).transpose(1, 2), v.transpose(1, 2)  # (Bc, H, S, Dh)
        if plan.segments is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=plan.cross_mask)
        else:  # segment i reads text row i
            mask = plan.cross_mask
            outs = [
                F.scaled_dot_product_attention(
                    qi, k[i : i + 1], v[i : i + 1], attn_mask=None if mask is None else mask[i : i + 1]
                )
                for i, qi in enumerate(q.split(plan.segments, dim=2))
            ]
            out = torch.cat(outs, dim=2)
        return self.proj(_merge_heads(out))  # (B, L, D)
