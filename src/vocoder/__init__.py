"""wavernn-vocoder: WaveRNN (Kalchbrenner et al., 2018) as a command-line vocoder toolkit.

``from vocoder import load_vocoder`` is the Python API (``vocoder.api``); it is imported on
first use, so ``import vocoder`` stays light for the command line.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:  # one source of truth: pyproject.toml, as installed
    __version__ = version("wavernn-vocoder")
except PackageNotFoundError:  # a source tree on sys.path without `pip install`
    __version__ = "unknown"


def __getattr__(name: str) -> Any:
    if name == "load_vocoder":
        from vocoder.api import load_vocoder

        return load_vocoder
    raise AttributeError(f"module 'vocoder' has no attribute {name!r}")
