"""The Python API for TTS services and batch jobs: load a model file once, then vocode
mels from memory. Torch-free for ``.wrnn`` model files (the native engine).

    from vocoder import load_vocoder
    v = load_vocoder("models/allison-16k/model-int8.wrnn", threads=1)
    audio = v.synthesize(mel, seed=0)          # int16 samples at v.sample_rate
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vocoder.config import Config
from vocoder.mels import MelInput, frame_limit, prepare
from vocoder.native import NativeVocoder
from vocoder.synthesize import MAX_SECONDS


class MelConventionWarning(UserWarning):
    """A mel far from the model's training mels (another scale, normalised, another rate)."""


class Vocoder:
    """A loaded model file. Reuse one per thread: a call runs the engine on the calling
    thread (and, with ``threads=2``, one more)."""

    def __init__(self, native: NativeVocoder) -> None:
        self._native = native

    @property
    def sample_rate(self) -> int:
        return self._native.cfg.audio.sample_rate

    @property
    def config(self) -> Config:
        """The model's typed config (audio settings, sizes, the run's training settings)."""
        return self._native.cfg

    @property
    def hop_length(self) -> int:
        return self._native.cfg.audio.hop_length

    def synthesize(
        self, mel: np.ndarray, seed: int = 0, layout: str = "auto", scale: str = "ln", strict: bool = False
    ) -> np.ndarray:
        """A mel (``(n_mels, T)``, ``(T, n_mels)`` or with a leading batch axis of 1;
        natural log unless ``scale`` says log10, db or linear) -> T * hop int16 samples.

        A mel whose statistics are far from the model's training mels is vocoded with a
        ``MelConventionWarning`` naming the likely cause, or refused (``VocoderError``)
        with ``strict``; a bad shape or non-finite values raise ``VocoderError``.
        """
        return self._native.generate(self._prepare(mel, layout, scale, strict), seed)

    def _prepare(self, mel: np.ndarray, layout: str, scale: str, strict: bool) -> np.ndarray:
        a = self._native.cfg.audio
        how = MelInput(layout, scale, strict)
        mel32, warning = prepare(
            np.asarray(mel),
            a.n_mels,
            a.log_floor,
            frame_limit(a, MAX_SECONDS),
            how,
            self._native.mel_stats,
            "mel",
        )
        if warning is not None:
            warnings.warn(warning, MelConventionWarning, stacklevel=3)
        return mel32

    def stream(
        self,
        mel: np.ndarray,
        seed: int = 0,
        chunk_samples: int = 1024,
        layout: str = "auto",
        scale: str = "ln",
        strict: bool = False,
    ) -> Iterator[np.ndarray]:
        """``synthesize``'s samples (the same ones, for the same seed) as int16 chunks of
        ``chunk_samples``, each yielded as soon as it is made: audio starts playing while
        the rest is generated. A slow reader holds the engine back; closing the generator
        (a client gone) stops it at its next chunk. Sequential models only."""
        return self._native.stream(self._prepare(mel, layout, scale, strict), seed, chunk_samples)


def load_vocoder(path: str | Path, threads: int = 1) -> Vocoder:
    """Open and check a ``.wrnn`` model file (``vocoder export``); ``threads`` = 2 splits
    each step between two cores (same samples). Raises ``VocoderError`` naming the file
    and the problem."""
    return Vocoder(NativeVocoder.load(Path(path), threads))
