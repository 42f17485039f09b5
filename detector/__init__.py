"""veriframe's AI-origin detector: a timm model on forensic residuals, training-free signals, verdicts.

Public API:
- `analyse_file(path, limits, model=None, temporal=None) -> DetectorReport` (frame model and temporal head
  scores + signals for one file)
- `ClipAnalysis(path, info, model=None, temporal=None)` (the same, fed by a decode pass the caller shares)
- `verdict(report, detector_result, signals) -> Verdict` (pure; all evidence -> one label with reasons)
- `train_detector(...)`, `evaluate_detector(...)` (train/eval on a labelled folder or CSV)
- `detector.temporal` (the temporal head), `detector.clipkit` and `detector.train_temporal` (its data and fit)
- `build_model`, `DetectorConfig`, `DETECTOR_MODELS` (the model factory and its registered presets);
  `build_ensemble` (trained checkpoints joined into one `DetectorEnsemble`)
- `load_checkpoint`, `save_checkpoint`, `Calibration`, `residual`
"""

from .analyse import ClipAnalysis, DetectorReport, DetectorResult, analyse_file, default_detector
from .calibration import Calibration, calibrate, threshold_at_fpr
from .checkpoint import CheckpointError, LoadedDetector, load_checkpoint, save_checkpoint
from .evaluate import evaluate_detector
from .model import (
                    DEFAULT_MODEL,
                    DETECTOR_MODELS,
                    DetectorConfig,
                    DetectorEnsemble,
                    ForensicDetector,
                    build_model,
                    config_for,
)
from .residual import residual
from .signals import Signal, compute_signals
from .train import build_ensemble, train_detector
from .verdict import LABELS, Verdict, verdict

__all__ = [
    "DEFAULT_MODEL",
    "DETECTOR_MODELS",
    "LABELS",
    "Calibration",
    "CheckpointError",
    "ClipAnalysis",
    "DetectorConfig",
    "DetectorEnsemble",
    "DetectorReport",
    "DetectorResult",
    "ForensicDetector",
    "LoadedDetector",
    "Signal",
    "Verdict",
    "analyse_file",
    "build_ensemble",
    "build_model",
    "calibrate",
    "compute_signals",
    "config_for",
    "default_detector",
    "evaluate_detector",
    "load_checkpoint",
    "residual",
    "save_checkpoint",
    "threshold_at_fpr",
    "train_detector",
    "verdict",
]
