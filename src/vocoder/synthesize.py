"""`synthesize`: mels or wavs in, 16-bit wavs out, over many inputs in parallel.

The model's own audio settings (from its checkpoint) decide how a wav input is turned
into a mel, so copy synthesis always matches what the model was trained on. Each input
is independent: a failure is recorded and reported, and the others still finish.

Built for long jobs: outputs are written atomically and existing ones are skipped, so a
killed job is resumed by running the same command again; ``--shard K/N`` splits one
input set deterministically between N machines or processes.
"""

from __future__ import annotations

import contextlib
import glob
import io
import struct
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from vocoder.audio import AUDIO_EXTS, load_audio, log_mel, write_wav
from vocoder.config import Config
from vocoder.errors import VocoderError
from vocoder.fsutil import remove_stale_temps
from vocoder.kinds import kind_of
from vocoder.mels import MEL_EXTS, NATIVE, MelInput, frame_limit, prepare, read_mel
from vocoder.native import MODEL_EXT, NativeVocoder

# The longest input vocoded by default: an hour, far beyond any TTS utterance, yet a
# bound, so a header that claims 10^8 frames is refused instead of allocated.
MAX_SECONDS = 3600.0


@dataclass
class Outcome:
    """Outcome of one input: the wav written, or the reason it failed."""

    source: Path
    output: Path | None
    samples: int = 0
    seconds: float = 0.0
    error: str = ""
    skipped: bool = False
    warning: str = ""


def summary(
    results: list[Outcome], wall: float, engine: str, fold: bool, shard: str | None, out_dir: Path
) -> str:
    """The line a `vocoder synthesize` batch ends with: counts, and the speed of the new audio."""
    good = [r for r in results if r.output is not None and not r.skipped]
    skipped = sum(r.skipped for r in results)
    audio = sum(r.seconds for r in good)
    samples = sum(r.samples for r in good)
    if audio:
        rtf = wall / audio
        speed = (
            f"{audio:.2f} s of audio in {wall:.2f} s, {samples / wall:.0f} samples/s, "
            f"RTF {rtf:.2f} ({1 / rtf:.3f}x real time)"
        )
    else:
        speed = f"no new audio in {wall:.2f} s"
    part = f" (shard {shard})" if shard is not None else ""
    done = f", {skipped} already done (their wav exists; --overwrite redoes them)" if skipped else ""
    failed = sum(r.output is None for r in results)
    return (
        f"synthesized {len(good)} of {len(results)} inputs{part}{done}, {failed} failed, "
        f"with the {engine} engine{' in fold mode' if fold else ''}: {speed} -> {out_dir}"
    )


def gather_inputs(inputs: list[Path]) -> tuple[list[Path], list[Outcome]]:
    """Expand directories (their mel and audio files, sorted); flag unusable paths.

    A file reached twice (named twice, or named and inside a named directory) is kept
    once, by resolved path: the same input twice is a harmless slip, not a clash.
    """
    files: list[Path] = []
    bad: list[Outcome] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix in (*MEL_EXTS, *AUDIO_EXTS))
            if not found:
                bad.append(Outcome(p, None, error=f"{p}: directory holds no .npy, .npz, .pt, .wav or .flac"))
            files.extend(found)
        elif not p.exists():
            bad.append(Outcome(p, None, error=f"{p}: no such file or directory"))
        elif not p.is_file():  # a FIFO or device would block the reader forever
            bad.append(Outcome(p, None, error=f"{p}: not a regular file"))
        elif p.suffix not in (*MEL_EXTS, *AUDIO_EXTS):
            bad.append(Outcome(p, None, error=f"{p}: not a mel (.npy/.npz/.pt) or audio (.wav/.flac) file"))
        else:
            files.append(p)
    unique = {f.resolve(): f for f in reversed(files)}
    return [f for f in files if unique[f.resolve()] is f], bad


