"""`compare`: one table of quality and speed over several training runs.

For each run (a checkpoint directory, or one checkpoint file) it reports what decides
the paper's dense-versus-sparse trade: the GRU width, the recurrent matrix's sparsity
and non-zero weights, the validation NLL the run logged last (bits/sample, from
``metrics.jsonl``) and the synthesis speed, timed in this process one run after
another, so the ratios between rows are comparable even on a noisy machine: the native
engine on the exported model, one thread (the staggered schedule for subscale models).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vocoder.errors import VocoderError
from vocoder.native import MODEL_EXT


@dataclass
class Row:
    """One run's figures, as written to the JSON and markdown reports."""

    run: str
    step: int
    kind: str
    hidden_size: int
    sparsity: float
    block: str
    recurrent_nonzero: int
    valid_bits: float
    valid_coarse_bits: float
    valid_fine_bits: float
    valid_step: int
    precision: str
    engine: str
    samples_per_second: float
    times_realtime_24k: float


def last_validation(ckpt_dir: Path, step: int) -> dict[str, float]:
    """The last validation record at or before ``step`` in a run's metrics.jsonl."""
    path = ckpt_dir / "metrics.jsonl"
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise VocoderError(f"{path}: cannot read ({e.strerror})") from None
    found: dict[str, float] | None = None
    for n, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
        except ValueError:
            raise VocoderError(f"{path}:{n}: not a JSON line") from None
        if "valid_bits" in rec and rec.get("step", 0) <= step:
            found = rec
    if found is None:
        raise VocoderError(f"{path}: no validation record up to step {step}")
    return found


def compare_runs(runs: list[Path], precision: str = "fp32", seconds: float = 1.0) -> list[Row]:
    """Figures for each run's latest checkpoint (see the module docstring)."""
    from vocoder import checkpoint as ckpt_mod
    from vocoder.bench import REALTIME_RATE, time_native
    from vocoder.export import export_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, run in enumerate(runs):
            path = ckpt_mod.resolve(run)
            model, cfg, payload = ckpt_mod.load_model(path)
            step = int(payload.get("step", 0))
            valid = last_validation(path.parent, step)
            w = model.gru.weight_hh_l0.detach()
            nonzero = int((w != 0).sum())
            samples = int(seconds * cfg.audio.sample_rate)
            model_file = Path(tmp) / f"run{i}{MODEL_EXT}"
            export_model(model, cfg, model_file, precision, path)
            timed = time_native(model_file, cfg, samples, 1)
            sps = timed.samples / timed.wall
            rows.append(
                Row(
                    run=str(run),
                    step=step,
                    kind=cfg.model.kind,
                    hidden_size=cfg.model.hidden_size,
                    sparsity=1.0 - nonzero / w.numel(),
                    block=cfg.prune.block if cfg.prune.sparsity > 0 else "dense",
                    recurrent_nonzero=nonzero,
                    valid_bits=float(valid["valid_bits"]),
                    valid_coarse_bits=float(valid.get("valid_coarse_bits", float("nan"))),
                    valid_fine_bits=float(valid.get("valid_fine_bits", float("nan"))),
                    valid_step=int(valid["step"]),
                    precision=precision,
                    engine="native",
                    samples_per_second=sps,
                    times_realtime_24k=sps / REALTIME_RATE,
                )
            )
    return rows


HEADER = (
    "run",
    "kind",
    "N",
    "sparsity",
    "block",
    "non-zero W_hh",
    "valid NLL (bits)",
    "coarse",
    "fine",
    "step",
    "engine",
    "samples/s",
    "x RT 24k",
)


def cells(r: Row) -> list[str]:
    """A row's table cells (shared by the terminal table and the markdown file)."""
    return [
        Path(r.run).name,
        r.kind,
        str(r.hidden_size),
        f"{100 * r.sparsity:.2f}%",
        r.block,
        f"{r.recurrent_nonzero:,}",
        f"{r.valid_bits:.3f}",
        f"{r.valid_coarse_bits:.3f}",
        f"{r.valid_fine_bits:.3f}",
        str(r.valid_step),
        f"{r.engine} {r.precision}",
        f"{r.samples_per_second:,.0f}",
        f"{r.times_realtime_24k:.2f}",
    ]


def markdown(rows: list[Row], note: str) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n\n" + note + "\n"


def note(seconds: float) -> str:
    """The line under the table: what each column measured, and on which CPU."""
    from vocoder.bench import cpu_model

    return (
        "Validation NLL: the last validation of each run (bits/sample, coarse + fine). "
        f"Speed: 1 thread, {seconds:g} s of random mel, {cpu_model()}; the native engine on the "
        "exported model (the staggered schedule for subscale runs)."
    )
