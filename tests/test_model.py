"""The WaveRNN model and the reference sampler, against slow and independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import CORPUS
from vocoder.audio import features, load_audio, split_16bit
from vocoder.config import ModelConfig, load_config
from vocoder.data import Utterance, WindowCutter
from vocoder.model import COARSE_INPUT_INIT, WaveRNN, draw, generate, make_draws, upsample
from vocoder.train import batch_loss

HOP = 200


def tiny_model(seed: int = 0, n: int = 32) -> WaveRNN:
    torch.manual_seed(seed)
    model = WaveRNN(ModelConfig(hidden_size=n, cond_channels=8, cond_blocks=2), 80, HOP)
    with torch.no_grad():  # larger-than-default weights so every path matters
        for p in model.parameters():
            p.mul_(3.0)
        model.mel_mean.fill_(-5.0)
        model.mel_std.fill_(2.0)
    return model.eval()


def test_coarse_input_reaches_only_the_fine_half() -> None:
    model = tiny_model()
    torch.manual_seed(1)
    length = 40
    cond = torch.randn(1, length, 8)
    c_prev, f_prev, c_cur = (torch.randint(0, 256, (1, length)) for _ in range(3))
    changed = c_cur.clone()
    changed[0, 20] = (changed[0, 20] + 100) % 256
    a_c, a_f, a_h = model.teacher_forced(cond, c_prev, f_prev, c_cur)
    b_c, b_f, b_h = model.teacher_forced(cond, c_prev, f_prev, changed)
    half = model.half
    # at step 20 the coarse half of the state and the coarse logits are unchanged...
    assert torch.equal(a_h[0, 20, :half], b_h[0, 20, :half])
    assert torch.equal(a_c[0, :21], b_c[0, :21])
    # ...while the fine half and the fine logits do change
    assert (a_h[0, 20, half:] - b_h[0, 20, half:]).abs().max() > 1e-3
    assert (a_f[0, 20] - b_f[0, 20]).abs().max() > 1e-3
    # the masked weights are exactly zero for coarse rows, non-zero for fine rows
    w = model.masked_input_weight()[:, 2]
    for gate in range(3):
        rows = slice(gate * model.hidden_size, (gate + 1) * model.hidden_size)
        assert torch.all(w[rows][:half] == 0) and torch.all(w[rows][half:] != 0)


def test_upsample_matches_a_slow_interpolation() -> None:
    torch.manual_seed(2)
    frames = torch.randn(1, 3, 6)
    hop = 5
    padded = torch.cat([frames[:, :, :1], frames, frames[:, :, -1:]], dim=2)
    fast = upsample(padded, hop)[0]
    # independent formula: position of sample n in frame units, clamped linear interpolation
    for n in range(6 * hop):
        pos = min(max((n + 0.5) / hop - 0.5, 0.0), 5.0)
        i0 = int(np.floor(pos))
        i1 = min(i0 + 1, 5)
        w = pos - i0
        ref = (1 - w) * frames[0, :, i0] + w * frames[0, :, i1]
        assert torch.allclose(fast[n], ref, atol=1e-6), n


def test_training_window_reproduces_whole_utterance_conditioning() -> None:
    model = tiny_model()
    y = load_audio(CORPUS / "wavs" / "AL-activated.flac", 16000)
    mel, samples = features(y, load_config("allison-16k").audio)
    whole = model.conditioning(torch.from_numpy(mel)[None])[0]
    utt = Utterance("x", mel, samples)
    cutter = WindowCutter(3, HOP, model.radius, model.mel_mean.numpy(), model.mel_std.numpy())
    t = mel.shape[1]
    for s in (1, 2, t // 2, t - 4):  # near both edges, where zero padding is involved
        mel_win, prev, target = cutter.cut(utt, s)
        win = model.window_conditioning(torch.from_numpy(mel_win)[None])[0]
        assert torch.allclose(win, whole[s * HOP : (s + 3) * HOP], atol=1e-5)
        assert np.array_equal(target, samples[s * HOP : (s + 3) * HOP])
        assert np.array_equal(prev, samples[s * HOP - 1 : (s + 3) * HOP - 1])


def test_sampler_teacher_forced_matches_the_torch_gru() -> None:
    """The hand-written sampler step equals nn.GRU + heads on a real utterance."""
    model = tiny_model()
    y = load_audio(CORPUS / "wavs" / "AL-activated.flac", 16000)
    mel, samples = features(y, load_config("allison-16k").audio)
    mel, samples = mel[:, :20], samples[: 20 * HOP]
    out, trace = generate(model, mel, force=samples, record=True)
    assert np.array_equal(out, samples)
    c, f = split_16bit(samples)
    c_prev = np.concatenate([[128], c[:-1]])
    f_prev = np.concatenate([[0], f[:-1]])
    cond = model.conditioning(torch.from_numpy(mel)[None])

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a)[None]

    with torch.no_grad():
        ref_c, ref_f, ref_h = model.teacher_forced(cond, t(c_prev), t(f_prev), t(c))
    assert np.abs(trace.states - ref_h[0].numpy()).max() < 1e-4
    assert np.abs(trace.coarse_logits - ref_c[0].numpy()).max() < 1e-3
    assert np.abs(trace.fine_logits - ref_f[0].numpy()).max() < 1e-3


def test_inverse_cdf_draw_matches_a_slow_reference() -> None:
    rng = np.random.default_rng(3)
    rows = torch.from_numpy(rng.normal(scale=3.0, size=(200, 256)).astype(np.float32))
    us = rng.random(200)
    drawn = draw(rows, torch.from_numpy(us))
    for logits, u, got in zip(rows, us, drawn.tolist(), strict=True):
        p = np.exp(logits.double().numpy() - logits.double().numpy().max())
        cdf = np.cumsum(p / p.sum())
        expected = min(int(np.sum(cdf <= u)), 255)
        if abs(cdf[min(expected, 255)] - u) > 1e-5 and (expected == 0 or abs(cdf[expected - 1] - u) > 1e-5):
            assert got == expected


def test_sampling_is_seeded_and_follows_the_distribution() -> None:
    model = tiny_model()
    mel = np.full((80, 3), -5.0, np.float32)
    a, _ = generate(model, mel, seed=7)
    b, _ = generate(model, mel, seed=7)
    c, _ = generate(model, mel, seed=8)
    assert a.dtype == np.int16 and len(a) == 3 * HOP
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="draws must have shape"):
        generate(model, mel, draws=make_draws(10, 0))


def test_tiny_model_overfits_one_real_utterance() -> None:
    """Teacher-forced NLL on one utterance's windows falls by at least 4 bits/sample."""
    torch.manual_seed(0)
    cfg = load_config("allison-16k")
    y = load_audio(CORPUS / "wavs" / "AL-activated.flac", 16000)
    mel, samples = features(y, cfg.audio)
    model = WaveRNN(ModelConfig(hidden_size=64, cond_channels=16, cond_blocks=1), 80, HOP)
    model.mel_mean.copy_(torch.from_numpy(mel.mean(axis=1)))
    model.mel_std.copy_(torch.from_numpy(mel.std(axis=1) + 1e-3))
    cutter = WindowCutter(2, HOP, model.radius, model.mel_mean.numpy(), model.mel_std.numpy())
    utt = Utterance("x", mel, samples)
    batch = cutter.batch([cutter.cut(utt, s) for _, s in cutter.fixed_windows([utt], 16)])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = batch_loss(model, batch, torch.device("cpu")).item() / np.log(2)
    for _ in range(150):
        loss = batch_loss(model, batch, torch.device("cpu"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = batch_loss(model, batch, torch.device("cpu")).item() / np.log(2)
    assert first > 15.0
    print(f"overfit: {first:.2f} -> {last:.2f} bits/sample")
    assert last < first - 4.0, (first, last)


def test_coarse_byte_inputs_start_large_and_the_fine_byte_input_small() -> None:
    """c_{t-1} and c_t start at U(+-COARSE_INPUT_INIT) so the previous sample reaches the
    gates from step one; f_{t-1}, nearly uniform noise over [-1, 1], keeps PyTorch's
    U(+-1/sqrt(N)) so it cannot saturate the gates and wipe the state (docs/training.md)."""
    n = 64
    torch.manual_seed(0)
    w = WaveRNN(ModelConfig(hidden_size=n, cond_channels=8, cond_blocks=1), 80, HOP).gru.weight_ih_l0
    bound = 1.0 / np.sqrt(n)
    for column in (0, 2):
        assert w[:, column].abs().max() <= COARSE_INPUT_INIT
        assert w[:, column].abs().max() > 0.9 * COARSE_INPUT_INIT
        assert w[:, column].std() > 0.5 * COARSE_INPUT_INIT / np.sqrt(3)
    assert w[:, 1].abs().max() <= bound
    assert w[:, 3:].abs().max() <= bound
