"""The Whisper encoder feature backend: conversion from the official format, loading, and exact features.

Uses a randomly initialised tiny Whisper saved in openai-whisper's own `.pt` format, so no download is needed.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch

whisper = pytest.importorskip("whisper")
from whisper.audio import log_mel_spectrogram, pad_or_trim  # noqa: E402
from whisper.model import ModelDimensions, Whisper  # noqa: E402

from codec.asr import WhisperFeatureExtractor, load_asr_features  # noqa: E402
from codec.asr.whisper_features import WhisperFeatureConfig, convert_openai_whisper_checkpoint  # noqa: E402
from codec.common.errors import CheckpointError  # noqa: E402

STATE = 32


@dataclass
class _NotAllowed:
    """A custom class: unpickling it would need code the restricted unpickler refuses to import."""

    x: int = 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Whisper, Path, Path]:
    """(reference openai-whisper model, its official-format .pt, our converted folder)."""
    torch.manual_seed(0)
    dims = ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=STATE, n_audio_head=2, n_audio_layer=1,
        n_vocab=64, n_text_ctx=8, n_text_state=STATE, n_text_head=2, n_text_layer=1,
    )
    model = Whisper(dims).eval()
    with torch.no_grad():
        model.decoder.positional_embedding.normal_()  # torch.empty in whisper: give it defined values
        for block in model.encoder.blocks:  # non-trivial layer norms, so ln_post matters in the value checks
            block.attn_ln.weight.uniform_(0.5, 1.5)
        model.encoder.ln_post.bias.normal_()
    root = tmp_path_factory.mktemp("whisper")
    pt = root / "tiny.pt"
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, pt)
    folder = convert_openai_whisper_checkpoint(pt, root / "converted")
    return model, pt, folder


def _wave(num_samples: int, seed: int) -> torch.Tensor:
    """A deterministic speech-like test signal `[S]`: a few tones under noise, varying in loudness."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples) / 16000
    tones = sum(torch.sin(2 * math.pi * f * t) for f in (180.0 + 40 * seed, 730.0, 2100.0))
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 3.0 * t)
    return 0.1 * tones * envelope + 0.02 * torch.randn(num_samples, generator=g)


def _pool_by_hand(frames: torch.Tensor, num_samples: int) -> torch.Tensor:
    """50 Hz frames `[N, D]` -> 12.5 Hz `[ceil(S/1280), D]`: mean of the valid frames in each 80 ms."""
    valid = frames[: math.ceil(num_samples / 320)]
    return torch.stack([valid[4 * k : 4 * k + 4].mean(0) for k in range(math.ceil(num_samples / 1280))])


def _reference(model: Whisper, wav: torch.Tensor) -> torch.Tensor:
    """openai-whisper's own path for one clip under 30 s: pad_or_trim, log-mel, encoder; then pooled by hand."""
    with torch.no_grad():
        mel = log_mel_spectrogram(pad_or_trim(wav), n_mels=80)
        return _pool_by_hand(model.encoder(mel[None])[0], wav.shape[-1])


