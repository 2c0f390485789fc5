"""Shared fixtures: a few seconds of the bundled real speech, features and a tiny model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vocoder.cli import app

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "allison-mini"
# Five real utterances (about 6.6 s in all) keep the end-to-end tests quick.
IDS = [
    "AL-activated",
    "AL-agent-loggedoff",
    "AL-call-waiting",
    "AL-astcc-followed-by-the-pound-key",
    "AL-call-forwarding",
]
TINY = [
    "--set",
    "model.hidden_size=32",
    "--set",
    "model.cond_channels=8",
    "--set",
    "model.cond_blocks=1",
    "--set",
    "train.batch_size=4",
    "--set",
    "train.seq_frames=2",
    "--set",
    "train.valid_every=2",
    "--set",
    "train.checkpoint_every=2",
    "--set",
    "train.log_every=1",
    "--set",
    "train.valid_max_windows=4",
    "--set",
    "train.sample_seconds=0",
]


# Shipped 16 kHz config, one validation and one test utterance (for five-utterance sets).
PREPROCESS_16K = ["-c", "allison-16k", "--set", "data.valid_count=1", "--set", "data.test_count=1"]


def run_cli(*args: str):
    """Invoke the CLI in-process; returns the click Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def make_dataset(dest: Path, ids: list[str] = IDS) -> Path:
    """An LJSpeech-layout copy of some bundled utterances."""
    (dest / "wavs").mkdir(parents=True)
    rows = {line.split("|", 1)[0]: line for line in (CORPUS / "metadata.csv").read_text().splitlines()}
    (dest / "metadata.csv").write_text("".join(rows[i] + "\n" for i in ids))
    for i in ids:
        shutil.copy(CORPUS / "wavs" / f"{i}.flac", dest / "wavs" / f"{i}.flac")
    return dest


@pytest.fixture(scope="session")
def features_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("feats")
    data = make_dataset(base / "data")
    feats = base / "features"
    r = run_cli("preprocess", data, feats, *PREPROCESS_16K)
    assert r.exit_code == 0, r.output
    return feats


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory, features_dir: Path) -> Path:
    ckpt = tmp_path_factory.mktemp("ckpt") / "run"
    r = run_cli("train", features_dir, ckpt, "--steps", "4", *TINY)
    assert r.exit_code == 0, r.output
    return ckpt
