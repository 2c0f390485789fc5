"""`evaluate`: objective scores of generated speech against its reference recordings.

A vocoder's output is time-aligned with its reference by construction (it is rendered
from the reference's own mel), so every metric compares frame t with frame t: there is
no DTW, and the only alignment is trimming both signals to the shorter length. A
length difference beyond ``length_tolerance`` (default 20 ms, more than one hop of the
usual frame settings) means the pair is not what it seems (a cut render, a wrong file):
it is recorded per utterance and listed, and ``fail_on_length`` makes it an error. The
generated audio is resampled to the reference's rate; metrics that need a fixed rate
(PESQ, F0) resample both.

Definitions (all per utterance; the report's mean is the plain average over utterances):

- **PESQ**: ITU-T P.862.2 wideband MOS-LQO (package ``pesq``) at 16 kHz; 1.04 to 4.64,
  higher is better. NaN where PESQ finds no speech.
- **STOI**: short-time objective intelligibility (package ``pystoi``, classic, not
  extended), 0 to 1, higher is better.
- **MCD**: mel-cepstral distortion in dB on MFCCs, not SPTK mel-cepstra (``pysptk`` does
  not import on current Python packaging): frames of 25 ms (Hann) every 5 ms, magnitude
  spectrum, 80 Slaney mel bands L_n from 0 Hz to half the rate, natural log (floor
  1e-5), cepstrum c_m = (1/80) sum_n L_n cos(pi m (n + 1/2) / 80) (DCT-II scaled so
  that L_n = c_0 + 2 sum_m c_m cos(...), the convention the MCD constant assumes),
  coefficients c1..c13 (c0, the energy, left out);
  MCD = 10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2), averaged over all frames, silent
  ones included. Close to, but not interchangeable with, SPTK-based figures in papers.
- **LSD**: log-spectral distance in dB: per frame (same STFT as MCD, power floor 1e-10)
  sqrt(mean_k (10 log10 P(k) - 10 log10 P'(k))^2), averaged over frames.
- **F0 RMSE**: in cents (1200 log2 of the ratio), over frames voiced in both signals;
  F0 and voicing from probabilistic YIN (``librosa.pyin``) at 16 kHz, 60 to 500 Hz,
  40 ms frames every 10 ms. NaN if no frame is voiced in both.
- **VDE**: voicing decision error, the share of frames whose voiced/unvoiced decision
  differs between the two signals (0 to 1, lower is better).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import librosa
import numpy as np
import scipy.fft
import soundfile as sf

from vocoder.audio import AUDIO_EXTS, load_audio
from vocoder.errors import VocoderError
from vocoder.fsutil import write_text_atomic

# name, better direction (+1: higher is better), unit; the order of every table and file
METRICS: tuple[tuple[str, int, str], ...] = (
    ("pesq", +1, "MOS"),
    ("stoi", +1, ""),
    ("mcd", -1, "dB"),
    ("lsd", -1, "dB"),
    ("f0_rmse", -1, "cents"),
    ("vde", -1, ""),
)
PESQ_RATE = 16000
F0_RATE = 16000
F0_MIN, F0_MAX = 60.0, 500.0
MCD_ORDER = 13
N_MELS = 80


@dataclass
class Scores:
    """The metrics of one utterance (NaN where a metric is undefined)."""

    id: str
    generated: str
    reference: str
    seconds: float
    length_diff: float  # generated minus reference, seconds, before trimming
    pesq: float
    stoi: float
    mcd: float
    lsd: float
    f0_rmse: float
    vde: float


@dataclass
class Report:
    """Every scored utterance, the problems met on the way, and the mean per metric."""

    utterances: list[Scores] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    length_mismatches: list[str] = field(default_factory=list)

    def mean(self) -> dict[str, float]:
        means: dict[str, float] = {}
        for name, _, _ in METRICS:
            values = [getattr(s, name) for s in self.utterances if math.isfinite(getattr(s, name))]
            means[name] = float(np.mean(values)) if values else math.nan
        return means


def table_header() -> list[str]:
    """Column titles of the scores table: utterance, seconds, each metric with its arrow."""
    titles = [
        f"{name}{f' ({unit})' if unit else ''} {'↑' if sign > 0 else '↓'}" for name, sign, unit in METRICS
    ]
    return ["utterance", "s", *titles]


def table_rows(report: Report) -> list[list[str]]:
    """Cells under ``table_header``: one row per utterance, then the mean ("-" where undefined)."""

    def fmt(v: float) -> str:
        return f"{v:.3f}" if math.isfinite(v) else "-"

    rows = [
        [s.id, f"{s.seconds:.2f}", *(fmt(getattr(s, n)) for n, _, _ in METRICS)] for s in report.utterances
    ]
    mean = report.mean()
    return [*rows, ["mean", "", *(fmt(mean[n]) for n, _, _ in METRICS)]]


def _audio_files(directory: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(directory.iterdir()):
        if p.suffix.lower() in exts and p.is_file():
            files.setdefault(p.stem, p)
    return files


def pair_files(generated: Path, reference: Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """(id, generated, reference) pairs by file stem, and one message per unpaired file.

    Each of the two may be a file or a directory. References without a generated file
    are not an error: the reference directory may hold a whole corpus (e.g. every
    recording, of which only the test split was synthesized).
    """
    for p, what in ((generated, "generated"), (reference, "reference")):
        if not p.exists():
            raise VocoderError(f"{p}: no such {what} file or directory")
    gen = _audio_files(generated, AUDIO_EXTS) if generated.is_dir() else {generated.stem: generated}
    if generated.is_dir() and not gen:
        raise VocoderError(f"{generated}: directory holds no .wav or .flac files")
    if reference.is_dir():
        ref = _audio_files(reference, AUDIO_EXTS)
    elif generated.is_dir():
        ref = {reference.stem: reference}
    else:  # two files are a pair whatever their names
        return [(generated.stem, generated, reference)], []
    pairs = [(i, g, ref[i]) for i, g in gen.items() if i in ref]
    missing = [
        f"{g}: no reference {i}.wav or {i}.flac in {reference}" for i, g in gen.items() if i not in ref
    ]
    return pairs, missing


LENGTH_TOLERANCE = 0.02


def load_pair(generated: Path, reference: Path) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(generated, reference, rate, length difference): both float32 mono at the
    reference's rate, trimmed to the shorter of the two; the difference (generated minus
    reference, seconds) is measured before trimming."""
    try:
        rate = sf.info(str(reference)).samplerate
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise VocoderError(f"{reference}: cannot read audio ({e})") from None
    ref = load_audio(reference, rate)
    gen = load_audio(generated, rate)
    n = min(len(gen), len(ref))
    return gen[:n], ref[:n], rate, (len(gen) - len(ref)) / rate


