"""How far real mels, and the same mels in other conventions, are from a model's training
mels, and how a square (n_mels x n_mels) mel's per-bin profile follows the training mels'
read each way round: the figures behind ``vocoder.mels.FIT_LIMIT`` and ``PROFILE_LIMIT``
(docs/mels.md).

    python scripts/mel_fit.py MODEL.wrnn FEATURES_DIR/mels
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from vocoder.mels import misfit, profile_correlation
from vocoder.native import NativeVocoder


def main(model: Path, mel_dir: Path) -> None:
    mean, std = NativeVocoder.load(model).mel_stats
    scores: dict[str, list[float]] = {}
    for path in sorted(mel_dir.glob("*.npy")):
        m = np.load(path).astype(np.float64)
        forms = {
            "ln": m,
            "log10": m / math.log(10.0),
            "db": m * 20.0 / math.log(10.0),
            "linear": np.exp(m),
            "normalised": (m - mean[:, None]) / std[:, None],
            "own-normalised": (m - m.mean(axis=1, keepdims=True)) / m.std(axis=1, keepdims=True),
        }
        for name, form in forms.items():
            scores.setdefault(name, []).append(misfit(form, mean, std))
        if m.shape[1] >= m.shape[0]:  # its first n_mels frames as a square mel
            square = m[:, : m.shape[0]]
            scores.setdefault("square profile r", []).append(profile_correlation(square, mean))
            scores.setdefault("square transposed r", []).append(profile_correlation(square.T, mean))
    for name, values in scores.items():
        v = np.array(values)
        print(f"{name:15s} n={len(v)} min {v.min():.2f} median {np.median(v):.2f} max {v.max():.2f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
