"""The shipped reference model (models/allison-16k): what `make demo` and users rely on.

Its files must be what its checkpoint exports today (so the resumable checkpoint and the
model files cannot drift apart, and an exporter change that alters the format shows up
here), its features must be the bundled corpus's, and it must vocode a held-out bundled
utterance through the CLI. How well it does that is measured by `vocoder evaluate`
(models/allison-16k/MODEL.md), not asserted here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import PREPROCESS_16K, ROOT, run_cli
from vocoder import checkpoint as ckpt_mod
from vocoder.config import load_config
from vocoder.native import NativeVocoder

MODEL_DIR = ROOT / "models" / "allison-16k"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_shipped_files_are_the_export_of_the_shipped_checkpoint(tmp_path: Path, precision: str) -> None:
    checkpoints = ckpt_mod.list_checkpoints(MODEL_DIR)
    assert len(checkpoints) == 1, checkpoints
    out = tmp_path / f"model-{precision}.wrnn"
    coarse_t, fine_t = NativeVocoder.load(MODEL_DIR / f"model-{precision}.wrnn").temperature
    temperature = ["--temperature", str(coarse_t), "--fine-temperature", str(fine_t)]
    r = run_cli("export", MODEL_DIR, out, "--precision", precision, *temperature)
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == (MODEL_DIR / f"model-{precision}.wrnn").read_bytes()


def test_shipped_model_uses_the_bundled_corpus_features() -> None:
    _, cfg, data = ckpt_mod.load_model(ckpt_mod.list_checkpoints(MODEL_DIR)[0])
    assert cfg.audio == load_config("allison-16k").audio
    assert cfg.model.kind == "sequential"
    for precision in ("fp32", "int8"):
        vocoder = NativeVocoder.load(MODEL_DIR / f"model-{precision}.wrnn")
        assert vocoder.precision == precision
        assert vocoder.cfg.model == cfg.model and vocoder.cfg.audio == cfg.audio
    assert data["step"] > 0


def test_shipped_model_vocodes_a_held_out_utterance(tmp_path: Path) -> None:
    """The demo's path: a bundled test-split utterance's mel, native engine, int8."""
    feats = tmp_path / "features"
    data = tmp_path / "data"
    (data / "wavs").mkdir(parents=True)
    uid = "AL-conf-errormenu"  # in the bundled corpus's test split and the reference's
    rows = (ROOT / "data" / "allison-mini" / "metadata.csv").read_text().splitlines()
    (data / "metadata.csv").write_text("".join(r + "\n" for r in rows if r.startswith(uid + "|")))
    (data / "wavs" / f"{uid}.flac").symlink_to(ROOT / "data" / "allison-mini" / "wavs" / f"{uid}.flac")
    assert run_cli("preprocess", data, feats, *PREPROCESS_16K).exit_code == 0
    mel = feats / "mels" / f"{uid}.npy"
    r = run_cli("synthesize", MODEL_DIR / "model-int8.wrnn", mel, "--out-dir", tmp_path / "out")
    assert r.exit_code == 0, r.output
    audio, rate = sf.read(tmp_path / "out" / f"{uid}.wav", dtype="int16")
    assert rate == 16000
    assert len(audio) == np.load(mel).shape[1] * 200
    assert np.abs(audio.astype(np.int32)).max() > 1000  # speech, not silence
