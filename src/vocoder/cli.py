"""The `vocoder` command line: parse, call one function, print. No logic lives here."""

from __future__ import annotations

import math
import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperArgument, TyperCommand

from vocoder.config import MODEL_FILE_SECTIONS, explicit_keys, load_config
from vocoder.errors import VocoderError

if TYPE_CHECKING:  # the CLI imports command modules only when a command runs
    from vocoder.mels import MelInput


class Command(TyperCommand):
    """A command whose usage line reads as in a man page, ``vocoder train [OPTIONS]
    FEATURES_DIR CKPT_DIR``, rather than Typer's ``{features_dir} {ckpt_dir}``, whose braces
    a first-time user takes for literal characters."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument) and param.name:
                name = param.name.upper() + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces


app = typer.Typer(
    help="WaveRNN neural vocoder toolkit (Kalchbrenner et al., 2018): "
    "preprocess a dataset, train, and synthesize speech from log-mel spectrograms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()


def _print_version(value: bool) -> None:
    if value:
        from vocoder import __version__

        out.print(f"wavernn-vocoder {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Options that come before the command (the app's help text is the Typer's)."""


ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="YAML config file, or a shipped name: ljspeech-22k, allison-16k."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override one config key, e.g. --set model.hidden_size=896 (repeatable).",
    ),
]


class Engine(str, Enum):
    """Sampling engines."""

    native = "native"
    torch = "torch"
    griffinlim = "griffinlim"


class MelLayout(str, Enum):
    """Axis order of a mel file: auto (the axis equal to the model's n_mels), (n_mels, T) or (T, n_mels)."""

    auto = "auto"
    nm_t = "nm-t"
    t_nm = "t-nm"


class MelScale(str, Enum):
    """Log scale of a mel file's values, converted to the model's natural log."""

    ln = "ln"
    log10 = "log10"
    db = "db"
    linear = "linear"


class Precision(str, Enum):
    """Weight precision of the per-sample matrices in an exported model file."""

    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"


