"""The Python API (`vocoder.load_vocoder`): torch-free, the same samples as the CLI, the
mel adapters and the convention check; and the README's TTS-server example, run as is."""

from __future__ import annotations

import io
import math
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import CORPUS, ROOT, run_cli
from vocoder import load_vocoder
from vocoder.api import MelConventionWarning
from vocoder.audio import load_audio, log_mel
from vocoder.errors import VocoderError

MODEL = ROOT / "models" / "allison-16k" / "model-int8.wrnn"
BLOCK_TORCH = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ImportError('torch is blocked in this test')\n"
    "sys.meta_path.insert(0, Block())\n"
)


@pytest.fixture(scope="module")
def mel() -> np.ndarray:
    v = load_vocoder(MODEL)
    a = v.config.audio
    return log_mel(load_audio(CORPUS / "wavs" / "AL-conf-errormenu.flac", a.sample_rate), a)[:, :40]


def _cli_audio(mel: np.ndarray, tmp_path: Path) -> np.ndarray:
    np.save(tmp_path / "m.npy", mel)
    assert run_cli("synthesize", MODEL, tmp_path / "m.npy", "-o", tmp_path / "cli").exit_code == 0
    return sf.read(tmp_path / "cli" / "m.wav", dtype="int16")[0]


def test_the_api_gives_the_cli_s_samples_in_any_layout_and_scale(mel: np.ndarray, tmp_path: Path) -> None:
    v = load_vocoder(MODEL, threads=1)
    assert v.sample_rate == 16000 and v.hop_length == 200 and v.config.model.hidden_size == 128
    expected = _cli_audio(mel, tmp_path)
    assert np.array_equal(v.synthesize(mel, seed=0), expected)
    assert np.array_equal(v.synthesize(mel.T[None], seed=0), expected)
    assert np.array_equal(v.synthesize(mel.astype(np.float64) / math.log(10.0), scale="log10"), expected)
    assert not np.array_equal(v.synthesize(mel, seed=1), expected)


def test_the_api_warns_on_another_convention_and_raises_on_bad_input(mel: np.ndarray, tmp_path: Path) -> None:
    v = load_vocoder(MODEL)
    with pytest.warns(MelConventionWarning, match="--mel-scale log10"):
        v.synthesize(mel / np.float32(math.log(10.0)))
    with pytest.raises(VocoderError, match="--strict"):
        v.synthesize(mel / np.float32(math.log(10.0)), strict=True)
    with pytest.raises(VocoderError, match="NaN"):
        v.synthesize(np.full_like(mel, np.nan))
    missing = tmp_path / "absent.wrnn"
    with pytest.raises(VocoderError, match=r"absent\.wrnn"):
        load_vocoder(missing)


def test_the_readme_server_runs_without_torch_and_answers_with_the_cli_s_audio(
    mel: np.ndarray, tmp_path: Path
) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Use from Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert '"127.0.0.1", 8000' in code
    code = code.replace('"127.0.0.1", 8000', f'"127.0.0.1", {port}')
    server = subprocess.Popen(
        [sys.executable, "-c", BLOCK_TORCH + code], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        body = io.BytesIO()
        np.save(body, mel)
        for _ in range(200):  # until it listens
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body.getvalue())
                with urllib.request.urlopen(request, timeout=30) as reply:
                    assert reply.headers["Content-Type"] == "audio/wav"
                    audio, rate = sf.read(io.BytesIO(reply.read()), dtype="int16")
                break
            except (ConnectionRefusedError, urllib.error.URLError):
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                time.sleep(0.1)
        else:
            pytest.fail("the example server never answered")
    finally:
        server.kill()
        server.wait()
    assert rate == 16000 and np.array_equal(audio, _cli_audio(mel, tmp_path))
