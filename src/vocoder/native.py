"""The native engine behind the `synthesize` interface: a torch-free wrapper.

``vocoder._engine`` (C++, built with the package) does the work; this module turns its
errors into ``VocoderError`` and rebuilds the model's ``Config`` from the file's JSON
header, so a process that serves a ``.wrnn`` file never imports torch.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np

from vocoder import config as config_mod
from vocoder import fold
from vocoder.config import Config
from vocoder.errors import VocoderError
from vocoder.kinds import kind_of

MODEL_EXT = ".wrnn"


def _engine_module() -> ModuleType:
    try:
        from vocoder import _engine
    except ImportError as e:
        raise VocoderError(f"the native engine is not built ({e}); reinstall with `make install`") from None
    return _engine


# Chunks a stream may hold made and unread: enough that the engine need not wait for a
# reader that keeps up, few enough that a slow one bounds the audio piled up.
QUEUED_CHUNKS = 2


class NativeVocoder:
    """A loaded model file; ``generate`` runs the C++ sampler (sequential, or the
    staggered subscale schedule when the file holds a subscale model)."""

    def __init__(
        self, path: Path, engine: object, cfg: Config, temperature: tuple[float, float] = (1.0, 1.0)
    ) -> None:
        """``temperature``: the (coarse, fine) sampling temperatures export baked into the
        output layers, as the header records them (for display; the weights apply them)."""
        self.path = path
        self.engine = engine
        self.cfg = cfg
        self.temperature = temperature
        self.last_stream_samples = 0  # how many samples the last `stream` had the engine make
        mean, std = engine.mel_stats
        self.mel_stats = (np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64))

    @classmethod
    def load(cls, path: Path, threads: int = 0, sparse: str = "auto") -> NativeVocoder:
        """Open and validate a model file. ``threads`` = 2 splits each step between two
        threads (sequential: coarse and fine halves; fold mode and subscale: halves of the
        step's columns; same samples); 0 or 1 means one thread, so
        several ``--jobs`` processes do not oversubscribe the cores by default.
        ``sparse``: block-sparse matrices run on the sparse kernels when sparse enough
        to win ("auto"), always, or are expanded to dense ("never")."""
        mod = _engine_module()
        path = Path(path)
        if path.is_dir():
            raise VocoderError(f"{path}: is a directory; the native engine reads one {MODEL_EXT} model file")
        try:
            engine = mod.Engine(str(path), max(1, threads), sparse)
        except mod.EngineError as e:
            hint = ""
            if "bad magic" in str(e) and path.suffix != MODEL_EXT:
                hint = " (a checkpoint? use --engine torch, or convert it with `vocoder export`)"
            raise VocoderError(f"{e}{hint}") from None
        try:
            header = json.loads(engine.header_json)
            cfg_dict = header["config"]
        except (ValueError, KeyError, TypeError):
            raise VocoderError(f"{path}: model file header is not valid JSON with a 'config' entry") from None
        cfg = config_mod.from_dict(cfg_dict, f"{path} (stored config)")
        stored_t = header.get("temperature", {"coarse": 1.0, "fine": 1.0})
        try:
            temperature = (float(stored_t["coarse"]), float(stored_t["fine"]))
        except (KeyError, TypeError, ValueError):
            raise VocoderError(f"{path}: model file header has a malformed 'temperature' entry") from None
        dims = engine.dims
        batch, past, horizon, context = kind_of(cfg).subscale_dims(cfg)
        stored = {
            "subscale_batch": batch,
            "subscale_past": past,
            "subscale_horizon": horizon,
            "subscale_context": context,
            "hidden_size": cfg.model.hidden_size,
            "cond_channels": cfg.model.cond_channels,
            "cond_blocks": cfg.model.cond_blocks,
            "n_mels": cfg.audio.n_mels,
            "hop_length": cfg.audio.hop_length,
            "sample_rate": cfg.audio.sample_rate,
        }
        for key, value in stored.items():
            if dims[key] != value:
                raise VocoderError(
                    f"{path}: header {key}={dims[key]} disagrees with its stored config ({value})"
                )
        return cls(path, engine, cfg, temperature)

    @property
    def isa(self) -> str:
        return self.engine.isa

    @property
    def threads(self) -> int:
        return self.engine.threads

    @property
    def precision(self) -> str:
        return self.engine.precision

    @property
    def layout(self) -> dict[str, dict[str, object]]:
        """Per matrix: kind (dense/sparse), block (e.g. 16x1), density and precision as loaded."""
        return self.engine.layout

    def describe(self) -> list[str]:
        """What `vocoder info` says of a model file: precision, size, kernels, temperature,
        and each block-sparse matrix."""
        cfg, (coarse_t, fine_t) = self.cfg, self.temperature
        lines = [
            f"{self.path}: native model file, {self.precision} weights, N={cfg.model.hidden_size}, "
            f"{cfg.audio.sample_rate} Hz, kernels {self.isa}, sampling temperature {coarse_t:g} (coarse) "
            f"{fine_t:g} (fine)"
        ]
        for name, lay in self.layout.items():
            if lay["kind"] == "sparse":
                lines.append(f"  {name}: {lay['block']} block-sparse, density {lay['density']:.4f}")
        return lines

    def profile(self, run: Callable[[], object]) -> dict[str, float]:
        """Each stage's share of the wall time of ``run`` (calls on this vocoder): the
        engine times the stages of every step (conditioning, gate inputs, context, W_hh,
        GRU, O1..O4, draws, wait, other) on its calling thread, so with two threads the
        time that thread waits for the other shows as "wait". The shares sum to 1."""
        self.engine.set_profiling(True)
        try:
            run()
            seconds = dict(self.engine.profile)
        finally:
            self.engine.set_profiling(False)
        total = seconds.pop("total")
        if total <= 0:
            raise VocoderError(f"{self.path}: nothing ran while profiling")
        return {stage: t / total for stage, t in seconds.items()}

    def _call(self, name: str, *args: object) -> object:
        mod = _engine_module()
        try:
            return getattr(self.engine, name)(*args)
        except mod.EngineError as e:
            raise VocoderError(f"{self.path}: {e}") from None

    def generate(self, mel: np.ndarray, seed: int) -> np.ndarray:
        """mel (n_mels, T) -> T * hop int16 samples, with the engine's own seeded RNG."""
        return self._call("generate", np.asarray(mel, np.float32), int(seed) & 0xFFFFFFFFFFFFFFFF)

    def stream(self, mel: np.ndarray, seed: int, chunk_samples: int = 1024) -> Iterator[np.ndarray]:
        """``generate``'s samples in chunks of ``chunk_samples`` (the last may be shorter),
        each yielded as soon as the engine has made it: the engine runs on a thread of its
        own and hands chunks over a queue of ``QUEUED_CHUNKS``, so a slow reader (a network
        client) holds the engine back instead of piling up audio. Sequential models only.
        Stopping early (closing the generator, as a server does when its client leaves)
        stops the engine at its next chunk and waits for it: an engine thread still
        running when the interpreter exits would be killed inside the engine."""
        if chunk_samples < 1:
            raise VocoderError(f"{self.path}: chunk_samples must be >= 1")
        mel = np.asarray(mel, np.float32)
        chunks: queue.Queue[np.ndarray | BaseException | None] = queue.Queue(QUEUED_CHUNKS)
        closed = threading.Event()

        def hand_over(chunk: np.ndarray) -> bool:
            """The engine's sink: False, once the reader has gone, stops the engine."""
            if not closed.is_set():
                chunks.put(chunk)
            return not closed.is_set()

        def run() -> None:
            try:
                seed64 = int(seed) & 0xFFFFFFFFFFFFFFFF
                self.last_stream_samples = self._call(
                    "generate_stream", mel, seed64, chunk_samples, hand_over
                )
                chunks.put(None)
            except BaseException as e:  # handed to the reader, which raises it
                chunks.put(e)

        engine = threading.Thread(target=run, name="stream", daemon=True)
        engine.start()
        try:
            while (item := chunks.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            closed.set()
            while engine.is_alive():  # free an engine blocked on the full queue
                with contextlib.suppress(queue.Empty):
                    chunks.get(timeout=0.01)
            engine.join()

    def generate_with_draws(self, mel: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """Test hook: sample with caller-given uniforms (L, 2), as ``model.generate(draws=...)``."""
        return self._call("generate_with_draws", np.asarray(mel, np.float32), np.asarray(draws, np.float64))

    def teacher_forced(
        self, mel: np.ndarray, samples: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Test hook: per-step coarse/fine logits (L, 256) and states (L, N) given the true samples."""
        return self._call("teacher_forced", np.asarray(mel, np.float32), np.asarray(samples, np.int16))

    def generate_fold(self, mel: np.ndarray, seed: int, target: int, overlap: int) -> np.ndarray:
        """Fold mode (``vocoder.fold``): the utterance's overlapping segments generated as
        one batch by the engine (each weight read once per step for all segments), then
        cross-faded into T * hop int16 samples."""
        mel = np.asarray(mel, np.float32)
        length = mel.shape[1] * self.cfg.audio.hop_length if mel.ndim == 2 else 0
        pos = fold.positions(length, target, overlap)
        segments = self._call("generate_batch", mel, pos, int(seed) & 0xFFFFFFFFFFFFFFFF)
        return fold.unfold(segments, length, target, overlap)

    def generate_batch_with_draws(
        self, mel: np.ndarray, positions: np.ndarray, draws: np.ndarray
    ) -> np.ndarray:
        """Test hook: (B, S) sequences at the given utterance positions with caller-given
        uniforms (B, S, 2), as ``sampler.generate_batch``."""
        return self._call(
            "generate_batch_with_draws",
            np.asarray(mel, np.float32),
            np.asarray(positions, np.int32),
            np.asarray(draws, np.float64),
        )

    def teacher_forced_batch(
        self, mel: np.ndarray, positions: np.ndarray, samples: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Test hook: per-step logits (B, S, 256) and states (B, S, N) of a teacher-forced batch."""
        return self._call(
            "teacher_forced_batch",
            np.asarray(mel, np.float32),
            np.asarray(positions, np.int32),
            np.asarray(samples, np.int16),
        )
