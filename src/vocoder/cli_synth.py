"""`vocoder synthesize`: vocode many inputs into wavs, or stream one to a pipe."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vocoder.cli_common import (
    Engine,
    MelLayout,
    MelScale,
    console,
    fail,
    say,
)
from vocoder.errors import VocoderError

if TYPE_CHECKING:  # the CLI imports command modules only when a command runs
    from vocoder.mels import MelInput


def synthesize(
    model: Annotated[
        Path, typer.Argument(help="Model file (.wrnn), checkpoint file, or checkpoint directory (its latest)")
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", "-o", help="Where <input stem>.wav files go (unless --stdout)."),
    ] = None,
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Mel files (.npy, .npz, .pt; see --mel-layout, --mel-scale), directories of them, "
            "or wav/flac files (copy synthesis)."
        ),
    ] = None,
    engine: Annotated[
        Engine | None,
        typer.Option(
            help="Sampling engine (default: native for a .wrnn file, torch for a checkpoint); "
            "griffinlim: the no-training baseline, with the model's audio settings."
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Inputs synthesized in parallel (one process each).")
    ] = 1,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            "-t",
            min=0,
            max=2,
            help="Threads per engine instance: native 2 splits each step between two cores (same "
            "samples); torch sets its thread count; 0 = default (1 per job).",
        ),
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the sampling random numbers.")] = 0,
    input_list: Annotated[
        Path | None,
        typer.Option(
            help="File with one input path a line (blank lines and # comments ignored; "
            "relative paths are relative to the list file's directory)."
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(help="K/N: only the inputs whose sorted index i has i % N == K - 1 (K from 1 to N)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Redo inputs whose output exists (default: skip them, so a rerun resumes).")
    ] = False,
    fold: Annotated[
        bool,
        typer.Option(
            help="Fold mode (native, torch): generate overlapping segments of an input as one batch "
            "and cross-fade them (faster; audible joins are possible)."
        ),
    ] = False,
    target: Annotated[int, typer.Option(help="Fold mode: samples per segment, overlaps excluded.")] = 11000,
    overlap: Annotated[
        int, typer.Option(help="Fold mode: samples neighbouring segments share (warm-up, then cross-fade).")
    ] = 550,
    max_seconds: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Longest input to vocode, checked from its header before it is read; "
            "longer ones fail by name and the others go on.",
        ),
    ] = 3600.0,
    mel_layout: Annotated[
        MelLayout,
        typer.Option(
            help="Axis order of mel files: auto takes the axis equal to the model's n_mels "
            "(a leading batch axis of 1 is dropped); nm-t is (n_mels, T), t-nm is (T, n_mels)."
        ),
    ] = MelLayout.auto,
    mel_scale: Annotated[
        MelScale,
        typer.Option(
            help="Values of mel files: ln (natural log, the model's), log10, db (20 log10 of the "
            "magnitude) or linear magnitude; converted to ln."
        ),
    ] = MelScale.ln,
    strict: Annotated[
        bool,
        typer.Option(
            help="Fail a mel whose statistics are far from the model's training mels "
            "(default: vocode it and warn)."
        ),
    ] = False,
    stdout: Annotated[
        bool,
        typer.Option(
            "--stdout",
            help="Stream one input's audio to standard output as it is generated (a WAV header for "
            "a stream of unknown length, then 16-bit PCM); INPUT may be - (a mel .npy on standard "
            "input). Messages go to standard error. Native engine, sequential models.",
        ),
    ] = False,
    raw: Annotated[bool, typer.Option("--raw", help="With --stdout: headerless s16le PCM.")] = False,
) -> None:
    """Vocode mels (or wavs) into 16-bit wavs: native or torch engine, or Griffin-Lim.

    The model's own sampler runs, sequential or subscale, optionally in fold mode;
    Griffin-Lim is the no-training baseline.

    Mel files are .npy, .npz (one array) or .pt (one tensor; needs torch). Each is compared
    with the training statistics stored in the model: a mel of another convention (log10,
    normalised, another sample rate) gets a warning naming the likely cause.

    Existing outputs are skipped unless --overwrite, so rerunning a killed job resumes it.
    Failed inputs are reported by name after the others finish; the exit status is then 1.
    """
    from vocoder.mels import MelInput
    from vocoder.synthesize import default_engine, parse_shard, read_input_list, summary
    from vocoder.synthesize import synthesize as run

    how = MelInput(mel_layout.value, mel_scale.value, strict)
    if stdout:
        _stream_stdout(model, list(inputs or []), seed, threads, how, raw, max_seconds)
        return
    if raw:
        fail("--raw goes with --stdout")
    if out_dir is None:
        fail("give --out-dir DIR for the wav files, or --stdout to stream one input")
    engine_name = engine.value if engine is not None else default_engine(model)
    try:
        sources = list(inputs or []) + (read_input_list(input_list) if input_list is not None else [])
        if not sources:
            raise VocoderError("no inputs: give INPUT paths or --input-list FILE")
        shard_kn = parse_shard(shard) if shard is not None else None
        if fold:
            from vocoder.fold import check_fold

            check_fold(target, overlap)
        results, wall = run(
            model,
            sources,
            out_dir,
            engine_name,
            seed,
            jobs,
            console,
            threads,
            shard_kn,
            overwrite,
            (target, overlap) if fold else None,
            max_seconds,
            how,
        )
    except VocoderError as e:
        fail(str(e))
    for r in results:
        if r.output is not None and not r.skipped and r.warning:
            say(r.warning, "warning:", "yellow", console)
    bad = [r for r in results if r.output is None]
    for r in bad:
        say(r.error, "failed:", "red", console)
    say(summary(results, wall, engine_name, fold, shard, out_dir))
    if bad:
        raise typer.Exit(1)


def _stream_stdout(
    model: Path, inputs: list[Path], seed: int, threads: int, how: MelInput, raw: bool, max_seconds: float
) -> None:
    """`synthesize --stdout`: one input streamed to standard output; every message on
    standard error, so the pipe carries audio only."""
    from vocoder.synthesize import stream

    if len(inputs) != 1:
        fail(f"--stdout streams exactly one input, got {len(inputs)}")
    try:
        streamed, warning = stream(
            model,
            str(inputs[0]),
            sys.stdout.buffer,
            sys.stdin.buffer,
            seed,
            threads or 1,
            how,
            raw,
            max_seconds,
        )
    except VocoderError as e:
        fail(str(e))
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0) from None
    if warning:
        say(warning, "warning:", "yellow", console)
    say(streamed.summary(), to=console)
