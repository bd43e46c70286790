"""The NAR Voicebox: mel frame alignment, flow-matching training, ODE sampling with CFG, save/load."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from codec.common.errors import CheckpointError, ConfigError
from nar.config import VoiceboxConfig
from nar.mel import MelConfig, MelSpectrogram
from nar.model import Voicebox
from nar.sampling import concat_padded, slice_padded, time_grid



def tiny_config(**overrides) -> VoiceboxConfig:
    values = dict(mel=MelConfig(n_mels=20), dim=32, num_layers=3, num_heads=2, time_embed_dim=32,
                  conv_pos_kernel=7, conv_pos_groups=4)
    values.update(overrides)
    return VoiceboxConfig.demo(**values)


@pytest.fixture(scope="module", params=[0, 2], ids=["embedding", "code-encoder"])
def model(request) -> Voicebox:
    torch.manual_seed(0)
    net = Voicebox(tiny_config(code_encoder_layers=request.param)).eval()
    # adaLN-Zero starts every block as the identity; perturb so that the tests see a non-trivial network.
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def make_tokens(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random codes and durations (1..4) for items of `lengths` codes, zero padded: `[B, G]` each."""
    gen = torch.Generator().manual_seed(seed)
    g = max(lengths)
    codes = torch.randint(0, 32768, (len(lengths), g), generator=gen)
    durs = torch.randint(1, 5, (len(lengths), g), generator=gen)
    mask = torch.arange(g)[None, :] < torch.tensor(lengths)[:, None]
    return codes * mask, durs * mask


