"""Block-sparse matrices end to end: the export layout against a slow reference, the
sparse kernels (16x1 and 4x4, every ISA) against the scalar ones, the dense kernels and
the torch model with masked weights, the loader's dense/sparse choice, and its checks of
the sparse tensors."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from native_util import (
    FP32_LOGIT_ATOL,
    FP32_STATE_ATOL,
    load_with_isa,
    patch,
    random_model,
    rejects,
    small_config,
    speech,
    state_of,
    tensor_entry,
    torch_teacher_forced,
)
from vocoder import _engine
from vocoder.config import Config, PruneConfig
from vocoder.export import PER_SAMPLE, block_sparse, write_model_file
from vocoder.model import WaveRNN
from vocoder.native import NativeVocoder
from vocoder.pruning import Pruner

ISAS = _engine.supported_isas()
BLOCKS = ("16x1", "4x4")
SPARSITY = 0.9
# bf16 and int8 files: the sparse kernels compute in fp32 from the stored values, the
# dense ones also round the input vector, so the two differ by about the input rounding.
LOSSY_ATOL = {"bf16": 0.25, "int8": 0.5}
# SIMD against scalar on one file: fp32 files differ by summation order only; in bf16 and
# int8 files the dense O2/O4 kernels also round differently per ISA (~1e-3).
ISA_ATOL = {"fp32": 1e-4, "bf16": 1e-2, "int8": 1e-2}


def pruned(cfg: Config, mel: np.ndarray, sparsity: float, block: str, layers: str) -> WaveRNN:
    """A random model pruned once to ``sparsity`` (the config says so, so export writes
    the pruned matrices block-sparse)."""
    cfg.prune = PruneConfig(sparsity=sparsity, block=block, start=0, ramp=1, interval=1, layers=layers)
    model = random_model(cfg, mel)
    Pruner(model, cfg.prune).step(1)
    return model


@pytest.fixture(scope="module")
def speech64():
    cfg = small_config()
    mel, samples = speech(cfg)
    return mel, samples


@pytest.fixture(scope="module")
def files(speech64, tmp_path_factory: pytest.TempPathFactory):
    """Per block: the pruned torch model (GRU and O1/O3 pruned) and its files per precision."""
    mel, _ = speech64
    out = {}
    for block in BLOCKS:
        cfg = small_config()
        model = pruned(cfg, mel, SPARSITY, block, "gru+out")
        d = tmp_path_factory.mktemp(f"sparse-{block}")
        paths = {}
        for precision in ("fp32", "bf16", "int8"):
            paths[precision] = d / f"{precision}.wrnn"
            write_model_file(paths[precision], cfg, state_of(model), precision)
        out[block] = (model, paths)
    return out


@pytest.mark.parametrize("block", [(16, 1), (4, 4)])
def test_block_sparse_layout_matches_a_slow_reference(block: tuple[int, int]) -> None:
    r, c = block
    rng = np.random.default_rng(3)
    w = rng.normal(size=(48, 32)).astype(np.float32)
    keep = rng.random((48 // r, 32 // c)) < 0.3
    w *= np.kron(keep, np.ones((r, c), np.float32))
    w[0, 0] = 0.0  # a kept block with a zero inside stays kept whole
    index, blocks = block_sparse(w, block)
    assert blocks.shape == (keep.sum(), c, r)
    rebuilt = np.zeros_like(w)
    pos = nb = 0
    for stripe in range(48 // r):
        count = index[pos]
        cols = index[pos + 1 : pos + 1 + count]
        assert list(cols) == sorted(set(cols)) and all(col % c == 0 for col in cols)
        for col in cols:
            for j in range(c):
                for i in range(r):
                    rebuilt[stripe * r + i, col + j] = blocks[nb, j, i]
            nb += 1
        pos += 1 + count
    assert pos == len(index) and nb == len(blocks)
    np.testing.assert_array_equal(rebuilt, w)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("isa", ISAS)
def test_sparse_kernels_match_the_masked_torch_model(speech64, files, block: str, isa: str) -> None:
    mel, samples = speech64
    model, paths = files[block]
    voc = load_with_isa(paths["fp32"], isa, "always")
    for name in ("gru.weight_hh_l0", "O1.weight", "O3.weight"):
        lay = voc.layout[name]
        assert lay["kind"] == "sparse" and lay["block"] == block
        assert abs(lay["density"] - (1 - SPARSITY)) < 0.02
    assert voc.layout["O2.weight"]["kind"] == "dense"
    assert tuple(voc.layout) == PER_SAMPLE  # the engine's per-sample matrices are export's, in order
    ref = torch_teacher_forced(model, mel, samples)
    got = voc.teacher_forced(mel, samples)
    for g, r, tol in zip(got, ref, (FP32_LOGIT_ATOL, FP32_LOGIT_ATOL, FP32_STATE_ATOL), strict=True):
        assert np.abs(g - r).max() < tol
    assert np.abs(ref[0]).max() > 3.0


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("block", BLOCKS)
def test_simd_sparse_kernels_match_the_scalar_ones_and_the_dense_layout(
    speech64, files, block: str, precision: str
) -> None:
    mel, samples = speech64
    _, paths = files[block]
    mel, samples = mel[:, :20], samples[: 20 * 200]
    scalar_voc = load_with_isa(paths[precision], "scalar", "always")
    # pruning leaves -0.0, whose bf16 bits are not zero: still a zero for the layout
    assert abs(scalar_voc.layout["gru.weight_hh_l0"]["density"] - (1 - SPARSITY)) < 0.02
    scalar = scalar_voc.teacher_forced(mel, samples)
    for isa in ISAS:
        got = load_with_isa(paths[precision], isa, "always").teacher_forced(mel, samples)
        for g, r in zip(got, scalar, strict=True):
            assert np.abs(g - r).max() < ISA_ATOL[precision], f"{isa} sparse differs from scalar sparse"
    dense = load_with_isa(paths[precision], "scalar", "never")
    assert dense.layout["gru.weight_hh_l0"]["kind"] == "dense"
    tol = LOSSY_ATOL.get(precision, 1e-4)
    for g, r in zip(dense.teacher_forced(mel, samples), scalar, strict=True):
        assert np.abs(g - r).max() < tol


def test_auto_keeps_sparse_only_below_the_break_even_density(speech64, tmp_path: Path) -> None:
    mel, _ = speech64
    kinds = {}
    for sparsity in (0.25, 0.9):
        cfg = small_config()
        model = pruned(cfg, mel, sparsity, "16x1", "gru")
        for precision in ("fp32", "int8"):
            path = tmp_path / f"{sparsity}-{precision}.wrnn"
            write_model_file(path, cfg, state_of(model), precision)
            kinds[sparsity, precision] = NativeVocoder.load(path).layout["gru.weight_hh_l0"]["kind"]
    assert kinds == {
        (0.25, "fp32"): "dense",
        (0.25, "int8"): "dense",
        (0.9, "fp32"): "sparse",
        (0.9, "int8"): "sparse",
    }


def test_blocks_without_sparse_kernels_export_dense(speech64, tmp_path: Path) -> None:
    mel, _ = speech64
    cfg = small_config()
    model = pruned(cfg, mel, SPARSITY, "1x1", "gru")
    path = tmp_path / "m.wrnn"
    write_model_file(path, cfg, state_of(model), "fp32")
    data = path.read_bytes()
    assert b"gru.weight_hh_l0.blocks" not in data
    assert NativeVocoder.load(path, sparse="always").layout["gru.weight_hh_l0"]["kind"] == "dense"


@pytest.mark.parametrize("block", BLOCKS)
def test_sparse_files_are_smaller_than_the_dense_file_of_the_same_model(
    files, tmp_path: Path, block: str
) -> None:
    """Against the dense export of the very same weights: at 90 % sparsity the pruned
    matrices (W_hh and O1, O3) must shed at least 80 % of 90 % of their bytes (the block
    index costs the rest)."""
    model, paths = files[block]
    pruned_weights = 3 * 64 * 64 + 2 * 32 * 32
    sizes = {p: paths[p].stat().st_size for p in paths}
    assert sizes["fp32"] > sizes["bf16"] > sizes["int8"]
    for precision, width in (("fp32", 4), ("bf16", 2), ("int8", 1)):
        dense = tmp_path / f"dense-{precision}.wrnn"
        write_model_file(dense, small_config(), state_of(model), precision)
        saved = dense.stat().st_size - sizes[precision]
        assert saved >= 0.8 * SPARSITY * pruned_weights * width, (precision, saved)


def _index_offset(d: bytes) -> int:
    return struct.unpack_from("<Q", d, tensor_entry(d, "gru.weight_hh_l0.index") + 88)[0]


def _blocks_entry(d: bytes) -> int:
    return tensor_entry(d, "gru.weight_hh_l0.blocks")


SPARSE_CASES = {
    "block shape": (
        lambda d: patch(d, _blocks_entry(d) + 76, "<2I", 2, 8),
        ["blocks must be 16x1 or 4x4, not 8x2"],
    ),
    "block count": (
        lambda d: patch(d, _index_offset(d), "<i", 1000),
        ["stripe 0 has a bad block count 1000"],
    ),
    "negative count": (lambda d: patch(d, _index_offset(d), "<i", -1), ["bad block count -1"]),
    "column range": (
        lambda d: patch(d, _index_offset(d) + 4, "<i", 64),
        ["stripe 0 has a bad block column 64"],
    ),
    "column order": (
        lambda d: patch(d, _index_offset(d) + 4, "<2i", 16, 16),
        ["stripe 0 has a bad block column 16"],
    ),
    "index dtype": (
        lambda d: patch(d, tensor_entry(d, "gru.weight_hh_l0.index") + 64, "<I", 1),
        ["gru.weight_hh_l0.index has dtype f32, expected i32"],
    ),
    "index length": (
        lambda d: patch(d, tensor_entry(d, "gru.weight_hh_l0.index") + 72, "<I", 3),
        ["gru.weight_hh_l0.index has shape (3,)"],
    ),
}


@pytest.mark.parametrize("case", SPARSE_CASES)
def test_damaged_sparse_tensors_are_rejected(files, tmp_path: Path, case: str) -> None:
    _, paths = files["4x4"]
    good = paths["fp32"].read_bytes()
    damage, needles = SPARSE_CASES[case]
    rejects(tmp_path, damage(good), *needles)
