"""The codec's sub-frame phone reader: token positions, padding, distillation, code reading, fine-tuning into it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from codec import FlexiCodec, FlexiCodecConfig
from codec.common.errors import CheckpointError, ConfigError
from codec.common.pretrained import init_state_for
from codec.subframe import SubframePhoneReader, token_positions
from tests.test_codec_model import overfit, speech, tiny_codec  # noqa: F401 (speech is a fixture)


def test_token_positions():
    offset, length = token_positions(torch.tensor([[2, 1, 3, 0], [1, 1, 0, 0]]))
    assert offset.tolist() == [[0, 1, 0, 0, 1, 2], [0, 0, 0, 0, 0, 0]]
    assert length.tolist() == [[2, 2, 1, 3, 3, 3], [1, 1, 0, 0, 0, 0]]


def test_reader_positions_tell_subframes_apart_and_padding_changes_nothing():
    torch.manual_seed(0)
    reader = SubframePhoneReader(latent_dim=6, out_dim=5, hidden=16, max_len=4, subframes=2)
    decoded = torch.randn(2, 3, 6)
    seg = torch.tensor([[3, 1, 2], [2, 1, 0]])
    out, valid = reader(decoded, seg)
    assert out.shape == (2, 12, 5) and valid.sum(dim=1).tolist() == [12, 6]
    # The six sub-frames of the 3-frame token share one embedding but differ by position.
    assert len({tuple(v.round(decimals=5).tolist()) for v in out[0, :6]}) == 6
    assert torch.all(out[1, 6:] == 0)
    alone, alone_valid = reader(decoded[1:, :2], seg[1:, :2])
    torch.testing.assert_close(alone[0], out[1, :6])
    assert alone_valid[0].all()


def test_subframe_distillation_trains_the_codes_and_the_reader_not_the_recogniser(speech):  # noqa: F811
    model = tiny_codec(quantizer_dropout=0.0, bypass_prob=0.0, tau_range=[0.5, 0.5], phone_subframes=2,
                       lambda_subphone=1.0).train()
    with torch.no_grad():  # a random tiny recogniser reads nearly uniform phones: sharpen its head
        model.asr_extractor.head.weight.mul_(20.0)
    history = overfit(model, speech, 30)
    subphone = [h["subphone"] for h in history]
    assert np.mean(subphone[-5:]) < 0.6 * subphone[0], subphone
    assert model.asr_extractor.head.weight.grad is None
    assert model.semantic_encoder.proj_in.weight.grad is not None  # the codes themselves are pulled
    # Over exactly the recogniser's frames (13 frames of 12.5 Hz = 26 at 25 Hz), the loss is a proper KL.
    _, frames, hidden, lengths = model.asr_extractor.extract_with_hidden(speech[:16000][None])
    assert 2 * int(frames) == int(lengths) or 2 * int(frames) == int(lengths) + 1
    with torch.no_grad():
        kl = model.subframe_distillation(torch.zeros(1, 4, model.config.latent_dim), torch.tensor([[4, 4, 4, 1]]),
                                         hidden, lengths)
    assert torch.isfinite(kl) and float(kl) > 0


def test_read_code_phones_with_and_without_a_reader(speech):  # noqa: F811
    for overrides in ({}, {"phone_subframes": 2}):
        model = tiny_codec(**overrides)
        with torch.no_grad():
            model.asr_extractor.head.weight.mul_(20.0)
            model.semantic_decoder.proj_out.weight.normal_(std=0.5)
        tokens = model.encode(speech[:32000], 16000, merging_threshold=0.8)
        count = int(tokens.num_tokens[0])
        ids = model.read_code_phones(tokens.semantic_codes[0, :count], tokens.token_lengths[0, :count])
        frames = int(tokens.token_lengths[0].sum())
        assert all(0 < i < 3 for i in ids)  # no blanks in a greedy CTC reading
        assert len(ids) <= frames * (2 if overrides else 1)


def test_reader_settings_are_checked_and_fingerprinted():
    base = FlexiCodecConfig.demo()
    assert FlexiCodecConfig.demo(phone_subframes=0, lambda_subphone=0.0).fingerprint() == base.fingerprint()
    assert FlexiCodecConfig.demo(phone_subframes=2).fingerprint() != base.fingerprint()
    with pytest.raises(ConfigError, match="phone_subframes"):
        FlexiCodecConfig.demo(lambda_subphone=1.0)


def test_fine_tuning_into_a_codec_with_a_reader():
    old, new = tiny_codec(), tiny_codec(phone_subframes=2)
    state = init_state_for(new, old.state_dict(), "old codec")
    new.load_state_dict(state)
    assert torch.equal(new.align_proj.weight, old.align_proj.weight)
    assert any(k.startswith("subframe_reader.") for k in state)
    with pytest.raises(CheckpointError, match="does not fit"):
        init_state_for(old, new.state_dict(), "new codec")  # the reader has nowhere to go
    with pytest.raises(CheckpointError, match="other shapes"):
        init_state_for(tiny_codec(codebook_size=32), old.state_dict(), "old codec")
    assert isinstance(new, FlexiCodec)
