"""Reading a features directory and cutting training windows from it.

Layout written by `preprocess` (see README): ``config.yaml``, ``train.txt`` /
``valid.txt`` / ``test.txt`` (one id a line), ``mels/<id>.npy`` (float32, (n_mels, T))
and ``audio/<id>.npy`` (int16, T * hop). Arrays are memory-mapped so a corpus larger
than memory trains without loading it all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vocoder import config as config_mod
from vocoder.audio import split_16bit
from vocoder.config import Config
from vocoder.errors import VocoderError

SPLITS = ("train", "valid", "test")


def read_features_config(features_dir: Path) -> Config:
    path = features_dir / "config.yaml"
    if not path.is_file():
        raise VocoderError(f"{features_dir}: not a features directory (no config.yaml)")
    return config_mod.from_dict(config_mod.read_yaml(path), str(path))


def read_split(features_dir: Path, split: str) -> list[str]:
    path = features_dir / f"{split}.txt"
    if not path.is_file():
        raise VocoderError(f"{path}: split list is missing (run `vocoder preprocess`)")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class Utterance:
    """One preprocessed utterance: mel (n_mels, T) and int16 samples (T * hop)."""

    uid: str
    mel: np.ndarray
    audio: np.ndarray


def feature_paths(features_dir: Path, uid: str) -> tuple[Path, Path]:
    """Where `preprocess` writes an utterance's mel and int16 target."""
    return features_dir / "mels" / f"{uid}.npy", features_dir / "audio" / f"{uid}.npy"


def _load_array(path: Path) -> np.ndarray:
    """A features file, memory-mapped; a missing, empty or damaged one is named."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise VocoderError(
            f"{path}: cannot read features ({e or type(e).__name__}); rerun preprocess"
        ) from None


def read_features(features_dir: Path, uid: str, hop: int, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    """One utterance's (mel, samples), memory-mapped and checked against what `preprocess`
    promises: a float32 (n_mels, T) mel, T >= 1, and T * hop int16 samples."""
    mel_path, audio_path = feature_paths(features_dir, uid)
    mel, audio = _load_array(mel_path), _load_array(audio_path)
    if (
        mel.dtype != np.float32
        or audio.dtype != np.int16
        or mel.ndim != 2
        or mel.shape[0] != n_mels
        or mel.shape[1] < 1
        or audio.shape != (mel.shape[1] * hop,)
    ):
        raise VocoderError(
            f"{mel_path}: shape {mel.shape} ({mel.dtype}) does not match audio {audio.shape} "
            f"({audio.dtype}) and hop {hop}"
        )
    return mel, audio


def load_utterances(features_dir: Path, split: str, hop: int, n_mels: int) -> list[Utterance]:
    """Memory-map one split, checking the shapes `preprocess` promises."""
    return [
        Utterance(uid, *read_features(features_dir, uid, hop, n_mels))
        for uid in read_split(features_dir, split)
    ]


def mel_statistics(utts: list[Utterance]) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard deviation over all frames (for input normalisation)."""
    total = sum(u.mel.shape[1] for u in utts)
    n_mels = utts[0].mel.shape[0]
    s1 = np.zeros(n_mels, np.float64)
    s2 = np.zeros(n_mels, np.float64)
    for u in utts:
        m = np.asarray(u.mel, np.float64)
        s1 += m.sum(axis=1)
        s2 += (m * m).sum(axis=1)
    mean = s1 / total
    std = np.sqrt(np.maximum(s2 / total - mean * mean, 1e-8))
    return mean.astype(np.float32), std.astype(np.float32)


@dataclass
class Batch:
    """A batch of training windows; every array has batch size B first."""

    mel: np.ndarray  # (B, n_mels, W + 2 + 2 * radius), normalised, zeros outside the utterance
    c_prev: np.ndarray  # (B, W * hop) int64
    f_prev: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray


class WindowCutter:
    """Cuts windows of ``frames`` mel frames and their samples, as the model expects.

    A window starting at frame s needs frames s-1 .. s+W for interpolation (so
    1 <= s <= T - W - 1) and ``radius`` more on each side for the convolutions; those
    beyond the utterance are zeros after normalisation, exactly as at inference.
    """

    def __init__(self, frames: int, hop: int, radius: int, mean: np.ndarray, std: np.ndarray) -> None:
        self.frames = frames
        self.hop = hop
        self.radius = radius
        self.mean = mean[:, None]
        self.std = std[:, None]

    def min_frames(self) -> int:
        return self.frames + 2

    def cut(self, utt: Utterance, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w, r, hop = self.frames, self.radius, self.hop
        t = utt.mel.shape[1]
        lo, hi = s - 1 - r, s + w + 1 + r
        mel = np.zeros((utt.mel.shape[0], hi - lo), np.float32)
        a, b = max(lo, 0), min(hi, t)
        mel[:, a - lo : b - lo] = (np.asarray(utt.mel[:, a:b]) - self.mean) / self.std
        target = np.asarray(utt.audio[s * hop : (s + w) * hop])
        prev = np.asarray(utt.audio[s * hop - 1 : (s + w) * hop - 1])
        return mel, prev, target

    def batch(self, pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Batch:
        mel = np.stack([p[0] for p in pieces])
        c_prev, f_prev = split_16bit(np.stack([p[1] for p in pieces]))
        coarse, fine = split_16bit(np.stack([p[2] for p in pieces]))
        return Batch(mel, c_prev, f_prev, coarse, fine)

    def random_batch(
        self, utts: list[Utterance], size: int, rng: np.random.Generator, part: tuple[int, int] = (0, 1)
    ) -> Batch:
        """Utterances drawn in proportion to their length, then a uniform start frame.

        ``part`` (k, n): only the k-th of n equal slices of the ``size`` windows is cut,
        though all are drawn, so n processes sharing one seed take disjoint slices of the
        batch a single process would draw, and their generators stay in step.
        """
        lengths = np.array([u.mel.shape[1] - self.min_frames() + 1 for u in utts], np.float64)
        idx = rng.choice(len(utts), size=size, p=lengths / lengths.sum())
        starts = [int(rng.integers(1, utts[i].mel.shape[1] - self.frames)) for i in idx]
        k, n = part
        share = size // n
        mine = range(k * share, (k + 1) * share)
        return self.batch([self.cut(utts[idx[j]], starts[j]) for j in mine])

    def fixed_windows(self, utts: list[Utterance], limit: int) -> list[tuple[Utterance, int]]:
        """Deterministic, non-overlapping windows over the utterances (for validation)."""
        out: list[tuple[Utterance, int]] = []
        for u in utts:
            for s in range(1, u.mel.shape[1] - self.frames, self.frames):
                out.append((u, s))
                if len(out) >= limit:
                    return out
        return out