# ---------------------------------------------------------------------------------------------------- mel
def test_mel_frames_are_four_per_base_frame_for_any_length():
    mel = MelSpectrogram(MelConfig())
    lengths = sorted(set(range(1, 5001, 97)) | {1, 319, 320, 1279, 1280, 1281, 2559, 2560, 2561, 5000})
    for s in lengths:
        x, n = mel(torch.randn(1, s))
        assert x.shape == (1, 4 * -(-s // 1280), 80) and int(n) == x.shape[1], s
    paper = MelSpectrogram(MelConfig.paper())
    for s in (1, 1919, 1920, 1921, 7000):
        x, n = paper(torch.randn(s))
        assert x.shape == (1, 4 * -(-s // 1920), 128) and int(n) == x.shape[1]


def test_mel_of_padded_batch_equals_each_item_alone():
    mel = MelSpectrogram(MelConfig())
    lengths = [1280, 3000, 4999, 700]
    waves = [torch.randn(s) for s in lengths]
    batch = torch.zeros(len(lengths), max(lengths))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    x, n = mel(batch, torch.tensor(lengths))
    for i, w in enumerate(waves):
        alone, m = mel(w[None])
        assert int(n[i]) == int(m[0])
        torch.testing.assert_close(x[i, : int(m[0])], alone[0], atol=1e-5, rtol=1e-5)
        assert x[i, int(m[0]):].abs().sum() == 0


def test_mel_is_roughly_normalised_on_speech_like_audio(real_speech_16k):
    import soundfile as sf

    wav, rate = sf.read(real_speech_16k, dtype="float32")
    assert rate == 16000
    x, _ = MelSpectrogram(MelConfig())(torch.from_numpy(wav))
    assert -1.5 < float(x.mean()) < 1.5 and 0.4 < float(x.std()) < 2.0


# ---------------------------------------------------------------------------------------------------- config
def test_config_presets_and_json_round_trip():
    demo, paper = VoiceboxConfig.demo(), VoiceboxConfig.paper()
    assert (demo.dim, demo.num_layers, demo.codebook_size, demo.sigma, demo.cond_drop_prob) == (256, 6, 32768, 1e-5, 0.2)
    assert (paper.dim, paper.num_layers, paper.mel.n_mels, paper.mel.hop_length, paper.mel.n_fft) == (1024, 16, 128, 480, 1920)
    again = VoiceboxConfig(**json.loads(json.dumps(demo.to_dict())))
    assert again == demo and isinstance(again.mel, MelConfig)
    with pytest.raises(ConfigError):
        VoiceboxConfig(loss="l3")
    with pytest.raises(ConfigError):
        VoiceboxConfig(prompt_range=[0.5, 0.2])


def test_code_embedding_digits_follow_the_codec_fsq():
    from codec.quantizers import FSQ

    fsq = FSQ(4, [8, 8, 8, 8, 8])
    codes = torch.tensor([0, 1, 8, 9, 4095, 32767, 12345])
    half = fsq.levels // 2
    digits = (fsq.codes_to_values(codes) * half).round().long() + half  # [N, 5]
    emb = Voicebox(tiny_config()).code_embed
    ours = torch.div(codes[:, None], emb.basis, rounding_mode="floor") % emb.levels
    assert torch.equal(ours, digits)


def test_frame_codes_unmerge_and_repeat_four_times(model):
    codes = torch.tensor([[5, 6, 7], [9, 0, 0]])
    durs = torch.tensor([[1, 2, 1], [2, 0, 0]])
    ids = model.frame_codes(codes, durs)
    assert ids.shape == (2, 16)
    assert ids[0].tolist() == [5] * 4 + [6] * 8 + [7] * 4
    assert ids[1].tolist() == [9] * 8 + [0] * 8


def test_padded_sequence_helpers():
    a = torch.tensor([[1, 2, 3], [4, 0, 0]])
    b = torch.tensor([[7, 0], [8, 9]])
    out, n = concat_padded(a, torch.tensor([3, 1]), b, torch.tensor([1, 2]))
    assert out.tolist() == [[1, 2, 3, 7], [4, 8, 9, 0]] and n.tolist() == [4, 3]
    assert slice_padded(out, torch.tensor([3, 1]), torch.tensor([1, 2])).tolist() == [[7, 0], [8, 9]]
    empty, m = concat_padded(a[:, :0], torch.tensor([0, 0]), b, torch.tensor([1, 2]))
    assert empty.tolist() == [[7, 0], [8, 9]] and m.tolist() == [1, 2]


def test_time_grid_and_sway():
    uniform = time_grid(4)
    assert torch.allclose(uniform, torch.tensor([0, 0.25, 0.5, 0.75, 1.0]))
    sway = time_grid(8, sway=-1.0)
    assert float(sway[0]) == 0 and abs(float(sway[-1]) - 1) < 1e-6 and bool((sway.diff() > 0).all())
    assert float(sway[1]) < float(time_grid(8)[1])  # more resolution near the noise end


# ---------------------------------------------------------------------------------------------------- training
def make_batch(model: Voicebox, lengths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    codes, durs = make_tokens(lengths, seed)
    frames = durs.sum(1) * 4
    gen = torch.Generator().manual_seed(seed + 1)
    # A learnable target: each frame's mel is a fixed function of its code (plus a slow ramp).
    table = torch.randn(64, model.config.mel.n_mels, generator=gen)
    ids = model.frame_codes(codes, durs)
    mel = table[ids % 64] + 0.1 * torch.linspace(-1, 1, ids.shape[1])[None, :, None]
    mel = mel * (torch.arange(ids.shape[1])[None, :] < frames[:, None])[..., None]
    return {"mel": mel, "mel_lengths": frames, "codes": codes, "durations": durs, "step": 0}


def test_training_step_overfits_a_tiny_batch():
    torch.manual_seed(0)
    net = Voicebox(tiny_config(dim=48, num_layers=2))
    batch = make_batch(net, [8, 6, 5])

    def fixed_loss() -> float:  # the same t, noise, spans and drops every time: no sampling noise
        torch.manual_seed(123)
        return float(net.training_step(batch)["flow"])

    before = fixed_loss()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(30):
        out = net.training_step(batch)
        assert set(out) == {"loss", "flow", "context"} and out["loss"].requires_grad
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    after = fixed_loss()
    assert after < 0.7 * before, (before, after)


def test_code_prior_learns_the_mel_of_each_code_and_grows_from_a_plain_checkpoint(tmp_path):
    from codec.common.pretrained import init_state_for

    with pytest.raises(ConfigError):
        tiny_config(prior_loss_weight=1.0)  # a prior needs the encoder
    torch.manual_seed(0)
    net = Voicebox(tiny_config(dim=48, num_layers=2, code_encoder_layers=2, prior_loss_weight=1.0))
    batch = make_batch(net, [8, 6, 5])
    torch.manual_seed(123)
    first = net.training_step(batch)
    assert set(first) == {"loss", "flow", "context", "prior"}
    assert torch.allclose(first["loss"].detach(), first["flow"] + first["prior"])
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(40):
        out = net.training_step(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    # The prior alone now predicts each frame's mel from its code (the target is a function of the code).
    mask = torch.arange(batch["mel"].shape[1])[None, :] < batch["mel_lengths"][:, None]
    with torch.no_grad():
        _, prior = net.condition(net.frame_codes(batch["codes"], batch["durations"]), mask)
    err = float(((prior - batch["mel"]).abs() * mask[..., None]).sum() / (mask.sum() * prior.shape[-1]))
    assert err < 0.5 * float(first["prior"]), (err, float(first["prior"]))
    # A checkpoint without the encoder starts it: its tensors are copied, the encoder keeps its own.
    plain = Voicebox(tiny_config(dim=48, num_layers=2))
    state = init_state_for(net, plain.state_dict(), "the plain NAR")
    assert torch.equal(state["in_proj.weight"], plain.state_dict()["in_proj.weight"])
    assert torch.equal(state["code_prior.to_mel.weight"], net.state_dict()["code_prior.to_mel.weight"])
    with pytest.raises(CheckpointError, match="does not fit this model"):
        init_state_for(plain, net.state_dict(), "the NAR with a prior")  # the other way round: tensors it lacks


def test_training_step_accepts_waveforms_and_checks_durations():
    torch.manual_seed(0)
    net = Voicebox(tiny_config())
    wav = torch.randn(2, 5000)
    codes, durs = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([[1, 2, 1], [2, 1, 0]])
    lengths = torch.tensor([5000, 3000])  # 4 and 3 base frames
    out = net.training_step({"wav": wav, "wav_lengths": lengths, "codes": codes, "durations": durs})
    assert torch.isfinite(out["loss"])
    with pytest.raises(ConfigError):
        net.training_step({"wav": wav, "wav_lengths": lengths, "codes": codes, "durations": durs + 1})


def test_context_spans_stay_inside_items():
    torch.manual_seed(0)
    net = Voicebox(tiny_config())
    lengths = torch.tensor([40, 8, 100, 1])
    for _ in range(20):
        spans = net._context_spans(lengths)
        valid = torch.arange(spans.shape[1])[None, :] < lengths[:, None]
        assert not bool((spans & ~valid).any())
        assert bool((spans.sum(1) <= (0.7 * lengths).floor()).all())
        # one contiguous run per item
        assert bool(((spans[:, 1:] & ~spans[:, :-1]).sum(1) + spans[:, 0].long() <= 1).all())


# ---------------------------------------------------------------------------------------------------- sampling
def prompt_for(model: Voicebox, lengths: list[int], seed: int = 5) -> dict[str, torch.Tensor]:
    codes, durs = make_tokens(lengths, seed)
    frames = int(durs.sum(1).max()) * 4
    mel = torch.randn(len(lengths), frames, model.config.mel.n_mels, generator=torch.Generator().manual_seed(seed))
    return {"prompt_mel": mel, "prompt_codes": codes, "prompt_durations": durs}


def test_cfg_zero_is_exactly_the_conditional_path(model):
    codes, durs = make_tokens([6])
    prompt = prompt_for(model, [3])
    calls = []
    hook = model.transformer.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        mel, n = model.sample(codes, durs, **prompt, steps=4, cfg=0.0, seed=3)
    finally:
        hook.remove()
    assert calls == [1] * 4  # one conditional pass a step, no unconditional one
    # The same Euler integration written out by hand with the conditional velocity.
    p_len = int(prompt["prompt_durations"].sum()) * 4
    ids = torch.cat([model.frame_codes(prompt["prompt_codes"], prompt["prompt_durations"]), model.frame_codes(codes, durs)], 1)
    total = ids.shape[1]
    context = torch.zeros(1, total, model.config.mel.n_mels)
    context[:, :p_len] = prompt["prompt_mel"][:, :p_len]
    ctx_mask = torch.arange(total)[None, :] < p_len
    x = torch.randn(total, model.config.mel.n_mels, generator=torch.Generator().manual_seed(3))[None]
    with torch.no_grad():
        for i in range(4):
            t = torch.tensor([(i + 0.5) / 4])
            x = x + 0.25 * model(x, t, ids, torch.ones(1, dtype=torch.bool), context, ctx_mask, torch.tensor([total]))
    assert int(n) == total - p_len
    torch.testing.assert_close(mel, x[:, p_len:], atol=1e-5, rtol=1e-5)
    guided, _ = model.sample(codes, durs, **prompt, steps=4, cfg=2.0, seed=3)
    assert not torch.allclose(guided, mel, atol=1e-3)


def test_cfg_until_limits_guidance_to_the_early_steps(model):
    """cfg_until t: the unconditional pass runs only on the steps that start before t; outside them the step is
    the conditional path's, so 0 equals cfg 0, 1 equals full guidance, and between them it is neither."""
    codes, durs = make_tokens([6])
    prompt = prompt_for(model, [3])
    plain, _ = model.sample(codes, durs, **prompt, steps=4, cfg=0.0, seed=3)
    full, _ = model.sample(codes, durs, **prompt, steps=4, cfg=2.0, seed=3)
    torch.testing.assert_close(model.sample(codes, durs, **prompt, steps=4, cfg=2.0, seed=3, cfg_until=0.0)[0], plain)
    torch.testing.assert_close(model.sample(codes, durs, **prompt, steps=4, cfg=2.0, seed=3, cfg_until=1.0)[0], full)
    calls = []
    hook = model.transformer.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        half, _ = model.sample(codes, durs, **prompt, steps=4, cfg=2.0, seed=3, cfg_until=0.5)
    finally:
        hook.remove()
    assert calls == [2, 2, 1, 1]  # steps starting at 0 and 0.25 are guided, those at 0.5 and 0.75 are not
    assert not torch.allclose(half, plain, atol=1e-4) and not torch.allclose(half, full, atol=1e-4)


def test_padding_never_changes_a_batched_sample(model):
    codes, durs = make_tokens([7, 3], seed=1)
    prompt = prompt_for(model, [2, 4])
    for cfg in (0.0, 2.0):
        mel, n = model.sample(codes, durs, **prompt, steps=3, cfg=cfg, seed=11, sway=-1.0)
        for b in range(2):
            g, gp = int((durs[b] > 0).sum()), int((prompt["prompt_durations"][b] > 0).sum())
            fp = int(prompt["prompt_durations"][b].sum()) * 4
            alone, m = model.sample(codes[b : b + 1, :g], durs[b : b + 1, :g], prompt["prompt_mel"][b : b + 1, :fp],
                                    prompt["prompt_codes"][b : b + 1, :gp], prompt["prompt_durations"][b : b + 1, :gp],
                                    steps=3, cfg=cfg, seed=11, sway=-1.0)
            assert int(n[b]) == int(m[0]) == int(durs[b].sum()) * 4
            torch.testing.assert_close(mel[b, : int(m[0])], alone[0], atol=1e-4, rtol=1e-4)
            assert mel[b, int(m[0]):].abs().sum() == 0


def test_seed_reproducibility_and_no_prompt(model):
    codes, durs = make_tokens([5, 4], seed=2)
    a, _ = model.sample(codes, durs, steps=2, seed=7)
    b, _ = model.sample(codes, durs, steps=2, seed=7)
    c, _ = model.sample(codes, durs, steps=2, seed=8)
    d, _ = model.sample(codes, durs, steps=2, seed=[7, 8])
    assert torch.equal(a, b) and not torch.allclose(a, c)
    torch.testing.assert_close(d[0], a[0]) and torch.testing.assert_close(d[1, :16], c[1, :16])
    torch.manual_seed(0)
    e, _ = model.sample(codes, durs, steps=2)
    assert torch.isfinite(e).all()


def test_sample_rejects_bad_inputs(model):
    codes, durs = make_tokens([4])
    prompt = prompt_for(model, [2])
    with pytest.raises(ConfigError):
        model.sample(codes, durs, prompt_mel=prompt["prompt_mel"], steps=2)  # mel without its codes
    with pytest.raises(ConfigError):
        model.sample(codes, durs, **prompt, prompt_lengths=torch.tensor([3]), steps=2)
    with pytest.raises(ConfigError):
        model.sample(codes + 40000, durs, steps=2)
    with pytest.raises(ConfigError):
        model.sample(codes, durs, steps=0)


def test_save_load_identity(model, tmp_path):
    model.save_pretrained(tmp_path / "nar")
    loaded = Voicebox.from_pretrained(tmp_path / "nar")
    assert loaded.config == model.config
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert not any(k.startswith("mel.") for k in loaded.state_dict())  # the mel filterbank is not a weight
    codes, durs = make_tokens([5])
    prompt = prompt_for(model, [2])
    a, _ = model.sample(codes, durs, **prompt, steps=2, seed=0)
    b, _ = loaded.sample(codes, durs, **prompt, steps=2, seed=0)
    assert torch.equal(a, b)


def test_demo_size_and_package_boundaries():
    demo = Voicebox(VoiceboxConfig.demo())
    params = sum(p.numel() for p in demo.parameters())
    assert 3e6 < params < 10e6  # fits the demo bundle's budget in fp16
    code = "import sys, nar; assert 'torch' not in sys.modules; import nar.model, nar.vocoder; assert 'flexitts' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------------- training entry
def write_token_cache(root, tmp_path, seconds: list[float]) -> None:
    """A token cache of generated tones with random codes and durations under two settings."""
    import numpy as np
    import soundfile as sf

    from flexitts.data.token_cache import TokenItem, write_token_cache_index, write_token_cache_item

    rng = np.random.default_rng(0)
    for n, sec in enumerate(seconds):
        samples = int(sec * 16000)
        t = np.arange(samples) / 16000
        audio = tmp_path / f"u{n}.wav"
        sf.write(audio, (0.3 * np.sin(2 * np.pi * (150 + 30 * n) * t)).astype(np.float32), 16000)
        frames = -(-samples // 1280)
        item = TokenItem(f"u{n}", f"s{n % 2}", audio, "a test", np.arange(5), frames)
        for name, longest in (("t1", 1), ("t0.5", 4)):
            durs = []
            while sum(durs) < frames:
                durs.append(int(min(rng.integers(1, longest + 1), frames - sum(durs))))
            item.codes[name] = rng.integers(0, 32768, len(durs))
            item.durations[name] = np.asarray(durs)
        write_token_cache_item(root, item, n)
    write_token_cache_index(root, {"settings": ["t1", "t0.5"]}, len(seconds))


def test_nar_dataset_windows_stay_on_token_boundaries(tmp_path):
    from flexitts.data.token_cache import TokenCache
    from flexitts.training.nar import NARDataset, collate_nar

    write_token_cache(tmp_path / "cache", tmp_path, [0.5, 3.3, 0.7])
    data = NARDataset(TokenCache(tmp_path / "cache"), MelConfig(), max_seconds=1.0)
    mel = MelSpectrogram(MelConfig())
    torch.manual_seed(0)
    for _ in range(6):
        batch = collate_nar([data[i] for i in range(len(data))])
        _, frames = mel(batch["wav"], batch["wav_lengths"])
        assert torch.equal(frames, batch["durations"].sum(1) * 4)  # mel and tokens cover the same frames
        assert int(batch["durations"].sum(1).max()) <= 12 and int(batch["durations"].sum(1)[1]) >= 12 - 3
    assert data.lengths == [8000, 12 * 1280, 11200]  # windows: at most 12 base frames


def test_train_nar_end_to_end_and_resume(tmp_path, capsys):
    from flexitts.cli.main import main

    write_token_cache(tmp_path / "tokens", tmp_path, [0.6, 1.1, 0.9, 1.3])
    config = tmp_path / "nar.yaml"
    config.write_text(
        "out_dir: run\n"
        "model: {dim: 32, num_layers: 2, num_heads: 2, time_embed_dim: 32, conv_pos_kernel: 7, conv_pos_groups: 4,"
        " mel: {n_mels: 20}}\n"
        "training: {max_steps: 3, max_units: 48000, warmup_steps: 1, checkpoint_every: 2, log_every: 1}\n"
        "data: {train: tokens, valid: tokens, valid_limit: 2}\n"
    )
    assert main(["train", "nar", "--config", str(config), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "nar: step 3" in out and "valid_flow" in out
    run = tmp_path / "run"
    assert [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()] == [1, 2, 3]
    model = Voicebox.from_pretrained(run / "model")
    assert model.config.mel.n_mels == 20 and model.config.dim == 32
    codes, durs = make_tokens([3])
    mel, n = model.sample(codes, durs, steps=2, seed=0)
    assert mel.shape == (1, int(n), 20) and torch.isfinite(mel).all()
    config.write_text(config.read_text().replace("max_steps: 3", "max_steps: 4"))
    assert main(["train", "nar", "--config", str(config), "--resume", "--no-progress"]) == 0
    assert "nar: step 4" in capsys.readouterr().out
    config.write_text(config.read_text().replace("valid_limit: 2", "valid_limit: 2, settings: [t9]"))
    assert main(["train", "nar", "--config", str(config), "--no-progress"]) == 2
    assert "t9" in capsys.readouterr().err
