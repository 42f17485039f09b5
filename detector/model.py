"""The AI-origin detector network: forensic input -> timm backbone -> patch, crop, frame and clip scores.

Read from the bottom up: the input transform, the attention pooling over frames, the whole detector,
then the size presets (``DETECTOR_MODELS``) that the CLI and the tests take their choices from.

The network sees crops at native resolution, never a resized frame: ``x`` is (B, T, K, 3, S, S) RGB
in [0, 1] -- B clips, T sampled frames, K crops per frame, S the crop side from the config. Every
score is a logit; calibration to a probability lives in :mod:`detector.calibration`, outside the net.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
import torch.nn as nn

from .residual import residual

INPUT_MODES = ("residual", "residual+rgb", "residual|rgb")
CONFIG_VERSION = 1


@dataclass
class DetectorConfig:
    """Backbone and input contract; stored beside the weights as a plain dict (see `detector.checkpoint`).

    ``input``: "residual" feeds the 3-channel residual only (the shortcut-resistant default: colour
    and content mostly cancel), "residual+rgb" adds the normalised RGB crop (6 channels, one stem),
    "residual|rgb" gives each its own backbone of the same kind, their feature maps joined (two
    branches: a trained residual model grows into one with its RGB half starting unused).
    ``residual_std`` rescales residuals (in [0, 1] pixel units) to unit-ish variance, as ``rgb_mean``/
    ``rgb_std`` do for the RGB channels. ``frames`` and ``crops_per_frame`` are the sampler's defaults
    at inference; training draws its own. ``min_crop``: a frame whose shorter side is under ``crop``
    but at least ``min_crop`` is scored with square crops of its shorter side (still native pixels,
    never resized; the backbone is convolutional); None keeps ``crop`` as the smallest scope (v1).
    ``members`` > 1: a `DetectorEnsemble` of that many networks of this config, trained apart.
    """

    backbone: str = "mobilenetv3_small_050"
    input: str = "residual"
    crop: int = 64
    frames: int = 8
    crops_per_frame: int = 16
    residual_factor: int = 2
    residual_std: float = 0.03
    rgb_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    rgb_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    attention_dim: int = 64
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    min_crop: int | None = None
    members: int = 1
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        if self.input not in INPUT_MODES:
            raise ValueError(f"unknown input mode {self.input!r}; choose from {INPUT_MODES}")
        if self.crop % self.residual_factor or self.crop < 2 * self.residual_factor:
            raise ValueError(f"crop {self.crop} must be a multiple of residual_factor {self.residual_factor}")
        if self.min_crop is not None and not (
                2 * self.residual_factor <= self.min_crop <= self.crop and self.min_crop % self.residual_factor == 0):
            raise ValueError(f"min_crop {self.min_crop} must be a multiple of residual_factor {self.residual_factor}"
                             f" and at most crop {self.crop}")
        if self.frames < 1 or self.crops_per_frame < 1 or self.members < 1:
            raise ValueError("frames, crops_per_frame and members must be at least 1")
        self.rgb_mean, self.rgb_std = tuple(self.rgb_mean), tuple(self.rgb_std)

    @property
    def smallest_crop(self) -> int:
        """The smallest crop side the model scores: frames with a shorter side are out of its scope."""
        return self.crop if self.min_crop is None else self.min_crop

    def crop_for(self, height: int, width: int) -> int | None:
        """The crop side for a ``height x width`` frame: ``crop``, or the frame's shorter side (a multiple of
        ``residual_factor``) when that is smaller but within ``min_crop``; None when out of scope."""
        short = min(height, width)
        side = min(self.crop, short - short % self.residual_factor)
        return side if side >= self.smallest_crop else None

    @property
    def in_chans(self) -> int:
        """Channels of the forensic tensor (`ForensicInput`'s output)."""
        return 3 if self.input == "residual" else 6

    @property
    def two_branch(self) -> bool:
        return self.input == "residual|rgb"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        if int(data.get("version", 0)) != CONFIG_VERSION:
            raise ValueError(f"detector config version {data.get('version')} is not {CONFIG_VERSION}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class DetectorOutput:
    """Logits at every level; ``attention`` is the weight each frame got in the clip score."""

    patch_logits: torch.Tensor  # (B, T, K, h, w)
    crop_logits: torch.Tensor  # (B, T, K)
    frame_logits: torch.Tensor  # (B, T)
    clip_logits: torch.Tensor  # (B,)
    attention: torch.Tensor  # (B, T)


class ForensicInput(nn.Module):
    """RGB crops in [0, 1] -> the normalised forensic tensor the config names (no learned parameters)."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.factor, self.scale, self.with_rgb = cfg.residual_factor, 1.0 / cfg.residual_std, cfg.input != "residual"
        self.register_buffer("mean", torch.tensor(cfg.rgb_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.rgb_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = residual(x, self.factor) * self.scale  # (N, 3, S, S), zero-mean per block
        if not self.with_rgb:
            return res
        rgb = (x[..., : res.shape[-2], : res.shape[-1]] - self.mean) / self.std
        return torch.cat([res, rgb], dim=1)  # (N, 6, S, S)


class AttentionPool(nn.Module):
    """Gated attention over frames (Ilse et al., 2018): the clip logit is a weighted mean of frame logits.

    Weighting frame *logits* rather than pooling features keeps the clip score readable as "these
    frames, this much each"; the weights come from the frame features, so the model can learn to trust
    textured frames over flat or blurred ones.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.value, self.gate, self.score = nn.Linear(dim, hidden), nn.Linear(dim, hidden), nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.score(torch.tanh(self.value(features)) * torch.sigmoid(self.gate(features)))  # (B, T, 1)
        weights = torch.softmax(a.squeeze(-1), dim=1)  # (B, T)
        return (weights * logits).sum(dim=1), weights  # (B,), (B, T)


class ForensicDetector(nn.Module):
    """Forensic input, a timm backbone used as a feature map, a 1x1 patch head and attention over frames.

    The patch head is linear, so a crop's logit (the mean of its patch logits) equals the linear head
    on the crop's mean feature: the heatmap and the score are the same computation.
    """

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.input = ForensicInput(cfg)
        # num_classes=0 and global_pool="" leave forward_features' spatial map as the output we use.
        stem_chans = 3 if cfg.two_branch else cfg.in_chans
        self.backbone = timm.create_model(
            cfg.backbone, pretrained=False, num_classes=0, global_pool="", in_chans=stem_chans,
            **cfg.backbone_kwargs,
        )
        self.rgb_backbone = timm.create_model(
            cfg.backbone, pretrained=False, num_classes=0, global_pool="", in_chans=3, **cfg.backbone_kwargs,
        ) if cfg.two_branch else None
        dim = self._feature_dim()
        self.patch_head = nn.Conv2d(dim, 1, kernel_size=1)
        self.pool = AttentionPool(dim, cfg.attention_dim)

    def _feature_dim(self) -> int:
        """Channels of the joined feature map, found by a dry run (timm's attributes vary by family)."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            dim = self.features(torch.zeros(1, self.cfg.in_chans, 64, 64)).shape[1]
        self.train(was_training)
        return int(dim)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) forensic tensor -> (N, D, h, w) feature map; two branches: residual features first."""
        if self.rgb_backbone is None:
            return self.backbone.forward_features(z)
        return torch.cat([self.backbone.forward_features(z[:, :3]),
                          self.rgb_backbone.forward_features(z[:, 3:])], dim=1)  # (N, D_res + D_rgb, h, w)

    def feature_network(self) -> ForensicDetector:
        """The network whose backbone stands for this model's features (itself; see `DetectorEnsemble`)."""
        return self

    def forward(self, x: torch.Tensor) -> DetectorOutput:
        if x.ndim != 6 or x.shape[3] != 3:
            raise ValueError(f"expected crops of shape (B, T, K, 3, S, S), got {tuple(x.shape)}")
        b, t, k = x.shape[:3]
        z = self.input(x.flatten(0, 2))  # (N, C, S, S), N = B*T*K
        f = self.features(z)  # (N, D, h, w)
        patch = self.patch_head(f)  # (N, 1, h, w)
        crop_logits = patch.mean(dim=(1, 2, 3)).view(b, t, k)  # (B, T, K)
        frame_features = f.mean(dim=(2, 3)).view(b, t, k, -1).mean(dim=2)  # (B, T, D)
        frame_logits = crop_logits.mean(dim=2)  # (B, T)
        clip_logits, weights = self.pool(frame_features, frame_logits)  # (B,), (B, T)
        return DetectorOutput(
            patch_logits=patch.view(b, t, k, *patch.shape[-2:]),
            crop_logits=crop_logits,
            frame_logits=frame_logits,
            clip_logits=clip_logits,
            attention=weights,
        )


class DetectorEnsemble(nn.Module):
    """Networks of one input contract trained apart, their logits averaged at every level after each is
    divided by its member's calibration temperature: the mean of calibrated log-odds, so a member with
    larger raw logits does not outvote the others. Its own calibration is fitted afterwards on the mean.

    The members read the same crops, so the heatmap is the members' mean heatmap."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.members = nn.ModuleList(ForensicDetector(dataclasses.replace(cfg, members=1)) for _ in range(cfg.members))
        self.register_buffer("temperature", torch.ones(cfg.members))  # (K,) stored with the weights

    def feature_network(self) -> ForensicDetector:
        """The first member: an ensemble has no single backbone, and the first is the one it grew from."""
        return self.members[0]

    def forward(self, x: torch.Tensor) -> DetectorOutput:
        outs = [m(x) for m in self.members]

        def mean(name: str) -> torch.Tensor:
            return torch.stack([getattr(o, name) / t for o, t in zip(outs, self.temperature, strict=True)]).mean(0)

        return DetectorOutput(patch_logits=mean("patch_logits"), crop_logits=mean("crop_logits"),
                              frame_logits=mean("frame_logits"), clip_logits=mean("clip_logits"),
                              attention=torch.stack([o.attention for o in outs]).mean(0))


# --- size presets ---------------------------------------------------------------------------------
# Convolutional backbones only: the patch heatmap needs a spatial feature map at any crop size.


def Forensic_MNv3S(**kw: Any) -> DetectorConfig:
    """The default: ~0.6M parameters, fast enough to train for minutes and run on 2 CPU cores. Frames
    down to 3/4 of the crop a side are in scope (48 px: a 96 px tall 16:9 clip after a 50% downscale)."""
    crop, factor = kw.get("crop", 64), kw.get("residual_factor", 2)
    return DetectorConfig(**{"backbone": "mobilenetv3_small_050", "min_crop": crop * 3 // 4 // factor * factor, **kw})


def Forensic_MNv3S_RGB(**kw: Any) -> DetectorConfig:
    return Forensic_MNv3S(**{"input": "residual+rgb", **kw})


def Forensic_MNv3S_2B(**kw: Any) -> DetectorConfig:
    """Two mobilenetv3_small_050 branches (~1.1M parameters): the default's residual one and an RGB one."""
    return Forensic_MNv3S(**{"input": "residual|rgb", **kw})


def Forensic_LCNet(**kw: Any) -> DetectorConfig:
    return DetectorConfig(backbone="lcnet_035", **kw)


def Forensic_ResNet10T(**kw: Any) -> DetectorConfig:
    return DetectorConfig(backbone="resnet10t", **kw)


def Forensic_RegNetX(**kw: Any) -> DetectorConfig:
    return DetectorConfig(backbone="regnetx_002", **kw)


def Forensic_ConvNeXtAtto(**kw: Any) -> DetectorConfig:
    return DetectorConfig(backbone="convnext_atto", **kw)


def Forensic_EfficientNetB0(**kw: Any) -> DetectorConfig:
    return DetectorConfig(**{"backbone": "efficientnet_b0", "crop": 128, **kw})


DETECTOR_MODELS = {
    "mnv3s-050": Forensic_MNv3S,
    "mnv3s-050-rgb": Forensic_MNv3S_RGB,
    "mnv3s-050-2b": Forensic_MNv3S_2B,
    "lcnet-035": Forensic_LCNet,
    "resnet10t": Forensic_ResNet10T,
    "regnetx-002": Forensic_RegNetX,
    "convnext-atto": Forensic_ConvNeXtAtto,
    "efficientnet-b0": Forensic_EfficientNetB0,
}
DEFAULT_MODEL = "mnv3s-050"


def config_for(name: str, **overrides: Any) -> DetectorConfig:
    """The preset ``name`` of `DETECTOR_MODELS`, with field overrides (e.g. a smaller ``crop``)."""
    if name not in DETECTOR_MODELS:
        raise ValueError(f"unknown detector model {name!r}; choose from {sorted(DETECTOR_MODELS)}")
    return DETECTOR_MODELS[name](**overrides)


Detector = ForensicDetector | DetectorEnsemble  # what a checkpoint loads as


def build_model(cfg: DetectorConfig | str, device: str | torch.device | None = None) -> Detector:
    """A freshly initialised detector (weights come only from our own checkpoints, never a hub)."""
    cfg = config_for(cfg) if isinstance(cfg, str) else cfg
    model = DetectorEnsemble(cfg) if cfg.members > 1 else ForensicDetector(cfg)
    return model.to(device or default_device())


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
