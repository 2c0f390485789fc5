"""The torch engine: the reference samplers behind `synthesize`'s engine interface.

Beside the native engine (``native.NativeVocoder``) and the Griffin-Lim baseline
(``griffinlim.GriffinLimVocoder``): it loads a checkpoint and runs the model kind's own
torch sampler, ``model.generate`` or ``subscale.generate``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vocoder import checkpoint as ckpt_mod
from vocoder.config import Config
from vocoder.model import WaveRNN
from vocoder.sampler import generate_fold


class TorchVocoder:
    """The reference sampler behind the `synthesize` engine interface."""

    def __init__(self, model: WaveRNN, cfg: Config) -> None:
        self.model = model
        self.cfg = cfg
        self.mel_stats: tuple[np.ndarray, np.ndarray] | None = (
            model.mel_mean.cpu().numpy().astype(np.float64),
            model.mel_std.cpu().numpy().astype(np.float64),
        )

    @classmethod
    def load(cls, model_path: Path, threads: int = 0) -> TorchVocoder:
        """A checkpoint file or directory (latest); ``threads`` > 0 sets torch's threads."""
        if threads:
            torch.set_num_threads(threads)
        model, cfg, _ = ckpt_mod.load_model(ckpt_mod.resolve(model_path))
        return cls(model, cfg)

    def generate(self, mel: np.ndarray, seed: int) -> np.ndarray:
        """The model kind's own sampler: sequential, or staggered for a subscale model."""
        return self.model.sample(mel, seed)

    def generate_fold(self, mel: np.ndarray, seed: int, target: int, overlap: int) -> np.ndarray:
        return generate_fold(self.model, mel, seed, target, overlap)