def read_input_list(list_file: Path) -> list[Path]:
    """Paths from a list file, one a line; blank lines and ``#`` comments are ignored.

    Relative paths are taken relative to the list file's directory, not the current
    one, so a list written next to its data works from wherever the job is started.
    """
    try:
        lines = Path(list_file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise VocoderError(f"{list_file}: cannot read input list ({e})") from None
    base = Path(list_file).parent
    entries = (line.split("#", 1)[0].strip() for line in lines)
    return [base / entry for entry in entries if entry]


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) -> (K, N)."""
    k_text, sep, n_text = text.partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        k = n = 0
    if not sep or not 1 <= k <= n:
        raise VocoderError(f"--shard {text}: expected K/N with 1 <= K <= N, e.g. 2/4")
    return k, n


def select_shard(files: list[Path], shard: tuple[int, int] | None) -> list[Path]:
    """Shard K of N: the inputs whose index in sorted order is K - 1 modulo N.

    Sorting first makes the split independent of argument order and of which outputs
    already exist, so N shards together cover every input exactly once.
    """
    ordered = sorted(files, key=str)
    if shard is None:
        return ordered
    k, n = shard
    return [f for i, f in enumerate(ordered) if i % n == k - 1]


def remove_stale_output_temps(outputs: list[Path]) -> None:
    """Delete temp files a killed run left for these outputs (see ``atomic_path``).

    Only this job's outputs are touched, so other shards writing into the same directory
    keep their in-progress files.
    """
    for out in outputs:
        remove_stale_temps(out.parent, glob.escape(out.name))


def output_paths(files: list[Path], out_dir: Path, every_input: list[Path]) -> list[Path]:
    """``<out_dir>/<stem>.wav`` for each of ``files``; two inputs may not claim one output,
    and no output may be any of the job's inputs (``--out-dir`` equal to a directory of
    wavs, with ``--overwrite``, would otherwise replace recordings with vocoded copies)."""
    inputs = {f.resolve(): f for f in every_input}
    outs: dict[Path, Path] = {}
    for f in files:
        out = out_dir / f"{f.stem}.wav"
        if out in outs:
            raise VocoderError(f"{f} and {outs[out]} would both be written to {out}")
        if out.resolve() in inputs:
            raise VocoderError(f"{out}: is an input ({inputs[out.resolve()]}); choose another --out-dir")
        outs[out] = f
    return list(outs)


def check_out_dir(out_dir: Path) -> None:
    """Create ``out_dir`` if needed and prove it writable, before any audio is generated."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise VocoderError(f"{out_dir}: cannot write outputs there ({e.strerror or e})") from None


def input_mel(
    path: Path,
    cfg: Config,
    max_seconds: float = MAX_SECONDS,
    how: MelInput = NATIVE,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, str | None]:
    """A mel file read as ``how`` says (checked against the model and, given the model's
    training ``stats``, against its mel convention: the warning comes back), or the mel
    of an audio file. Either longer than ``max_seconds`` is refused from its header,
    before it is read."""
    a = cfg.audio
    if path.suffix in MEL_EXTS:
        return read_mel(path, a.n_mels, a.log_floor, frame_limit(a, max_seconds), how, stats)
    y = load_audio(path, a.sample_rate, max_seconds)
    if len(y) < 2 * a.hop_length:
        raise VocoderError(f"{path}: audio too short to vocode ({len(y)} samples)")
    try:
        return log_mel(y, a), None
    except VocoderError as e:
        raise VocoderError(f"{path}: {e}") from None


class Vocoder(Protocol):
    """What an engine offers: the model's config, its training mels' per-bin (mean, std)
    when it has them, and mel -> int16 samples."""

    cfg: Config
    mel_stats: tuple[np.ndarray, np.ndarray] | None

    def generate(self, mel: np.ndarray, seed: int) -> np.ndarray: ...


def default_engine(model_path: Path) -> str:
    """The engine a model file implies: native for a ``.wrnn`` file, torch for a checkpoint."""
    return "native" if Path(model_path).suffix == MODEL_EXT else "torch"


class Folded:
    """An engine's fold mode (``vocoder.fold``) behind the plain ``generate`` interface."""

    def __init__(self, inner: Vocoder, target: int, overlap: int) -> None:
        self.inner = inner
        self.cfg = inner.cfg
        self.mel_stats = inner.mel_stats
        self.target = target
        self.overlap = overlap

    def generate(self, mel: np.ndarray, seed: int) -> np.ndarray:
        return self.inner.generate_fold(mel, seed, self.target, self.overlap)