def pesq_wb(reference: np.ndarray, generated: np.ndarray, rate: int) -> float:
    """Wideband PESQ at 16 kHz; NaN where the algorithm finds no utterance."""
    from pesq import PesqError, pesq

    ref = librosa.resample(reference, orig_sr=rate, target_sr=PESQ_RATE, res_type="soxr_hq")
    gen = librosa.resample(generated, orig_sr=rate, target_sr=PESQ_RATE, res_type="soxr_hq")
    try:
        return float(pesq(PESQ_RATE, ref.astype(np.float64), gen.astype(np.float64), "wb"))
    except PesqError:
        return math.nan


def stoi_score(reference: np.ndarray, generated: np.ndarray, rate: int) -> float:
    from pystoi import stoi

    return float(stoi(reference.astype(np.float64), generated.astype(np.float64), rate, extended=False))


def _stft_power(y: np.ndarray, rate: int) -> np.ndarray:
    """Power spectrogram (bins, frames): 25 ms Hann frames every 5 ms."""
    win = round(0.025 * rate)
    n_fft = 1 << (win - 1).bit_length()
    spec = librosa.stft(
        y, n_fft=n_fft, hop_length=round(0.005 * rate), win_length=win, window="hann", center=True
    )
    return np.abs(spec).astype(np.float64) ** 2


def cepstrum(log_spectrum: np.ndarray) -> np.ndarray:
    """c_m with L_n = c_0 + 2 sum_m c_m cos(pi m (n + 1/2) / N) along axis 0.

    scipy's unnormalised DCT-II is 2 sum_n L_n cos(...), hence the division by 2N.
    """
    return scipy.fft.dct(log_spectrum, type=2, axis=0) / (2 * log_spectrum.shape[0])


def mfcc(y: np.ndarray, rate: int) -> np.ndarray:
    """Mel-cepstrum c1..c13 per frame, (13, frames), of the natural-log mel magnitude."""
    power = _stft_power(y, rate)
    n_fft = 2 * (power.shape[0] - 1)
    basis = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=N_MELS, fmin=0.0, fmax=rate / 2, norm="slaney")
    log_mel = np.log(np.maximum(basis @ np.sqrt(power), 1e-5))
    return cepstrum(log_mel)[1 : MCD_ORDER + 1]


def mel_cepstral_distortion(reference: np.ndarray, generated: np.ndarray, rate: int) -> float:
    diff = mfcc(reference, rate) - mfcc(generated, rate)
    return float(np.mean(10.0 / np.log(10.0) * np.sqrt(2.0 * np.sum(diff**2, axis=0))))


def log_spectral_distance(reference: np.ndarray, generated: np.ndarray, rate: int) -> float:
    ref = 10.0 * np.log10(np.maximum(_stft_power(reference, rate), 1e-10))
    gen = 10.0 * np.log10(np.maximum(_stft_power(generated, rate), 1e-10))
    return float(np.mean(np.sqrt(np.mean((ref - gen) ** 2, axis=0))))


