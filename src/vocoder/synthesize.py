"""`synthesize`: mels or wavs in, 16-bit wavs out, over many inputs in parallel.

The model's own audio settings (from its checkpoint) decide how a wav input is turned
into a mel, so copy synthesis always matches what the model was trained on. Each input
is independent: a failure is recorded and reported, and the others still finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from vocoder import checkpoint as ckpt_mod
from vocoder.audio import load_audio, load_mel, log_mel, write_wav
from vocoder.config import Config
from vocoder.errors import VocoderError
from vocoder.model import WaveRNN
from vocoder.sampler import generate

MEL_EXT = ".npy"
AUDIO_EXT = (".wav", ".flac")


@dataclass
class Result:
    """Outcome of one input: the wav written, or the reason it failed."""

    source: Path
    output: Path | None
    samples: int = 0
    seconds: float = 0.0
    error: str = ""


def gather_inputs(inputs: list[Path]) -> tuple[list[Path], list[Result]]:
    """Expand directories (their .npy/.wav/.flac files, sorted); flag unusable paths."""
    files: list[Path] = []
    bad: list[Result] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix in (MEL_EXT, *AUDIO_EXT))
            if not found:
                bad.append(Result(p, None, error=f"{p}: directory holds no .npy, .wav or .flac"))
            files.extend(found)
        elif not p.exists():
            bad.append(Result(p, None, error=f"{p}: no such file or directory"))
        elif p.suffix not in (MEL_EXT, *AUDIO_EXT):
            bad.append(Result(p, None, error=f"{p}: not a mel (.npy) or audio (.wav/.flac) file"))
        else:
            files.append(p)
    return files, bad


def output_paths(files: list[Path], out_dir: Path) -> list[Path]:
    """``<out_dir>/<stem>.wav`` for each input; two inputs may not claim one output."""
    outs: dict[Path, Path] = {}
    for f in files:
        out = out_dir / f"{f.stem}.wav"
        if out in outs:
            raise VocoderError(f"{f} and {outs[out]} would both be written to {out}")
        outs[out] = f
    return list(outs)


def input_mel(path: Path, cfg: Config) -> np.ndarray:
    """A mel file as is (checked against the model), or the mel of an audio file."""
    if path.suffix == MEL_EXT:
        return load_mel(path, cfg.audio.n_mels)
    y = load_audio(path, cfg.audio.sample_rate)
    if len(y) < 2 * cfg.audio.hop_length:
        raise VocoderError(f"{path}: audio too short to vocode ({len(y)} samples)")
    try:
        return log_mel(y, cfg.audio)
    except VocoderError as e:
        raise VocoderError(f"{path}: {e}") from None


def synthesize_file(
    model: WaveRNN, cfg: Config, source: Path, output: Path, seed: int,
    progress: Callable[[int], None] | None = None,
) -> Result:
    """Vocode one input into ``output``; errors come back in the result, not raised."""
    try:
        mel = input_mel(source, cfg)
        samples, _ = generate(model, mel, seed=seed, progress=progress)
        write_wav(output, samples, cfg.audio.sample_rate)
    except VocoderError as e:
        return Result(source, None, error=str(e))
    except (OSError, ValueError, RuntimeError) as e:
        return Result(source, None, error=f"{source}: {type(e).__name__}: {e}")
    return Result(source, output, len(samples), len(samples) / cfg.audio.sample_rate)


_worker: tuple[WaveRNN, Config] | None = None


def _init_worker(ckpt: Path) -> None:
    global _worker
    torch.set_num_threads(1)
    model, cfg, _ = ckpt_mod.load_model(ckpt)
    _worker = (model, cfg)


def _work(source: Path, output: Path, seed: int) -> Result:
    assert _worker is not None
    return synthesize_file(_worker[0], _worker[1], source, output, seed)


def synthesize(
    model_path: Path, inputs: list[Path], out_dir: Path, seed: int, jobs: int, console: Console
) -> tuple[list[Result], float]:
    """Vocode every input; returns per-input results and the wall time."""
    ckpt = ckpt_mod.resolve(model_path)
    model, cfg, _ = ckpt_mod.load_model(ckpt)
    files, results = gather_inputs(inputs)
    outputs = output_paths(files, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    columns = (
        TextColumn("[bold]synthesize"), BarColumn(), TextColumn("{task.completed}/{task.total} files"),
        TextColumn("{task.fields[audio]:.1f} s audio"), TextColumn("RTF {task.fields[rtf]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("synthesize", total=len(files), audio=0.0, rtf="-")
        done_audio = 0.0

        def finished(r: Result) -> None:
            nonlocal done_audio
            results.append(r)
            done_audio += r.seconds
            wall = time.monotonic() - start
            progress.update(task, advance=1, audio=done_audio,
                            rtf=f"{wall / done_audio:.2f}" if done_audio else "-")

        if jobs <= 1:
            for f, o in zip(files, outputs, strict=True):
                finished(synthesize_file(model, cfg, f, o, seed))
        else:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                                     initargs=(ckpt,)) as pool:
                futures = [pool.submit(_work, f, o, seed) for f, o in zip(files, outputs, strict=True)]
                for fut in as_completed(futures):
                    finished(fut.result())
    return results, time.monotonic() - start
