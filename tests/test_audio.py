"""Feature extraction and the 16-bit split, checked against independent references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import CORPUS
from vocoder.audio import features, join_16bit, load_audio, log_mel, split_16bit
from vocoder.config import AudioConfig, load_config

AUDIO_16K = load_config("allison-16k").audio


def test_16bit_round_trip_over_all_values() -> None:
    values = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
    coarse, fine = split_16bit(values)
    assert coarse.min() == 0 and coarse.max() == 255 and fine.min() == 0 and fine.max() == 255
    # coarse is the high byte of the offset-binary value: monotone in the sample value
    assert np.all(np.diff(coarse) >= 0)
    assert np.array_equal(coarse * 256 + fine, values.astype(np.int64) + 32768)
    assert np.array_equal(join_16bit(coarse, fine), values)
    assert split_16bit(np.array([0], np.int16)) == (128, 0)


def test_16bit_split_of_tensors_is_the_split_of_arrays() -> None:
    """The torch samplers and losses split tensors with the same function."""
    import torch

    values = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
    coarse, fine = split_16bit(torch.from_numpy(values))
    assert coarse.dtype == torch.int64
    assert np.array_equal(coarse.numpy(), split_16bit(values)[0])
    assert np.array_equal(fine.numpy(), split_16bit(values)[1])
    joined = join_16bit(coarse, fine)
    assert joined.dtype == torch.int16 and np.array_equal(joined.numpy(), values)


def _reference_log_mel(y: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Slow, independent HiFi-GAN mel: explicit framing, periodic Hann, numpy rfft."""
    import librosa  # only for the Slaney filterbank, which is a published table

    hop, n_fft, win = cfg.hop_length, cfg.n_fft, cfg.win_length
    t = len(y) // hop
    pad = (n_fft - hop) // 2
    yp = np.pad(y[: t * hop].astype(np.float64), (pad, n_fft - hop - pad), mode="reflect")
    n = np.arange(win)
    window = np.zeros(n_fft)
    left = (n_fft - win) // 2
    window[left : left + win] = 0.5 - 0.5 * np.cos(2 * np.pi * n / win)
    frames = np.stack([yp[i * hop : i * hop + n_fft] * window for i in range(t)], axis=1)
    mag = np.abs(np.fft.rfft(frames, axis=0))
    fb = librosa.filters.mel(
        sr=cfg.sample_rate,
        n_fft=n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        htk=False,
        norm="slaney",
    )
    return np.log(np.maximum(fb @ mag, cfg.log_floor))


@pytest.mark.parametrize("cfg", [AUDIO_16K, AudioConfig()], ids=["16k", "22k-hifigan"])
def test_mel_matches_reference_and_aligns_with_samples(cfg: AudioConfig) -> None:
    y = load_audio(CORPUS / "wavs" / "AL-conf-errormenu.flac", cfg.sample_rate)
    mel, samples = features(y, cfg)
    assert mel.dtype == np.float32 and samples.dtype == np.int16
    assert mel.shape == (cfg.n_mels, len(y) // cfg.hop_length)
    assert len(samples) == mel.shape[1] * cfg.hop_length
    ref = _reference_log_mel(y, cfg)
    loud = ref > np.log(cfg.log_floor) + 1.0  # compare where the floor does not clip
    assert np.abs(mel - ref)[loud].max() < 1e-3
    # the int16 target is the same waveform, rounded
    assert np.abs(samples / 32768.0 - y[: len(samples)]).max() <= 1.0 / 32768


def test_frame_energy_follows_the_waveform() -> None:
    """Frame t covers hop block t: a click in block 40 lights up frames 39..41 only."""
    cfg = AUDIO_16K
    y = np.zeros(100 * cfg.hop_length, np.float32)
    y[40 * cfg.hop_length + cfg.hop_length // 2] = 1.0
    energy = log_mel(y, cfg).max(axis=0)
    peak = int(np.argmax(energy))
    assert peak == 40
    assert energy[20] == pytest.approx(np.log(cfg.log_floor))


def test_stereo_and_other_rates_become_mono_at_config_rate(tmp_path: Path) -> None:
    y, sr = sf.read(CORPUS / "wavs" / "AL-activated.flac", dtype="float32")
    stereo = np.stack([y, 0.5 * y], axis=1)
    path = tmp_path / "stereo44k.wav"
    import librosa

    up = np.stack([librosa.resample(stereo[:, c], orig_sr=sr, target_sr=44100) for c in range(2)], 1)
    sf.write(path, up, 44100)
    back = load_audio(path, 16000)
    assert back.ndim == 1
    assert abs(len(back) - len(y)) <= 2
    n = min(len(back), len(y))
    # mixdown is the mean of the channels (0.75 y); the round trip through 44.1 kHz is close
    err = back[:n] - 0.75 * y[:n]
    assert np.sqrt(np.mean(err**2)) < 0.02 * np.sqrt(np.mean(y**2))
