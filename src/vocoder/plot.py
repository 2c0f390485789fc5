"""`plot`: one PNG per utterance, reference above generated, to look at what scores hide.

Each figure shows the two waveforms and the two log-mel spectrograms on shared axes and
one colour scale, so a missing harmonic, a noise floor or a timing slip is visible at a
glance. matplotlib is an optional extra (``pip install 'wavernn-vocoder[plot]'``); it is
imported only here.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import librosa
import numpy as np

from vocoder.errors import VocoderError
from vocoder.evaluate import load_pair, pair_files
from vocoder.fsutil import atomic_path

N_MELS = 80


def _pyplot() -> ModuleType:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise VocoderError(
            "plotting needs matplotlib: pip install 'wavernn-vocoder[plot]' (or pip install matplotlib)"
        ) from None
    return plt


def log_mel_db(y: np.ndarray, rate: int) -> np.ndarray:
    """80-band mel power in dB re full scale, 25 ms frames every 5 ms (as `evaluate`)."""
    win = round(0.025 * rate)
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=rate,
        n_fft=1 << (win - 1).bit_length(),
        hop_length=round(0.005 * rate),
        win_length=win,
        n_mels=N_MELS,
        fmax=rate / 2,
    )
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)


def plot_pair(uid: str, generated: Path, reference: Path, out_file: Path) -> None:
    """Write ``out_file`` (PNG): waveforms and log-mels of reference and generated."""
    plt = _pyplot()
    gen, ref, rate, _ = load_pair(generated, reference)
    mels = [log_mel_db(ref, rate), log_mel_db(gen, rate)]
    top = float(max(m.max() for m in mels))
    fig, axes = plt.subplots(2, 2, figsize=(12, 6), sharex="col", constrained_layout=True)
    t = np.arange(len(ref)) / rate
    for row, (name, y, mel) in enumerate([("reference", ref, mels[0]), ("generated", gen, mels[1])]):
        wave_ax, mel_ax = axes[row]
        wave_ax.plot(t, y, linewidth=0.4)
        wave_ax.set_ylim(-1, 1)
        wave_ax.set_title(f"{uid}: {name} waveform")
        image = mel_ax.imshow(
            mel,
            origin="lower",
            aspect="auto",
            extent=(0, len(y) / rate, 0, N_MELS),
            vmin=top - 80,
            vmax=top,
            cmap="magma",
        )
        mel_ax.set_title(f"{name} log-mel (dB)")
        mel_ax.set_ylabel("mel band")
    axes[1][0].set_xlabel("seconds")
    axes[1][1].set_xlabel("seconds")
    fig.colorbar(image, ax=axes[:, 1], label="dB")
    try:
        with atomic_path(out_file) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)


def plot(generated: Path, reference: Path, out_dir: Path) -> tuple[list[Path], list[str]]:
    """A PNG per pair in ``out_dir/<id>.png``; returns the files written and the problems
    met (unpaired or unreadable files, by name), after trying every pair."""
    _pyplot()  # fail once, before any work, if matplotlib is missing
    pairs, errors = pair_files(generated, reference)
    written: list[Path] = []
    for uid, gen, ref in pairs:
        out_file = out_dir / f"{uid}.png"
        try:
            plot_pair(uid, gen, ref, out_file)
        except VocoderError as e:
            errors.append(str(e))
            continue
        except (OSError, ValueError, RuntimeError) as e:
            errors.append(f"{gen}: {type(e).__name__}: {e}")
            continue
        written.append(out_file)
    return written, errors
