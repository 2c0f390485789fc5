"""`preprocess`: an LJSpeech-layout dataset -> log-mels, aligned int16 targets and splits.

Every utterance is processed independently (so ``--jobs`` processes share the work and
a rerun skips what is done), each output is written atomically, and a bad input file is
reported by name and skipped rather than stopping the whole job.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from vocoder import config as config_mod
from vocoder.audio import AUDIO_EXTS, features, float_to_int16, load_audio
from vocoder.config import AudioConfig, Config, DataConfig
from vocoder.data import feature_paths, read_features
from vocoder.errors import VocoderError
from vocoder.fsutil import atomic_path, write_text_atomic
from vocoder.mels import NATIVE, read_mel

# The largest amplitude a 16-bit target holds: 32767 / 32768.
FULL_SCALE = 32767 / 32768


@dataclass
class Item:
    uid: str
    path: Path | None


@dataclass
class Outcome:
    uid: str
    ok: bool
    message: str = ""
    seconds: float = 0.0
    skipped: bool = False


def read_metadata(data_dir: Path) -> tuple[list[Item], list[Outcome]]:
    """Parse ``metadata.csv`` (``id|text|normalized_text``) and locate each audio file.

    Only the ids matter to a vocoder, so the text is read tolerantly (a UTF-8 BOM is
    dropped, undecodable bytes replaced) and a bad line (an unusable or repeated id) is
    returned as a skipped outcome, not an abort.
    """
    meta = data_dir / "metadata.csv"
    if not data_dir.is_dir():
        raise VocoderError(f"{data_dir}: no such dataset directory")
    if not meta.is_file():
        raise VocoderError(f"{meta}: missing (expected LJSpeech layout: metadata.csv + wavs/)")
    try:
        lines = meta.read_bytes().decode("utf-8-sig", errors="replace").splitlines()
    except OSError as e:
        raise VocoderError(f"{meta}: cannot read ({e.strerror})") from None
    items: list[Item] = []
    bad: list[Outcome] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        uid = line.split("|", 1)[0].strip()
        where = f"metadata.csv line {number}"
        if not uid or "/" in uid or uid.startswith(".") or "\ufffd" in uid:
            bad.append(Outcome(f"line-{number}", False, f"{where}: invalid utterance id {uid!r}"))
            continue
        if uid in seen:
            bad.append(Outcome(uid, False, f"{where}: duplicate utterance id {uid!r} (the first is kept)"))
            continue
        seen.add(uid)
        path = next(
            (p for ext in AUDIO_EXTS if (p := data_dir / "wavs" / f"{uid}{ext}").is_file()),
            None,
        )
        items.append(Item(uid, path))
    if not items:
        raise VocoderError(f"{meta}: lists no usable utterance ({len(bad)} bad lines)")
    return items, bad


def finished_frames(features_dir: Path, uid: str, audio_cfg: AudioConfig) -> int | None:
    """Frames of an utterance a previous run finished, or None when its outputs are
    missing or damaged (unreadable, wrong dtype or shape, mel and target disagreeing):
    then it is computed again instead of being trusted."""
    try:
        mel, _ = read_features(features_dir, uid, audio_cfg.hop_length, audio_cfg.n_mels)
    except VocoderError:
        return None
    return mel.shape[1]


def process_item(
    item: Item,
    features_dir: Path,
    audio_cfg: AudioConfig,
    data_cfg: DataConfig,
    mels_from: Path | None = None,
) -> Outcome:
    """Compute and write one utterance's features; never raises for a bad input file.

    Audio whose peak exceeds full scale (float files can hold it) is scaled down to
    full scale, with a note: clipping only the 16-bit target would pair it with a mel of
    the unclipped signal. With ``mels_from`` the mel is ``<mels_from>/<id>.npy`` (an
    acoustic model's ground-truth-aligned prediction), which must have the frames this
    toolkit's own mel would have, len(audio) // hop.
    """
    mel_path, audio_path = feature_paths(features_dir, item.uid)
    if item.path is None:
        return Outcome(item.uid, False, f"wavs/{item.uid}.wav (or .flac): file not found")
    done = finished_frames(features_dir, item.uid, audio_cfg)
    if done is not None:
        return Outcome(
            item.uid, True, skipped=True, seconds=done * audio_cfg.hop_length / audio_cfg.sample_rate
        )
    try:
        y = load_audio(item.path, audio_cfg.sample_rate)
    except VocoderError as e:
        return Outcome(item.uid, False, str(e))
    seconds = len(y) / audio_cfg.sample_rate
    if seconds < data_cfg.min_seconds:
        return Outcome(
            item.uid,
            False,
            f"{item.path}: too short ({seconds:.2f} s < data.min_seconds {data_cfg.min_seconds})",
        )
    if float(np.max(np.abs(y))) <= data_cfg.silence_peak:
        return Outcome(
            item.uid, False, f"{item.path}: silent (peak <= data.silence_peak {data_cfg.silence_peak})"
        )
    note = ""
    peak = float(np.max(np.abs(y)))
    if peak > 1.0:
        y = y * (FULL_SCALE / peak)
        note = f"{item.path}: peak {peak:.3g} above full scale; scaled by {FULL_SCALE / peak:.4g}"
    try:
        mel, samples = (
            features(y, audio_cfg) if mels_from is None else gta_features(y, mels_from, item, audio_cfg)
        )
    except VocoderError as e:
        message = str(e)
        return Outcome(
            item.uid, False, message if message.startswith(str(mels_from)) else f"{item.path}: {e}"
        )
    # audio first, mel last: the mel's presence marks the item complete for a rerun
    with atomic_path(audio_path) as tmp, tmp.open("wb") as f:
        np.save(f, samples)
    with atomic_path(mel_path) as tmp, tmp.open("wb") as f:
        np.save(f, mel)
    return Outcome(item.uid, True, note, seconds=len(samples) / audio_cfg.sample_rate)


def split_ids(ids: list[str], data_cfg: DataConfig) -> dict[str, list[str]]:
    """Deterministic split by a hash of (seed, id): stable when items are added or removed.

    At least one utterance always stays in train; valid and test shrink if needed.
    """

    def key(uid: str) -> str:
        return hashlib.sha256(f"{data_cfg.split_seed}:{uid}".encode()).hexdigest()

    order = sorted(ids, key=key)
    n_test = min(data_cfg.test_count, max(len(order) - 2, 0))
    n_valid = min(data_cfg.valid_count, max(len(order) - 1 - n_test, 0))
    return {
        "test": sorted(order[:n_test]),
        "valid": sorted(order[n_test : n_test + n_valid]),
        "train": sorted(order[n_test + n_valid :]),
    }


def gta_features(
    y: np.ndarray, mels_from: Path, item: Item, cfg: AudioConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(the given mel, the int16 target of its frames) for GTA training, after checking
    that the mel has len(audio) // hop frames, the count the target is cut to."""
    path = mels_from / f"{item.uid}.npy"
    if not path.is_file():
        raise VocoderError(f"{path}: no GTA mel for this utterance")
    frames = len(y) // cfg.hop_length
    mel, _ = read_mel(path, cfg.n_mels, cfg.log_floor, 2 * frames + 16, NATIVE)
    if mel.shape[1] != frames:
        raise VocoderError(
            f"{path}: {mel.shape[1]} frames, but {item.path} has {len(y)} samples, so its mel has "
            f"len(audio) // hop = {frames} frames of {cfg.hop_length}"
        )
    return mel, float_to_int16(y[: frames * cfg.hop_length])


def _check_existing(features_dir: Path, cfg: Config) -> None:
    """A features dir made with other audio settings must not be silently mixed."""
    path = features_dir / "config.yaml"
    if not path.exists():
        return
    old = config_mod.from_dict(config_mod.read_yaml(path), str(path))
    if old.audio != cfg.audio:
        diff = [k for k, v in vars(cfg.audio).items() if getattr(old.audio, k) != v]
        raise VocoderError(
            f"{features_dir}: already holds features made with other audio settings "
            f"({', '.join('audio.' + k for k in diff)}); use a new directory"
        )


def summary(stats: dict, features_dir: Path) -> str:
    """The line `vocoder preprocess` ends with, from ``preprocess``'s counts."""
    return (
        f"preprocessed {stats['processed']} new, reused {stats['reused']}, skipped {stats['skipped']} "
        f"({stats['seconds']:.1f} s of audio); train {stats['train']}, valid {stats['valid']}, "
        f"test {stats['test']} -> {features_dir}"
    )


def preprocess(
    data_dir: Path,
    features_dir: Path,
    cfg: Config,
    jobs: int,
    console: Console,
    mels_from: Path | None = None,
) -> dict:
    """Run the whole stage; returns counts. Raises if no usable utterance remains.
    ``mels_from``: a directory of GTA mels to use instead of computing them."""
    if mels_from is not None and not mels_from.is_dir():
        raise VocoderError(f"{mels_from}: --mels-from must be a directory of <id>.npy mels")
    items, bad_lines = read_metadata(data_dir)
    _check_existing(features_dir, cfg)
    (features_dir / "mels").mkdir(parents=True, exist_ok=True)
    (features_dir / "audio").mkdir(parents=True, exist_ok=True)
    write_text_atomic(features_dir / "config.yaml", cfg.to_yaml())

    outcomes: list[Outcome] = []
    columns = (TextColumn("[bold]preprocess"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("preprocess", total=len(items))
        if jobs <= 1:
            for item in items:
                outcomes.append(process_item(item, features_dir, cfg.audio, cfg.data, mels_from))
                progress.advance(task)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [
                    pool.submit(process_item, it, features_dir, cfg.audio, cfg.data, mels_from)
                    for it in items
                ]
                for fut in as_completed(futures):
                    outcomes.append(fut.result())
                    progress.advance(task)

    bad = bad_lines + sorted((o for o in outcomes if not o.ok), key=lambda o: o.uid)
    for o in bad:
        console.print(
            Text.assemble(("skipped ", "yellow"), f"{o.uid}: {o.message}"), highlight=False, soft_wrap=True
        )
    for o in sorted((o for o in outcomes if o.ok and o.message), key=lambda o: o.uid):
        console.print(
            Text.assemble(("note ", "cyan"), f"{o.uid}: {o.message}"), highlight=False, soft_wrap=True
        )
    good = sorted(o.uid for o in outcomes if o.ok)
    if not good:
        raise VocoderError(f"{data_dir}: no usable utterance ({len(bad)} skipped)")
    splits = split_ids(good, cfg.data)
    for name, ids in splits.items():
        write_text_atomic(features_dir / f"{name}.txt", "".join(i + "\n" for i in ids))
    report = "".join(f"{o.uid}\t{o.message}\n" for o in bad)
    write_text_atomic(features_dir / "skipped.tsv", report)
    return {
        "processed": sum(1 for o in outcomes if o.ok and not o.skipped),
        "reused": sum(1 for o in outcomes if o.skipped),
        "skipped": len(bad),
        "seconds": sum(o.seconds for o in outcomes if o.ok),
        **{name: len(ids) for name, ids in splits.items()},
    }
