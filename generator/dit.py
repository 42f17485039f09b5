"""The video Diffusion Transformer: spacetime patches in, velocity out.

Read bottom up: embedders, the block, the whole network, then the size presets (patches live in
`packing.py`, RoPE and the attention layers in `attention.py`). The network knows nothing of the
noise process (see `flow.py`, `sampler.py`): it maps (noisy latent video, timestep, text) to a
tensor of the latent's shape.

Two calling conventions share every layer:
- `forward(x, t, text)`: a batch of clips of one size (B, C, T, H, W), as bucketed training and
  sampling use;
- `forward_packed(xs, t, text)`: Patch n' Pack (NaViT). Clips of different (T, H, W) become one token
  sequence; attention stays inside each clip, either by a block-diagonal mask or by running
  attention clip by clip ("split", the default, which computes no masked-out pairs);
- `forward(x, t, text, sizes=...)`: the classic padded batch, padding masked out as keys.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .attention import AttentionPlan, CrossAttention, Rope3D, SelfAttention
from .packing import Patch, pad_to_frames, patch_grid, patchify, unpatchify
from .text import TextEmbedding


@dataclass
class DiTConfig:
    """Architecture of a `VideoDiT`; stored as a plain dict beside the weights."""

    in_channels: int = 8  # latent channels of the autoencoder it denoises
    patch_size: Patch = (1, 2, 2)  # (p_t, p_h, p_w) in latent cells
    width: int = 256
    depth: int = 8
    heads: int = 4
    mlp_ratio: float = 4.0
    text_dim: int = 384  # width of the text encoder's token states
    rope_theta: float = 10000.0
    # "full": every block attends over the whole clip (spacetime). "factorized": blocks alternate
    # attention within a frame and across frames at one position (Latte, Open-Sora's STDiT): far
    # fewer attention FLOPs on long clips, at the cost of indirect spacetime mixing.
    attention: str = "full"

    def __post_init__(self) -> None:
        self.patch_size = tuple(int(p) for p in self.patch_size)
        if self.attention not in ("full", "factorized"):
            raise ValueError(f"attention must be 'full' or 'factorized', got {self.attention!r}")
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"width {self.width} must split into {self.heads} heads of even size")
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be three positive ints, got {self.patch_size}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DiTConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown DiT config keys: {sorted(unknown)}")
        return cls(**d)


# --------------------------------------------------------------------------- embedders


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of t in [0, 1] (scaled to [0, 1000] as DiT's integer steps) -> MLP."""

    def __init__(self, width: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = 1000.0 * t.float()[..., None] * freqs  # (..., half)
        emb = torch.cat([args.cos(), args.sin()], dim=-1)  # (..., freq_dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))  # (..., D)


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        # Exact (erf) GELU: DiT's tanh approximation is 4x slower on CPUs and no better on GPUs.
        return self.fc2(F.gelu(self.fc1(x)))


# --------------------------------------------------------------------------- block and final layer


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


def _rows_to_tokens(mod: Tensor, plan: AttentionPlan) -> Tensor:
    """(B, R, k*D) modulation rows -> broadcastable to (B, L, k*D)."""
    return mod if plan.row_index is None else mod[:, plan.row_index]


class DiTBlock(nn.Module):
    """Self-attention, cross-attention to text, MLP; adaLN-Zero conditioning on (t, pooled text)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, kind: str = "full") -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(width, heads, kind)
        # Cross-attention is not modulated (as PixArt). Temporal blocks of the factorized layout skip
        # it, as Latte: text already reaches every token through the spatial blocks and adaLN.
        self.cross = None if kind == "temporal" else CrossAttention(width, heads)
        self.norm2 = None if self.cross is None else nn.LayerNorm(width, eps=1e-6)
        self.norm3 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x: Tensor, c: Tensor, context: Tensor, plan: AttentionPlan) -> Tensor:
        mod = _rows_to_tokens(self.adaLN(c), plan)  # (B, R or L, 6D)
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1), plan)  # (B, L, D)
        if self.cross is not None:
            x = x + self.cross(self.norm2(x), context, plan)
        return x + gate2 * self.mlp(modulate(self.norm3(x), shift2, scale2))


class FinalLayer(nn.Module):
    def __init__(self, width: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, out_dim)

    def forward(self, x: Tensor, c: Tensor, plan: AttentionPlan) -> Tensor:
        shift, scale = _rows_to_tokens(self.adaLN(c), plan).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, L, C*p)


# --------------------------------------------------------------------------- the network


class VideoDiT(nn.Module):
    """Denoiser of latent video: spacetime patches -> DiT blocks -> per-patch velocity.

    `t` is one value per clip (B,) or one per latent frame (B, T); per-frame values let frame
    conditioning (`conditioning.py`) mark given frames as clean (t = 0) while the rest are noisy.
    """

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = c = config
        patch_dim = c.in_channels * math.prod(c.patch_size)
        self.x_embed = nn.Linear(patch_dim, c.width)  # a Conv3d with stride = kernel, as a matmul
        self.t_embed = TimestepEmbedder(c.width)
        self.pooled_embed = nn.Linear(c.text_dim, c.width)
        self.text_embed = nn.Sequential(  # PixArt's caption projection
            nn.Linear(c.text_dim, c.width), nn.GELU(approximate="tanh"), nn.Linear(c.width, c.width)
        )
        self.rope = Rope3D(c.width // c.heads, c.rope_theta)
        kinds = ["full"] * c.depth if c.attention == "full" else ["spatial", "temporal"] * (c.depth // 2 + 1)
        self.blocks = nn.ModuleList(DiTBlock(c.width, c.heads, c.mlp_ratio, kinds[i]) for i in range(c.depth))
        self.final = FinalLayer(c.width, patch_dim)
        self.gradient_checkpointing = False
        self.initialize_weights()

    def initialize_weights(self) -> None:
        def _basic(m: nn.Module) -> None:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

        self.apply(_basic)
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        # adaLN-Zero: every residual branch starts as the identity, so the initial network is stable
        # at any depth; the final projection starts at zero (predicts v = 0), as DiT.
        for block in self.blocks:
            nn.init.zeros_(block.adaLN[-1].weight)
            nn.init.zeros_(block.adaLN[-1].bias)
            if block.cross is not None:
                nn.init.zeros_(block.cross.proj.weight)  # text enters gradually too (as PixArt)
        for layer in (self.final.adaLN[-1], self.final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # ----- shared core
    def _condition(self, t_rows: Tensor, pooled_rows: Tensor) -> Tensor:
        """t (B, R) and pooled text (B, R, text_dim) -> conditioning rows (B, R, D)."""
        return self.t_embed(t_rows) + self.pooled_embed(pooled_rows)

    def _run(self, tokens: Tensor, c: Tensor, context: Tensor, plan: AttentionPlan) -> Tensor:
        x = self.x_embed(tokens)  # (B, L, D)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, c, context, plan, use_reentrant=False)
            else:
                x = block(x, c, context, plan)
        return self.final(x, c, plan)  # (B, L, C*p)

    # ----- a batch of same-size clips
    def forward(self, x: Tensor, t: Tensor, text: TextEmbedding, *, sizes: Sequence[Sequence[int]] | None = None,
                position_offset: Tensor | None = None) -> Tensor:
        """x (B, C, T, H, W), t (B,) or (B, T) -> velocity (B, C, T, H, W).

        `sizes[i]` = (T_i, H_i, W_i) marks clip i as zero-padded at the end of each axis: its padding
        tokens are masked out as keys (the classic padded batch, which Patch n' Pack improves on)."""
        B, C, T, H, W = x.shape
        patch = self.config.patch_size
        tokens = patchify(x, patch)  # (B, L, C*p)
        grid = patch_grid((T, H, W), patch, x.device)  # (L, 3)
        positions = grid if position_offset is None else grid + position_offset
        text = text.to(x.device)
        if t.ndim == 1:
            t_rows, row_index = t[:, None], None  # (B, 1)
        else:  # per latent frame: a patch takes the value of its first frame
            t_rows, row_index = pad_to_frames(t, patch[0])[:, :: patch[0]], grid[:, 0]  # (B, T'), (L,)
        c = self._condition(t_rows, text.pooled[:, None].expand(-1, t_rows.shape[1], -1))  # (B, R, D)
        cross_mask = None if bool(text.mask.all()) else text.mask[:, None, None, :]  # (B, 1, 1, S)
        plan = AttentionPlan(self.rope(positions), [tuple(-(-s // p) for s, p in zip((T, H, W), patch, strict=True))],
                             cross_mask=cross_mask, row_index=row_index)
        if sizes is not None:
            limits = -(-torch.tensor(sizes, device=x.device) // torch.tensor(patch, device=x.device))  # (B, 3)
            plan.key_mask = (grid[None] < limits[:, None]).all(-1)  # (B, L)
        out = self._run(tokens, c, self.text_embed(text.tokens), plan)
        return unpatchify(out, (T, H, W), C, patch)

    # ----- Patch n' Pack
    def forward_packed(
        self, xs: Sequence[Tensor], t: Sequence[Tensor] | Tensor, text: TextEmbedding, *, attention: str = "split"
    ) -> list[Tensor]:
        """Clips xs[i] (C, T_i, H_i, W_i) with t[i] scalar or (T_i,) and text row i, packed into one
        sequence with no padding tokens; returns each clip's velocity. `attention`: "split" runs
        attention per clip, "mask" uses one block-diagonal mask (same result, more compute)."""
        if attention not in ("split", "mask"):
            raise ValueError(f"attention must be 'split' or 'mask', got {attention!r}")
        if len(xs) != text.tokens.shape[0] or len(xs) != len(t):
            raise ValueError(f"{len(xs)} clips need as many timesteps and text rows")
        patch, device = self.config.patch_size, xs[0].device
        text = text.to(device)
        tokens, positions, t_rows, pooled_rows, row_index, seq_ids, rows = [], [], [], [], [], [], 0
        for i, (xi, ti) in enumerate(zip(xs, t, strict=True)):
            size = tuple(xi.shape[-3:])
            grid = patch_grid(size, patch, device)  # (N_i, 3)
            tokens.append(patchify(xi[None], patch)[0])  # (N_i, C*p)
            positions.append(grid)
            ti = torch.as_tensor(ti, device=device).reshape(-1)
            ti = ti if ti.numel() == 1 else pad_to_frames(ti[None], patch[0])[0, :: patch[0]]
            t_rows.append(ti)
            pooled_rows.append(text.pooled[i].expand(ti.numel(), -1))
            row_index.append(rows + (grid[:, 0] if ti.numel() > 1 else torch.zeros_like(grid[:, 0])))
            seq_ids.append(torch.full((grid.shape[0],), i, device=device))
            rows += ti.numel()
        seqlens = [g.shape[0] for g in positions]
        c = self._condition(torch.cat(t_rows)[None], torch.cat(pooled_rows)[None])  # (1, R, D)
        context = self.text_embed(text.tokens)  # (N, S, D)
        grids = [tuple(-(-s // p) for s, p in zip(xi.shape[-3:], patch, strict=True)) for xi in xs]
        pos = torch.cat(positions)  # (L, 3)
        plan = AttentionPlan(self.rope(pos), grids, row_index=torch.cat(row_index))
        if attention == "split":
            plan.segments = seqlens
            plan.cross_mask = None if bool(text.mask.all()) else text.mask[:, None, None, :]  # (N, 1, 1, S)
        else:
            seq = torch.cat(seq_ids)  # (L,)
            text_seq = torch.arange(len(xs), device=device).repeat_interleave(text.tokens.shape[1])  # (N*S,)
            same_clip = seq[:, None] == seq[None, :]  # (L, L)
            same_frame = pos[:, None, 0] == pos[None, :, 0]
            same_place = (pos[:, None, 1:] == pos[None, :, 1:]).all(-1)
            plan.self_masks = {kind: m[None, None] for kind, m in (  # (1, 1, L, L) each
                ("full", same_clip), ("spatial", same_clip & same_frame), ("temporal", same_clip & same_place))}
            plan.cross_mask = ((seq[:, None] == text_seq[None, :]) & text.mask.reshape(1, -1))[None, None]
            context = context.reshape(1, -1, context.shape[-1])  # (1, N*S, D)
        out = self._run(torch.cat(tokens)[None], c, context, plan)[0]  # (L, C*p)
        C = self.config.in_channels
        return [
            unpatchify(o[None], tuple(xi.shape[-3:]), C, patch)[0]
            for o, xi in zip(out.split(seqlens), xs, strict=True)
        ]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# --------------------------------------------------------------------------- presets

PRESET_SIZES = {  # name: (width, depth, heads); head size 64 except XL's 72, as DiT
    "tiny": (256, 8, 4),  # the CPU default, ~12M parameters (with 8 latent channels)
    "S": (384, 12, 6),
    "B": (768, 12, 12),
    "L": (1024, 24, 16),
    "XL": (1152, 28, 16),  # DiT-XL's width and depth
}


def dit_config(name: str, **overrides) -> DiTConfig:
    """The config of preset `name` with overrides (e.g. in_channels), without building the network."""
    if name not in PRESET_SIZES:
        raise ValueError(f"unknown DiT preset {name!r}; choose from {list(PRESET_SIZES)}")
    width, depth, heads = PRESET_SIZES[name]
    return DiTConfig(**{"width": width, "depth": depth, "heads": heads, **overrides})


def DiT_tiny(**overrides) -> VideoDiT:
    return VideoDiT(dit_config("tiny", **overrides))


def DiT_S(**overrides) -> VideoDiT:
    return VideoDiT(dit_config("S", **overrides))


def DiT_B(**overrides) -> VideoDiT:
    return VideoDiT(dit_config("B", **overrides))


def DiT_L(**overrides) -> VideoDiT:
    return VideoDiT(dit_config("L", **overrides))


def DiT_XL(**overrides) -> VideoDiT:
    return VideoDiT(dit_config("XL", **overrides))


DiT_models = {"tiny": DiT_tiny, "S": DiT_S, "B": DiT_B, "L": DiT_L, "XL": DiT_XL}
