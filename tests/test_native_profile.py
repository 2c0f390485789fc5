"""The engine's stage timers (`bench --profile`): they account for a run's wall time,
put each stage where the model has it, and leave the samples unchanged."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from native_util import random_model, small_config, speech, state_of
from vocoder import fold
from vocoder.export import write_model_file
from vocoder.native import NativeVocoder

STAGES = {
    "conditioning",
    "gate inputs",
    "context",
    "W_hh",
    "GRU",
    "O1",
    "O2",
    "O3",
    "O4",
    "draws",
    "wait",
    "other",
}
WORK = STAGES - {"context", "wait", "other"}  # every run of any model does these


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, dict[str, Path]]:
    """A random sequential and a random subscale model (N=64, int8), and 30 mel frames."""
    d = tmp_path_factory.mktemp("profile")
    out = {}
    for kind in ("sequential", "subscale"):
        cfg = small_config(hidden=64)
        cfg.model.kind = kind
        mel, _ = speech(cfg)
        out[kind] = d / f"{kind}.wrnn"
        write_model_file(out[kind], cfg, state_of(random_model(cfg, mel)), "int8")
    return np.ascontiguousarray(mel[:, :30]), out


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["sequential", "subscale"])
def test_stage_shares_cover_the_run_without_changing_it(files, kind: str, threads: int) -> None:
    mel, paths = files
    voc = NativeVocoder.load(paths[kind], threads)
    assert voc.threads == threads
    plain = voc.generate(mel, 7)
    out: list[np.ndarray] = []
    shares = voc.profile(lambda: out.append(voc.generate(mel, 7)))
    np.testing.assert_array_equal(out[0], plain)
    assert set(shares) == STAGES
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(shares[s] > 0 for s in WORK), shares
    assert (shares["context"] > 0) == (kind == "subscale")  # only a subscale step has one
    assert (shares["wait"] > 0) == (threads == 2)  # one thread never waits for another


def test_fold_mode_is_profiled_and_profiling_stops(files) -> None:
    mel, paths = files
    voc = NativeVocoder.load(paths["sequential"])
    length = mel.shape[1] * voc.cfg.audio.hop_length
    shares = voc.profile(lambda: voc.generate_fold(mel, 0, 1500, 100))
    assert fold.num_segments(length, 1500, 100) > 1
    assert all(shares[s] > 0 for s in WORK) and shares["context"] == 0.0
    voc.generate(mel, 0)
    assert voc.engine.profile["total"] == 0.0  # off again: the next run is not counted


def test_profiled_seconds_are_the_runs_wall_time(files) -> None:
    mel, paths = files
    voc = NativeVocoder.load(paths["sequential"])
    voc.engine.set_profiling(True)
    start = time.perf_counter()
    voc.generate(mel, 0)
    voc.generate(mel, 1)
    wall = time.perf_counter() - start
    seconds = dict(voc.engine.profile)
    voc.engine.set_profiling(False)
    total = seconds.pop("total")
    # measured inside the calls, so never more than the wall time around them (a lower
    # bound would depend on how loaded the machine is)
    assert 0 < total <= wall
    assert sum(seconds.values()) == pytest.approx(total, rel=1e-9)
