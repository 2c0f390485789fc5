"""The native engine against the torch reference: teacher-forced logits and states over
a whole real utterance, sample-exact generation from shared uniforms, every kernel ISA,
and the engine wired into `synthesize` and the CLI (including without torch)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from native_util import (
    FP32_LOGIT_ATOL,
    FP32_STATE_ATOL,
    LOSSY_ATOL,
    NEAR_TIE,
    load_with_isa,
    margins,
    random_model,
    save_checkpoint,
    small_config,
    speech,
    state_of,
    torch_teacher_forced,
)
from vocoder import _engine
from vocoder import model as model_mod
from vocoder.cli import app
from vocoder.export import to_bf16, to_int8_rows, write_model_file
from vocoder.model import make_draws
from vocoder.native import NativeVocoder

ISAS = _engine.supported_isas()
ROOT_WAV = Path(__file__).resolve().parents[1] / "data" / "allison-mini" / "wavs" / "AL-agent-incorrect.flac"
GEN_SAMPLES = 6000  # the torch sequential sampler is slow; a crop keeps the test quick


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    cfg = small_config()
    mel, samples = speech(cfg)
    model = random_model(cfg, mel)
    d = tmp_path_factory.mktemp("native")
    files = {}
    for precision in ("fp32", "bf16", "int8"):
        files[precision] = d / f"model-{precision}.wrnn"
        write_model_file(files[precision], cfg, state_of(model), precision)
    return cfg, mel, samples, model, files, d


@pytest.mark.parametrize("isa", ISAS)
def test_teacher_forced_matches_torch_on_a_whole_utterance(setup, isa: str) -> None:
    cfg, mel, samples, model, files, _ = setup
    ref = torch_teacher_forced(model, mel, samples)
    voc = load_with_isa(files["fp32"], isa)
    assert voc.isa == isa
    got = voc.teacher_forced(mel, samples)
    assert len(samples) == mel.shape[1] * cfg.audio.hop_length > 10000
    for name, g, r, tol in zip(
        ("coarse", "fine", "states"),
        got,
        ref,
        (FP32_LOGIT_ATOL, FP32_LOGIT_ATOL, FP32_STATE_ATOL),
        strict=True,
    ):
        assert g.shape == r.shape
        err = np.abs(g - r).max()
        assert err < tol, f"{name} logits/states differ by {err} (ISA {isa})"
    assert np.abs(ref[0]).max() > 3.0  # the logits are not trivially small


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("isa", ISAS)
def test_lossy_precisions_stay_close_to_torch(setup, isa: str, precision: str) -> None:
    _, mel, samples, model, files, _ = setup
    ref = torch_teacher_forced(model, mel, samples)
    voc = load_with_isa(files[precision], isa)
    assert voc.precision == precision
    coarse, fine, states = voc.teacher_forced(mel, samples)
    logit_atol, state_atol = LOSSY_ATOL[precision]
    assert np.abs(coarse - ref[0]).max() < logit_atol
    assert np.abs(fine - ref[1]).max() < logit_atol
    assert np.abs(states - ref[2]).max() < state_atol
    # lossy, but not broken: the argmax class mostly agrees with the reference
    assert (coarse.argmax(axis=1) == ref[0].argmax(axis=1)).mean() > 0.95


def test_quantisers_match_an_independent_reference() -> None:
    """bf16: torch's own float32 -> bfloat16 cast (round to nearest, ties to even), on
    random values and on exact ties of both parities; int8: per-row symmetric scales
    (each row's peak / 127) and round-half-even, computed with torch."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, 4096).astype(np.float32)
    ties = (np.arange(64, dtype=np.uint32) << 16 | 0x8000).astype(np.uint32) + (0x3F80 << 16)
    x = np.concatenate([x, ties.view(np.float32), -ties.view(np.float32)])
    expected = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(to_bf16(x), expected)
    w = rng.normal(0, 1, (6, 40)).astype(np.float32) * np.array(
        [[0.01], [0.1], [1], [10], [0], [3]], np.float32
    )
    w[5] = 0.0
    w[5, :5] = [127, 0.5, 1.5, -2.5, 63.5]  # scale exactly 1: exact halves, to even
    q, scale = to_int8_rows(w)
    t = torch.from_numpy(w)
    peak = t.abs().amax(dim=1)
    ref_scale = torch.where(peak > 0, peak / 127, torch.ones_like(peak))
    np.testing.assert_array_equal(scale, ref_scale.numpy())
    ref_q = torch.clamp(torch.round(t / ref_scale[:, None]), -127, 127).to(torch.int8)
    np.testing.assert_array_equal(q, ref_q.numpy())
    assert len(set(scale[:4].tolist())) == 4  # one scale per row, not one per tensor
    assert q[5, :5].tolist() == [127, 0, 2, -2, 64]


@pytest.fixture(scope="module")
def torch_generation(setup):
    _, mel, _, model, _, _ = setup
    frames = GEN_SAMPLES // 200
    mel = np.ascontiguousarray(mel[:, 10 : 10 + frames])  # speech, not the leading silence
    draws = make_draws(frames * 200, seed=7)
    ref, trace = model_mod.generate(model, mel, draws=draws, record=True)
    return mel, draws, ref, trace


@pytest.mark.parametrize("isa", ISAS)
def test_same_draws_give_the_same_samples(setup, torch_generation, isa: str) -> None:
    """Identical except after a near-tie: the first divergence (if any) must sit at a step
    whose draw was within NEAR_TIE of a class boundary in the reference."""
    _, _, _, _, files, _ = setup
    mel, draws, ref, trace = torch_generation
    got = load_with_isa(files["fp32"], isa).generate_with_draws(mel, draws)
    assert got.dtype == np.int16 and got.shape == ref.shape
    near = np.minimum(margins(trace.coarse_logits, draws[:, 0]), margins(trace.fine_logits, draws[:, 1]))
    diff = np.flatnonzero(got != ref)
    if diff.size:
        # a differing sample is the next step's input and nudges the state for a few steps
        # more, so only the first difference must sit at a near-tie
        first = diff[0]
        assert near[first] < NEAR_TIE, f"sample {first} differs without a near-tie ({near[first]:.2e})"
    # 6000 steps hold dozens of near-ties (margin < 1e-5), so a few differences are
    # allowed; more means the engine drifts from the reference.
    assert diff.size <= 3, f"{diff.size} differing samples (ISA {isa})"
    assert len(np.unique(got)) > 100  # a real, varied waveform was drawn


def test_isas_agree_on_odd_sizes(tmp_path: Path) -> None:
    """Sizes that are not multiples of the SIMD widths exercise every kernel's tail."""
    cfg = small_config(hidden=38, channels=5, blocks=0)
    mel, samples = speech(cfg)
    mel, samples = mel[:, :30], samples[: 30 * 200]
    model = random_model(cfg, mel, seed=3)
    ref = torch_teacher_forced(model, mel, samples)
    # int8 sums are exact integers, but a 1e-7 difference upstream can move an input
    # across a rounding boundary (one quantisation step), hence its looser bound.
    tolerance = {"fp32": 1e-3, "bf16": 2e-2, "int8": 0.15}
    for precision, tol in tolerance.items():
        path = tmp_path / f"{precision}.wrnn"
        write_model_file(path, cfg, state_of(model), precision)
        outs = {isa: load_with_isa(path, isa).teacher_forced(mel, samples) for isa in ISAS}
        for isa, out in outs.items():
            for g, s in zip(out, outs["scalar"], strict=True):
                assert np.abs(g - s).max() < tol, (precision, isa)
        if precision == "fp32":
            assert np.abs(outs["scalar"][0] - ref[0]).max() < FP32_LOGIT_ATOL


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_two_threads_give_identical_results(setup, precision: str) -> None:
    """The split step (coarse rows on one thread, fine rows on the other) does the same
    arithmetic per row, so samples and traces must match one thread bit for bit."""
    _, mel, samples, _, files, _ = setup
    one, two = NativeVocoder.load(files[precision], 1), NativeVocoder.load(files[precision], 2)
    assert (one.threads, two.threads) == (1, 2)
    mel, samples = mel[:, 10:40], samples[10 * 200 : 40 * 200]
    assert np.array_equal(one.generate(mel, 3), two.generate(mel, 3))
    for a, b in zip(one.teacher_forced(mel, samples), two.teacher_forced(mel, samples), strict=True):
        assert np.array_equal(a, b)


def test_sizes_off_the_kernel_blocks_fall_back_to_one_thread(tmp_path: Path) -> None:
    cfg = small_config(hidden=40, channels=4, blocks=0)  # N/2 = 20: not a multiple of 16
    mel, _ = speech(cfg)
    path = tmp_path / "m.wrnn"
    write_model_file(path, cfg, state_of(random_model(cfg, mel)), "fp32")
    assert NativeVocoder.load(path, 2).threads == 1


def test_seeded_generation_is_reproducible(setup) -> None:
    cfg, mel, _, _, files, _ = setup
    voc = NativeVocoder.load(files["fp32"])
    mel = mel[:, :20]
    a, b, c = voc.generate(mel, 1), voc.generate(mel, 1), voc.generate(mel, 2)
    assert a.dtype == np.int16 and a.shape == (20 * cfg.audio.hop_length,)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bad_arguments_raise_readable_errors(setup) -> None:
    from vocoder.errors import VocoderError

    _, mel, _, _, files, _ = setup
    voc = NativeVocoder.load(files["fp32"])
    with pytest.raises(VocoderError, match=r"mel must have shape \(80"):
        voc.generate(mel[:40], 0)
    with pytest.raises(VocoderError, match="draws must have shape"):
        voc.generate_with_draws(mel[:, :2], np.zeros((5, 2)))
    with pytest.raises(VocoderError, match="samples must have shape"):
        voc.teacher_forced(mel[:, :2], np.zeros(3, np.int16))


def test_cli_export_then_synthesize_picks_native(setup, tmp_path: Path) -> None:
    cfg, _, _, model, _, _ = setup
    ckpt = save_checkpoint(tmp_path / "checkpoint_00000000.pt", model, cfg)
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(tmp_path), str(tmp_path / "m.wrnn"), "--precision", "bf16"])
    assert res.exit_code == 0, res.output
    assert NativeVocoder.load(tmp_path / "m.wrnn").precision == "bf16"
    res = runner.invoke(app, ["export", str(ckpt), str(tmp_path / "m.wrnn")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["synthesize", str(tmp_path / "m.wrnn"), str(ROOT_WAV), "-o", str(tmp_path / "out")]
    )
    assert res.exit_code == 0, res.output
    assert "native engine" in res.output
    y, sr = sf.read(tmp_path / "out" / f"{ROOT_WAV.stem}.wav", dtype="int16")
    assert sr == cfg.audio.sample_rate and len(y) > 10000
    res = runner.invoke(
        app, ["synthesize", str(tmp_path / "m.wrnn"), str(ROOT_WAV), "-o", str(tmp_path / "o2"), "-t", "2"]
    )
    assert res.exit_code == 0, res.output
    two, _ = sf.read(tmp_path / "o2" / f"{ROOT_WAV.stem}.wav", dtype="int16")
    assert np.array_equal(two, y)  # two engine threads give the same samples
    res = runner.invoke(app, ["info", str(tmp_path / "m.wrnn")])
    assert res.exit_code == 0, res.output
    assert "native model file, fp32 weights" in res.output
    assert f"hidden_size: {cfg.model.hidden_size}" in res.output
    sections = [line[:-1] for line in res.output.splitlines() if line.endswith(":") and " " not in line]
    assert sections == ["audio", "model", "prune", "subscale"]  # what the file holds, no default train/data
    res = runner.invoke(
        app,
        [
            "synthesize",
            str(tmp_path / "m.wrnn"),
            str(ROOT_WAV),
            "-o",
            str(tmp_path / "o3"),
            "--engine",
            "torch",
        ],
    )
    assert res.exit_code == 1
    assert res.output.strip() == (
        f"error: {tmp_path / 'm.wrnn'}: a .wrnn file runs on the native engine (drop --engine torch); "
        "the torch engine reads checkpoints"
    )
    res = runner.invoke(
        app, ["synthesize", str(tmp_path / "gone.wrnn"), str(ROOT_WAV), "-o", str(tmp_path / "o4")]
    )
    assert res.exit_code == 1 and res.output.strip() == f"error: {tmp_path / 'gone.wrnn'}: no such file"


def test_cli_rejects_a_corrupt_model_file_with_one_line(setup, tmp_path: Path) -> None:
    _, _, _, _, files, _ = setup
    bad = tmp_path / "bad.wrnn"
    data = files["fp32"].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    proc = subprocess.run(
        [Path(sys.executable).parent / "vocoder", "synthesize", bad, ROOT_WAV, "-o", tmp_path / "o"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and str(bad) in lines[0] and "truncated" in lines[0]


NO_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
try:
    import torch  # noqa: F401
    raise SystemExit("torch was importable")
except ImportError:
    pass
from vocoder.cli import main
sys.argv = ["vocoder", *sys.argv[1:]]
main()
"""


def test_synthesize_runs_where_torch_cannot_be_imported(setup, tmp_path: Path) -> None:
    _, _, _, _, files, _ = setup
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_TORCH,
            "synthesize",
            str(files["fp32"]),
            str(ROOT_WAV),
            "-o",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "native engine" in proc.stdout
    assert (tmp_path / f"{ROOT_WAV.stem}.wav").exists()


@pytest.mark.parametrize(
    ("value", "expected"), [("scalar", "scalar"), ("avx2", "avx2"), ("sse9", "WRNN_ISA=sse9: unknown ISA")]
)
def test_wrnn_isa_environment_variable_forces_the_kernels(setup, value: str, expected: str) -> None:
    if value in ("avx2",) and value not in ISAS:
        pytest.skip(f"{value} not supported by this CPU")
    _, _, _, _, files, _ = setup
    code = (
        "from pathlib import Path\nfrom vocoder.native import NativeVocoder\n"
        "from vocoder.errors import VocoderError\n"
        f"try: print(NativeVocoder.load(Path({str(files['fp32'])!r})).isa)\n"
        "except VocoderError as e: print(e)"
    )
    env = {**os.environ, "WRNN_ISA": value}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout
