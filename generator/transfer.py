"""Carry a trained DiT over to another autoencoder's latent space.

A DiT's blocks, time and text embeddings do not depend on how many channels the latent has; only the
patch embedding (`x_embed`) and the output projection (`final.linear`) do. Rather than starting those
two layers from scratch, which leaves the trained blocks reading noise until the new embedding is
learnt, fit linear maps between the two normalised latent spaces on the same clips coded by both
autoencoders (least squares over every latent position):

    old ~ new @ A + a    (Cn -> Co: what the old patch embedding should be shown)
    new ~ old @ B + b    (Co -> Cn: how the old prediction reads in the new space)

and fold them into the new first and last layers. Between an autoencoder and itself both maps are the
identity and the carried DiT computes exactly what the trained one does (tested). Between different
autoencoders it is a warm start, not an equivalence: the old network sees the new noise through A, and
the part of the new latent that the old one cannot express starts at a prediction of zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .autoencoder import VideoAutoencoder
from .dit import VideoDiT


def _lstsq(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """y ~ x @ M + m over rows; (M, m) in float32 (solved in float64)."""
    ones = torch.ones(len(x), 1, dtype=torch.float64)
    solution = torch.linalg.lstsq(torch.cat([x.double(), ones], 1), y.double()).solution
    return solution[:-1].float(), solution[-1].float()


@torch.no_grad()
def fit_latent_maps(old_ae: VideoAutoencoder, new_ae: VideoAutoencoder,
                    clips: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(A, a, B, b) between the two autoencoders' normalised latents of `clips` (B, 3, T, H, W) in [-1, 1]."""
    zo, zn = old_ae.eval().encode_latents(clips), new_ae.eval().encode_latents(clips)  # (N, C, T', h, w)
    if zo.shape[2:] != zn.shape[2:]:
        raise ValueError(f"the autoencoders compress differently: latents {tuple(zo.shape)} and {tuple(zn.shape)}")
    xo = zo.movedim(1, -1).reshape(-1, zo.shape[1]).cpu()  # (positions, Co)
    xn = zn.movedim(1, -1).reshape(-1, zn.shape[1]).cpu()  # (positions, Cn)
    A, a = _lstsq(xn, xo)  # (Cn, Co), (Co,)
    B, b = _lstsq(xo, xn)  # (Co, Cn), (Cn,)
    return A, a, B, b


@torch.no_grad()
def carry_over(trained: VideoDiT, model: VideoDiT, maps: tuple[Tensor, Tensor, Tensor, Tensor]) -> None:
    """Load `trained` into `model` (same DiT but for its latent channels), folding `maps` into the
    patch embedding and the output projection."""
    old, new = trained.config.to_dict(), model.config.to_dict()
    if {k: v for k, v in old.items() if k != "in_channels"} != {k: v for k, v in new.items() if k != "in_channels"}:
        raise ValueError("only the latent channels may differ between a carried DiT and its new network")
    A, a, B, b = maps
    co, cn = trained.config.in_channels, model.config.in_channels
    if A.shape != (cn, co) or B.shape != (co, cn):
        raise ValueError(f"maps for {tuple(A.shape)} / {tuple(B.shape)} latents, DiTs with {co} and {cn} channels")
    state = trained.state_dict()
    own = {k: v for k, v in state.items() if not k.startswith(("x_embed.", "final.linear."))}
    missing = model.load_state_dict(own, strict=False).missing_keys
    assert sorted(missing) == ["final.linear.bias", "final.linear.weight", "x_embed.bias", "x_embed.weight"], missing
    width = trained.config.width
    w_in = state["x_embed.weight"].float().view(width, co, -1)  # (D, Co, P): patch features are (C, pt, ph, pw)
    model.x_embed.weight.copy_(torch.einsum("wok,no->wnk", w_in, A).reshape(width, -1))
    model.x_embed.bias.copy_(state["x_embed.bias"].float() + torch.einsum("wok,o->w", w_in, a))
    w_out = state["final.linear.weight"].float().view(co, -1, width)  # (Co, P, D)
    b_out = state["final.linear.bias"].float().view(co, -1)  # (Co, P)
    model.final.linear.weight.copy_(torch.einsum("okw,on->nkw", w_out, B).reshape(-1, width))
    # v = noise - z, and z_new ~ z_old @ B + b: the offset b enters the velocity with a minus sign
    model.final.linear.bias.copy_((torch.einsum("ok,on->nk", b_out, B) - b[:, None]).reshape(-1))