def load_vocoder(
    model_path: Path, engine: str | None = None, threads: int = 0, fold: tuple[int, int] | None = None
) -> Vocoder:
    """Load a model for an engine (None: by file type); imports each engine's
    dependencies only when chosen, so the native engine runs without torch. ``fold``
    (target, overlap) switches the sequential engines to fold mode."""
    engine = engine or default_engine(model_path)
    if fold is not None:
        from vocoder.fold import check_fold

        check_fold(*fold)
        if engine not in ("torch", "native"):
            raise VocoderError(f"--fold: the {engine} engine has no fold mode (use native or torch)")
        inner = load_vocoder(model_path, engine, threads)
        if not kind_of(inner.cfg).in_time_order:
            raise VocoderError(
                f"{model_path}: --fold runs sequential models; this one is {inner.cfg.model.kind} "
                "(it already generates many samples per step)"
            )
        return Folded(inner, *fold)
    if engine == "torch":
        if Path(model_path).suffix == MODEL_EXT:
            raise VocoderError(
                f"{model_path}: a {MODEL_EXT} file runs on the native engine (drop --engine torch); "
                "the torch engine reads checkpoints"
            )
        from vocoder.torch_engine import TorchVocoder

        return TorchVocoder.load(model_path, threads)
    if engine == "native":
        return NativeVocoder.load(model_path, threads)
    if engine == "griffinlim":
        from vocoder.griffinlim import GriffinLimVocoder

        return GriffinLimVocoder.load(model_path)
    raise VocoderError(f"unknown engine {engine!r}")


def synthesize_file(
    vocoder: Vocoder,
    source: Path,
    output: Path,
    seed: int,
    max_seconds: float = MAX_SECONDS,
    how: MelInput = NATIVE,
) -> Outcome:
    """Vocode one input into ``output``; errors come back in the result, not raised.

    Any exception counts as this input's failure (an engine's allocation error, a
    library's parameter error): one bad input must not stop the batch. Only an
    interrupt (not an ``Exception``) stops it. A mel that does not look like the model's
    training mels is vocoded with a warning in the result (an error with ``how.strict``).
    """
    cfg = vocoder.cfg
    try:
        mel, warning = input_mel(source, cfg, max_seconds, how, vocoder.mel_stats)
        samples = vocoder.generate(mel, seed)
        write_wav(output, samples, cfg.audio.sample_rate)
    except VocoderError as e:
        message = str(e) if str(e).startswith(str(source)) else f"{source}: {e}"
        return Outcome(source, None, error=message)
    except Exception as e:
        return Outcome(source, None, error=f"{source}: {type(e).__name__}: {e}")
    return Outcome(source, output, len(samples), len(samples) / cfg.audio.sample_rate, warning=warning or "")


def wav_stream_header(rate: int) -> bytes:
    """A 16-bit mono PCM WAV header for a stream of unknown length: the RIFF and data
    sizes are 0xFFFFFFFF, the convention sox, ffmpeg and aplay read as "until the end"."""
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
    return (
        b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF)
    )


@dataclass
class Streamed:
    """What a streamed synthesis wrote: samples, and seconds from reading the mel (the
    model already loaded) to the first audio bytes written and to the end."""

    samples: int
    first_audio_seconds: float
    seconds: float

    def summary(self) -> str:
        """The line `synthesize --stdout` ends with, on standard error."""
        return (
            f"streamed {self.samples} samples: first audio after {1000 * self.first_audio_seconds:.1f} ms, "
            f"all in {self.seconds:.2f} s"
        )