def f0_track(y: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(f0 in Hz, voiced flags) per 10 ms frame, by pYIN at 16 kHz.

    Working at 16 kHz whatever the input rate keeps pYIN's cost fixed (F0 needs no
    more bandwidth) and the frames the same for any corpus.
    """
    if rate != F0_RATE:
        y = librosa.resample(y, orig_sr=rate, target_sr=F0_RATE, res_type="soxr_hq")
    f0, voiced, _ = librosa.pyin(
        y, fmin=F0_MIN, fmax=F0_MAX, sr=F0_RATE, frame_length=640, hop_length=160, center=True
    )
    return f0, voiced


def f0_errors(reference: np.ndarray, generated: np.ndarray, rate: int) -> tuple[float, float]:
    """(F0 RMSE in cents over frames voiced in both, voicing decision error)."""
    f0_ref, v_ref = f0_track(reference, rate)
    f0_gen, v_gen = f0_track(generated, rate)
    vde = float(np.mean(v_ref != v_gen))
    both = v_ref & v_gen
    if not both.any():
        return math.nan, vde
    cents = 1200.0 * np.log2(f0_gen[both] / f0_ref[both])
    return float(np.sqrt(np.mean(cents**2))), vde


def length_mismatch(generated: Path, reference: Path, diff: float) -> str:
    """The line that reports a length difference beyond the tolerance."""
    return (
        f"{generated}: {abs(diff):.3f} s {'longer' if diff > 0 else 'shorter'} than {reference}; "
        "scored on the overlap only"
    )


def score_pair(
    uid: str,
    generated: Path,
    reference: Path,
    length_tolerance: float = LENGTH_TOLERANCE,
    fail_on_length: bool = False,
) -> Scores:
    gen, ref, rate, diff = load_pair(generated, reference)
    if not np.any(gen):
        raise VocoderError(f"{generated}: silent (every sample is zero); nothing to score")
    if fail_on_length and abs(diff) > length_tolerance:
        raise VocoderError(
            length_mismatch(generated, reference, diff).replace("; scored on the overlap only", "")
        )
    if len(ref) < round(0.25 * rate):
        raise VocoderError(f"{generated}: fewer than 0.25 s to compare with {reference} ({len(ref)} samples)")
    f0_rmse, vde = f0_errors(ref, gen, rate)
    return Scores(
        id=uid,
        generated=str(generated),
        reference=str(reference),
        seconds=len(ref) / rate,
        length_diff=diff,
        pesq=pesq_wb(ref, gen, rate),
        stoi=stoi_score(ref, gen, rate),
        mcd=mel_cepstral_distortion(ref, gen, rate),
        lsd=log_spectral_distance(ref, gen, rate),
        f0_rmse=f0_rmse,
        vde=vde,
    )


def evaluate(
    generated: Path,
    reference: Path,
    on_pair: Callable[[str], None] | None = None,
    length_tolerance: float = LENGTH_TOLERANCE,
    fail_on_length: bool = False,
) -> tuple[Report, int]:
    """Score every pair; returns the report and the number of pairs found.

    A file that cannot be read or scored is recorded in ``report.errors`` by name and
    the others are still scored; only unusable arguments raise. A pair whose lengths
    differ by more than ``length_tolerance`` seconds is listed in
    ``report.length_mismatches`` (``fail_on_length``: in ``report.errors``, unscored).
    """
    pairs, missing = pair_files(generated, reference)
    report = Report(errors=missing)
    for uid, gen, ref in pairs:
        try:
            scores = score_pair(uid, gen, ref, length_tolerance, fail_on_length)
            report.utterances.append(scores)
            if abs(scores.length_diff) > length_tolerance:
                report.length_mismatches.append(length_mismatch(gen, ref, scores.length_diff))
        except VocoderError as e:
            report.errors.append(str(e))
        except (OSError, ValueError, RuntimeError) as e:  # a metric's own complaint about odd audio
            report.errors.append(f"{gen}: {type(e).__name__}: {e}")
        if on_pair is not None:
            on_pair(uid)
    return report, len(pairs)


def to_json(report: Report) -> str:
    def clean(d: dict[str, object]) -> dict[str, object]:  # JSON has no NaN: null instead
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in d.items()}

    data = {
        "metrics": {
            name: {"better": "higher" if sign > 0 else "lower", "unit": unit} for name, sign, unit in METRICS
        },
        "mean": clean(dict(report.mean())),
        "utterances": [clean(asdict(s)) for s in report.utterances],
        "errors": report.errors,
        "length_mismatches": report.length_mismatches,
    }
    return json.dumps(data, indent=2) + "\n"


def to_csv(report: Report) -> str:
    """One row per utterance and a final ``mean`` row; empty cells for undefined values."""
    names = [name for name, _, _ in METRICS]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "seconds", "length_diff", *names, "generated", "reference"])

    def cell(v: float) -> str:
        return f"{v:.4f}" if math.isfinite(v) else ""

    for s in report.utterances:
        writer.writerow(
            [
                s.id,
                f"{s.seconds:.3f}",
                f"{s.length_diff:.4f}",
                *(cell(getattr(s, n)) for n in names),
                s.generated,
                s.reference,
            ]
        )
    mean = report.mean()
    writer.writerow(["mean", "", "", *(cell(mean[n]) for n in names), "", ""])
    return buf.getvalue()


def write_outputs(report: Report, json_path: Path | None, csv_path: Path | None) -> None:
    if json_path is not None:
        write_text_atomic(json_path, to_json(report))
    if csv_path is not None:
        write_text_atomic(csv_path, to_csv(report))
