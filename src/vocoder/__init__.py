"""wavernn-vocoder: WaveRNN (Kalchbrenner et al., 2018) as a command-line vocoder toolkit.

``from vocoder import load_vocoder`` is the Python API (``vocoder.api``); it is imported on
first use, so ``import vocoder`` stays light for the command line.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "load_vocoder":
        from vocoder.api import load_vocoder

        return load_vocoder
    raise AttributeError(f"module 'vocoder' has no attribute {name!r}")
