"""Config loading: defaults, YAML, --set, and one readable line for every mistake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vocoder.config import Config, load_config, parse_set
from vocoder.errors import VocoderError


def test_defaults_follow_hifigan_convention() -> None:
    a = Config().audio
    assert (a.sample_rate, a.n_fft, a.hop_length, a.win_length, a.n_mels) == (22050, 1024, 256, 1024, 80)
    assert (a.fmin, a.fmax, a.log_floor) == (0.0, 8000.0, 1e-5)


def test_shipped_configs_load_and_set_overrides_apply() -> None:
    cfg = load_config(
        "allison-16k", ["model.hidden_size=896", "train.batch_size=16", "train.learning_rate=5e-4"]
    )
    assert cfg.audio.sample_rate == 16000 and cfg.audio.hop_length == 200
    assert cfg.model.hidden_size == 896 and cfg.train.batch_size == 16
    assert cfg.train.learning_rate == pytest.approx(5e-4)
    assert load_config("ljspeech-22k").audio.sample_rate == 22050


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, ["model.cond_blocks=5"])
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(str(path)) == cfg


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["model.hidden_sise=8"], "unknown key model.hidden_sise, did you mean model.hidden_size?"),
        (["modle.hidden_size=8"], "unknown section 'modle', did you mean model?"),
        (["train.zzz=8"], "unknown key train.zzz (known: batch_size"),
        (["train.steps=25e-1"], "train.steps must be an integer, got 2.5"),
        (["model.hidden_size=big"], "model.hidden_size must be an integer"),
        (["model.hidden_size=7"], "model.hidden_size must be even"),
        (["train.learning_rate=-1"], "train.learning_rate must be > 0"),
        (["audio.fmax=9000", "audio.sample_rate=16000"], "audio.fmax must be <= sample_rate/2"),
        (["audio.win_length=2048"], "audio.win_length must be <= audio.n_fft"),
        (["train.device=tpu"], "train.device must be cpu, cuda, cuda:K"),
        (["hidden_size=8"], "expected section.key=value"),
        (["model.hidden_size"], "expected section.key=value"),
        # sizes that would only fail later, as an allocation traceback
        (["model.hidden_size=100000000000000000000000"], "model.hidden_size must be even, 4..8192"),
        (["model.cond_channels=100000000"], "model.cond_channels must be in 1..4096"),
        (["audio.n_fft=1000000000000000000"], "audio.n_fft must be in 16..65536"),
        (["train.batch_size=10000000"], "train.batch_size must be in 1..65536"),
        (["train.learning_rate=inf"], "train.learning_rate must be a finite number, got 'inf'"),
        (["train.grad_clip=.nan"], "train.grad_clip must be a finite number"),
        (["train.lr_decay_to=0"], "train.lr_decay_to must be in (0, 1]"),
        (["train.lr_decay_steps=-1"], "train.lr_decay_steps must be >= 0"),
        (["train.precision=fp8"], "train.precision must be fp32, bf16 or fp16"),
        (["train.lr_warmup_steps=-2"], "train.lr_warmup_steps must be >= 0"),
        (
            ["train.steps=10", "train.lr_warmup_steps=6", "train.lr_decay_steps=5"],
            "train.lr_warmup_steps and train.lr_decay_steps together must be <= train.steps",
        ),
    ],
)
def test_bad_values_are_rejected_with_the_key_named(sets: list[str], message: str) -> None:
    with pytest.raises(VocoderError, match=re.escape(message)):
        load_config(None, sets)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  hidden_size: [1,\n")
    with pytest.raises(VocoderError, match=r"bad\.yaml: invalid YAML at line"):
        load_config(str(bad))
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("- just\n- a list\n")
    with pytest.raises(VocoderError, match="expected a mapping of sections"):
        load_config(str(wrong))
    with pytest.raises(VocoderError, match="no such config file"):
        load_config(str(tmp_path / "absent.yaml"))
    twice = tmp_path / "twice.yaml"
    twice.write_text("model:\n  hidden_size: 64\n  cond_blocks: 1\n  hidden_size: 128\n")
    with pytest.raises(
        VocoderError, match=r"twice\.yaml: invalid YAML at line 4 \(duplicate key 'hidden_size'\)"
    ):
        load_config(str(twice))
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("# réglages\nmodel:\n  hidden_size: 64\n".encode("latin-1"))
    with pytest.raises(VocoderError, match=r"latin\.yaml: config is not UTF-8 text \(byte 3\)"):
        load_config(str(latin))


def test_whole_numbers_in_e_notation_are_integers() -> None:
    cfg = load_config(None, ["train.steps=1e5", "train.valid_every=2.5e3", "model.hidden_size=512.0"])
    assert (cfg.train.steps, cfg.train.valid_every, cfg.model.hidden_size) == (100000, 2500, 512)
    assert isinstance(cfg.train.steps, int)


def test_set_values_are_yaml_scalars() -> None:
    assert parse_set(["train.max_minutes=1.5", "train.device=cuda"]) == {
        "train": {"max_minutes": 1.5, "device": "cuda"}
    }
