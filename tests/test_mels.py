"""Mels from other pipelines (`vocoder.mels`): every layout, scale and container reads to
the model's own mel and vocodes to the same audio, and the convention check fires on
log10, dB and normalised mels of real speech while staying quiet on real ln mels."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import CORPUS, ROOT, run_cli
from vocoder.audio import load_audio, log_mel
from vocoder.errors import VocoderError
from vocoder.mels import MelInput, convention_warning, read_mel
from vocoder.native import NativeVocoder

MODEL = ROOT / "models" / "allison-16k" / "model-fp32.wrnn"
# Real speech the model was not trained on (its test split) and some it was.
UTTERANCES = [
    "AL-conf-errormenu",
    "AL-activated",
    "AL-agent-loggedoff",
    "AL-call-waiting",
    "AL-call-forwarding",
    "AL-astcc-followed-by-the-pound-key",
]


@pytest.fixture(scope="module")
def model() -> NativeVocoder:
    return NativeVocoder.load(MODEL)


@pytest.fixture(scope="module")
def mels(model: NativeVocoder) -> dict[str, np.ndarray]:
    a = model.cfg.audio
    return {u: log_mel(load_audio(CORPUS / "wavs" / f"{u}.flac", a.sample_rate), a) for u in UTTERANCES}


def variants(mel: np.ndarray) -> dict[str, tuple[np.ndarray, MelInput]]:
    """The same mel as other pipelines write it, with the flags that read it back."""
    m64 = mel.astype(np.float64)
    return {
        "ln (T, n_mels)": (mel.T, MelInput(layout="auto")),
        "ln (1, n_mels, T)": (mel[None], MelInput()),
        "ln (T, n_mels), explicit": (mel.T, MelInput(layout="t-nm")),
        "log10": (m64 / math.log(10.0), MelInput(scale="log10")),
        "db": (m64 * 20.0 / math.log(10.0), MelInput(scale="db")),
        "linear (1, T, n_mels)": (np.exp(m64).T[None], MelInput(scale="linear")),
    }


def test_every_layout_and_scale_reads_back_to_the_native_mel(
    model: NativeVocoder, mels: dict[str, np.ndarray], tmp_path: Path
) -> None:
    a = model.cfg.audio
    mel = mels["AL-conf-errormenu"]
    assert mel.min() >= math.log(a.log_floor) - 1e-6  # the linear round trip stays above the floor
    for name, (array, how) in variants(mel).items():
        for suffix in (".npy", ".npz", ".pt"):
            path = tmp_path / f"m{suffix}"
            if suffix == ".npy":
                np.save(path, array)
            elif suffix == ".npz":
                np.savez(path, mel=array)
            else:
                torch.save(torch.from_numpy(np.ascontiguousarray(array)), path)
            got, _ = read_mel(path, a.n_mels, a.log_floor, 10_000, how)
            assert got.dtype == np.float32 and got.shape == mel.shape, (name, suffix)
            assert np.array_equal(got, mel), (name, suffix, np.abs(got - mel).max())


def test_other_layouts_and_scales_vocode_to_the_same_audio(
    mels: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """Through the CLI: the native form and each other form, same seed, same samples."""
    mel = mels["AL-conf-errormenu"][:, :60]
    np.save(tmp_path / "native.npy", mel)
    r = run_cli("synthesize", MODEL, tmp_path / "native.npy", "-o", tmp_path / "out-native")
    assert r.exit_code == 0, r.output
    reference, _ = sf.read(tmp_path / "out-native" / "native.wav", dtype="int16")
    flags = {"t-nm": ["--mel-layout", "t-nm"], "log10": ["--mel-scale", "log10"], "db": ["--mel-scale", "db"]}
    arrays = {
        "t-nm": mel.T,
        "log10": mel.astype(np.float64) / math.log(10.0),
        "db": mel.astype(np.float64) * 20.0 / math.log(10.0),
    }
    for name, array in arrays.items():
        np.savez(tmp_path / f"{name}.npz", array)
        out = tmp_path / f"out-{name}"
        r = run_cli("synthesize", MODEL, tmp_path / f"{name}.npz", "-o", out, *flags[name])
        assert r.exit_code == 0, (name, r.output)
        audio, _ = sf.read(out / f"{name}.wav", dtype="int16")
        assert np.array_equal(audio, reference), name


def test_layout_errors_name_the_file_and_the_flag(tmp_path: Path) -> None:
    square = tmp_path / "square.npy"
    values = np.arange(80 * 80, dtype=np.float32).reshape(80, 80)
    np.save(square, values)
    mel, _ = read_mel(square, 80, 1e-5, 1000, MelInput())  # read as the model's own layout
    assert np.array_equal(mel, values)
    mel, _ = read_mel(square, 80, 1e-5, 1000, MelInput(layout="t-nm"))
    assert np.array_equal(mel, values.T)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((60, 70), np.float32))
    with pytest.raises(VocoderError, match=r"wrong\.npy.*no axis of the model's n_mels=80"):
        read_mel(wrong, 80, 1e-5, 1000, MelInput())
    batch = tmp_path / "batch.npy"
    np.save(batch, np.zeros((2, 80, 10), np.float32))
    with pytest.raises(VocoderError, match=r"batch\.npy.*batch axis of 1"):
        read_mel(batch, 80, 1e-5, 1000, MelInput())
    with pytest.raises(VocoderError, match=r"wrong\.npy.*transposed.*--mel-layout"):
        read_mel(wrong, 70, 1e-5, 1000, MelInput(layout="nm-t"))


def test_containers_hold_one_array_and_respect_the_length_limit(tmp_path: Path) -> None:
    two = tmp_path / "two.npz"
    np.savez(two, a=np.zeros((80, 5), np.float32), b=np.zeros((80, 5), np.float32))
    with pytest.raises(VocoderError, match=r"two\.npz.*exactly one array, it holds 2"):
        read_mel(two, 80, 1e-5, 1000, MelInput())
    long = tmp_path / "long.npz"
    np.savez(long, np.zeros((80, 500), np.float32))
    with pytest.raises(VocoderError, match=r"long\.npz.*over the input length limit"):
        read_mel(long, 80, 1e-5, 100, MelInput())
    bundle = tmp_path / "dict.pt"
    torch.save({"mel": torch.zeros(80, 5)}, bundle)
    with pytest.raises(VocoderError, match=r"dict\.pt.*one tensor, it holds a dict"):
        read_mel(bundle, 80, 1e-5, 1000, MelInput())
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(VocoderError, match=r"garbage\.npz: cannot read mel \.npz"):
        read_mel(garbage, 80, 1e-5, 1000, MelInput())


def test_a_pt_mel_without_torch_says_what_to_install(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save(torch.zeros(80, 5), path)
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from pathlib import Path\n"
        "from vocoder.errors import VocoderError\n"
        "from vocoder.mels import MelInput, read_mel\n"
        "try:\n"
        f"    read_mel(Path({str(path)!r}), 80, 1e-5, 1000, MelInput())\n"
        "except VocoderError as e:\n"
        "    print(e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "m.pt: reading .pt mels needs torch" in proc.stdout and "[train]" in proc.stdout


def test_the_check_is_quiet_on_real_ln_mels_and_names_other_conventions(
    model: NativeVocoder, mels: dict[str, np.ndarray]
) -> None:
    mean, std = model.mel_stats
    floor = model.cfg.audio.log_floor
    for uid, mel in mels.items():
        m64 = mel.astype(np.float64)
        assert convention_warning(mel, "ln", mean, std, floor, uid) is None, uid
        log10 = convention_warning(m64 / math.log(10.0), "ln", mean, std, floor, uid)
        assert log10 is not None and log10.startswith(uid) and "--mel-scale log10" in log10, log10
        db = convention_warning(m64 * 20 / math.log(10.0), "ln", mean, std, floor, uid)
        assert db is not None and "--mel-scale db" in db, db
        normalised = (m64 - mean[:, None]) / std[:, None]
        note = convention_warning(normalised, "ln", mean, std, floor, uid)
        assert note is not None and "normalised" in note, note
        other = (m64 - m64.mean(axis=1, keepdims=True)) / m64.std(axis=1, keepdims=True)
        note = convention_warning(other, "ln", mean, std, floor, uid)  # normalised with its own statistics
        assert note is not None and "normalised" in note, note
        # read as what they are, they pass
        assert convention_warning(m64 / math.log(10.0), "log10", mean, std, floor, uid) is None, uid
        assert convention_warning(np.exp(m64), "linear", mean, std, floor, uid) is None, uid


def test_a_square_mel_is_read_as_n_mels_by_t_and_a_transposed_one_is_named(
    model: NativeVocoder, mels: dict[str, np.ndarray]
) -> None:
    """One second of 16 kHz speech is 80 frames: (80, 80). Read as (n_mels, T), a real mel
    passes the check; the same mel transposed gets a warning naming --mel-layout t-nm."""
    mean, std = model.mel_stats
    floor = model.cfg.audio.log_floor
    for uid, mel in mels.items():
        square = mel[:, :80]
        assert convention_warning(square, "ln", mean, std, floor, uid) is None, uid
        note = convention_warning(square.T, "ln", mean, std, floor, uid)
        assert note is not None and "--mel-layout t-nm" in note, note


def test_strict_turns_the_warning_into_that_file_s_error(mels: dict[str, np.ndarray], tmp_path: Path) -> None:
    mel = mels["AL-activated"]
    np.save(tmp_path / "good.npy", mel)
    np.save(tmp_path / "log10.npy", mel / np.float32(math.log(10.0)))
    r = run_cli("synthesize", MODEL, tmp_path / "good.npy", tmp_path / "log10.npy", "-o", tmp_path / "a")
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "log10.npy" in warnings[0] and "--mel-scale log10" in warnings[0], r.output
    assert (tmp_path / "a" / "log10.wav").exists()
    r = run_cli(
        "synthesize", MODEL, tmp_path / "good.npy", tmp_path / "log10.npy", "-o", tmp_path / "b", "--strict"
    )
    assert r.exit_code == 1, r.output
    failed = [line for line in r.output.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "log10.npy" in failed[0] and "--strict" in failed[0], r.output
    assert (tmp_path / "b" / "good.wav").exists() and not (tmp_path / "b" / "log10.wav").exists()
