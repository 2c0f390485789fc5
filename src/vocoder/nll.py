"""`nll`: how well a model predicts real speech, teacher-forced through the native engine.

For each utterance of a features split the engine is given the true samples and returns
every sample's coarse and fine logits; the negative log-likelihood of the true bytes,
averaged over all samples, is the model's NLL in bits/sample. Scoring the model file
(not the checkpoint) measures what synthesis will run: its precision, its sparse or
dense kernels, the subscale schedule. For a subscale model the NLL is also given per
sub-tensor s (samples B i + s): sub-tensor 0 sees only its own past, every B-th
sample, while the others also see their waveform neighbours, so the split shows where
the model loses against a sequential one. A checkpoint is exported to a temporary model
file first (``precision``). No torch is needed for a model file.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vocoder.audio import split_16bit
from vocoder.data import load_utterances, read_features_config
from vocoder.errors import VocoderError
from vocoder.kinds import kind_of
from vocoder.native import MODEL_EXT, NativeVocoder


@dataclass
class NllReport:
    """Mean coarse and fine NLL (bits/sample) over a split, and per sub-tensor."""

    utterances: int
    samples: int
    coarse: float
    fine: float
    subscale: int = 0  # B, or 0 for a sequential model
    by_subtensor: list[tuple[float, float]] = field(default_factory=list)  # (coarse, fine) per s

    @property
    def total(self) -> float:
        return self.coarse + self.fine

    def table_rows(self) -> list[tuple[str, str, str, str]]:
        """Cells under ``HEADER``: the whole split, then one row per sub-tensor."""
        rows = [("all", f"{self.coarse:.3f}", f"{self.fine:.3f}", f"{self.total:.3f}")]
        rows += [
            (f"B i + {s}", f"{c:.3f}", f"{f:.3f}", f"{c + f:.3f}")
            for s, (c, f) in enumerate(self.by_subtensor)
        ]
        return rows


HEADER = ("samples", "coarse", "fine", "NLL bits/sample")


def byte_nll(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-row -log2 softmax(logits)[target] for logits (T, 256), in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_total = np.log(np.exp(z).sum(axis=1))
    return (log_total - z[np.arange(len(target)), target]) / math.log(2.0)


def score_model_file(
    voc: NativeVocoder, features_dir: Path, split: str, on_utterance: Callable[[str], None] | None = None
) -> NllReport:
    """NLL of a loaded model file on one split of a features directory."""
    cfg, feats = voc.cfg, read_features_config(features_dir)
    for key in ("sample_rate", "hop_length", "n_mels", "n_fft", "fmin", "fmax"):
        a, b = getattr(cfg.audio, key), getattr(feats.audio, key)
        if a != b:
            raise VocoderError(f"{features_dir}: features have audio.{key}={b}, the model expects {a}")
    utts = load_utterances(features_dir, split, cfg.audio.hop_length, cfg.audio.n_mels)
    if not utts:
        raise VocoderError(f"{features_dir}: the {split} split is empty")
    b = kind_of(cfg).subtensors(cfg)
    sums = np.zeros((b, 2))
    counts = np.zeros(b)
    for u in utts:
        coarse, fine, _ = voc.teacher_forced(np.asarray(u.mel), np.asarray(u.audio))
        target_c, target_f = split_16bit(np.asarray(u.audio))
        nll_c, nll_f = byte_nll(coarse, target_c), byte_nll(fine, target_f)
        sub = np.arange(len(target_c)) % b
        np.add.at(sums, (sub, 0), nll_c)
        np.add.at(sums, (sub, 1), nll_f)
        counts += np.bincount(sub, minlength=b)
        if on_utterance is not None:
            on_utterance(u.uid)
    total = counts.sum()
    per = sums / counts[:, None]
    return NllReport(
        utterances=len(utts),
        samples=int(total),
        coarse=float(sums[:, 0].sum() / total),
        fine=float(sums[:, 1].sum() / total),
        subscale=b if b > 1 else 0,
        by_subtensor=[(float(c), float(f)) for c, f in per] if b > 1 else [],
    )


def score(
    model_path: Path,
    features_dir: Path,
    split: str = "test",
    precision: str = "fp32",
    on_utterance: Callable[[str], None] | None = None,
) -> NllReport:
    """NLL of a model file, or of a checkpoint exported at ``precision``."""
    if Path(model_path).suffix == MODEL_EXT:
        return score_model_file(NativeVocoder.load(model_path), features_dir, split, on_utterance)
    from vocoder.export import export_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"model{MODEL_EXT}"
        export_checkpoint(model_path, path, precision)
        return score_model_file(NativeVocoder.load(path), features_dir, split, on_utterance)
