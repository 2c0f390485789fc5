"""The C++ loader treats model files as untrusted: each kind of damage is one readable
error naming the file, raised as VocoderError (never a crash)."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from native_util import (
    FP32_LOGIT_ATOL,
    patch,
    random_model,
    rejects,
    small_config,
    speech,
    state_of,
    tensor_entry,
    torch_teacher_forced,
    with_crc,
)
from vocoder.cli import app
from vocoder.errors import VocoderError
from vocoder.export import to_int8_rows, with_temperature, write_model_file
from vocoder.native import NativeVocoder


def _model_bytes(tmp_path_factory: pytest.TempPathFactory, precision: str) -> bytes:
    """A valid small model file of the given precision, as bytes to damage."""
    cfg = small_config(hidden=32, channels=8, blocks=1)
    mel, _ = speech(cfg)
    path = tmp_path_factory.mktemp("loader") / f"good-{precision}.wrnn"
    write_model_file(path, cfg, state_of(random_model(cfg, mel)), precision)
    return path.read_bytes()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _model_bytes(tmp_path_factory, "fp32")


def entry_field(data: bytes, name: str, field: int) -> int:
    return tensor_entry(data, name) + field


def tensor_data_offset(data: bytes, name: str) -> int:
    return struct.unpack_from("<Q", data, tensor_entry(data, name) + 88)[0]


def test_the_good_file_loads(good: bytes, tmp_path: Path) -> None:
    path = tmp_path / "ok.wrnn"
    path.write_bytes(good)
    voc = NativeVocoder.load(path)
    assert voc.cfg.model.hidden_size == 32 and voc.cfg.audio.sample_rate == 16000
    assert voc.generate(np.zeros((80, 2), np.float32), 0).shape == (400,)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_older_format_versions_still_load(good: bytes, tmp_path: Path, version: int) -> None:
    """A dense sequential fp32 model is laid out the same in versions 1 to 4."""
    path = tmp_path / "old.wrnn"
    path.write_bytes(patch(good, 8, "<I", version))
    mel = np.random.default_rng(0).normal(-5, 2, (80, 2)).astype(np.float32)
    (tmp_path / "new.wrnn").write_bytes(good)
    expected = NativeVocoder.load(tmp_path / "new.wrnn").generate(mel, 1)
    np.testing.assert_array_equal(NativeVocoder.load(path).generate(mel, 1), expected)


def _mask_violation(d: bytes) -> bytes:
    off = tensor_data_offset(d, "gru.weight_ih_l0")  # row 0, column 2: a coarse row
    return patch(d, off + 2 * 4, "<f", 0.5)


def _nan(d: bytes) -> bytes:
    return patch(d, tensor_data_offset(d, "O2.bias"), "<f", math.nan)


def _duplicate(d: bytes) -> bytes:
    src = tensor_entry(d, "O4.bias")
    dst = tensor_entry(d, "O3.bias")
    buf = bytearray(d)
    buf[dst : dst + 64] = buf[src : src + 64]
    return with_crc(bytes(buf))


CASES = {
    "empty": (lambda d: b"", ["bad magic"]),
    "magic": (lambda d: b"GGUF" + d[4:], ["bad magic"]),
    "version": (lambda d: patch(d, 8, "<I", 7), ["format version 7 is not supported"]),
    "truncated": (lambda d: d[: len(d) // 2], ["truncated"]),
    "header only": (lambda d: d[:60], ["truncated"]),
    "trailing": (lambda d: d + b"\0" * 16, ["trailing bytes"]),
    "checksum": (lambda d: patch(d, len(d) // 2, "<B", d[len(d) // 2] ^ 0x40, fix_crc=False), ["checksum"]),
    "json length": (lambda d: patch(d, 24, "<I", 0xFFFFFFF0), ["JSON header length out of range"]),
    "tensor count": (lambda d: patch(d, 28, "<I", 0), ["bad tensor count"]),
    "table offset": (lambda d: patch(d, 32, "<Q", 2**63), ["tensor table offset out of range"]),
    "data offset": (lambda d: patch(d, 40, "<Q", 3), ["tensor data offset out of range"]),
    "hidden size": (lambda d: patch(d, 48, "<I", 7), ["bad hidden size 7"]),
    "precision": (lambda d: patch(d, 72, "<I", 9), ["unknown precision code 9"]),
    "reserved": (lambda d: patch(d, 92, "<I", 1), ["reserved header bytes"]),
    "tensor offset": (
        lambda d: patch(d, entry_field(d, "O1.bias", 88), "<Q", len(d) - 64),
        ["tensor O1.bias: data offset", "out of range"],
    ),
    "misaligned": (
        lambda d: patch(d, entry_field(d, "O1.bias", 88), "<Q", tensor_data_offset(d, "O1.bias") + 4),
        ["tensor O1.bias: data offset"],
    ),
    "unknown dtype": (lambda d: patch(d, entry_field(d, "mel_std", 64), "<I", 9), ["unknown dtype code 9"]),
    "wrong dtype": (lambda d: patch(d, entry_field(d, "mel_std", 64), "<I", 2), ["mel_std has dtype bf16"]),
    "rank": (lambda d: patch(d, entry_field(d, "mel_std", 68), "<I", 5), ["bad rank 5"]),
    "shape": (
        lambda d: patch(d, entry_field(d, "O1.weight", 76), "<I", 8),
        ["O1.weight has shape (16, 8), the config needs (16, 16)"],
    ),
    "config shape": (lambda d: patch(d, 52, "<I", 9), ["has shape", "the config needs"]),
    "missing": (
        lambda d: patch(d, entry_field(d, "O4.bias", 0), "<8s", b"O4.biaz\0"),
        ["missing tensor O4.bias"],
    ),
    "duplicate": (_duplicate, ["appears twice"]),
    "name": (lambda d: patch(d, entry_field(d, "O4.bias", 0), "<2s", b"\x01\x02"), ["not printable"]),
    "unmasked": (_mask_violation, ["not masked"]),
    "non-finite": (_nan, ["O2.bias holds a non-finite value"]),
}


@pytest.mark.parametrize("case", CASES)
def test_damaged_files_are_rejected(good: bytes, tmp_path: Path, case: str) -> None:
    damage, needles = CASES[case]
    rejects(tmp_path, damage(good), *needles)


@pytest.fixture(scope="module")
def good_int8(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _model_bytes(tmp_path_factory, "int8")


def test_int8_weights_and_scales_are_checked(good_int8: bytes, tmp_path: Path) -> None:
    path = tmp_path / "ok.wrnn"
    path.write_bytes(good_int8)
    assert NativeVocoder.load(path).precision == "int8"
    w = tensor_data_offset(good_int8, "O1.weight")
    rejects(tmp_path, patch(good_int8, w, "<b", -128), "holds -128")
    s = tensor_data_offset(good_int8, "O1.weight.scale")
    rejects(tmp_path, patch(good_int8, s, "<f", 0.0), "O1.weight.scale must be positive")
    rejects(tmp_path, patch(good_int8, entry_field(good_int8, "O1.weight", 64), "<I", 4), "has dtype i32")


def test_a_matrix_may_be_stored_wider_than_the_file_but_not_narrower(
    good: bytes, good_int8: bytes, tmp_path: Path
) -> None:
    """Export keeps O2 in bf16 in an int8 file (export.KEPT_WIDER); the loader reads each
    per-sample matrix in its stored precision, which may be the file's or, from format
    version 4, a wider one, never a narrower one."""
    path = tmp_path / "ok.wrnn"
    path.write_bytes(good_int8)
    layout = NativeVocoder.load(path).layout
    assert layout["O2.weight"]["precision"] == "bf16"
    assert {layout[n]["precision"] for n in layout if n != "O2.weight"} == {"int8"}
    rejects(tmp_path, patch(good_int8, 8, "<I", 3), "O2.weight has dtype bf16, expected i8")
    # An fp32 file whose O1 claims int8 storage: narrower than the file, refused.
    narrower = patch(good, entry_field(good, "O1.weight", 64), "<I", 3)
    rejects(tmp_path, narrower, "has dtype i8, expected f32 or wider")


def test_header_json_must_hold_a_valid_config(good: bytes, tmp_path: Path) -> None:
    (json_len,) = struct.unpack_from("<I", good, 24)
    bad = bytearray(good)
    bad[96 : 96 + json_len] = b"x" * json_len
    rejects(tmp_path, with_crc(bytes(bad)), "not valid JSON")
    text = good[96 : 96 + json_len].replace(b'"hidden_size": 32', b'"hidden_size": 34')
    rejects(tmp_path, with_crc(good[:96] + text + good[96 + json_len :]), "hidden_size=32 disagrees")


def test_a_checkpoint_given_to_the_native_engine_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_00000010.pt"
    path.write_bytes(b"PK\x03\x04 not a model file")
    with pytest.raises(VocoderError, match=r"bad magic.*vocoder export"):
        NativeVocoder.load(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(VocoderError, match=r"nope\.wrnn: no such file$"):
        NativeVocoder.load(tmp_path / "nope.wrnn")
    with pytest.raises(VocoderError, match="is a directory"):
        NativeVocoder.load(tmp_path)


@pytest.mark.parametrize("name", ["model.wrnn", "checkpoint_00000001.pt"])
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path, name: str) -> None:
    """A FIFO would block a reader forever: the CLI must refuse it (in a subprocess with a
    deadline, so a regression fails instead of hanging the suite)."""
    fifo = tmp_path / name
    os.mkfifo(fifo)
    r = subprocess.run(
        [sys.executable, "-c", "from vocoder.cli import app; app()", "info", str(fifo)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{fifo}: not a regular file" in r.stdout + r.stderr


def test_a_huge_file_is_refused_from_its_first_bytes(good: bytes, tmp_path: Path) -> None:
    """3 GB (sparse on disk) behind a valid header whose size field says otherwise: the
    loader reads the header and stops, instead of reading 3 GB into memory first."""
    path = tmp_path / "huge.wrnn"
    with path.open("wb") as f:
        f.write(good[:96])
        f.truncate(3 << 30)
    code = (
        "import resource, sys\n"
        "from vocoder.native import NativeVocoder\n"
        "from vocoder.errors import VocoderError\n"
        "try:\n"
        "    NativeVocoder.load(sys.argv[1])\n"
        "except VocoderError as e:\n"
        "    print(e)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    message, peak_kib = r.stdout.strip().splitlines()
    assert f"{path}: trailing bytes after the model ({3 << 30} bytes, header says {len(good)})" == message
    assert int(peak_kib) < 1 << 20  # under 1 GiB: the 3 GB were never read


def test_a_temperature_divides_the_logits_and_is_recorded(tmp_path: Path) -> None:
    """softmax(l / T): the engine's teacher-forced logits of a file exported at T are the
    torch model's logits / T (int8: the same levels, scales / T), and info shows T."""
    cfg = small_config()
    mel, samples = speech(cfg)
    mel, samples = mel[:, :20], samples[: 20 * 200]
    model = random_model(cfg, mel)
    ref = torch_teacher_forced(model, mel, samples)
    plain, cool = tmp_path / "plain.wrnn", tmp_path / "cool.wrnn"
    write_model_file(plain, cfg, state_of(model), "fp32")
    write_model_file(cool, cfg, state_of(model), "fp32", temperature=(0.5, 0.8))
    coarse, fine, states = NativeVocoder.load(cool).teacher_forced(mel, samples)
    np.testing.assert_allclose(coarse, ref[0] / 0.5, atol=2 * FP32_LOGIT_ATOL / 0.5)
    np.testing.assert_allclose(fine, ref[1] / 0.8, atol=2 * FP32_LOGIT_ATOL / 0.8)
    np.testing.assert_array_equal(states, NativeVocoder.load(plain).teacher_forced(mel, samples)[2])
    assert NativeVocoder.load(cool).temperature == (0.5, 0.8)
    assert NativeVocoder.load(plain).temperature == (1.0, 1.0)
    levels, scale = to_int8_rows(state_of(model)["O2.weight"])
    cool_levels, cool_scale = to_int8_rows(with_temperature(state_of(model), 0.5, 1.0)["O2.weight"])
    np.testing.assert_array_equal(cool_levels, levels)
    np.testing.assert_allclose(cool_scale, scale / 0.5, rtol=1e-6)
    r = CliRunner().invoke(app, ["info", str(cool)])
    assert r.exit_code == 0 and "sampling temperature 0.5 (coarse) 0.8 (fine)" in r.output
    with pytest.raises(VocoderError, match=r"--temperature 0.0: a sampling temperature must be in \(0, 2\]"):
        write_model_file(tmp_path / "x.wrnn", cfg, state_of(model), "fp32", temperature=(0.0, 1.0))
