"""`vocoder prune`: a dense run continued under a gradual pruning schedule.

The job: resolve the schedule against the checkpoint (its step, the config's ramp), then
resume training into a new directory with the pruning keys set. The pruning itself (the
schedule, block magnitudes, masks) is ``pruning.Pruner``, which the training loop runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from vocoder import checkpoint as ckpt_mod
from vocoder import config as config_mod
from vocoder.errors import VocoderError
from vocoder.train import TrainResult, bits_text, train


@dataclass
class PruneResult:
    """A pruning run's outcome and the schedule it used."""

    train: TrainResult
    schedule: str  # e.g. "95.0% in 16x1 blocks, ramp from step 2000 over 4000"

    def summary(self, ckpt_dir: Path) -> str:
        """The line `vocoder prune` ends with."""
        bits = bits_text(self.train.last_valid_bits)
        where = f"checkpoints in {ckpt_dir}"
        return (
            f"pruned to step {self.train.step} ({self.schedule}); validation NLL {bits} bits/sample; {where}"
        )


def prune(
    checkpoint: Path,
    ckpt_dir: Path,
    config: str | None,
    sets: list[str],
    schedule: dict[str, Any],
    features_dir: Path | None,
    console: Console,
) -> PruneResult:
    """Continue a checkpoint's run into ``ckpt_dir`` under a pruning schedule.

    ``schedule`` holds ``sparsity`` and ``block`` and optionally ``start`` (default: the
    checkpoint's step), ``ramp`` (default: prune.ramp) and ``steps`` (default:
    start + 2 * ramp); None means the default. The features directory defaults to the
    one the checkpoint was trained on. Rerunning with the same ``ckpt_dir`` resumes.
    """
    source = ckpt_mod.resolve(checkpoint)
    state = ckpt_mod.load(source)
    start = int(state["step"]) if schedule.get("start") is None else schedule["start"]
    ramp = schedule.get("ramp")
    if ramp is None:
        ramp = config_mod.load_config(config, sets).prune.ramp
    steps = start + 2 * ramp if schedule.get("steps") is None else schedule["steps"]
    overrides = [
        *sets,
        f"prune.sparsity={schedule['sparsity']}",
        f"prune.block={schedule['block']}",
        f"prune.start={start}",
        f"prune.ramp={ramp}",
        f"train.steps={steps}",
    ]
    cfg = config_mod.load_config(config, overrides)
    feats = features_dir or (Path(state["features_dir"]) if state.get("features_dir") else None)
    if feats is None:
        raise VocoderError(f"{source}: does not record its features directory; pass --features")
    explicit = frozenset(config_mod.explicit_keys(config, overrides))
    result = train(feats, ckpt_dir, cfg, True, console, explicit, (source, state))
    what = f"{schedule['sparsity']:.1%} in {schedule['block']} blocks, ramp from step {start} over {ramp}"
    return PruneResult(result, what)
