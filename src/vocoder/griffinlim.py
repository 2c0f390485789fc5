"""Griffin-Lim: the no-training baseline behind the `synthesize` engine interface.

It inverts exactly the log-mel of :func:`vocoder.audio.log_mel` (HiFi-GAN convention),
so a neural model and this baseline are compared on the same mel input: exp undoes the
natural log, a non-negative least-squares fit through the same Slaney mel basis gives a
linear magnitude, and Griffin-Lim iterations find a phase for it. The STFT is un-centred
like the mel's, and the (n_fft - hop) / 2 reflect padding the mel added is cut off again,
so T frames give T * hop samples, aligned sample for sample with the neural engines.
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np

from vocoder import config as config_mod
from vocoder.audio import float_to_int16
from vocoder.config import Config
from vocoder.errors import VocoderError
from vocoder.native import MODEL_EXT, NativeVocoder

# librosa's default is 32; 64 buys a clearly better magnitude match for little time
# (a second of 16 kHz audio takes well under a second).
N_ITER = 64


def model_settings(model_path: Path) -> tuple[Config, tuple[np.ndarray, np.ndarray]]:
    """The config a model was trained with and its training mels' per-bin (mean, std):
    from a ``.wrnn`` file's header, or a checkpoint file or directory (its latest), so
    Griffin-Lim reads mels the same way and checks them against the same statistics."""
    model_path = Path(model_path)
    if model_path.suffix == MODEL_EXT:
        native = NativeVocoder.load(model_path)
        return native.cfg, native.mel_stats
    from vocoder import checkpoint as ckpt_mod

    path = ckpt_mod.resolve(model_path)
    state = ckpt_mod.load(path)
    cfg = config_mod.from_dict(state["config"], f"{path} (stored config)")
    weights = state["model"]
    try:
        stats = (weights["mel_mean"].double().numpy(), weights["mel_std"].double().numpy())
    except (KeyError, AttributeError):
        raise VocoderError(f"{path}: checkpoint has no mel statistics (mel_mean, mel_std)") from None
    return cfg, stats


class GriffinLimVocoder:
    """mel -> int16 samples by Griffin-Lim phase reconstruction; seeded random initial phase."""

    def __init__(
        self, cfg: Config, n_iter: int = N_ITER, mel_stats: tuple[np.ndarray, np.ndarray] | None = None
    ) -> None:
        """``mel_stats``: the model's training mels' per-bin (mean, std), for the input check."""
        self.cfg = cfg
        self.n_iter = n_iter
        self.mel_stats = mel_stats

    @classmethod
    def load(cls, model_path: Path) -> GriffinLimVocoder:
        cfg, stats = model_settings(model_path)
        return cls(cfg, mel_stats=stats)

    def magnitude(self, mel: np.ndarray) -> np.ndarray:
        """Linear STFT magnitude (n_fft // 2 + 1, T) whose mel is closest to ``exp(mel)``."""
        a = self.cfg.audio
        with np.errstate(over="ignore"):
            linear = np.exp(mel.astype(np.float64))
        if not np.all(np.isfinite(linear)):
            raise VocoderError(f"mel values up to {mel.max():.3g} overflow exp(): not a natural-log mel?")
        try:
            return librosa.feature.inverse.mel_to_stft(
                linear,
                sr=a.sample_rate,
                n_fft=a.n_fft,
                power=1.0,
                fmin=a.fmin,
                fmax=a.fmax,
                htk=False,
                norm="slaney",
            )
        except librosa.util.exceptions.ParameterError as e:
            raise VocoderError(f"Griffin-Lim cannot invert this mel ({e})") from None

    def generate(self, mel: np.ndarray, seed: int) -> np.ndarray:
        """mel (n_mels, T) -> T * hop int16 samples."""
        a = self.cfg.audio
        frames = mel.shape[1]
        y = librosa.griffinlim(
            self.magnitude(mel),
            n_iter=self.n_iter,
            hop_length=a.hop_length,
            win_length=a.win_length,
            n_fft=a.n_fft,
            window="hann",
            center=False,
            init="random",
            random_state=np.random.default_rng(int(seed) & 0xFFFFFFFFFFFFFFFF),
        )
        left = (a.n_fft - a.hop_length) // 2
        return float_to_int16(y[left : left + frames * a.hop_length])
