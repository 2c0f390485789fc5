"""Audio I/O, log-mel features and the 16-bit <-> (coarse, fine) split.

Kept free of torch on purpose: copy synthesis with a compiled engine must be able to
compute mels in a process that cannot import torch.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import librosa
import numpy as np
import soundfile as sf

from vocoder.config import AudioConfig
from vocoder.errors import VocoderError
from vocoder.fsutil import atomic_path

if TYPE_CHECKING:
    import torch

Samples = TypeVar("Samples", np.ndarray, "torch.Tensor")

# The audio files every command reads (inputs, datasets, generated and reference speech).
AUDIO_EXTS = (".wav", ".flac")


def split_16bit(samples: Samples) -> tuple[Samples, Samples]:
    """int16-valued samples -> (coarse, fine), int64: high and low byte of the offset-binary
    value. Numpy arrays or torch tensors (the torch samplers and losses split tensors), so
    the split is written once; torch itself is never imported here."""
    u = (samples.astype(np.int64) if isinstance(samples, np.ndarray) else samples.long()) + 32768
    return u >> 8, u & 0xFF


def join_16bit(coarse: Samples, fine: Samples) -> Samples:
    """Inverse of :func:`split_16bit`: int16 samples, of the arguments' array type."""
    if isinstance(coarse, np.ndarray):
        return (coarse.astype(np.int32) * 256 + np.asarray(fine, np.int32) - 32768).astype(np.int16)
    return (coarse.long() * 256 + fine.long() - 32768).short()


def float_to_int16(y: np.ndarray) -> np.ndarray:
    return np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)


def wav_shortfall(path: Path) -> int:
    """Bytes a RIFF/WAVE file's data chunk declares beyond the end of the file (0 when
    it is whole, not a WAV, or declares an unknown length as streams do). libsndfile
    quietly reads the part that exists, so a cut download would otherwise pass as a
    shorter recording."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return 0
            size = os.fstat(f.fileno()).st_size
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                chunk = f.read(8)
                declared = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"data":
                    if declared in (0, 0xFFFFFFFF):
                        return 0
                    return max(0, pos + 8 + declared - size)
                pos += 8 + declared + (declared & 1)
    except OSError:
        return 0
    return 0


def load_audio(path: Path, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Read any soundfile-readable file as float32 mono at ``sample_rate``.

    Multi-channel audio is averaged; other rates are resampled (soxr, high quality).
    ``max_seconds`` is checked against the header before any sample is read, so a file
    too long to hold in memory fails with its name instead of an allocation error.
    """
    try:
        if max_seconds is not None:
            info = sf.info(str(path))
            if info.frames > max_seconds * info.samplerate:
                raise VocoderError(
                    f"{path}: {info.frames / info.samplerate:.0f} s of audio, over the limit of "
                    f"{max_seconds:g} s (--max-seconds)"
                )
        short = wav_shortfall(Path(path))
        if short:
            raise VocoderError(
                f"{path}: truncated (the data chunk runs {short} bytes past the end of the file)"
            )
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise VocoderError(f"{path}: cannot read audio ({e})") from None
    y = y.mean(axis=1)
    if y.size == 0:
        raise VocoderError(f"{path}: audio file is empty")
    if not np.all(np.isfinite(y)):
        raise VocoderError(f"{path}: audio contains NaN or infinite samples")
    if sr != sample_rate:
        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
    return y.astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM wav, written atomically."""
    with atomic_path(path) as tmp:
        sf.write(str(tmp), samples, sample_rate, subtype="PCM_16", format="WAV")


@functools.lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    return librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney"
    ).astype(np.float32)


def n_frames(n_samples: int, cfg: AudioConfig) -> int:
    """Frames the mel of ``n_samples`` samples has: one per whole hop."""
    return n_samples // cfg.hop_length


def log_mel(y: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Natural-log Slaney mel magnitude, shape (n_mels, len(y) // hop), float32.

    HiFi-GAN convention: reflect-pad (n_fft - hop) / 2 on each side, un-centred STFT with
    a Hann window of ``win_length``, magnitude (not power), log of max(mel, log_floor).
    Frame t then covers hop block t, centred on sample t * hop + hop / 2.
    """
    t = n_frames(len(y), cfg)
    left = (cfg.n_fft - cfg.hop_length) // 2
    right = cfg.n_fft - cfg.hop_length - left
    if len(y) <= max(left, right):
        raise VocoderError(f"audio of {len(y)} samples is too short for n_fft {cfg.n_fft}")
    padded = np.pad(y[: t * cfg.hop_length], (left, right), mode="reflect")
    spec = librosa.stft(
        padded,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window="hann",
        center=False,
    )
    mag = np.abs(spec)[:, :t]
    mel = _mel_basis(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax) @ mag
    return np.log(np.maximum(mel, cfg.log_floor)).astype(np.float32)


def features(y: np.ndarray, cfg: AudioConfig) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel (n_mels, T), int16 target of exactly T * hop samples) for one utterance."""
    mel = log_mel(y, cfg)
    samples = float_to_int16(y[: mel.shape[1] * cfg.hop_length])
    return mel, samples


def check_mel_shape(mel: np.ndarray, n_mels: int, origin: str, max_frames: int | None = None) -> None:
    """Check a user-supplied mel's shape, length and dtype without touching its data, so
    ``mel`` may be a memory map of a file far larger than memory."""
    if mel.ndim != 2:
        raise VocoderError(f"{origin}: mel must be 2-D ({n_mels}, T), got shape {mel.shape}")
    if mel.shape[0] != n_mels:
        hint = " (transposed? expected (n_mels, T); see --mel-layout)" if mel.shape[1] == n_mels else ""
        raise VocoderError(f"{origin}: mel has shape {mel.shape}, expected ({n_mels}, T){hint}")
    if mel.shape[1] < 1:
        raise VocoderError(f"{origin}: mel has no frames")
    if max_frames is not None and mel.shape[1] > max_frames:
        raise VocoderError(f"{origin}: mel has {mel.shape[1]} frames, over the limit of {max_frames}")
    if not np.issubdtype(mel.dtype, np.floating):
        raise VocoderError(f"{origin}: mel must be floating point, got {mel.dtype}")


def check_mel(mel: np.ndarray, n_mels: int, origin: str, max_frames: int | None = None) -> np.ndarray:
    """Validate a user-supplied mel (``check_mel_shape``), finite as float32 (a float64
    1e300 is finite until the cast); return it as float32."""
    check_mel_shape(mel, n_mels, origin, max_frames)
    with np.errstate(over="ignore"):  # overflow becomes inf, reported just below
        out = np.array(mel, dtype=np.float32)  # a copy in memory, never the read-only map
    if not np.all(np.isfinite(out)):
        raise VocoderError(f"{origin}: mel contains NaN or infinite values (as float32)")
    return out