def say(message: str, label: str = "", style: str = "", to: Console = out) -> None:
    """One unwrapped line, never parsed as markup (paths may contain brackets)."""
    text = Text.assemble((f"{label} ", style), message) if label else Text(message)
    to.print(text, highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    say(message, "error:", "red", console)
    raise typer.Exit(1)


@app.command(cls=Command)
def preprocess(
    data_dir: Annotated[
        Path, typer.Argument(help="LJSpeech-style dataset: metadata.csv and wavs/<id>.wav|.flac.")
    ],
    features_dir: Annotated[Path, typer.Argument(help="Output directory for mels, targets and split lists.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes.")] = 1,
    mels_from: Annotated[
        Path | None,
        typer.Option(
            help="GTA training: take each utterance's mel from DIR/<id>.npy (an acoustic model's "
            "teacher-forced prediction, (n_mels, T), natural log) instead of computing it; T must "
            "be len(audio) // hop."
        ),
    ] = None,
) -> None:
    """Compute log-mels and aligned 16-bit targets, and write train/valid/test lists.

    A rerun skips finished utterances; unreadable, empty, too-short or silent files are
    reported and skipped.
    """
    from vocoder.preprocess import preprocess as run

    try:
        cfg = load_config(config, set_)
        stats = run(data_dir, features_dir, cfg, jobs, console, mels_from)
    except VocoderError as e:
        fail(str(e))
    say(
        f"preprocessed {stats['processed']} new, reused {stats['reused']}, skipped {stats['skipped']} "
        f"({stats['seconds']:.1f} s of audio); train {stats['train']}, valid {stats['valid']}, "
        f"test {stats['test']} -> {features_dir}"
    )


@app.command(cls=Command)
def train(
    features_dir: Annotated[Path, typer.Argument(help="Directory written by `vocoder preprocess`.")],
    ckpt_dir: Annotated[
        Path, typer.Argument(help="Directory for checkpoints, config.yaml and metrics.jsonl.")
    ],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    steps: Annotated[
        int | None, typer.Option(help="Total training steps (same as --set train.steps=N).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(help="Continue from the latest checkpoint in CKPT_DIR (a fresh start if it has none)."),
    ] = False,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:K or auto (same as --set train.device=...).")
    ] = None,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Start a new run from this checkpoint's weights (its average when it has one) "
            "and model config, with a fresh optimiser at step 0: fine-tuning."
        ),
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Data-parallel processes on this machine (torchrun with DDP; gloo on CPU, nccl on "
            "CUDA, one GPU each); train.batch_size stays the global batch.",
        ),
    ] = 1,
) -> None:
    """Train a WaveRNN with teacher forcing; validates and checkpoints periodically.

    Audio settings come from the features directory. Interrupt with Ctrl-C and continue
    with --resume: the run picks up exactly where it stopped. Under torchrun (or with
    --nproc) each rank trains on its slice of every batch and rank 0 validates, logs and
    writes the checkpoints.
    """
    from vocoder import distributed
    from vocoder.train import train as run

    overrides = list(set_ or [])
    if steps is not None:
        overrides.append(f"train.steps={steps}")
    if device is not None:
        overrides.append(f"train.device={device}")
    if nproc > 1:
        argv = ["train", str(features_dir), str(ckpt_dir), *(["--config", config] if config else [])]
        argv += [*(x for o in overrides for x in ("--set", o)), *(["--resume"] if resume else [])]
        argv += ["--init-from", str(init_from)] if init_from is not None else []
        status = distributed.launch(nproc, argv)
        if status:
            fail(
                f"a training process failed (launcher exit status {status}); the checkpoints in "
                f"{ckpt_dir} are intact: continue with --resume"
            )
        return
    try:
        cfg = load_config(config, overrides)
        explicit = frozenset(explicit_keys(config, overrides))
        result = run(features_dir, ckpt_dir, cfg, resume, console, explicit, init_weights=init_from)
    except VocoderError as e:
        fail(str(e))
    finally:
        distributed.leave()
    first = "-" if result.first_valid_bits is None else f"{result.first_valid_bits:.3f}"
    last = "-" if result.last_valid_bits is None else f"{result.last_valid_bits:.3f}"
    say(
        f"trained to step {result.step} in {result.seconds:.0f} s (stopped by {result.stopped_by}); "
        f"validation NLL {first} -> {last} bits/sample; checkpoints in {ckpt_dir}"
    )


