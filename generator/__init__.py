"""veriframe's video generator: a causal video VAE, a spacetime-patch Diffusion Transformer with
Patch n' Pack, frozen text encoders, rectified-flow training and sampling, and frame conditioning.

Pieces, each with a narrow interface (see the module docstrings):
- `autoencoder`: `VideoAutoencoder`, `AutoencoderConfig`, `AE_models`, `autoencoder_loss`
- `dit`: `VideoDiT`, `DiTConfig`, `DiT_models`, `dit_config`
- `text`: `TextEmbedding`, `TextEncoder`, `load_text_encoder`, `empty_prompt`, `drop_captions`
- `flow`: `RectifiedFlow`, `FlowConfig` (objective, time sampling and shift)
- `sampler`: `sample`, `SamplerConfig`, `guided_velocity`, `initial_noise`
- `conditioning`: `FrameCondition`, `image_to_video`, `extension`, `loop`, `random_frame_mask`
- `packing`: `pack_by_tokens`, `bucket_by_tokens`
- `checkpoint`: `save_component`, `load_component`, `save_bundle`, `read_bundle`
- `generate`: `VideoGenerator`; `cli`: `generate_to_file`
"""

from .autoencoder import AE_models, AutoencoderConfig, VideoAutoencoder, autoencoder_loss
from .checkpoint import load_component, read_bundle, save_bundle, save_component
from .conditioning import FrameCondition, extension, image_to_video, loop, random_frame_mask
from .dit import DiT_models, DiTConfig, VideoDiT, dit_config
from .errors import CheckpointError, CheckpointMismatchError, GeneratorError, NoCheckpointError
from .flow import FlowConfig, RectifiedFlow
from .packing import bucket_by_tokens, pack_by_tokens
from .sampler import SamplerConfig, guided_velocity, initial_noise, sample
from .text import TextEmbedding, TextEncoder, TextEncoderError, drop_captions, empty_prompt, load_text_encoder

__all__ = [
    "AE_models",
    "AutoencoderConfig",
    "CheckpointError",
    "CheckpointMismatchError",
    "DiTConfig",
    "DiT_models",
    "FlowConfig",
    "FrameCondition",
    "GeneratorError",
    "NoCheckpointError",
    "RectifiedFlow",
    "SamplerConfig",
    "TextEmbedding",
    "TextEncoder",
    "TextEncoderError",
    "VideoAutoencoder",
    "VideoDiT",
    "autoencoder_loss",
    "bucket_by_tokens",
    "dit_config",
    "drop_captions",
    "empty_prompt",
    "extension",
    "guided_velocity",
    "image_to_video",
    "initial_noise",
    "load_component",
    "load_text_encoder",
    "loop",
    "pack_by_tokens",
    "random_frame_mask",
    "read_bundle",
    "sample",
    "save_bundle",
    "save_component",
]
