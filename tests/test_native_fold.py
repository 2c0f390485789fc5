"""The native engine's batched (fold mode) path: teacher-forced logits and states against
the batched torch sampler on every ISA and precision, SIMD batched kernels against the
scalar ones (dense and block-sparse), the batch of one against the sequential engine,
and same-draws samples against torch."""

from __future__ import annotations

import numpy as np
import pytest

from native_util import NEAR_TIE, load_with_isa, margins, random_model, small_config, speech, state_of
from vocoder import _engine, fold, sampler
from vocoder.config import PruneConfig
from vocoder.errors import VocoderError
from vocoder.export import write_model_file
from vocoder.native import NativeVocoder
from vocoder.pruning import Pruner

ISAS = _engine.supported_isas()
# The tolerances of the sequential parity tests (tests/test_native.py): fp32 differs from
# torch by summation order and the SIMD exp; bf16 and int8 by their rounding.
TOL = {"fp32": (2e-3, 5e-4), "bf16": (0.25, 0.05), "int8": (0.5, 0.15)}
# SIMD against scalar on one file: summation order only (fp32); bf16/int8 inputs are
# rounded identically, but a 1e-7 difference may move an int8 rounding step (~1e-2).
ISA_ATOL = {"fp32": 1e-4, "bf16": 1e-2, "int8": 1e-2}
# 11 segments: a full group of 8 (AVX-512) or 4 and 2 (AVX2) columns plus a remainder.
TARGET, OVERLAP, SEGMENTS = 100, 30, 11


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    cfg = small_config()
    mel, samples = speech(cfg)
    mel, samples = mel[:, 10:17], samples[10 * 200 : 17 * 200]  # 1400 samples
    model = random_model(cfg, mel)
    d = tmp_path_factory.mktemp("native-fold")
    files = {}
    for precision in ("fp32", "bf16", "int8"):
        files[precision] = d / f"m-{precision}.wrnn"
        write_model_file(files[precision], cfg, state_of(model), precision)
    for block in ("16x1", "4x4"):
        sparse_cfg = small_config()
        sparse_cfg.prune = PruneConfig(
            sparsity=0.8, block=block, start=0, ramp=1, interval=1, layers="gru+out"
        )
        pruned = random_model(sparse_cfg, mel)
        Pruner(pruned, sparse_cfg.prune).step(1)
        files[block] = d / f"m-{block}.wrnn"
        write_model_file(files[block], sparse_cfg, state_of(pruned), "fp32")
    length = len(samples)
    pos = fold.positions(length, TARGET, OVERLAP)
    assert pos.shape[0] == SEGMENTS
    return cfg, mel, samples, model, files, pos


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("isa", ISAS)
def test_teacher_forced_batch_matches_torch(setup, isa: str, precision: str) -> None:
    _, mel, samples, model, files, pos = setup
    force = samples[pos]
    _, ref = sampler.generate_batch(model, mel, pos, np.zeros((*pos.shape, 2)), force=force, record=True)
    got = load_with_isa(files[precision], isa).teacher_forced_batch(mel, pos, force)
    logit_tol, state_tol = TOL[precision]
    for g, r, tol in zip(
        got, (ref.coarse_logits, ref.fine_logits, ref.states), (logit_tol, logit_tol, state_tol), strict=True
    ):
        assert g.shape == r.shape
        assert np.abs(g - r).max() < tol


@pytest.mark.parametrize("kind", ["fp32", "bf16", "int8", "16x1", "4x4"])
def test_simd_batched_kernels_match_scalar(setup, kind: str) -> None:
    _, mel, samples, _, files, pos = setup
    force = samples[pos]
    ref = load_with_isa(files[kind], "scalar").teacher_forced_batch(mel, pos, force)
    for isa in ISAS[1:]:
        voc = load_with_isa(files[kind], isa)
        if kind in ("16x1", "4x4"):
            assert voc.layout["gru.weight_hh_l0"]["kind"] == "sparse"
        got = voc.teacher_forced_batch(mel, pos, force)
        for g, r in zip(got, ref, strict=True):
            assert np.abs(g - r).max() < ISA_ATOL.get(kind, ISA_ATOL["fp32"]), isa


@pytest.mark.parametrize("kind", ["fp32", "bf16", "int8", "4x4"])
@pytest.mark.parametrize("isa", ISAS)
def test_batching_is_exact(setup, isa: str, kind: str) -> None:
    """Each column's sums are the same operations whatever group it falls in, so a
    segment's logits in the batch of 11 equal those of the segment alone, bit for bit."""
    _, mel, samples, _, files, pos = setup
    voc = load_with_isa(files[kind], isa)
    together = voc.teacher_forced_batch(mel, pos, samples[pos])
    for b in (0, 7, 8, 10):
        alone = voc.teacher_forced_batch(mel, pos[b : b + 1], samples[pos[b : b + 1]])
        for t, a in zip(together, alone, strict=True):
            np.testing.assert_array_equal(t[b], a[0])


