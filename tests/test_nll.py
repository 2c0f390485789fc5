"""`vocoder nll`: teacher-forced NLL through the native engine, against the torch models'
own logits and a plain cross-entropy, per sub-tensor for a subscale model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from conftest import TINY, run_cli
from native_util import torch_teacher_forced
from vocoder import checkpoint as ckpt_mod
from vocoder.data import load_utterances
from vocoder.nll import score
from vocoder.subscale import generate


def _bits(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-sample cross-entropy in bits, with torch."""
    t = torch.from_numpy(np.ascontiguousarray(logits)).double()
    return F.cross_entropy(t, torch.from_numpy(target), reduction="none").numpy() / math.log(2)


def _targets(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(audio, np.int64) + 32768
    return u >> 8, u & 0xFF


def test_sequential_nll_matches_the_torch_model(tiny_ckpt: Path, features_dir: Path) -> None:
    model, cfg, _ = ckpt_mod.load_model(ckpt_mod.resolve(tiny_ckpt))
    coarse, fine, count = 0.0, 0.0, 0
    for u in load_utterances(features_dir, "test", cfg.audio.hop_length, cfg.audio.n_mels):
        cl, fl, _ = torch_teacher_forced(model, np.array(u.mel), np.array(u.audio))
        c, f = _targets(u.audio)
        coarse += _bits(cl, c).sum()
        fine += _bits(fl, f).sum()
        count += len(c)
    got = score(tiny_ckpt, features_dir, "test")
    assert got.samples == count and got.subscale == 0 and got.by_subtensor == []
    assert abs(got.coarse - coarse / count) < 1e-3 and abs(got.fine - fine / count) < 1e-3
    assert 4.0 < got.total < 16.5  # a 4-step model: near the 16 bits of a uniform guess, not absurd


def test_subscale_nll_per_subtensor_matches_the_torch_sampler(tmp_path: Path, features_dir: Path) -> None:
    ckpt = tmp_path / "sub"
    sub = ["--set", "model.kind=subscale", "--set", "subscale.batch=4", "--set", "subscale.context=8"]
    assert run_cli("train", features_dir, ckpt, "--steps", "2", *TINY, *sub).exit_code == 0
    model, cfg, _ = ckpt_mod.load_model(ckpt_mod.resolve(ckpt))
    sums, counts = np.zeros((4, 2)), np.zeros(4)
    for u in load_utterances(features_dir, "valid", cfg.audio.hop_length, cfg.audio.n_mels):
        audio = np.array(u.audio)
        _, rec = generate(model, np.array(u.mel), force=audio, record=True)
        c, f = _targets(audio)
        s = np.arange(len(audio)) % 4
        for k in range(4):
            sums[k] += (
                _bits(rec["coarse"][s == k], c[s == k]).sum(),
                _bits(rec["fine"][s == k], f[s == k]).sum(),
            )
            counts[k] += (s == k).sum()
    got = score(ckpt, features_dir, "valid")
    assert got.subscale == 4 and len(got.by_subtensor) == 4
    np.testing.assert_allclose(np.array(got.by_subtensor), sums / counts[:, None], atol=1e-3)
    assert abs(got.coarse - sums[:, 0].sum() / counts.sum()) < 1e-3


def test_cli_prints_and_writes_json_and_rejects_foreign_features(
    tiny_ckpt: Path, features_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "m.wrnn"
    assert run_cli("export", tiny_ckpt, model, "--precision", "int8").exit_code == 0
    r = run_cli("nll", model, features_dir, "--split", "valid", "--json", tmp_path / "nll.json")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "nll.json").read_text())
    assert report["samples"] > 0 and abs(report["total"] - report["coarse"] - report["fine"]) < 1e-9
    assert f"{report['total']:.3f}" in r.output
    other = tmp_path / "feats22k"
    other.mkdir()
    (other / "config.yaml").write_text(
        (features_dir / "config.yaml").read_text().replace("hop_length: 200", "hop_length: 256")
    )
    r = run_cli("nll", model, other)
    assert r.exit_code == 1 and "features have audio.hop_length=256, the model expects 200" in r.output
    r = run_cli("nll", model, features_dir, "--split", "dev")
    assert r.exit_code == 1 and "--split dev" in r.output
