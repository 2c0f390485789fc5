"""The commands that measure: `evaluate`, `nll`, `plot`, `bench` (synthesis and training)
and `compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vocoder.cli_common import Precision, console, fail, say, show_table, write_json
from vocoder.errors import VocoderError


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

    from vocoder.evaluate import evaluate as run
    from vocoder.evaluate import table_header, table_rows, write_outputs
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
    rows = table_rows(report)
    show_table(f"{generated} vs {reference}", table_header(), rows, 120, ("utterance",), (len(rows) - 1,))
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
    from dataclasses import asdict

    from vocoder.data import SPLITS
    from vocoder.fsutil import check_output_file
    from vocoder.nll import HEADER, score

    if split not in SPLITS:
        fail(f"--split {split}: use train, valid or test")
    try:
        check_output_file(json_out)
        report = score(
            model, features, split, precision.value, lambda uid: say(f"  scored {uid}", to=console)
        )
    except VocoderError as e:
        fail(str(e))
    title = f"{model} on {features} ({split}: {report.utterances} utterances)"
    show_table(title, HEADER, report.table_rows(), bold=(0,))
    if json_out is not None:
        write_json(json_out, asdict(report) | {"total": report.total})


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

    from vocoder.bench import (
        HEADER,
        LEFT,
        NOTE,
        TITLE,
        Plan,
        findings,
        progress,
        report,
        run_bench,
        table_rows,
    )
    from vocoder.fsutil import check_output_file

    if train:
        _bench_train(hidden_size or [256], precision, processes or [1, 2], batch, train_seconds, json_out)
        return
    try:
        check_output_file(json_out)
        plan = Plan(
            model,
            hidden_size or [384, 512, 896],
            threads or [1, 2],
            [p.value for p in precision] if precision else [p.value for p in Precision],
            seconds,
            torch_ref,
            sparsity or [],
            block or ["16x1"],
            prune_layers,
            sparse_kernels,
            (target, overlap, fold_seconds) if fold else None,
            subscale,
            repeats,
            profile,
            stream,
        )
        results = run_bench(plan, lambda r: say(progress(r), to=console))
    except VocoderError as e:
        fail(str(e))
    show_table(TITLE, HEADER, table_rows(results), 150, LEFT)
    say(NOTE)
    for line in findings(results):
        say(line)
    if json_out is not None:
        write_json(json_out, report(results))


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

    from vocoder.fsutil import check_output_file
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
    show_table(TRAIN_TITLE, TRAIN_HEADER, train_table_rows(rows), 100, ("prec",))
    if json_out is not None:
        write_json(json_out, report(rows))


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
    from dataclasses import asdict

    from vocoder.compare import HEADER, cells, compare_runs, markdown, note
    from vocoder.fsutil import check_output_file, write_text_atomic

    try:
        check_output_file(json_out, markdown_out)
        rows = compare_runs(runs, precision.value, seconds)
    except VocoderError as e:
        fail(str(e))
    show_table("runs compared", HEADER, [cells(r) for r in rows], 160, ("run", "block"))
    text = note(seconds)
    say(text)
    if markdown_out is not None:
        write_text_atomic(markdown_out, markdown(rows, text))
        say(f"-> {markdown_out}")
    if json_out is not None:
        write_json(json_out, [asdict(r) for r in rows])