@pytest.mark.parametrize("kind", ["fp32", "int8", "16x1", "4x4"])
@pytest.mark.parametrize("isa", ISAS)
def test_batch_of_one_is_the_sequential_engine(setup, isa: str, kind: str) -> None:
    """Scalar: bit-identical (the scalar batched product is the matvec per column).
    SIMD: the batched kernels sum in another order, so within summation rounding."""
    _, mel, samples, _, files, _ = setup
    voc = load_with_isa(files[kind], isa)
    length = len(samples)
    pos = np.arange(length, dtype=np.int32)[None]
    got = voc.teacher_forced_batch(mel, pos, samples[None])
    ref = voc.teacher_forced(mel, samples)
    for g, r in zip(got, ref, strict=True):
        if isa == "scalar":
            np.testing.assert_array_equal(g[0], r)
        else:
            assert np.abs(g[0] - r).max() < ISA_ATOL[kind if kind in ISA_ATOL else "fp32"]
    draws = np.random.default_rng(0).random((1, length, 2))
    batch = voc.generate_batch_with_draws(mel, pos, draws)[0]
    seq = voc.generate_with_draws(mel, draws[0])
    assert np.count_nonzero(batch != seq) <= (0 if isa == "scalar" else 3)


@pytest.mark.parametrize("isa", ISAS)
def test_same_draws_give_torch_samples(setup, isa: str) -> None:
    """Identical samples except after a near-tie of the inverse CDF: in every segment the
    first differing step (if any) must be one whose draw sat within NEAR_TIE of a class
    boundary in the reference (see test_native.py)."""
    _, mel, _, model, files, pos = setup
    draws = fold.draws(*pos.shape, seed=7)
    ref, trace = sampler.generate_batch(model, mel, pos, draws, record=True)
    got = load_with_isa(files["fp32"], isa).generate_batch_with_draws(mel, pos, draws)
    assert got.shape == ref.shape and trace is not None
    for b in range(got.shape[0]):
        diff = np.flatnonzero(got[b] != ref[b])
        if diff.size:
            first = diff[0]
            near = min(
                margins(trace.coarse_logits[b, first : first + 1], draws[b, first : first + 1, 0])[0],
                margins(trace.fine_logits[b, first : first + 1], draws[b, first : first + 1, 1])[0],
            )
            assert near < NEAR_TIE, f"segment {b} sample {first} differs without a near-tie ({near:.2e})"
    assert np.count_nonzero(got != ref) <= 3


def test_generate_fold_is_seeded_and_unfolded(setup) -> None:
    _, mel, samples, _, files, _ = setup
    voc = NativeVocoder.load(files["int8"])
    a = voc.generate_fold(mel, 3, 300, 40)
    assert a.dtype == np.int16 and len(a) == len(samples)
    np.testing.assert_array_equal(a, voc.generate_fold(mel, 3, 300, 40))
    assert np.count_nonzero(a != voc.generate_fold(mel, 4, 300, 40)) > len(a) // 2
    pos = fold.positions(len(samples), 300, 40)
    segments = voc.engine.generate_batch(mel, pos, 3)
    np.testing.assert_array_equal(a, fold.unfold(segments, len(samples), 300, 40))


@pytest.mark.parametrize("kind", ["fp32", "int8", "16x1"])
def test_two_threads_give_identical_results(setup, kind: str) -> None:
    """The worker thread runs the upper half of each step's segments; the seeded draws
    are taken in column order on the calling thread, so the samples are the same."""
    _, mel, samples, _, files, pos = setup
    one, two = NativeVocoder.load(files[kind]), NativeVocoder.load(files[kind], threads=2)
    assert (one.threads, two.threads) == (1, 2)
    np.testing.assert_array_equal(one.generate_fold(mel, 3, 300, 40), two.generate_fold(mel, 3, 300, 40))
    force = samples[pos]
    for a, b in zip(
        one.teacher_forced_batch(mel, pos, force), two.teacher_forced_batch(mel, pos, force), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_bad_batch_arguments_are_one_line(setup) -> None:
    _, mel, samples, _, files, pos = setup
    voc = NativeVocoder.load(files["fp32"])
    bad = pos.copy()
    bad[3, 5] = len(samples)
    with pytest.raises(VocoderError, match="position 1400 is outside"):
        voc.generate_batch_with_draws(mel, bad, np.zeros((*pos.shape, 2)))
    with pytest.raises(VocoderError, match="draws must have shape"):
        voc.generate_batch_with_draws(mel, pos, np.zeros((2, 3, 2)))
    with pytest.raises(VocoderError, match="samples must have shape"):
        voc.teacher_forced_batch(mel, pos, samples[None])
    with pytest.raises(VocoderError, match="--target 0"):
        voc.generate_fold(mel, 0, 0, 10)
