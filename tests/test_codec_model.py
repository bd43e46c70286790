"""FlexiCodec: quantisers, encode/decode invariants, batching, save/load, training, bitrate (tiny configs)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from codec import CodecTokens, FlexiCodec, FlexiCodecConfig, TokenError, bitrate, bits_per_token
from codec.asr.ctc_model import CTCPhoneRecognizer, CTCRecognizerConfig
from codec.common.errors import AudioError, ConfigError
from codec.framing import num_base_frames
from codec.melt import melt_long_share, random_segments
from codec.quantizers import FSQ, ResidualVQ

SPEECH = "tests/data/1089-134686-0030.flac"



def tiny_config(**overrides) -> FlexiCodecConfig:
    values = dict(
        asr_dim=32, encoder_channels=4, encoder_max_channels=32, encoder_dilations=[1], latent_dim=32,
        aggregator_dim=32, aggregator_layers=1, aggregator_heads=2, aggregator_ffn=64,
        semantic_dim=32, semantic_layers=1, semantic_ffn=64, num_codebooks=3, codebook_size=64,
        decoder_dim=32, decoder_layers=1, decoder_heads=2, decoder_ffn=64,
        vocos_dim=48, vocos_ffn=96, vocos_layers=2, mel_windows=[256, 1024], mel_bins=[20, 64],
        disc_periods=[2, 3], disc_period_channels=[4, 8], disc_fft_sizes=[512], disc_resolution_channels=4,
    )
    values.update(overrides)
    return FlexiCodecConfig.demo(**values)


def tiny_asr() -> CTCPhoneRecognizer:
    torch.manual_seed(0)
    config = CTCRecognizerConfig(symbols=["<pad>", "a", "b"], dim=32, num_layers=1, num_heads=2, ffn_dim=64, dropout=0.0)
    return CTCPhoneRecognizer(config).eval()


def tiny_codec(**overrides) -> FlexiCodec:
    torch.manual_seed(0)
    return FlexiCodec(tiny_config(**overrides), asr_extractor=tiny_asr()).eval()


@pytest.fixture(scope="module")
def codec() -> FlexiCodec:
    model = tiny_codec()
    with torch.no_grad():  # make the aggregators' transformers matter (they start as mean pooling)
        for agg in (model.semantic_aggregator, model.acoustic_aggregator):
            agg.transformer.norm.weight.normal_()
        model.semantic_decoder.proj_out.weight.normal_(std=0.1)
    return model


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    wav, rate = sf.read(SPEECH, dtype="float32")
    assert rate == 16000
    return torch.from_numpy(wav)


@pytest.fixture(scope="module")
def batch(speech) -> tuple[torch.Tensor, torch.Tensor]:
    """Three items: speech, a shorter speech excerpt, and a short noise burst."""
    lengths = torch.tensor([30_000, 17_500, 2_000])
    wav = torch.zeros(3, 30_000)
    wav[0] = speech[:30_000]
    wav[1, :17_500] = speech[10_000:27_500]
    wav[2, :2_000] = torch.randn(2_000, generator=torch.Generator().manual_seed(1)) * 0.1
    return wav, lengths


# ---------------------------------------------------------------- quantisers
def test_fsq_codes_in_range_and_round_trip():
    torch.manual_seed(0)
    fsq = FSQ(16, [8, 8, 8, 8, 8])
    assert fsq.codebook_size == 32768
    x = (torch.randn(2, 50, 16) * 3).requires_grad_()
    out, codes = fsq(x)
    assert codes.dtype == torch.long and int(codes.min()) >= 0 and int(codes.max()) < 32768
    everything = torch.arange(32768)
    assert torch.equal(fsq.values_to_codes(fsq.codes_to_values(everything)), everything)
    values = fsq.codes_to_values(everything)
    assert float(values.min()) == -1.0 and float(values.max()) == 0.75  # 8 levels: -4/4 .. 3/4
    torch.testing.assert_close(fsq.decode(codes), out)  # decoding a code gives what encoding produced
    out.sum().backward()  # straight-through: the rounding passes gradients on
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_rvq_error_falls_with_more_codebooks():
    torch.manual_seed(0)
    rvq = ResidualVQ(16, 4, 64, 8)
    x = torch.randn(4, 50, 16)
    mask = torch.ones(4, 50, dtype=torch.bool)
    opt = torch.optim.Adam(rvq.parameters(), 1e-2)
    for _ in range(60):  # a short fit: codebooks placed on the data
        out, _, commit, codebook = rvq(x, mask)
        loss = (out - x).pow(2).mean() + 0.25 * commit + codebook
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        errors = [float((x - rvq(x, mask, n)[0]).pow(2).mean()) for n in range(5)]
        _, codes, _, _ = rvq(x, mask, 3)
        torch.testing.assert_close(rvq.decode(codes), rvq(x, mask, 3)[0])
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert codes.shape == (4, 3, 50) and int(codes.max()) < 64


# ---------------------------------------------------------------- encode / decode
def test_encode_decode_shapes_and_invariants(codec, batch):
    wav, lengths = batch
    tok = codec.encode(wav, 16000, num_quantizers=4, merging_threshold=0.95, wav_lengths=lengths)
    frames = num_base_frames(lengths)
    B, G = tok.semantic_codes.shape
    assert tok.acoustic_codes.shape == (B, 3, G)
    assert tok.token_lengths.shape == (B, G) and tok.num_tokens.shape == (B,)
    assert torch.equal(tok.token_lengths.sum(1), frames)
    valid = torch.arange(G)[None] < tok.num_tokens[:, None]
    assert torch.equal(tok.num_tokens, (tok.token_lengths > 0).sum(1))
    assert bool(((tok.token_lengths >= 1) & (tok.token_lengths <= 8))[valid].all())
    assert bool((tok.token_lengths[~valid] == 0).all())
    assert bool((tok.semantic_codes[~valid] == 0).all()) and int(tok.semantic_codes.max()) < 32768
    assert int(tok.acoustic_codes.max()) < 64
    out = codec.decode(tok)
    assert out.dtype == torch.float32 and out.shape == (3, 30_000) and codec.sample_rate == 16000
    assert bool(torch.isfinite(out).all())
    for i, n in enumerate(lengths.tolist()):
        assert float(out[i, n:].abs().sum()) == 0.0


def test_threshold_controls_the_rate(codec, speech):
    T = num_base_frames(speech.shape[0])
    counts = [int(codec.encode(speech, 16000, merging_threshold=tau).num_tokens) for tau in (1.0, 0.99, 0.95, 0.8, -1.01)]
    assert counts[0] == T  # tau = 1.0: no merging, 12.5 Hz
    assert all(b <= a for a, b in zip(counts, counts[1:]))  # lower tau, never more tokens
    assert counts[3] < T  # speech features do merge
    assert counts[-1] == math.ceil(T / 8)  # everything merged, cut at max_len
    unmerged = codec.encode(speech, 16000, merging_threshold=1.0)
    assert bool((unmerged.token_lengths == 1).all())


@pytest.mark.parametrize("scheduler", ["threshold", "dp", "entropy"])
def test_frame_rate_target(codec, batch, scheduler):
    wav, lengths = batch
    tok = codec.encode(wav, 16000, frame_rate=6.25, scheduler=scheduler, wav_lengths=lengths)
    frames = num_base_frames(lengths)
    rates = tok.frame_rate
    long_items = frames >= 8
    assert abs(float(rates[long_items].mean()) - 6.25) < 1.0
    if scheduler == "dp":  # exactly round(seconds * rate) tokens
        assert torch.equal(tok.num_tokens, torch.floor(frames / 12.5 * 6.25 + 0.5).long())


def test_single_quantizer_has_no_acoustic_codes(codec, speech):
    tok = codec.encode(speech[:20_000], 16000, num_quantizers=1)
    assert tok.acoustic_codes is None and tok.num_quantizers == 1
    out = codec.decode(tok)
    assert out.shape == (1, 20_000) and bool(torch.isfinite(out).all())
    assert codec.semantic_features(tok.semantic_codes).shape == (1, tok.semantic_codes.shape[1], 32)
    assert codec.semantic_features(tok.semantic_codes[0], tok.token_lengths[0]).shape == (16, 32)


@pytest.mark.parametrize("scheduler,kwargs", [("threshold", {"merging_threshold": 0.98}), ("dp", {"frame_rate": 8.0})])
def test_batched_encode_equals_per_item(codec, batch, scheduler, kwargs):
    wav, lengths = batch
    tok = codec.encode(wav, 16000, wav_lengths=lengths, scheduler=scheduler, **kwargs)
    out = codec.decode(tok)
    for i, n in enumerate(lengths.tolist()):
        alone = codec.encode(wav[i, :n].numpy(), 16000, scheduler=scheduler, **kwargs)
        item = tok.item(i)
        assert torch.equal(alone.token_lengths, item.token_lengths)
        assert torch.equal(alone.semantic_codes, item.semantic_codes)
        assert torch.equal(alone.acoustic_codes, item.acoustic_codes)
        torch.testing.assert_close(codec.decode(alone)[0], out[i, :n], atol=1e-5, rtol=1e-4)


def test_input_conversion(codec, speech):
    clip = speech[:16_000].numpy()
    reference = codec.encode(clip, 16000)
    stereo = np.stack([clip, clip], axis=1)  # [S, C] as soundfile reads it
    assert torch.equal(codec.encode(stereo, 16000).semantic_codes, reference.semantic_codes)
    assert torch.equal(codec.encode(torch.from_numpy(stereo.T.copy()), 16000).token_lengths, reference.token_lengths)
    pcm = (clip * 32767).astype(np.int16)
    assert codec.encode(pcm, 16000).num_tokens.item() > 0
    resampled = codec.encode(torch.from_numpy(clip[::2].copy()), 8000)  # 8 kHz input: resampled to 16 kHz
    assert int(resampled.num_samples) == 16_000 and int(resampled.num_frames) == 13
    with pytest.raises(AudioError):
        codec.encode("speech.wav", 16000)
    with pytest.raises(AudioError):
        codec.encode(np.full(1000, np.nan, dtype=np.float32), 16000)
    with pytest.raises(AudioError):
        codec.encode(np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(ConfigError):
        codec.encode(clip, 16000, num_quantizers=5)
    with pytest.raises(ConfigError):
        codec.encode(clip, 16000, merging_threshold=0.9, frame_rate=6.25)
    with pytest.raises(ConfigError):
        codec.encode(clip, 16000, scheduler="entropy", merging_threshold=0.9)


def test_bad_tokens_are_refused(codec, speech):
    tok = codec.encode(speech[:16_000], 16000)
    bad = CodecTokens(tok.semantic_codes + 40000, tok.acoustic_codes, tok.token_lengths, tok.num_tokens)
    with pytest.raises(TokenError):
        codec.decode(bad)
    bad = CodecTokens(tok.semantic_codes, tok.acoustic_codes, tok.token_lengths * 9, tok.num_tokens)
    with pytest.raises(TokenError):
        codec.decode(bad)
    round_trip = CodecTokens.from_arrays(tok.to_arrays())
    torch.testing.assert_close(codec.decode(round_trip), codec.decode(tok))


def test_save_and_load_round_trip(codec, speech, tmp_path):
    codec.save_pretrained(tmp_path / "codec")
    loaded = FlexiCodec.from_pretrained(tmp_path / "codec", asr_extractor=codec.asr_extractor)
    assert loaded.config == codec.config and loaded.config.fingerprint() == codec.config.fingerprint()
    clip = speech[:24_000]
    a, b = codec.encode(clip, 16000, merging_threshold=0.97), loaded.encode(clip, 16000, merging_threshold=0.97)
    assert torch.equal(a.semantic_codes, b.semantic_codes) and torch.equal(a.acoustic_codes, b.acoustic_codes)
    assert torch.equal(a.token_lengths, b.token_lengths)
    torch.testing.assert_close(codec.decode(a), loaded.decode(b))
    # The config may name an extractor saved beside the codec, relative to its folder.
    codec.asr_extractor.save_pretrained(tmp_path / "codec" / "asr")
    config_file = tmp_path / "codec" / "config.json"
    config_file.write_text(config_file.read_text().replace('"asr": "ctc"', '"asr": "ctc:asr"'))
    self_contained = FlexiCodec.from_pretrained(tmp_path / "codec")
    assert torch.equal(self_contained.encode(clip, 16000, merging_threshold=0.97).semantic_codes, a.semantic_codes)


def test_configs_and_fingerprint():
    demo = FlexiCodecConfig.demo()
    assert FlexiCodecConfig(**demo.to_dict()) == demo and FlexiCodecConfig(**demo.to_dict()).fingerprint() == demo.fingerprint()
    assert FlexiCodecConfig.demo(codebook_size=512).fingerprint() != demo.fingerprint()
    paper = FlexiCodecConfig.paper()
    assert (paper.num_codebooks, paper.codebook_size, paper.semantic_codebook_size) == (24, 4096, 32768)
    with torch.device("meta"):  # constructible without allocating its ~230M parameters
        assert FlexiCodec(paper).num_parameters() > 100_000_000
    with pytest.raises(ConfigError):
        FlexiCodecConfig.demo(encoder_strides=[4, 4, 5, 8])
    with pytest.raises(ConfigError):
        FlexiCodec(tiny_config(), asr_extractor=CTCPhoneRecognizer(CTCRecognizerConfig(symbols=["<pad>", "a"], dim=16, num_layers=1, num_heads=2, ffn_dim=32)))


def test_bitrate_known_cases(codec):
    assert bits_per_token(8) == 15 + 7 * 12 + 3
    assert bitrate(8, 8.3) == pytest.approx(846.6)  # FlexiCodec: "0.85 kbps" at 8.3 Hz with 8 quantizers
    assert bitrate(8, 6.25) == pytest.approx(637.5)
    assert bitrate(1, 12.5, include_duration=False) == pytest.approx(187.5)
    assert codec.bitrate(4, 10.0) == pytest.approx((15 + 3 * 6 + 3) * 10.0)  # tiny codec: 64-entry codebooks


# ---------------------------------------------------------------- training
def overfit(model: FlexiCodec, speech: torch.Tensor, steps: int) -> list[dict[str, float]]:
    """`steps` Adam steps on one fixed batch of two crops; the detached losses of every step."""
    batch = {"wav": torch.stack([speech[8000:24000], speech[24000:40000]]), "wav_lengths": torch.tensor([16000, 12000])}
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    history = []
    for step in range(steps):
        losses = model.training_step(batch, step)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    return history


def test_training_overfits_one_batch(speech):
    model = tiny_codec(quantizer_dropout=0.0, bypass_prob=0.0, tau_range=[1.0, 1.0]).train()
    history = overfit(model, speech, 40)
    mels = [h["mel"] for h in history]
    assert {"loss", "mel", "commit", "codebook", "align", "frame_rate"} <= set(history[-1])
    assert np.mean(mels[-5:]) < 0.6 * mels[0], mels


def test_phone_distillation_pulls_the_codes_towards_the_recognisers_phones(speech):
    model = tiny_codec(quantizer_dropout=0.0, bypass_prob=0.0, tau_range=[1.0, 1.0], lambda_phone=1.0).train()
    with torch.no_grad():  # a random tiny recogniser reads nearly uniform phones: sharpen its head
        model.asr_extractor.head.weight.mul_(20.0)
    feats = torch.randn(2, 5, model.config.asr_dim)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    assert float(model.phone_distillation(feats, feats, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(model.phone_distillation(torch.zeros_like(feats), feats, mask)) > 0
    phones = [h["phone"] for h in overfit(model, speech, 30)]
    assert np.mean(phones[-5:]) < 0.6 * phones[0], phones
    assert model.asr_extractor.head.weight.grad is None  # the recogniser stays frozen
    headless = torch.nn.Identity()
    headless.feature_dim = model.config.asr_dim  # e.g. Whisper's encoder: features, no phone head
    model.set_asr_extractor(headless)
    with pytest.raises(ConfigError, match="CTC phone recogniser"):
        model.phone_distillation(feats, feats, mask)


def test_melt_dp_and_gan_training_steps(speech):
    batch = {"wav": torch.stack([speech[:12800], speech[12800:25600]]), "wav_lengths": torch.tensor([12800, 9000])}
    for mode in ("melt", "dp"):
        model = tiny_codec(train_segmentation=mode, melt_steps=10, freeze_encoder=(mode == "dp")).train()
        losses = model.training_step(batch, step=5)
        losses["loss"].backward()
        assert math.isfinite(float(losses["loss"].detach()))
        encoder_grad = model.encoder.conv_in.parametrizations.weight.original1.grad
        assert (encoder_grad is None) == (mode == "dp")  # Cool: the encoder is frozen
    model = tiny_codec(use_gan=True).train()
    disc = model.build_discriminator()
    losses = model.training_step(batch, step=0, return_audio=True)
    assert {"adv", "fm"} <= set(losses) and losses["audio"].shape == (2, 12800)
    losses["loss"].backward()
    assert all(p.grad is None for p in disc.parameters())  # generator losses leave the discriminator alone
    d_losses = model.discriminator_step(batch, losses["audio"])
    d_losses["loss"].backward()
    assert any(p.grad is not None for p in disc.parameters())
    assert not any("disc" in key for key in model.state_dict())  # not part of the codec's checkpoint


def test_random_segments():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([50, 37, 3, 1])
    seg = random_segments(lengths, 0.6, 8, gen)
    assert torch.equal(seg.sum(1), lengths)
    real = seg > 0
    assert int(seg.max()) <= 8 and torch.equal(real, torch.arange(seg.shape[1])[None] < real.sum(1, keepdim=True))
    assert torch.equal(random_segments(lengths, 0.0, 8, gen), (torch.arange(50)[None] < lengths[:, None]).long())
    assert bool((random_segments(lengths, 1.0, 8, gen, unmerged_prob=1.0)[lengths > 0].max() == 1))
    big = random_segments(torch.full((64,), 200), 0.5, 8, gen)
    share = float((big * (big > 1)).sum()) / float(big.sum())
    assert 0.4 < share < 0.6
    assert melt_long_share(0, 100, 0.6) == 0.0 and melt_long_share(50, 100, 0.6) == pytest.approx(0.3)
    assert melt_long_share(500, 100, 0.6) == pytest.approx(0.6)