@app.command(cls=Command)
def prune(
    checkpoint: Annotated[
        Path, typer.Argument(help="Dense checkpoint file or directory (its latest) to prune.")
    ],
    ckpt_dir: Annotated[Path, typer.Argument(help="New directory for the pruned run's checkpoints.")],
    sparsity: Annotated[
        float, typer.Option(min=0.0, max=0.999, help="Final sparsity Z of each pruned matrix.")
    ] = 0.95,
    block: Annotated[
        str, typer.Option(help="Block shape RxC (rows x columns), e.g. 16x1, 4x4, 1x1.")
    ] = "16x1",
    start: Annotated[
        int | None, typer.Option(help="Step t0 where pruning starts (default: the checkpoint's step).")
    ] = None,
    ramp: Annotated[
        int | None, typer.Option(help="Steps S over which sparsity rises to Z (default: prune.ramp).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Total steps to train to (default: start + 2 * ramp).")
    ] = None,
    features: Annotated[
        Path | None, typer.Option(help="Features directory (default: the one the checkpoint was trained on).")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Continue training a dense checkpoint while pruning it to block sparsity.

    Sparsity follows z(t) = Z (1 - (1 - (t - t0) / S)^3); masks are recomputed every
    prune.interval steps from block magnitudes and reapplied after every step. R_u, R_r and
    R_e are pruned separately (plus O1 and O3 with --set prune.layers=gru+out). Rerunning
    with the same CKPT_DIR resumes.
    """
    from vocoder.train import prune as run

    schedule = {"sparsity": sparsity, "block": block, "start": start, "ramp": ramp, "steps": steps}
    try:
        pruned = run(checkpoint, ckpt_dir, config, list(set_ or []), schedule, features, console)
    except VocoderError as e:
        fail(str(e))
    result = pruned.train
    last = "-" if result.last_valid_bits is None else f"{result.last_valid_bits:.3f}"
    say(
        f"pruned to step {result.step} ({sparsity:.1%} in {block} blocks, ramp from step {pruned.start} "
        f"over {pruned.ramp}); validation NLL {last} bits/sample; checkpoints in {ckpt_dir}"
    )


@app.command(cls=Command)
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
    from vocoder.synthesize import default_engine, parse_shard, read_input_list
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
    skipped = [r for r in results if r.skipped]
    good = [r for r in results if r.output is not None and not r.skipped]
    bad = [r for r in results if r.output is None]
    for r in good:
        if r.warning:
            say(r.warning, "warning:", "yellow", console)
    for r in bad:
        say(r.error, "failed:", "red", console)
    audio = sum(r.seconds for r in good)
    samples = sum(r.samples for r in good)
    part = f" (shard {shard})" if shard is not None else ""
    if audio:
        rtf = wall / audio
        speed = (
            f"{audio:.2f} s of audio in {wall:.2f} s, {samples / wall:.0f} samples/s, "
            f"RTF {rtf:.2f} ({1 / rtf:.3f}x real time)"
        )
    else:
        speed = f"no new audio in {wall:.2f} s"
    done = f", {len(skipped)} already done (their wav exists; --overwrite redoes them)" if skipped else ""
    say(
        f"synthesized {len(good)} of {len(results)} inputs{part}{done}, {len(bad)} failed, "
        f"with the {engine_name} engine{' in fold mode' if fold else ''}: {speed} -> {out_dir}"
    )
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
    say(
        f"streamed {streamed.samples} samples: first audio after "
        f"{1000 * streamed.first_audio_seconds:.1f} ms, all in {streamed.seconds:.2f} s",
        to=console,
    )


@app.command(cls=Command)
def evaluate(
    generated: Annotated[Path, typer.Argument(help="Generated wav/flac file, or a directory of them.")],
    reference: Annotated[
        Path, typer.Argument(help="Reference file, or a directory of <id>.wav|.flac (paired by file name).")
    ],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the scores as JSON here.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the scores as CSV here.")] = None,
    length_tolerance: Annotated[
        float,
        typer.Option(min=0.0, help="Seconds the lengths of a pair may differ before it is reported."),
    ] = 0.02,
    fail_on_length: Annotated[
        bool, typer.Option(help="A pair whose lengths differ beyond the tolerance is an error, not scored.")
    ] = False,
) -> None:
    """Score generated speech against references: PESQ (wideband), STOI, MCD, LSD, F0 RMSE, VDE.

    Files are paired by name; the generated audio is resampled to the reference's rate
    and both are trimmed to the shorter; a length difference beyond the tolerance is
    reported. Unpaired or unreadable files are reported by name, the rest are scored,
    and the exit status is then 1. Definitions: README.
    """
    from rich.table import Table

    from vocoder.evaluate import METRICS, write_outputs
    from vocoder.evaluate import evaluate as run
    from vocoder.fsutil import check_output_file

    try:
        check_output_file(json_out, csv_out)
        report, n_pairs = run(
            generated,
            reference,
            lambda uid: say(f"  scored {uid}", to=console),
            length_tolerance,
            fail_on_length,
        )
        write_outputs(report, json_out, csv_out)
    except VocoderError as e:
        fail(str(e))
    table = Table(title=f"{generated} vs {reference}")
    table.add_column("utterance", no_wrap=True)
    table.add_column("s", justify="right", no_wrap=True, min_width=5)
    for name, sign, unit in METRICS:
        arrow = "↑" if sign > 0 else "↓"
        table.add_column(f"{name}{f' ({unit})' if unit else ''} {arrow}", justify="right", no_wrap=True)

    def fmt(v: float) -> str:
        return f"{v:.3f}" if math.isfinite(v) else "-"

    for s in report.utterances:
        table.add_row(s.id, f"{s.seconds:.2f}", *(fmt(getattr(s, n)) for n, _, _ in METRICS))
    mean = report.mean()
    table.add_row("mean", "", *(fmt(mean[n]) for n, _, _ in METRICS), style="bold", end_section=True)
    (out if out.width >= 120 else Console(width=120)).print(table)
    for mismatch in report.length_mismatches:
        say(mismatch, "length:", "yellow", console)
    for error in report.errors:
        say(error, "failed:", "red", console)
    written = [str(p) for p in (json_out, csv_out) if p is not None]
    say(
        f"evaluated {len(report.utterances)} of {n_pairs} pairs, {len(report.errors)} problems"
        + (f" -> {', '.join(written)}" if written else "")
    )
    if report.errors:
        raise typer.Exit(1)


@app.command(cls=Command)
def nll(
    model: Annotated[Path, typer.Argument(help=".wrnn model file, or a checkpoint (exported first).")],
    features: Annotated[Path, typer.Argument(help="Features directory written by `preprocess`.")],
    split: Annotated[str, typer.Option(help="Split to score: train, valid or test.")] = "test",
    precision: Annotated[Precision, typer.Option(help="Export precision for a checkpoint.")] = Precision.fp32,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here.")] = None,
) -> None:
    """Teacher-forced NLL (bits/sample) of real speech through the native engine.

    Scores the model as synthesis runs it (precision, sparse kernels, subscale
    schedule); a subscale model also gets one row per sub-tensor.
    """
    import json
    from dataclasses import asdict

    from rich.table import Table

    from vocoder.data import SPLITS
    from vocoder.fsutil import check_output_file, write_text_atomic
    from vocoder.nll import score

    if split not in SPLITS:
        fail(f"--split {split}: use train, valid or test")
    try:
        check_output_file(json_out)
        report = score(
            model, features, split, precision.value, lambda uid: say(f"  scored {uid}", to=console)
        )
    except VocoderError as e:
        fail(str(e))
    table = Table(title=f"{model} on {features} ({split}: {report.utterances} utterances)")
    for col in ("samples", "coarse", "fine", "NLL bits/sample"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_row("all", f"{report.coarse:.3f}", f"{report.fine:.3f}", f"{report.total:.3f}", style="bold")
    for s, (c, f) in enumerate(report.by_subtensor):
        table.add_row(f"B i + {s}", f"{c:.3f}", f"{f:.3f}", f"{c + f:.3f}")
    out.print(table)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(asdict(report) | {"total": report.total}, indent=2) + "\n")
        say(f"-> {json_out}")


@app.command(cls=Command)
def plot(
    generated: Annotated[Path, typer.Argument(help="Generated wav/flac file, or a directory of them.")],
    reference: Annotated[
        Path, typer.Argument(help="Reference file, or a directory of <id>.wav|.flac (paired by file name).")
    ],
    out_dir: Annotated[Path, typer.Option("--out-dir", "-o", help="Where <id>.png files go.")],
) -> None:
    """Draw reference vs generated waveforms and log-mel spectrograms, one PNG per utterance.

    Needs matplotlib (pip install 'wavernn-vocoder\\[plot]').
    """
    from vocoder.plot import plot as run

    try:
        written, errors = run(generated, reference, out_dir)
    except VocoderError as e:
        fail(str(e))
    for error in errors:
        say(error, "failed:", "red", console)
    say(f"plotted {len(written)} utterances -> {out_dir}")
    if errors:
        raise typer.Exit(1)


@app.command(cls=Command)
def export(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint file, or checkpoint directory (its latest).")
    ],
    out_file: Annotated[Path, typer.Argument(help="Model file to write (.wrnn) for the native engine.")],
    precision: Annotated[
        Precision, typer.Option(help="Weights of the per-sample matrices (GRU recurrent, output layers).")
    ] = Precision.fp32,
    temperature: Annotated[
        float,
        typer.Option(
            help="Sampling temperature of the coarse byte, baked into its output layer "
            "(below 1: less noise, steadier pitch)."
        ),
    ] = 1.0,
    fine_temperature: Annotated[float, typer.Option(help="Sampling temperature of the fine byte.")] = 1.0,
) -> None:
    """Export a checkpoint as a self-contained model file for the native engine.

    The file carries the model and feature config, so `synthesize` needs nothing else.
    bf16 halves the per-sample weight traffic (logit error ~4e-2); int8 (per-row scales,
    inputs quantised per step) quarters it (logit error ~0.1). A temperature below 1 is
    divided into the output layer, so every engine samples the sharper softmax.
    """
    from vocoder.export import export_checkpoint

    try:
        cfg, averaged = export_checkpoint(
            checkpoint, out_file, precision.value, (temperature, fine_temperature)
        )
    except VocoderError as e:
        fail(str(e))
    weights = f", the weight average of train.ema {cfg.train.ema}" if averaged else ""
    if (temperature, fine_temperature) != (1.0, 1.0):
        weights += f", sampling temperature {temperature:g} (coarse) {fine_temperature:g} (fine)"
    say(
        f"exported N={cfg.model.hidden_size} ({precision.value}{weights}) -> {out_file} "
        f"({out_file.stat().st_size / 1e6:.1f} MB)"
    )


@app.command(cls=Command)
def bench(
    model: Annotated[
        Path | None,
        typer.Argument(
            help="Checkpoint or .wrnn file to time (default: random models, one per --hidden-size)."
        ),
    ] = None,
    hidden_size: Annotated[
        list[int] | None,
        typer.Option(
            "--hidden-size", "-n", metavar="N", help="GRU width N, repeatable (default: 384 512 896)."
        ),
    ] = None,
    threads: Annotated[
        list[int] | None,
        typer.Option("--threads", "-t", metavar="T", help="Threads, repeatable (default: 1 2)."),
    ] = None,
    precision: Annotated[
        list[Precision] | None,
        typer.Option(metavar="fp32|bf16|int8", help="Native weight precisions, repeatable (default: all)."),
    ] = None,
    sparsity: Annotated[
        list[float] | None,
        typer.Option(
            min=0.0,
            max=0.999,
            metavar="S",
            help="Also time the same model pruned to this sparsity, repeatable (e.g. 0.95).",
        ),
    ] = None,
    block: Annotated[
        list[str] | None,
        typer.Option(
            metavar="BLOCK", help="Block shape of the sparse rows, repeatable: 16x1, 4x4 (default 16x1)."
        ),
    ] = None,
    prune_layers: Annotated[
        str,
        typer.Option(help="Matrices the sparse rows prune: gru (R_u, R_r, R_e) or gru+out (also O1, O3)."),
    ] = "gru",
    sparse_kernels: Annotated[
        str,
        typer.Option(
            help="Sparse rows: auto (sparse kernels below the break-even density), always or never."
        ),
    ] = "auto",
    seconds: Annotated[float, typer.Option(min=0.05, help="Audio seconds per native measurement.")] = 1.0,
    torch_ref: Annotated[bool, typer.Option("--torch/--no-torch", help="Time torch too.")] = True,
    fold: Annotated[
        bool, typer.Option(help="Also time fold mode for every native configuration and thread count.")
    ] = False,
    target: Annotated[int, typer.Option(help="Fold rows: samples per segment, overlaps excluded.")] = 11000,
    overlap: Annotated[int, typer.Option(help="Fold rows: samples neighbouring segments share.")] = 550,
    fold_seconds: Annotated[
        float, typer.Option(min=0.05, help="Fold rows: audio seconds (the batch is its number of segments).")
    ] = 10.0,
    subscale: Annotated[
        bool,
        typer.Option(help="Also time a subscale model (B=16, F=4) of each N, sparsity and thread count."),
    ] = False,
    repeats: Annotated[
        int, typer.Option(min=1, help="Timed runs per row; the fastest counts (the least disturbed).")
    ] = 3,
    profile: Annotated[
        bool,
        typer.Option(
            help="Also print where each native row's time goes (the engine's stage timers, one more run)."
        ),
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
    stream: Annotated[
        bool,
        typer.Option(
            help="Also time streaming (synthesize --stdout) for every sequential native row: "
            "time to first audio (chunks of 1024 samples) and samples/s."
        ),
    ] = False,
    train: Annotated[
        bool,
        typer.Option(
            "--train",
            help="Time training instead: the training step on random windows for each --hidden-size "
            "(default 256), --precision (fp32, bf16) and --processes (data-parallel, gloo).",
        ),
    ] = False,
    processes: Annotated[
        list[int] | None,
        typer.Option(min=1, metavar="P", help="--train: data-parallel processes, repeatable (default: 1 2)."),
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="--train: global batch (windows per step).")] = 32,
    train_seconds: Annotated[float, typer.Option(min=0.1, help="--train: timed seconds per row.")] = 10.0,
) -> None:
    """Time the native engine and the torch sampler, or with --train the training step.

    Synthesis rows give samples/s and x real time; training rows steps/s, samples/s and
    the speed-up over one process.

    Timings only: correctness is the tests' job. Torch runs on a 2000-sample input. Each
    row is the fastest of --repeats runs.
    "x torch" is against the best sequential torch row of the same N; "x dense" against
    the dense native row of the same N, precision, threads and mode; "x seq" (fold and
    subscale rows) against the sequential native row of the same N, weights, precision
    and threads.
    """
    import json

    from rich.table import Table

    from vocoder.bench import HEADER, LEFT, NOTE, TITLE, findings, progress, report, run_bench, table_rows
    from vocoder.fsutil import check_output_file, write_text_atomic

    if train:
        _bench_train(hidden_size or [256], precision, processes or [1, 2], batch, train_seconds, json_out)
        return
    sizes = hidden_size or [384, 512, 896]
    thread_counts = threads or [1, 2]
    precisions = [p.value for p in precision] if precision else [p.value for p in Precision]
    blocks = block or ["16x1"]
    for b in blocks:
        if b not in ("16x1", "4x4"):
            fail(f"--block {b}: the engine has sparse kernels for 16x1 and 4x4")
    if prune_layers not in ("gru", "gru+out"):
        fail(f"--prune-layers {prune_layers}: use gru or gru+out")
    if sparse_kernels not in ("auto", "always", "never"):
        fail(f"--sparse-kernels {sparse_kernels}: use auto, always or never")
    variants = [(s, b, prune_layers) for s in sparsity or [] for b in blocks]
    try:
        check_output_file(json_out)
        if fold:
            from vocoder.fold import check_fold

            check_fold(target, overlap)
        results = run_bench(
            model,
            sizes,
            thread_counts,
            precisions,
            seconds,
            torch_ref,
            on_result=lambda r: say(progress(r), to=console),
            sparse=variants,
            kernels=sparse_kernels,
            fold=(target, overlap, fold_seconds) if fold else None,
            subscale=subscale,
            repeats=repeats,
            profile=profile,
            stream=stream,
        )
    except VocoderError as e:
        fail(str(e))
    table = Table(title=TITLE)
    for col in HEADER:
        table.add_column(col, justify="left" if col in LEFT else "right", no_wrap=True)
    for row in table_rows(results):
        table.add_row(*row)
    # never truncate figures (a pipe or log gets 80 columns by default)
    (out if out.width >= 150 else Console(width=150)).print(table)
    say(NOTE)
    for line in findings(results):
        say(line)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(report(results), indent=2) + "\n")
        say(f"-> {json_out}")


def _bench_train(
    sizes: list[int],
    precision: list[Precision] | None,
    process_counts: list[int],
    batch: int,
    seconds: float,
    json_out: Path | None,
) -> None:
    """`bench --train`: run the rows, print the table (x 1 process: against the 1-process
    row of the same N and precision), write the JSON."""
    import json

    from rich.table import Table

    from vocoder.fsutil import check_output_file, write_text_atomic
    from vocoder.train_bench import (
        TRAIN_HEADER,
        TRAIN_TITLE,
        report,
        run_train_bench,
        train_progress,
        train_table_rows,
    )

    precisions = [p.value for p in precision] if precision else ["fp32", "bf16"]
    if "int8" in precisions:
        fail("--train --precision: training runs in fp32 or bf16")
    try:
        check_output_file(json_out)
        rows = run_train_bench(
            sizes,
            precisions,
            process_counts,
            batch,
            seconds,
            on_result=lambda r: say(train_progress(r), to=console),
        )
    except VocoderError as e:
        fail(str(e))
    table = Table(title=TRAIN_TITLE)
    for col in TRAIN_HEADER:
        table.add_column(col, justify="left" if col == "prec" else "right", no_wrap=True)
    for row in train_table_rows(rows):
        table.add_row(*row)
    (out if out.width >= 100 else Console(width=100)).print(table)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(report(rows), indent=2) + "\n")
        say(f"-> {json_out}")


@app.command(cls=Command)
def info(
    model: Annotated[Path, typer.Argument(help="Checkpoint file or directory, or a .wrnn model file.")],
) -> None:
    """Print a model's step or precision, sizes and config (a .wrnn file: the sections it holds)."""
    from vocoder.native import MODEL_EXT, NativeVocoder

    sections = None  # a checkpoint holds the whole config
    try:
        if model.suffix == MODEL_EXT:
            sections = MODEL_FILE_SECTIONS
            native = NativeVocoder.load(model)
            cfg = native.cfg
            coarse_t, fine_t = native.temperature
            say(
                f"{model}: native model file, {native.precision} weights, "
                f"N={cfg.model.hidden_size}, {cfg.audio.sample_rate} Hz, kernels {native.isa}, "
                f"sampling temperature {coarse_t:g} (coarse) {fine_t:g} (fine)"
            )
            for name, lay in native.layout.items():
                if lay["kind"] == "sparse":
                    say(f"  {name}: {lay['block']} block-sparse, density {lay['density']:.4f}")
        else:
            from vocoder import checkpoint as ckpt_mod

            path = ckpt_mod.resolve(model)
            net, cfg, data = ckpt_mod.load_model(path)
            params = sum(p.numel() for p in net.parameters())
            weights = f", weight average (train.ema {cfg.train.ema})" if ckpt_mod.uses_average(data) else ""
            say(
                f"{path}: step {data['step']}, {params:,} parameters, "
                f"N={cfg.model.hidden_size}, {cfg.audio.sample_rate} Hz{weights}"
            )
    except VocoderError as e:
        fail(str(e))
    out.print(cfg.to_yaml(sections), highlight=False, markup=False, end="")


@app.command(cls=Command)
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Checkpoint directories (their latest) or files.")],
    precision: Annotated[Precision, typer.Option(help="Export precision for speed.")] = Precision.fp32,
    seconds: Annotated[float, typer.Option(min=0.05, help="Audio seconds per speed measurement.")] = 1.0,
    markdown_out: Annotated[Path | None, typer.Option("--markdown", help="Write a markdown table.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the rows as JSON.")] = None,
) -> None:
    """Tabulate runs side by side: N, sparsity, validation NLL and synthesis speed.

    Sparsity and non-zeros are W_hh's; NLL is each run's last validation; speed is one
    thread, timed here one run after another."""
    import json
    from dataclasses import asdict

    from rich.table import Table

    from vocoder.bench import cpu_model
    from vocoder.compare import HEADER, cells, compare_runs, markdown
    from vocoder.fsutil import check_output_file, write_text_atomic

    try:
        check_output_file(json_out, markdown_out)
        rows = compare_runs(runs, precision.value, seconds)
    except VocoderError as e:
        fail(str(e))
    table = Table(title="runs compared")
    for col in HEADER:
        table.add_column(col, justify="left" if col in ("run", "block") else "right", no_wrap=True)
    for r in rows:
        table.add_row(*cells(r))
    (out if out.width >= 160 else Console(width=160)).print(table)
    note = (
        "Validation NLL: the last validation of each run (bits/sample, coarse + fine). "
        f"Speed: 1 thread, {seconds:g} s of random mel, {cpu_model()}; the native engine on the "
        "exported model (the staggered schedule for subscale runs)."
    )
    say(note)
    if markdown_out is not None:
        write_text_atomic(markdown_out, markdown(rows, note))
        say(f"-> {markdown_out}")
    if json_out is not None:
        write_text_atomic(json_out, json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        say(f"-> {json_out}")


@app.command("config", cls=Command)
def show_config(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print the resolved config (defaults + YAML + --set) as YAML, to edit or check."""
    try:
        cfg = load_config(config, set_)
    except VocoderError as e:
        fail(str(e))
    out.print(cfg.to_yaml(), highlight=False, markup=False, end="")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] != "torch":
            raise
        say(
            "this command needs torch (training, checkpoints, the torch engine, random bench models): "
            "pip install 'wavernn-vocoder[train]'; .wrnn files synthesize, evaluate and bench without it",
            "error:",
            "red",
            console,
        )
        sys.exit(1)
