"""The `vocoder` command line: parse, call one function, print. No logic lives here.

This file holds the app, the recipe stages (preprocess, train, prune, export) and the
small commands; synthesis is in ``cli_synth``, the measuring commands in ``cli_measure``,
what they share in ``cli_common``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from vocoder import cli_measure, cli_synth
from vocoder.cli_common import Command, ConfigOpt, Precision, SetOpt, console, fail, out, say
from vocoder.config import MODEL_FILE_SECTIONS, explicit_keys, load_config
from vocoder.errors import VocoderError

app = typer.Typer(
    help="WaveRNN neural vocoder toolkit (Kalchbrenner et al., 2018): "
    "preprocess a dataset, train, and synthesize speech from log-mel spectrograms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
    from vocoder.preprocess import summary

    try:
        cfg = load_config(config, set_)
        stats = run(data_dir, features_dir, cfg, jobs, console, mels_from)
    except VocoderError as e:
        fail(str(e))
    say(summary(stats, features_dir))


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
    say(result.summary(ckpt_dir))


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
    from vocoder.prune_job import prune as run

    schedule = {"sparsity": sparsity, "block": block, "start": start, "ramp": ramp, "steps": steps}
    try:
        pruned = run(checkpoint, ckpt_dir, config, list(set_ or []), schedule, features, console)
    except VocoderError as e:
        fail(str(e))
    say(pruned.summary(ckpt_dir))


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
    from vocoder.export import export_checkpoint, summary

    try:
        cfg, averaged = export_checkpoint(
            checkpoint, out_file, precision.value, (temperature, fine_temperature)
        )
    except VocoderError as e:
        fail(str(e))
    say(summary(cfg, averaged, precision.value, (temperature, fine_temperature), out_file))


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
            lines, cfg = native.describe(), native.cfg
        else:
            from vocoder import checkpoint as ckpt_mod

            lines, cfg = ckpt_mod.describe(model)
    except VocoderError as e:
        fail(str(e))
    for line in lines:
        say(line)
    out.print(cfg.to_yaml(sections), highlight=False, markup=False, end="")


def show_config(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print the resolved config (defaults + YAML + --set) as YAML, to edit or check."""
    try:
        cfg = load_config(config, set_)
    except VocoderError as e:
        fail(str(e))
    out.print(cfg.to_yaml(), highlight=False, markup=False, end="")


# Every command, in the order of `vocoder --help`: the recipe's stages, then the rest.
for command in (
    preprocess,
    train,
    prune,
    export,
    cli_synth.synthesize,
    cli_measure.evaluate,
    cli_measure.nll,
    cli_measure.plot,
    cli_measure.bench,
    info,
    cli_measure.compare,
):
    app.command(cls=Command)(command)
app.command("config", cls=Command)(show_config)


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