def stream(
    model_path: Path,
    source: str,
    sink: BinaryIO,
    stdin: BinaryIO,
    seed: int = 0,
    threads: int = 1,
    how: MelInput = NATIVE,
    raw: bool = False,
    max_seconds: float = MAX_SECONDS,
    chunk_samples: int = 1024,
) -> tuple[Streamed, str | None]:
    """Vocode one input (a mel or audio file, or ``-``: a mel ``.npy`` read from ``stdin``)
    with the native engine and write its audio to ``sink`` as it is generated: a streaming
    WAV header (unless ``raw``), then 16-bit little-endian PCM chunk by chunk. Returns the
    figures and the mel convention warning, if any."""
    if Path(model_path).suffix != MODEL_EXT:
        raise VocoderError(
            f"{model_path}: streaming runs the native engine on a {MODEL_EXT} file (vocoder export)"
        )
    vocoder = NativeVocoder.load(Path(model_path), threads)
    start = time.monotonic()  # mel in -> audio out: a server loads its model once
    a = vocoder.cfg.audio
    if source == "-":
        try:
            arr = np.load(io.BytesIO(stdin.read()), allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise VocoderError(f"<stdin>: cannot read a mel .npy ({e})") from None
        limit = frame_limit(a, max_seconds)
        mel, warning = prepare(arr, a.n_mels, a.log_floor, limit, how, vocoder.mel_stats, "<stdin>")
    else:
        mel, warning = input_mel(Path(source), vocoder.cfg, max_seconds, how, vocoder.mel_stats)
    if not raw:
        sink.write(wav_stream_header(a.sample_rate))
    first = None
    samples = 0
    chunks = vocoder.stream(mel, seed, chunk_samples)
    with contextlib.closing(chunks):  # a reader that went away still lets the engine finish
        for chunk in chunks:
            sink.write(chunk.astype("<i2").tobytes())
            sink.flush()
            samples += len(chunk)
            if first is None:
                first = time.monotonic() - start
    return Streamed(samples, first or 0.0, time.monotonic() - start), warning


_worker: Vocoder | None = None


def _init_worker(model_path: Path, engine: str | None, threads: int, fold: tuple[int, int] | None) -> None:
    global _worker
    _worker = load_vocoder(model_path, engine, threads=threads, fold=fold)


def _work(source: Path, output: Path, seed: int, max_seconds: float, how: MelInput) -> Outcome:
    assert _worker is not None
    return synthesize_file(_worker, source, output, seed, max_seconds, how)


def _collect(future: Future[Outcome], source: Path) -> Outcome:
    """A worker's result; a worker that died (killed, out of memory) fails its input."""
    try:
        return future.result()
    except BrokenProcessPool:
        return Outcome(source, None, error=f"{source}: the worker process died while vocoding it")


def synthesize(
    model_path: Path,
    inputs: list[Path],
    out_dir: Path,
    engine: str | None,
    seed: int,
    jobs: int,
    console: Console,
    threads: int = 0,
    shard: tuple[int, int] | None = None,
    overwrite: bool = False,
    fold: tuple[int, int] | None = None,
    max_seconds: float = MAX_SECONDS,
    how: MelInput = NATIVE,
) -> tuple[list[Outcome], float]:
    """Vocode every input (of this shard); returns per-input results and the wall time.

    An input whose output exists is skipped (an ``Outcome`` with ``skipped`` set) unless
    ``overwrite``. With ``jobs`` > 1 each worker process loads its own engine instance
    and takes inputs as they come. ``threads`` is per engine instance (0: the engine's
    default, and one thread in each worker so that jobs do not oversubscribe the cores).
    ``fold`` (target, overlap) generates each input in fold mode (``vocoder.fold``).
    Inputs longer than ``max_seconds`` fail from their headers, before they are read;
    ``how`` says how mel files are laid out and scaled (``vocoder.mels``).
    """
    found, results = gather_inputs(inputs)
    selected = select_shard(found, shard)
    all_outputs = output_paths(selected, out_dir, found)
    vocoder = load_vocoder(model_path, engine, threads, fold)
    check_out_dir(out_dir)
    remove_stale_output_temps(all_outputs)
    files: list[Path] = []
    outputs: list[Path] = []
    for f, o in zip(selected, all_outputs, strict=True):
        if o.exists() and not overwrite:
            results.append(Outcome(f, o, skipped=True))
        else:
            files.append(f)
            outputs.append(o)
    start = time.monotonic()
    columns = (
        TextColumn("[bold]synthesize"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} files"),
        TextColumn("{task.fields[audio]:.1f} s audio"),
        TextColumn("RTF {task.fields[rtf]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("synthesize", total=len(files), audio=0.0, rtf="-")
        done_audio = 0.0

        def finished(r: Outcome) -> None:
            nonlocal done_audio
            results.append(r)
            done_audio += r.seconds
            wall = time.monotonic() - start
            progress.update(
                task, advance=1, audio=done_audio, rtf=f"{wall / done_audio:.2f}" if done_audio else "-"
            )

        if jobs <= 1:
            for f, o in zip(files, outputs, strict=True):
                finished(synthesize_file(vocoder, f, o, seed, max_seconds, how))
        else:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(
                jobs,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(model_path, engine, threads or 1, fold),
            ) as pool:
                futures = {
                    pool.submit(_work, f, o, seed, max_seconds, how): f
                    for f, o in zip(files, outputs, strict=True)
                }
                for fut in as_completed(futures):
                    finished(_collect(fut, futures[fut]))
    return results, time.monotonic() - start
