"""recipes/ljspeech end to end on a tiny LJSpeech-style corpus made from the bundled one.

LJSpeech itself is not bundled, so a few bundled utterances are resampled to 22.05 kHz and
laid out as LJSpeech 1.1 is (``metadata.csv`` with id|text|normalized text, 16-bit
``wavs/<id>.wav``). Every stage runs with a tiny model and a few steps, then a second
run must resume instead of redoing the work.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from vocoder.native import NativeVocoder

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "data" / "allison-mini"
UTTERANCES = 5  # the split leaves 1 train, 1 valid and 3 test utterances
TINY = (
    "--set model.hidden_size=32 --set model.cond_channels=16 --set train.steps=4 "
    "--set train.batch_size=4 --set train.valid_every=2 --set train.checkpoint_every=2"
)


def ljspeech_corpus(root: Path) -> Path:
    """The first bundled utterances as LJSpeech-1.1/{metadata.csv,wavs/LJ001-000k.wav}."""
    out = root / "LJSpeech-1.1"
    (out / "wavs").mkdir(parents=True)
    lines = []
    for k, line in enumerate((BUNDLED / "metadata.csv").read_text().splitlines()[:UTTERANCES], start=1):
        uid, text, normalized = line.split("|")
        audio, rate = sf.read(BUNDLED / "wavs" / f"{uid}.flac", dtype="float32")
        audio = librosa.resample(audio, orig_sr=rate, target_sr=22050)
        sf.write(out / "wavs" / f"LJ001-{k:04d}.wav", audio, 22050, subtype="PCM_16")
        lines.append(f"LJ001-{k:04d}|{text}|{normalized}")
    (out / "metadata.csv").write_text("\n".join(lines) + "\n")
    return out


def recipe(target: str, data: Path, exp: Path) -> str:
    args = [
        "make",
        "-C",
        str(REPO / "recipes" / "ljspeech"),
        target,
        f"DATA={data}",
        f"EXP={exp}",
        f"VOCODER={Path(sys.executable).parent / 'vocoder'}",
        "DEVICE=cpu",
        "JOBS=2",
        f"SET={TINY}",
        "PRUNE_SET=--start 4 --ramp 2 --steps 6",
    ]
    res = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def test_ljspeech_recipe_runs_every_stage_and_resumes(tmp_path: Path) -> None:
    data, exp = ljspeech_corpus(tmp_path), tmp_path / "exp"
    out = recipe("all", data, exp)
    assert "train 1, valid 1, test 3" in out
    assert "pruned to step 6 (95.0% in 16x1 blocks" in out

    voc = NativeVocoder.load(exp / "model-fp32.wrnn")
    assert voc.cfg.audio.sample_rate == 22050 and voc.cfg.audio.n_mels == 80  # the HiFi-GAN convention
    assert voc.cfg.prune.sparsity == 0.95 and voc.cfg.model.hidden_size == 32
    test_ids = (exp / "features" / "test.txt").read_text().split()
    assert len(test_ids) == 3
    for uid in test_ids:
        mel = np.load(exp / "features" / "mels" / f"{uid}.npy")
        for engine in ("synthesized", "griffinlim"):
            audio, rate = sf.read(exp / engine / f"{uid}.wav", dtype="int16")
            assert rate == 22050 and len(audio) == mel.shape[1] * 256 and np.abs(audio).max() > 0
    for name in ("wavernn", "griffinlim"):
        report = json.loads((exp / f"eval-{name}.json").read_text())
        scored = [row for row in report["utterances"] if row["pesq"] is not None and row["pesq"] >= 1.0]
        assert sorted(row["id"] for row in scored) == sorted(test_ids), report

    stamps = {p: p.stat().st_mtime_ns for p in exp.glob("*/*") if p.suffix in (".pt", ".wav", ".npy")}
    again = recipe("all", data, exp)
    assert "preprocessed 0 new, reused 5" in again
    assert "up to date with" in again
    assert again.count("0 of 3 inputs, 3 already done (their wav exists") == 2
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
