"""The Griffin-Lim baseline: same mel in, aligned waveform out, whose mel matches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from conftest import CORPUS, run_cli
from vocoder import checkpoint as ckpt_mod
from vocoder.audio import load_audio, log_mel
from vocoder.config import load_config
from vocoder.griffinlim import GriffinLimVocoder, model_settings


def test_griffinlim_reproduces_the_mel_of_real_speech() -> None:
    cfg = load_config("allison-16k", None)
    y = load_audio(CORPUS / "wavs" / "AL-call-forwarding.flac", cfg.audio.sample_rate)
    mel = log_mel(y, cfg.audio)
    out = GriffinLimVocoder(cfg).generate(mel, seed=0)
    assert out.dtype == np.int16 and len(out) == mel.shape[1] * cfg.audio.hop_length
    error = np.abs(log_mel(out / 32768.0, cfg.audio) - mel).mean()
    noise = np.random.default_rng(0).normal(size=len(y)) * y.std()
    noise_error = np.abs(log_mel(noise, cfg.audio) - mel).mean()
    assert error < 0.3 and error < noise_error / 10, (error, noise_error)
    # aligned with the reference: the frame energies line up at lag 0, not one hop off
    env_out = np.abs(out / 32768.0).reshape(-1, cfg.audio.hop_length).mean(axis=1)
    env_ref = np.abs(y[: len(out)]).reshape(-1, cfg.audio.hop_length).mean(axis=1)
    corr = {lag: np.corrcoef(np.roll(env_out, lag), env_ref)[0, 1] for lag in (-1, 0, 1)}
    assert max(corr, key=corr.get) == 0 and corr[0] > 0.95, corr
    assert np.array_equal(GriffinLimVocoder(cfg).generate(mel, seed=0), out)


def test_synthesize_with_griffinlim_engine(tmp_path: Path, features_dir: Path, tiny_ckpt: Path) -> None:
    cfg, (mean, std) = model_settings(tiny_ckpt)
    assert cfg.audio == load_config("allison-16k", None).audio
    model, _, _ = ckpt_mod.load_model(ckpt_mod.resolve(tiny_ckpt))
    assert np.array_equal(mean, model.mel_mean.double().numpy()) and np.array_equal(
        std, model.mel_std.double().numpy()
    )
    mel_in = next((features_dir / "mels").glob("*.npy"))
    out = tmp_path / "gl"
    r = run_cli("synthesize", tiny_ckpt, mel_in, "--engine", "griffinlim", "-o", out)
    assert r.exit_code == 0, r.output
    assert "with the griffinlim engine" in r.output
    y, sr = sf.read(out / f"{mel_in.stem}.wav", dtype="int16")
    assert sr == 16000 and len(y) == np.load(mel_in).shape[1] * 200
    assert np.abs(y).max() > 1000  # speech, not silence
