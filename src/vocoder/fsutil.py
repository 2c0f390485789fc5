"""Atomic file output: a reader (or a resumed job) never sees a half-written file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vocoder.errors import VocoderError


def check_output_file(*paths: str | Path | None) -> None:
    """Refuse, before any work is done, output files that could not be written (None:
    an output not asked for): an existing directory, or one whose parent's parent is
    missing. ``atomic_path`` makes the output's own parent and nothing above it, so a
    typo in a path is an error rather than a tree of new directories."""
    for path in paths:
        if path is not None:
            _check_one(Path(path))


def _check_one(path: Path) -> None:
    if path.is_dir():
        raise VocoderError(f"{path}: is a directory; give a file name")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise VocoderError(f"{path}: {parent} is not a directory")
    if not parent.exists() and not parent.parent.is_dir():
        raise VocoderError(f"{path}: {parent.parent} does not exist")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    The temp file lives in the same directory so the final ``os.replace`` is atomic on
    POSIX; on any exception it is removed and ``path`` is left untouched.
    """
    path = Path(path)
    check_output_file(path)
    path.parent.mkdir(exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temps(directory: Path, name_pattern: str) -> None:
    """Delete the temp files a killed writer left for outputs named like ``name_pattern``
    (a glob of the final file name) in ``directory``: ``atomic_path`` cleans up on any
    exception, but not after a kill -9."""
    for tmp in directory.glob(f".{name_pattern}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
