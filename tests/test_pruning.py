"""Gradual block pruning: the schedule, the masks, and pruning inside training runs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from conftest import TINY, run_cli
from vocoder import checkpoint as ckpt_mod
from vocoder.config import ModelConfig, PruneConfig
from vocoder.errors import VocoderError
from vocoder.model import WaveRNN
from vocoder.pruning import GATES, Pruner, block_mask, target_sparsity


def test_schedule_values() -> None:
    z, t0, s = 0.9, 1000, 400
    assert target_sparsity(t0 - 10, z, t0, s) == 0.0
    assert target_sparsity(t0, z, t0, s) == 0.0
    assert target_sparsity(t0 + s // 2, z, t0, s) == pytest.approx(z * (1 - 0.5**3))
    assert target_sparsity(t0 + s, z, t0, s) == pytest.approx(z)
    assert target_sparsity(t0 + 5 * s, z, t0, s) == pytest.approx(z)
    values = [target_sparsity(t, z, t0, s) for t in range(t0, t0 + s + 1, 20)]
    assert all(b >= a for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("block", [(1, 1), (4, 4), (16, 1)])
@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.97])
def test_block_mask_removes_the_weakest_whole_blocks(block: tuple[int, int], sparsity: float) -> None:
    torch.manual_seed(0)
    w = torch.randn(64, 48)
    mask = block_mask(w, sparsity, block)
    r, c = block
    n_blocks = (64 // r) * (48 // c)
    kept, removed = [], []
    for i in range(0, 64, r):  # slow reference: score every block by a loop
        for j in range(0, 48, c):
            m = mask[i : i + r, j : j + c]
            assert torch.all(m == m[0, 0]), "a block is only partly pruned"
            score = float(w[i : i + r, j : j + c].abs().mean())
            (kept if m[0, 0] == 1 else removed).append(score)
    assert abs(len(removed) - sparsity * n_blocks) <= 0.5  # within one block of the target
    assert abs(float((mask == 0).float().mean()) - sparsity) <= 1 / n_blocks
    assert max(removed) <= min(kept)


def test_block_must_tile_the_matrix() -> None:
    with pytest.raises(VocoderError, match=r"prune\.block 4x4 does not tile a 10x10 matrix"):
        block_mask(torch.randn(10, 10), 0.5, (4, 4))


def test_pruner_prunes_each_gate_separately_on_schedule() -> None:
    torch.manual_seed(0)
    model = WaveRNN(ModelConfig(hidden_size=32, cond_channels=8, cond_blocks=1), 80, 200)
    with torch.no_grad():  # make one gate much weaker: a joint ranking would prune it all
        model.gru.weight_hh_l0[32:64] *= 0.01
    pruner = Pruner(
        model, PruneConfig(sparsity=0.75, block="4x4", start=10, ramp=40, interval=10, layers="gru+out")
    )
    for step in range(1, 61):
        pruner.step(step)
        if step == 30:  # halfway: z = Z * (1 - 0.5^3)
            assert pruner.sparsity() == pytest.approx(0.75 * 0.875, abs=1 / 64)
    n = 32
    for i, _ in enumerate(GATES):
        gate = model.gru.weight_hh_l0[i * n : (i + 1) * n]
        assert float((gate == 0).float().mean()) == pytest.approx(0.75, abs=1 / 64)
    for layer in (model.O1, model.O3):
        assert float((layer.weight == 0).float().mean()) == pytest.approx(0.75, abs=1 / 16)
    assert float((model.O2.weight == 0).float().mean()) == 0.0


def test_prune_command_exact_zeros_export_and_compare(tmp_path: Path, tiny_ckpt: Path) -> None:
    out = tmp_path / "pruned"
    args = [
        *["--sparsity", "0.75", "--block", "4x4", "--ramp", "4", "--steps", "10"],
        *TINY,
        "--set",
        "prune.interval=2",
    ]
    r = run_cli("prune", tiny_ckpt, out, *args)
    assert r.exit_code == 0, r.output
    assert "pruned to step 10" in r.output
    found = ckpt_mod.list_checkpoints(out)
    assert [p.name for p in found][-1] == "checkpoint_00000010.pt"
    for path in found:
        data = ckpt_mod.load(path)
        w = data["model"]["gru.weight_hh_l0"]
        for name, mask in data["prune_masks"].items():
            if name in GATES:
                i = GATES.index(name)
                assert torch.all(w[i * 32 : (i + 1) * 32][mask == 0] == 0)
    final = ckpt_mod.load(found[-1])
    assert final["config"]["prune"]["sparsity"] == 0.75
    w = final["model"]["gru.weight_hh_l0"]
    for i in range(3):
        assert float((w[i * 32 : (i + 1) * 32] == 0).float().mean()) == pytest.approx(0.75, abs=1 / 64)
    # rerunning the stage resumes and finds the work done
    again = run_cli("prune", tiny_ckpt, out, *args)
    assert again.exit_code == 0 and "pruned to step 10" in again.output
    bad = run_cli("prune", tiny_ckpt, tmp_path / "bad", "--block", "5x5", *TINY)
    assert bad.exit_code == 1 and "does not tile" in bad.output

    # the pruned run exports block-sparse and sits next to the dense one in `compare`
    model_file = tmp_path / "pruned.wrnn"
    assert run_cli("export", out, model_file).exit_code == 0
    info = run_cli("info", model_file)
    assert "gru.weight_hh_l0: 4x4 block-sparse, density 0.2500" in info.output
    report = tmp_path / "compare.json"
    r = run_cli(
        "compare", tiny_ckpt, out, "--seconds", "0.05", "--json", report, "--markdown", tmp_path / "t.md"
    )
    assert r.exit_code == 0, r.output
    rows = json.loads(report.read_text())
    assert [(row["sparsity"], row["block"], row["step"]) for row in rows] == [
        (0.0, "dense", 4),
        (0.75, "4x4", 10),
    ]
    assert rows[1]["recurrent_nonzero"] == 3 * 32 * 32 // 4
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["valid_bits"] == [rec for rec in last if "valid_bits" in rec][-1]["valid_bits"]
    assert all(row["samples_per_second"] > 0 for row in rows)
    (tmp_path / "no-metrics").mkdir()
    ckpt_mod.save(tmp_path / "no-metrics" / found[-1].name, final)
    r = run_cli("compare", tmp_path / "no-metrics")
    assert r.exit_code == 1 and "metrics.jsonl: cannot read" in r.output


def test_pruning_inside_train(tmp_path: Path, features_dir: Path) -> None:
    out = tmp_path / "run"
    sets = [
        "--set",
        "prune.sparsity=0.5",
        "--set",
        "prune.block=4x4",
        "--set",
        "prune.ramp=2",
        "--set",
        "prune.interval=1",
    ]
    r = run_cli("train", features_dir, out, "--steps", "4", *TINY, *sets)
    assert r.exit_code == 0, r.output
    final = ckpt_mod.load(out / "checkpoint_00000004.pt")
    assert final["config"]["prune"]["sparsity"] == 0.5
    w = final["model"]["gru.weight_hh_l0"]
    for i in range(3):
        assert float((w[i * 32 : (i + 1) * 32] == 0).float().mean()) == pytest.approx(0.5, abs=1 / 64)
