"""scripts/gpu-check.sh, the prepared run for a lent GPU, passes its CPU dry run: every
stage from preprocess to evaluate, N=512 in bf16, with a one-minute training budget, on the
corpus and split it is given."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from vocoder import checkpoint as ckpt_mod

SCRIPT = ROOT / "scripts" / "gpu-check.sh"


def test_the_gpu_check_script_runs_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "check"
    env = {**os.environ, "PYTHON": sys.executable}
    args = ["bash", str(SCRIPT), "--device", "cpu", "--minutes", "1", "--out", str(out), "--no-install"]
    args += ["--data", str(ROOT / "data" / "allison-mini"), "--data-set", "data.test_count=3"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = ckpt_mod.list_checkpoints(out / "checkpoints")
    state = ckpt_mod.load(saved[-1])
    assert state["config"]["model"]["hidden_size"] == 512 and state["config"]["train"]["precision"] == "bf16"
    assert state["step"] >= 1
    assert (out / "model-int8.wrnn").is_file()
    tests = (out / "features" / "test.txt").read_text().split()
    assert len(tests) == 3  # --data-set reached preprocess (the config's own count is 4)
    for engine in ("wavernn", "griffinlim"):
        scores = json.loads((out / f"eval-{engine}.json").read_text())
        assert sorted(u["id"] for u in scores["utterances"]) == sorted(tests), engine
        assert all(math.isfinite(u["stoi"]) for u in scores["utterances"]), engine
    assert "torch" in (out / "machine.txt").read_text() and "== " in (out / "gpu-check.log").read_text()


def test_the_gpu_check_script_refuses_unknown_arguments(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(SCRIPT), "--gpus", "8"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "unknown argument --gpus" in proc.stderr
