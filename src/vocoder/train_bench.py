"""`bench --train`: training throughput (steps/s, samples/s) of the real training step
(``vocoder.train.Loss`` under ``autocast``, backward, clip, Adam) on random windows, for a
GRU width, global batch, precision and number of data-parallel processes.

Each row runs in fresh processes (``torch.multiprocessing`` with a gloo group when there is
more than one), one torch thread each, so rows do not share warm caches or thread pools and
a 2-process row splits the same global batch the way ``vocoder train --nproc 2`` does.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vocoder import checkpoint as ckpt_mod
from vocoder import distributed
from vocoder.config import Config, load_config
from vocoder.data import Batch
from vocoder.errors import VocoderError

WARMUP_STEPS = 2


@dataclass
class TrainRow:
    """One measured training configuration, in the JSON report's ``results``."""

    engine: str  # "train"
    hidden_size: int
    batch_size: int  # global
    seq_frames: int
    precision: str
    processes: int
    threads: int  # per process
    steps: int
    seconds: float
    steps_per_second: float
    samples_per_second: float  # training samples (batch x window) per second, all processes


def random_batch(cfg: Config, size: int, radius: int, rng: np.random.Generator) -> Batch:
    """Windows of random conditioning and bytes in the shapes training feeds the model."""
    a, t = cfg.audio, cfg.train
    samples = t.seq_frames * a.hop_length
    mel = rng.standard_normal((size, a.n_mels, t.seq_frames + 2 + 2 * radius)).astype(np.float32)

    def byte() -> np.ndarray:
        return rng.integers(0, 256, (size, samples), dtype=np.int64)

    return Batch(mel, byte(), byte(), byte(), byte())


def _worker(rank: int, cfg: Config, processes: int, seconds: float, port: int, out: Any) -> None:
    from vocoder.train import Loss, autocast

    torch.set_num_threads(cfg.train.threads or 1)
    if processes > 1:
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
        dist.init_process_group("gloo", rank=rank, world_size=processes)
    torch.manual_seed(0)
    model = ckpt_mod.build_model(cfg)
    device = torch.device("cpu")
    step_loss: torch.nn.Module = Loss(model, device)
    if processes > 1:
        step_loss = distributed.wrap(step_loss, device, distributed.World(rank, processes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = random_batch(cfg, cfg.train.batch_size // processes, model.radius, np.random.default_rng(rank))

    def step() -> None:
        with autocast(device, cfg.train.precision):
            loss = step_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()

    for _ in range(WARMUP_STEPS):
        step()
    steps, start = 0, time.perf_counter()
    while True:  # every rank runs the same number of steps: rank 0's clock decides for all
        step()
        steps += 1
        done = torch.tensor([int(time.perf_counter() - start >= seconds)])
        if processes > 1:
            dist.broadcast(done, 0)
        if done.item():
            break
    elapsed = time.perf_counter() - start
    if rank == 0:
        out.put((steps, elapsed))
    if processes > 1:  # both ranks reach the teardown before either closes its connections
        dist.barrier()
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(cfg: Config, processes: int, seconds: float) -> TrainRow:
    """Train ``cfg``'s model on random windows for about ``seconds`` after a warmup, in
    ``processes`` data-parallel processes sharing the global ``train.batch_size``."""
    t = cfg.train
    if t.batch_size % processes:
        raise VocoderError(f"--batch {t.batch_size} must be a multiple of the {processes} processes")
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    mp.start_processes(
        _worker, args=(cfg, processes, seconds, _free_port(), out), nprocs=processes, start_method="spawn"
    )
    steps, elapsed = out.get()
    rate = steps / elapsed
    return TrainRow(
        "train",
        cfg.model.hidden_size,
        t.batch_size,
        t.seq_frames,
        t.precision,
        processes,
        t.threads or 1,
        steps,
        elapsed,
        rate,
        rate * t.batch_size * t.seq_frames * cfg.audio.hop_length,
    )


def run_train_bench(
    sizes: list[int],
    precisions: list[str],
    process_counts: list[int],
    batch: int,
    seconds: float,
    config: str | None = None,
    on_result: Any = None,
) -> list[TrainRow]:
    """Every combination of N, precision and process count, one thread per process."""
    rows = []
    for n in sizes:
        for precision in precisions:
            for processes in process_counts:
                sets = [f"model.hidden_size={n}", f"train.precision={precision}", f"train.batch_size={batch}"]
                cfg = load_config(config, [*sets, "train.threads=1"])
                row = measure(cfg, processes, seconds)
                rows.append(row)
                if on_result is not None:
                    on_result(row)
    return rows


def report(rows: list[TrainRow]) -> dict[str, object]:
    from vocoder.bench import machine_info

    return {"machine": machine_info(), "results": [asdict(r) for r in rows]}


TRAIN_TITLE = "WaveRNN training step (random windows, one torch thread per process)"
TRAIN_HEADER = ("N", "batch", "window", "prec", "processes", "steps/s", "samples/s", "x 1 process")


def train_progress(r: TrainRow) -> str:
    """The line printed as each measurement finishes."""
    return (
        f"  train N={r.hidden_size} {r.precision} processes={r.processes}: {r.steps_per_second:.2f} steps/s"
    )


def train_table_rows(rows: list[TrainRow]) -> list[tuple[str, ...]]:
    """The cells of TRAIN_HEADER per row; "x 1 process" against the 1-process row of the
    same N and precision from the same run."""
    single = {(r.hidden_size, r.precision): r.samples_per_second for r in rows if r.processes == 1}
    cells = []
    for r in rows:
        one = single.get((r.hidden_size, r.precision))
        cells.append(
            (
                str(r.hidden_size),
                str(r.batch_size),
                str(r.seq_frames),
                r.precision,
                str(r.processes),
                f"{r.steps_per_second:.2f}",
                f"{r.samples_per_second:,.0f}",
                f"{r.samples_per_second / one:.2f}" if one else "-",
            )
        )
    return cells