def test_converter_keeps_only_encoder_weights_unchanged(tiny):
    model, _, folder = tiny
    from safetensors.torch import load_file

    stored = load_file(str(folder / "model.safetensors"))
    originals = {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    assert set(stored) == set(originals)
    assert all(torch.equal(stored[k], originals[k]) for k in originals)
    loaded = WhisperFeatureExtractor.from_pretrained(folder)
    assert all(torch.equal(loaded.state_dict()[k], originals[k]) for k in originals)
    assert loaded.config.n_vocab == 64 and loaded.config.layer is None


def test_features_match_openai_whisper_and_batching(tiny):
    model, _, folder = tiny
    extractor = WhisperFeatureExtractor.from_pretrained(str(folder))  # a plain local path string
    assert extractor.feature_dim == STATE
    lengths = [20000, 33333]  # 1.25 s and 2.08 s: not multiples of 320 or 1280
    items = [_wave(n, seed) for seed, n in enumerate(lengths)]
    batch = torch.zeros(2, max(lengths))
    for b, item in enumerate(items):
        batch[b, : item.shape[0]] = item
    feats, out_lengths = extractor.extract(batch, torch.tensor(lengths))

    expected_t = [math.ceil(n / 1280) for n in lengths]
    assert feats.shape == (2, max(expected_t), STATE)
    assert out_lengths.tolist() == expected_t
    assert torch.count_nonzero(feats[0, expected_t[0] :]) == 0  # zero past the length
    for b, item in enumerate(items):
        alone, alone_len = extractor.extract(item[None])
        assert alone_len.tolist() == [expected_t[b]]
        torch.testing.assert_close(feats[b, : expected_t[b]], alone[0], atol=1e-5, rtol=1e-5)  # batch == per item
        reference = _reference(model, item)
        assert reference.abs().mean() > 0.1  # a real value check, not zeros against zeros
        torch.testing.assert_close(alone[0], reference, atol=1e-5, rtol=1e-5)


def test_inputs_over_30_s_are_windowed(tiny):
    model, _, folder = tiny
    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    num_samples = 480000 + 7000  # 30.44 s: two windows
    wav = _wave(num_samples, 3)
    feats, lengths = extractor.extract(wav[None])
    assert feats.shape == (1, math.ceil(num_samples / 1280), STATE) and lengths.tolist() == [381]
    # whisper.transcribe's windowing: one log-mel over the padded clip, sliced into 3000-frame windows.
    with torch.no_grad():
        mel = log_mel_spectrogram(torch.nn.functional.pad(wav, (0, 2 * 480000 - num_samples)), n_mels=80)
        frames = torch.cat([model.encoder(mel[None, :, :3000])[0], model.encoder(mel[None, :, 3000:])[0]])
    torch.testing.assert_close(feats[0], _pool_by_hand(frames, num_samples), atol=1e-5, rtol=1e-5)


def test_layer_choice_and_freezing(tiny, tmp_path):
    model, pt, _ = tiny
    folder = convert_openai_whisper_checkpoint(pt, tmp_path / "layer1", layer=1)
    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    wav = _wave(9000, 5)
    captured: list[torch.Tensor] = []
    hook = model.encoder.blocks[0].register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.no_grad():
            model.encoder(log_mel_spectrogram(pad_or_trim(wav), n_mels=80)[None])
    finally:
        hook.remove()
    feats, _ = extractor.extract(wav[None])
    torch.testing.assert_close(feats[0], _pool_by_hand(captured[0][0], 9000), atol=1e-5, rtol=1e-5)

    extractor.train()
    assert not extractor.training and not any(p.requires_grad for p in extractor.parameters())
    feats, _ = extractor.extract(wav[None].requires_grad_(True))
    assert not feats.requires_grad


def test_factory(tiny):
    _, _, folder = tiny
    assert isinstance(load_asr_features(f"whisper:{folder}"), WhisperFeatureExtractor)
    with pytest.raises(CheckpointError, match="no bundled Whisper") as info:
        load_asr_features("whisper")
    assert "\n" not in str(info.value) and "convert_openai_whisper_checkpoint" in str(info.value)


def test_loading_errors_are_one_line(tiny, tmp_path):
    _, pt, _ = tiny
    with pytest.raises(CheckpointError, match="no bundled Whisper") as info:
        WhisperFeatureExtractor.from_pretrained()
    assert "\n" not in str(info.value) and "hf://" in str(info.value)
    with pytest.raises(CheckpointError, match="does not exist") as info:
        WhisperFeatureExtractor.from_pretrained(tmp_path / "missing")
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="convert_openai_whisper_checkpoint") as info:
        WhisperFeatureExtractor.from_pretrained(pt)  # the official pickle format is never loaded directly
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        convert_openai_whisper_checkpoint(tmp_path / "missing.pt", tmp_path / "out")


def test_converter_refuses_code_and_foreign_files(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"dims": _NotAllowed(), "model_state_dict": {}}, evil)
    with pytest.raises(CheckpointError, match="cannot read") as info:
        convert_openai_whisper_checkpoint(evil, tmp_path / "out")
    assert "\n" not in str(info.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an openai-whisper checkpoint"):
        convert_openai_whisper_checkpoint(foreign, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_config_validation():
    with pytest.raises(ValueError, match="n_mels"):
        WhisperFeatureConfig(n_mels=64)
    with pytest.raises(ValueError, match="layer"):
        WhisperFeatureConfig(n_audio_layer=2, layer=3)
