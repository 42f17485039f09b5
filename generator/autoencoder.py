"""Causal 3D convolutional VAE: video (B, 3, 1 + f*k, H, W) in [-1, 1] <-> latent (B, C, 1 + k, H/s, W/s).

Read bottom up: the causal convolution, per-frame normalisation, resampling, the residual block,
encoder, decoder, the autoencoder with its KL bottleneck and chunked coding, then the presets.

Causality is what makes it a video *and* image model: every convolution pads time on the left only
(repeating the first frame), normalisation is per frame, and the time-strided convolutions map
1 + 2n frames to 1 + n, so latent frame 0 depends on video frame 0 alone (a still image is a
one-frame video) and latent frame j on video frames up to f*j. The same property makes chunked
coding exact: each causal convolution carries the input frames its next window needs into the next
chunk, so a long clip is coded a few frames at a time with the same result as all at once, and
memory does not grow with its length. Upsampling in time is depth-to-time (each latent frame's
channels unfold into two frames), which keeps the first frame single by dropping one output.

With `shortcuts` (DC-AE's residual autoencoding), every resampling and the latent's input and output
also get a parameter-free residual: the input folded between space/time and channels, its channels
averaged or repeated to fit, following the same causal frame grouping.

Large frames are coded in overlapping spatial tiles (as diffusers' AutoencoderKL and CogVideoX do),
each tile in time chunks, and the tiles' outputs blended with linear ramps across their overlaps, so
peak memory is set by one tile x one chunk. Unlike chunking, tiling is approximate: a tile's border
pixels see zero padding where the whole frame has neighbours, and the per-frame GroupNorm statistics
are the tile's, not the frame's. The overlap hides the first; the second stays small while tiles are
large enough to be typical of the frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class AutoencoderConfig:
    """Architecture of a `VideoAutoencoder`; stored as a plain dict beside the weights."""

    in_channels: int = 3
    latent_channels: int = 8
    base_channels: int = 32  # 8.5M parameters at 4x8x8: decodes 128x128x17 in seconds on 2 CPU cores
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)  # channels per level = base * mult
    time_down: tuple[bool, ...] = (True, True, False)  # halve time between level i and i+1
    space_down: tuple[bool, ...] = (True, True, True)  # halve height and width between levels
    blocks_per_level: int = 1
    decoder_extra_blocks: int = 0  # more residual blocks per decoder level, kept apart (`Decoder.extra`) so a
    # trained autoencoder's weights load into a deeper decoder, whose new blocks start as the identity
    shortcuts: bool = False  # parameter-free space/time-to-channel residuals around every resampling (DC-AE)
    scaling_factor: float = 1.0  # latents are (z - shift) * scale for the DiT (set after training)
    shift_factor: float = 0.0

    def __post_init__(self) -> None:
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        self.time_down, self.space_down = tuple(map(bool, self.time_down)), tuple(map(bool, self.space_down))
        if not (len(self.time_down) == len(self.space_down) == len(self.channel_mult) - 1):
            raise ValueError("time_down and space_down need one entry per level transition")

    @property
    def compression(self) -> tuple[int, int, int]:
        """(time, height, width) downsampling factors."""
        s = 2 ** sum(self.space_down)
        return 2 ** sum(self.time_down), s, s

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> AutoencoderConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown autoencoder config keys: {sorted(unknown)}")
        return cls(**d)


# --------------------------------------------------------------------------- causal layers


class CausalConv3d(nn.Module):
    """Conv3d padded on the left in time (by repeating the first frame) and symmetrically in space.

    With a time stride of 2, output frame 0 sees frame 0 alone and output j frames 2j-2 .. 2j, which
    maps 1 + 2n frames to 1 + n. With `stream` on, it keeps the last (k_t - stride_t) input frames
    and prepends them to the next call instead of padding, so consecutive chunks (of multiples of the
    stride) give exactly the full-clip result.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__()
        self.kt, self.st = kernel, stride[0]
        self.conv = nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=(0, kernel // 2, kernel // 2))
        self.cache: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.kt > 1:
            left = x[:, :, :1].expand(-1, -1, self.kt - 1, -1, -1) if self.cache is None else self.cache
            x = torch.cat([left, x], dim=2)  # (B, C, kt - 1 + T, H, W) on the first chunk
            keep = self.kt - self.st
            self.cache = x[:, :, x.shape[2] - keep :].detach() if _streaming(self) and keep > 0 else None
        return self.conv(x)


def _streaming(module: nn.Module) -> bool:
    return getattr(module, "_stream", False)


class FrameNorm(nn.GroupNorm):
    """GroupNorm computed per frame: normalising over time would leak future frames into the past."""

    def forward(self, x: Tensor) -> Tensor:
        B, C, T, H, W = x.shape
        y = super().forward(x.transpose(1, 2).reshape(B * T, C, H, W))  # (B*T, C, H, W)
        return y.reshape(B, T, C, H, W).transpose(1, 2)


def _norm(channels: int) -> FrameNorm:
    return FrameNorm(min(32, channels // 4) if channels >= 8 else 1, channels, eps=1e-6)


class TimeUpsample(nn.Module):
    """Depth-to-time: a causal conv makes two frames' worth of channels per frame, which are then
    interleaved, 1 + n frames -> 2 + 2n, and a clip's first output is dropped -> 1 + 2n. Each output
    frame gets its own learned projection; repeating frames would leave the next convolution to tell
    identical copies apart, which trains far more slowly."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, 2 * channels)
        self.started = False

    def forward(self, x: Tensor) -> Tensor:
        B, C, T, H, W = x.shape
        y = self.conv(x).reshape(B, 2, C, T, H, W).permute(0, 2, 3, 1, 4, 5).reshape(B, C, 2 * T, H, W)
        if not self.started:
            y = y[:, :, 1:]  # the first frame stays one frame
            self.started = _streaming(self)
        return y


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), CausalConv3d(c_in, c_out)
        self.norm2, self.conv2 = _norm(c_out), CausalConv3d(c_out, c_out)
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


def _fit_channels(x: Tensor, channels: int) -> Tensor:
    """Repeat each channel, then average neighbours in groups, so x has `channels` channels (through
    lcm(C, channels) channels: any pair of widths works; a plain average or repeat when one divides
    the other)."""
    B, C, *rest = x.shape
    wide = math.lcm(C, channels)
    if wide > C:
        x = x.repeat_interleave(wide // C, dim=1)
    return x.reshape(B, channels, wide // channels, *rest).mean(2) if wide > channels else x


def space_time_to_channels(x: Tensor, ft: int, fs: int, first: bool) -> Tensor:
    """(B, C, T, H, W) -> (B, C*ft*fs*fs, T', H/fs, W/fs), causal in time: a clip's first frame is
    its own group (repeated), then frames pair up as the strided convolution's windows end
    (1, 2), (3, 4), ... so 1 + 2n frames give 1 + n, and a later chunk of 2n frames gives n."""
    if ft > 1 and first:
        x = torch.cat([x[:, :, :1].expand(-1, -1, ft - 1, -1, -1), x], dim=2)
    B, C, T, H, W = x.shape
    x = x.reshape(B, C, T // ft, ft, H // fs, fs, W // fs, fs)
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(B, C * ft * fs * fs, T // ft, H // fs, W // fs)


def channels_to_space_time(x: Tensor, ft: int, fs: int, first: bool) -> Tensor:
    """Inverse of `space_time_to_channels` (the first group's repeated frames dropped)."""
    B, C, T, H, W = x.shape
    c = C // (ft * fs * fs)
    x = x.reshape(B, c, ft, fs, fs, T, H, W).permute(0, 1, 5, 2, 6, 3, 7, 4)
    x = x.reshape(B, c, T * ft, H * fs, W * fs)
    return x[:, :, ft - 1 :] if ft > 1 and first else x


def _factors(time: bool, space: bool) -> tuple[int, int]:
    """(time, space) resampling factors of one level transition."""
    return 2 if time else 1, 2 if space else 1


class Downsample(CausalConv3d):
    """A learned strided causal convolution (as MAGVIT-v2): averaging frame pairs would throw away
    half of the temporal detail before the wider next level could hold it. With `shortcut`, the
    input folded into channels (space/time-to-depth, then channels averaged or repeated to fit) is
    added to the output, as DC-AE's residual autoencoding: the convolution then learns a correction
    to a fixed, parameter-free resampling instead of the whole mapping, which trains faster."""

    def __init__(self, c_in: int, c_out: int, time: bool, space: bool, shortcut: bool = False) -> None:
        ft, fs = _factors(time, space)
        super().__init__(c_in, c_out, 3, stride=(ft, fs, fs))
        self.factors, self.shortcut = (ft, fs), shortcut

    def forward(self, x: Tensor) -> Tensor:
        first = not _streaming(self) or self.cache is None
        y = super().forward(x)  # (B, c_out, T', H/fs, W/fs)
        if not self.shortcut:
            return y
        return y + _fit_channels(space_time_to_channels(x, *self.factors, first), y.shape[1])


class Upsample(nn.Module):
    """Depth-to-time and nearest 2x in space, then a convolution; with `shortcut`, the input's channels
    (repeated or averaged to fit) unfolded into time and space are added: Downsample's mirror."""

    def __init__(self, c_in: int, c_out: int, time: bool, space: bool, shortcut: bool = False) -> None:
        super().__init__()
        self.time = TimeUpsample(c_in) if time else nn.Identity()
        self.space = space
        self.conv = CausalConv3d(c_in, c_out, 3)
        self.factors, self.shortcut = _factors(time, space), shortcut

    def forward(self, x: Tensor) -> Tensor:
        first = not getattr(self.time, "started", False)
        h = self.time(x)
        if self.space:
            h = F.interpolate(h, scale_factor=(1, 2, 2), mode="nearest")
        y = self.conv(h)  # (B, c_out, T * ft (- 1 for a clip's first chunk), H * fs, W * fs)
        if not self.shortcut:
            return y
        ft, fs = self.factors
        return y + channels_to_space_time(_fit_channels(x, y.shape[1] * ft * fs * fs), ft, fs, first)


# --------------------------------------------------------------------------- encoder and decoder


class Encoder(nn.Module):
    def __init__(self, c: AutoencoderConfig) -> None:
        super().__init__()
        chans = [c.base_channels * m for m in c.channel_mult]
        self.conv_in = CausalConv3d(c.in_channels, chans[0])
        layers: list[nn.Module] = []
        for i, ch in enumerate(chans):
            layers += [ResBlock(ch, ch) for _ in range(c.blocks_per_level)]
            if i < len(chans) - 1:
                layers.append(Downsample(ch, chans[i + 1], c.time_down[i], c.space_down[i], c.shortcuts))
        self.layers = nn.Sequential(*layers, ResBlock(chans[-1], chans[-1]))
        self.norm_out = _norm(chans[-1])
        self.conv_out = CausalConv3d(chans[-1], 2 * c.latent_channels)
        self.latent_channels, self.shortcut = c.latent_channels, c.shortcuts

    def forward(self, x: Tensor) -> Tensor:
        h = self.layers(self.conv_in(x))  # (B, C_top, 1 + k, H/s, W/s)
        moments = self.conv_out(F.silu(self.norm_out(h)))  # (B, 2 * latent, 1 + k, H/s, W/s): mean, logvar
        if not self.shortcut:
            return moments
        mean, logvar = moments.chunk(2, dim=1)
        return torch.cat([mean + _fit_channels(h, self.latent_channels), logvar], dim=1)


class Decoder(nn.Module):
    def __init__(self, c: AutoencoderConfig) -> None:
        super().__init__()
        chans = [c.base_channels * m for m in c.channel_mult]
        self.conv_in = CausalConv3d(c.latent_channels, chans[-1])
        layers: list[nn.Module] = [ResBlock(chans[-1], chans[-1])]
        for i in reversed(range(len(chans))):
            layers += [ResBlock(chans[i], chans[i]) for _ in range(c.blocks_per_level)]
            if i > 0:
                layers.append(Upsample(chans[i], chans[i - 1], c.time_down[i - 1], c.space_down[i - 1], c.shortcuts))
        self.layers = nn.Sequential(*layers)
        # extra[j] runs after the blocks of the j-th level from the top (before its upsampling)
        self.extra = nn.ModuleList(
            nn.Sequential(*[ResBlock(chans[i], chans[i]) for _ in range(c.decoder_extra_blocks)])
            for i in reversed(range(len(chans)))
        ) if c.decoder_extra_blocks else None
        self._level_ends = [1 + c.blocks_per_level + j * (c.blocks_per_level + 1) for j in range(len(chans))]
        self.norm_out = _norm(chans[0])
        self.conv_out = CausalConv3d(chans[0], c.in_channels)
        self.top_channels, self.shortcut = chans[-1], c.shortcuts

    def identity_extra(self) -> None:
        """Zero the last convolution of every extra block, so each starts as the identity (a grown decoder
        then decodes exactly as the one it was grown from)."""
        for block in self.extra.modules() if self.extra is not None else ():
            if isinstance(block, ResBlock):
                nn.init.zeros_(block.conv2.conv.weight)
                nn.init.zeros_(block.conv2.conv.bias)

    def forward(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)  # (B, C_top, 1 + k, h, w)
        if self.shortcut:
            h = h + _fit_channels(z, self.top_channels)
        if self.extra is None:
            h = self.layers(h)  # (B, C_0, 1 + f*k, H, W)
        else:
            start = 0
            for end, extra in zip(self._level_ends, self.extra, strict=True):
                h = extra(self.layers[start:end](h))
                start = end
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 3, 1 + f*k, H, W)


# --------------------------------------------------------------------------- the autoencoder


@dataclass
class LatentDistribution:
    """Diagonal Gaussian posterior q(z | x) of the KL bottleneck."""

    mean: Tensor
    logvar: Tensor

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        # drawn where the generator lives (a seeded CPU generator also serves a model on the GPU)
        where = generator.device if generator is not None else self.mean.device
        noise = torch.randn(self.mean.shape, generator=generator, device=where, dtype=self.mean.dtype)
        noise = noise.to(self.mean.device)
        return self.mean + (0.5 * self.logvar).exp() * noise

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) averaged over elements (scalar)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).mean()


def _tile_spans(n: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) spans of `tile` cells that cover n cells, neighbours sharing at least `overlap`.

    Tiles are spread evenly and all are full size: a sliver of a last tile would normalise over
    too few pixels to match its neighbours."""
    if n <= tile:
        return [(0, n)]
    count = 1 + -(-(n - tile) // (tile - overlap))
    starts = [round(i * (n - tile) / (count - 1)) for i in range(count)]
    return [(a, a + tile) for a in starts]


def _tile_weights(spans: list[tuple[int, int]], scale: int) -> list[Tensor]:
    """Blend weights over each span's `scale` outputs per cell: linear ramps across the overlap with
    each neighbour, normalised so that the spans' weights sum to 1 at every output position."""
    ramps = []
    for i, (a, b) in enumerate(spans):
        pos = torch.arange(a * scale, b * scale, dtype=torch.float64) + 0.5  # output pixel centres
        w = torch.ones_like(pos)
        if i > 0 and (shared := spans[i - 1][1] - a) > 0:
            w = torch.minimum(w, (pos - a * scale) / (shared * scale))
        if i + 1 < len(spans) and (shared := b - spans[i + 1][0]) > 0:
            w = torch.minimum(w, (b * scale - pos) / (shared * scale))
        ramps.append(w)
    total = torch.zeros(spans[-1][1] * scale, dtype=torch.float64)
    for (a, b), w in zip(spans, ramps, strict=True):
        total[a * scale : b * scale] += w
    return [(w / total[a * scale : b * scale]).float() for (a, b), w in zip(spans, ramps, strict=True)]


class VideoAutoencoder(nn.Module):
    """Causal video VAE with a KL bottleneck; codes clips whole, in chunks of frames, in spatial tiles."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder, self.decoder = Encoder(config), Decoder(config)
        # Start with a narrow posterior (std ~0.1): with the default logvar 0 the sampling noise
        # would swamp the still-small means and stall early reconstruction for many steps.
        with torch.no_grad():
            self.encoder.conv_out.conv.bias[config.latent_channels :].fill_(-4.0)

    @property
    def compression(self) -> tuple[int, int, int]:
        return self.config.compression

    def latent_frames(self, frames: int) -> int:
        """Latent frames that code `frames` video frames (the last chunk is padded)."""
        ft = self.compression[0]
        return 1 + -(-(frames - 1) // ft)

    def _set_stream(self, on: bool) -> None:
        for m in self.modules():
            m._stream = on
            if isinstance(m, CausalConv3d):
                m.cache = None
            if isinstance(m, TimeUpsample):
                m.started = False

    def _chunked(self, net: nn.Module, x: Tensor, first: int, rest: int) -> Tensor:
        """Run `net` over time chunks of `first`, then `rest` frames, carrying causal state."""
        if x.shape[2] <= first:
            self._set_stream(False)
            return net(x)
        self._set_stream(True)
        try:
            chunks = [x[:, :, :first]] + list(x[:, :, first:].split(rest, dim=2))
            return torch.cat([net(chunk) for chunk in chunks], dim=2)
        finally:
            self._set_stream(False)

    def _tiled(self, run: Callable[[Tensor], Tensor], x: Tensor, tile: int | None, overlap: int | None,
               scale_in: int, scale_out: int) -> Tensor:
        """`run` over overlapping spatial tiles of x, blended: one latent cell is `scale_in` pixels of x
        and `scale_out` pixels of the output. One tile (or `tile` None) is `run(x)` itself."""
        if tile is None:
            return run(x)
        overlap = tile // 4 if overlap is None else overlap
        if tile < 1 or not 0 <= overlap < tile:
            raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got tile {tile}, overlap {overlap}")
        rows = _tile_spans(x.shape[-2] // scale_in, tile, overlap)
        cols = _tile_spans(x.shape[-1] // scale_in, tile, overlap)
        if len(rows) == len(cols) == 1:
            return run(x)
        si, so = scale_in, scale_out
        out = None
        for (y0, y1), wy in zip(rows, _tile_weights(rows, so), strict=True):
            for (x0, x1), wx in zip(cols, _tile_weights(cols, so), strict=True):
                part = run(x[..., y0 * si : y1 * si, x0 * si : x1 * si])  # (B, C', T', th * so, tw * so)
                if out is None:
                    out = part.new_zeros(*part.shape[:-2], rows[-1][1] * so, cols[-1][1] * so)
                weight = (wy[:, None] * wx[None, :]).to(part)
                out[..., y0 * so : y1 * so, x0 * so : x1 * so].addcmul_(part, weight)
        return out

    def encode(self, x: Tensor, *, chunk_latents: int | None = None, tile: int | None = None,
               tile_overlap: int | None = None) -> LatentDistribution:
        """Video (B, 3, F, H, W) in [-1, 1] -> posterior over (B, C, 1 + ceil((F-1)/f), H/s, W/s).

        H and W must be multiples of the spatial factor; F is padded at the end by repeating the
        last frame. `chunk_latents` codes that many latent frames at a time (same result). `tile`
        codes frames of more than that many latent cells a side in tiles of s*tile pixels that share
        `tile_overlap` cells (default a quarter of a tile) with their neighbours: close to the
        whole-frame result, not equal to it."""
        ft, fh, fw = self.compression
        if x.shape[-2] % fh or x.shape[-1] % fw:
            raise ValueError(f"height and width must be multiples of {fh}, got {tuple(x.shape[-2:])}")
        pad = (self.latent_frames(x.shape[2]) - 1) * ft + 1 - x.shape[2]
        if pad:
            x = torch.cat([x, x[:, :, -1:].expand(-1, -1, pad, -1, -1)], dim=2)
        n = chunk_latents or x.shape[2]
        moments = self._tiled(lambda part: self._chunked(self.encoder, part, 1 + ft * n, ft * n), x,
                              tile, tile_overlap, fh, 1)
        mean, logvar = moments.chunk(2, dim=1)
        return LatentDistribution(mean, logvar.clamp(-30.0, 20.0))

    def decode(self, z: Tensor, *, frames: int | None = None, chunk_latents: int | None = None,
               tile: int | None = None, tile_overlap: int | None = None) -> Tensor:
        """Latent (B, C, 1 + k, h, w) -> video (B, 3, 1 + f*k, H, W), cropped to `frames` if given.

        `chunk_latents` decodes that many latent frames at a time: peak memory is set by the chunk,
        not the clip length, and the output is the same. `tile` decodes latents wider or taller than
        that many cells in overlapping tiles (`tile_overlap` cells, default a quarter of a tile) of
        `chunk_latents` frames each, so peak memory beyond the output is set by one tile's chunk;
        the result is close to the whole-frame one, not equal to it."""
        n = chunk_latents or z.shape[2]
        video = self._tiled(lambda part: self._chunked(self.decoder, part, 1 + n, n), z, tile, tile_overlap,
                            1, self.compression[1])
        return video if frames is None else video[:, :, :frames]

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, LatentDistribution]:
        """Reconstruction of x through a sampled latent, and the posterior (for the KL term)."""
        posterior = self.encode(x)
        return self.decode(posterior.sample(generator), frames=x.shape[2]), posterior

    # ----- what the DiT sees: normalised latents
    def encode_latents(self, video: Tensor, *, sample: bool = False, chunk_latents: int | None = None,
                       tile: int | None = None, tile_overlap: int | None = None,
                       generator: torch.Generator | None = None) -> Tensor:
        posterior = self.encode(video, chunk_latents=chunk_latents, tile=tile, tile_overlap=tile_overlap)
        z = posterior.sample(generator) if sample else posterior.mean
        return (z - self.config.shift_factor) * self.config.scaling_factor

    def decode_latents(self, z: Tensor, *, frames: int | None = None, chunk_latents: int | None = None,
                       tile: int | None = None, tile_overlap: int | None = None) -> Tensor:
        z = z / self.config.scaling_factor + self.config.shift_factor
        video = self.decode(z, frames=frames, chunk_latents=chunk_latents, tile=tile, tile_overlap=tile_overlap)
        return video.clamp(-1.0, 1.0)


def autoencoder_loss(ae: VideoAutoencoder, video: Tensor, *, kl_weight: float = 1e-6,
                     generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
    """L1 reconstruction + weighted KL: the base objective (perceptual/GAN terms belong to training)."""
    recon, posterior = ae(video, generator)
    l1, kl = (recon - video).abs().mean(), posterior.kl()
    return l1 + kl_weight * kl, {"l1": l1.item(), "kl": kl.item()}


# --------------------------------------------------------------------------- presets


def AE_4x8x8(**overrides) -> VideoAutoencoder:
    """Time 4x, space 8x8, 8 latent channels: 128x128x17 -> 8x5x16x16."""
    return VideoAutoencoder(AutoencoderConfig(**overrides))


def AE_4x4x4(**overrides) -> VideoAutoencoder:
    """Time 4x, space 4x4, 4 latent channels: finer latents, 4x the DiT tokens of 4x8x8."""
    base = {"latent_channels": 4, "channel_mult": (1, 2, 4), "time_down": (True, True), "space_down": (True, True)}
    return VideoAutoencoder(AutoencoderConfig(**{**base, **overrides}))


AE_models = {"4x8x8": AE_4x8x8, "4x4x4": AE_4x4x4}
