"""`evaluate` and `plot` on known cases: identical speech, a gain change, a pitch shift,
speech in white noise at two SNRs, and a directory pair with bad files."""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import CORPUS, run_cli
from vocoder import evaluate as ev
from vocoder.errors import VocoderError

CLIP = CORPUS / "wavs" / "AL-astcc-followed-by-the-pound-key.flac"


def _speech() -> tuple[np.ndarray, int]:
    y, rate = sf.read(CLIP, dtype="float32")
    return y, rate


def _with_noise(y: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=len(y))
    noise *= np.sqrt(np.mean(y.astype(np.float64) ** 2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (y + noise).astype(np.float32)


def _write(path: Path, y: np.ndarray, rate: int) -> Path:
    sf.write(path, y, rate, subtype="FLOAT")
    return path


def test_cepstrum_convention_recovers_a_known_cosine() -> None:
    n = np.arange(80)
    log_spectrum = 0.7 + 2 * 0.25 * np.cos(np.pi * 3 * (n + 0.5) / 80)
    c = ev.cepstrum(log_spectrum[:, None])[:, 0]
    assert c[0] == pytest.approx(0.7) and c[3] == pytest.approx(0.25)
    assert np.allclose(np.delete(c, [0, 3]), 0, atol=1e-12)


def test_identical_speech_scores_best(tmp_path: Path) -> None:
    y, rate = _speech()
    s = ev.score_pair("same", _write(tmp_path / "same.wav", y, rate), CLIP)
    assert s.pesq > 4.5
    assert s.stoi == pytest.approx(1.0, abs=1e-6)
    assert s.mcd == pytest.approx(0.0, abs=1e-9) and s.lsd == pytest.approx(0.0, abs=1e-9)
    assert s.f0_rmse == 0.0 and s.vde == 0.0
    assert s.seconds == pytest.approx(len(y) / rate)


def test_gain_change_gives_known_lsd_and_no_mcd() -> None:
    """Halving the amplitude moves every log power by 20 log10 2 dB and only c0."""
    x = (0.1 * np.random.default_rng(1).normal(size=16000)).astype(np.float32)
    assert ev.log_spectral_distance(x, 0.5 * x, 16000) == pytest.approx(20 * math.log10(2), abs=1e-3)
    assert ev.mel_cepstral_distortion(x, 0.5 * x, 16000) == pytest.approx(0.0, abs=1e-9)


def test_f0_rmse_of_a_semitone_is_100_cents() -> None:
    t = np.arange(32000) / 16000
    low = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    high = (0.3 * np.sin(2 * np.pi * 200 * 2 ** (100 / 1200) * t)).astype(np.float32)
    rmse, vde = ev.f0_errors(low, high, 16000)
    assert rmse == pytest.approx(100, abs=10) and vde == 0.0


def test_more_noise_is_worse_on_every_metric(tmp_path: Path) -> None:
    y, rate = _speech()
    mild = ev.score_pair("a", _write(tmp_path / "a.wav", _with_noise(y, 20), rate), CLIP)
    harsh = ev.score_pair("b", _write(tmp_path / "b.wav", _with_noise(y, 5), rate), CLIP)
    for name, better, _ in ev.METRICS:
        m, h = getattr(mild, name), getattr(harsh, name)
        assert better * (m - h) > 0, (name, m, h)
    assert mild.pesq < 4.0 and mild.mcd > 0.5  # noise at 20 dB is audible, not a rounding error


def test_generated_is_resampled_and_trimmed(tmp_path: Path) -> None:
    """A copy at 22.05 kHz with 0.1 s extra at the end still scores as (almost) identical."""
    import librosa

    y, rate = _speech()
    up = librosa.resample(y, orig_sr=rate, target_sr=22050, res_type="soxr_hq")
    up = np.concatenate([up, np.zeros(2205, np.float32)])
    s = ev.score_pair("up", _write(tmp_path / "up.wav", up, 22050), CLIP)
    assert s.seconds == pytest.approx(len(y) / rate, abs=1e-3)
    assert s.length_diff == pytest.approx(0.1, abs=1e-3)
    assert s.pesq > 4.3 and s.stoi > 0.99 and s.mcd < 0.5 and s.f0_rmse < 5 and s.vde < 0.05


def test_pairing_by_stem_ignores_extra_references(tmp_path: Path) -> None:
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "AL-activated.wav").touch()
    (gen / "orphan.wav").touch()
    (gen / "notes.txt").touch()
    pairs, missing = ev.pair_files(gen, CORPUS / "wavs")
    assert pairs == [("AL-activated", gen / "AL-activated.wav", CORPUS / "wavs" / "AL-activated.flac")]
    assert len(missing) == 1 and "orphan.wav" in missing[0] and "no reference" in missing[0]
    with pytest.raises(VocoderError, match="no such generated"):
        ev.pair_files(tmp_path / "nowhere", CORPUS / "wavs")


def test_cli_reports_bad_files_scores_the_rest_and_writes_files(tmp_path: Path) -> None:
    y, rate = _speech()
    refs, gen = tmp_path / "refs", tmp_path / "gen"
    refs.mkdir()
    gen.mkdir()
    sf.write(refs / f"{CLIP.stem}.flac", y, rate)
    other, other_rate = sf.read(CORPUS / "wavs" / "AL-call-waiting.flac", dtype="float32")
    sf.write(refs / "AL-call-waiting.wav", other, other_rate)
    sf.write(refs / "corrupt.wav", y[:8000], rate)
    _write(gen / f"{CLIP.stem}.wav", y, rate)
    _write(gen / "AL-call-waiting.wav", _with_noise(other, 10), other_rate)
    (gen / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    _write(gen / "unmatched.wav", y, rate)
    out_json, out_csv = tmp_path / "scores.json", tmp_path / "scores.csv"
    r = run_cli("evaluate", gen, refs, "--json", out_json, "--csv", out_csv)
    assert r.exit_code == 1
    failed = [line for line in r.output.splitlines() if line.startswith("failed:")]
    assert len(failed) == 2
    assert any("corrupt.wav" in line and "cannot read audio" in line for line in failed)
    assert any("unmatched.wav" in line and "no reference" in line for line in failed)
    assert "evaluated 2 of 3 pairs, 2 problems" in r.output
    assert CLIP.stem in r.output and "mean" in r.output
    data = json.loads(out_json.read_text())
    by_id = {u["id"]: u for u in data["utterances"]}
    assert sorted(by_id) == ["AL-astcc-followed-by-the-pound-key", "AL-call-waiting"]
    assert by_id[CLIP.stem]["mcd"] == pytest.approx(0.0, abs=1e-9)
    assert by_id["AL-call-waiting"]["pesq"] < by_id[CLIP.stem]["pesq"]
    assert data["mean"]["stoi"] == pytest.approx(np.mean([u["stoi"] for u in by_id.values()]))
    assert len(data["errors"]) == 2
    rows = out_csv.read_text().splitlines()
    assert rows[0].startswith("id,seconds,length_diff,pesq,stoi,mcd,lsd,f0_rmse,vde")
    assert len(rows) == 4 and rows[-1].startswith("mean,")
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_bad_arguments_give_one_line(tmp_path: Path) -> None:
    r = run_cli("evaluate", tmp_path / "nowhere", CORPUS / "wavs")
    assert r.exit_code == 1
    assert [line for line in r.output.splitlines() if line.startswith("error:")] == [
        f"error: {tmp_path / 'nowhere'}: no such generated file or directory"
    ]


@pytest.mark.parametrize("factor", [3.0, 0.3])
def test_a_length_mismatch_is_reported_and_can_fail(tmp_path: Path, factor: float) -> None:
    """Generated audio 3x the reference (two thirds noise) or cut to 30 %: scored on the
    overlap, but never silently."""
    y, rate = _speech()
    refs, gen = tmp_path / "refs", tmp_path / "gen"
    refs.mkdir()
    gen.mkdir()
    _write(refs / f"{CLIP.stem}.wav", y, rate)
    n = int(len(y) * factor)
    noise = np.random.default_rng(0).normal(0, 0.05, max(0, n - len(y))).astype(np.float32)
    _write(gen / f"{CLIP.stem}.wav", np.concatenate([y, noise])[:n], rate)
    out_json = tmp_path / "scores.json"
    r = run_cli("evaluate", gen, refs, "--json", out_json)
    assert r.exit_code == 0, r.output
    word = "longer" if factor > 1 else "shorter"
    lines = [line for line in r.output.splitlines() if line.startswith("length:")]
    assert len(lines) == 1 and f"s {word} than" in lines[0] and CLIP.stem in lines[0], r.output
    data = json.loads(out_json.read_text())
    assert data["utterances"][0]["length_diff"] == pytest.approx((n - len(y)) / rate, abs=1e-3)
    assert len(data["length_mismatches"]) == 1
    r = run_cli("evaluate", gen, refs, "--fail-on-length")
    assert r.exit_code == 1 and "evaluated 0 of 1 pairs, 1 problems" in r.output
    assert any(line.startswith("failed:") and word in line for line in r.output.splitlines())
    # within the tolerance: nothing to report
    r = run_cli("evaluate", gen, refs, "--length-tolerance", str(abs(n - len(y)) / rate + 0.01))
    assert r.exit_code == 0 and "length:" not in r.output


def test_a_silent_generated_file_is_named_not_a_nan_error(tmp_path: Path) -> None:
    y, rate = _speech()
    silent = _write(tmp_path / f"{CLIP.stem}.wav", np.zeros_like(y), rate)
    r = run_cli("evaluate", silent, CLIP)
    assert r.exit_code == 1
    assert f"failed: {silent}: silent (every sample is zero); nothing to score" in r.output


def test_outputs_that_cannot_be_written_are_refused_before_scoring(tmp_path: Path) -> None:
    for bad, why in [
        (tmp_path, "is a directory"),
        (tmp_path / "no" / "such" / "x.json", f"{tmp_path / 'no'} does not exist"),
    ]:
        r = run_cli("evaluate", CLIP, CLIP, "--json", bad)
        assert r.exit_code == 1 and f"error: {bad}: {why}" in r.output, r.output
        assert "scored" not in r.output
    assert not (tmp_path / "no").exists()
    r = run_cli("evaluate", CLIP, CLIP, "--csv", tmp_path / "new" / "x.csv")
    assert r.exit_code == 0 and (tmp_path / "new" / "x.csv").exists()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_writes_one_png_per_pair(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    y, rate = _speech()
    gen = tmp_path / "gen"
    gen.mkdir()
    _write(gen / f"{CLIP.stem}.wav", _with_noise(y, 10), rate)
    _write(gen / "unmatched.wav", y, rate)
    out = tmp_path / "plots"
    r = run_cli("plot", gen, CORPUS / "wavs", "--out-dir", out)
    assert r.exit_code == 1 and "unmatched.wav" in r.output and "plotted 1 utterances" in r.output
    assert [p.name for p in out.iterdir()] == [f"{CLIP.stem}.png"]
    assert _png_size(out / f"{CLIP.stem}.png") == (1200, 600)


def test_plot_without_matplotlib_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises ImportError
    r = run_cli("plot", CLIP, CLIP, "--out-dir", tmp_path / "plots")
    assert r.exit_code == 1
    lines = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "matplotlib" in lines[0]
    assert not (tmp_path / "plots").exists()
