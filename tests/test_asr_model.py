"""The CTC phone recogniser: padding exactness, 12.5 Hz features, greedy decoding, save/load, overfitting."""
from __future__ import annotations

import pytest
import torch

from codec.asr.ctc_model import CTCPhoneRecognizer, CTCRecognizerConfig
from codec.common.errors import CheckpointError, ConfigError
from codec.framing import num_base_frames, pool_frames

SYMBOLS = ["<pad>", "a", "b", "c", "d"]


def tiny(**overrides) -> CTCPhoneRecognizer:
    torch.manual_seed(0)
    config = CTCRecognizerConfig(symbols=SYMBOLS, dim=32, num_layers=1, num_heads=2, ffn_dim=64, dropout=0.0)
    for key, value in overrides.items():
        setattr(config, key, value)
    return CTCPhoneRecognizer(config).eval()


def test_features_are_padding_exact_and_on_the_base_grid():
    model = tiny()
    wav = torch.randn(3, 40_000) * 0.1
    lengths = torch.tensor([40_000, 25_000, 1_281])
    feats, out_lengths = model.extract(wav, lengths)
    assert out_lengths.tolist() == [32, 20, 2] == [num_base_frames(int(n)) for n in lengths]
    assert feats.shape == (3, 32, 32)
    for i, n in enumerate(lengths.tolist()):
        alone, _ = model.extract(wav[i : i + 1, :n])
        torch.testing.assert_close(feats[i, : out_lengths[i]], alone[0], atol=1e-5, rtol=1e-4)
        assert float(feats[i, out_lengths[i] :].abs().sum()) == 0.0


def test_pool_frames_averages_each_80ms_window():
    x = torch.arange(8, dtype=torch.float32).reshape(1, 8, 1)  # 25 Hz: two frames per 80 ms window
    pooled = pool_frames(x, torch.tensor([7]), 25.0, torch.tensor([4]))
    assert pooled[0, :, 0].tolist() == [0.5, 2.5, 4.5, 6.0]  # the last window has one valid frame
    slow = pool_frames(x[:, :3], torch.tensor([3]), 6.25, torch.tensor([6]))  # slower source: nearest frame
    assert slow[0, :, 0].tolist() == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]


def test_greedy_decoding_collapses_repeats_and_blanks():
    model = tiny()
    # Frame-wise best symbols: a a _ a b b _ _ c  ->  a a b c (a blank separates the repeated a).
    pattern = torch.tensor([1, 1, 0, 1, 2, 2, 0, 0, 3])
    logits = torch.full((1, len(pattern), len(SYMBOLS)), -10.0)
    logits[0, torch.arange(len(pattern)), pattern] = 10.0
    model.forward = lambda wav, wav_lengths=None: (logits.log_softmax(-1), None, torch.tensor([len(pattern)]))
    assert model.transcribe_ids(torch.zeros(1, 100)) == [[1, 1, 2, 3]]
    assert model.transcribe(torch.zeros(1, 100)) == [["a", "a", "b", "c"]]


def test_save_and_load_round_trip(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "asr")
    loaded = CTCPhoneRecognizer.from_pretrained(tmp_path / "asr")
    assert loaded.config == model.config
    wav = torch.randn(1, 16_000) * 0.1
    torch.testing.assert_close(loaded.extract(wav)[0], model.extract(wav)[0])
    half = tmp_path / "half"
    model.save_pretrained(half, dtype=torch.float16)
    assert (half / "model.safetensors").stat().st_size < (tmp_path / "asr" / "model.safetensors").stat().st_size * 0.6
    assert CTCPhoneRecognizer.from_pretrained(half).head.weight.dtype == torch.float32


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        CTCPhoneRecognizer.from_pretrained(tmp_path / "none")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"dim": 32, "colour": "red", "symbols": ["<pad>", "a"]}')
    with pytest.raises(ConfigError, match="colour"):
        CTCPhoneRecognizer.from_pretrained(tmp_path / "bad")
    model = tiny()
    model.save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text((tmp_path / "other" / "config.json").read_text().replace('"dim": 32', '"dim": 48'))
    with pytest.raises((CheckpointError, RuntimeError)):
        CTCPhoneRecognizer.from_pretrained(tmp_path / "other")


def test_ctc_training_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = tiny(freq_masks=0, time_masks=0).train()
    t = torch.arange(16_000) / 16_000
    # Two "utterances": a low tone then a high tone, and the reverse; targets say which order.
    low, high = torch.sin(2 * torch.pi * 300 * t[:8000]), torch.sin(2 * torch.pi * 2000 * t[:8000])
    batch = {
        "wav": torch.stack([torch.cat([low, high]), torch.cat([high, low])]) * 0.5,
        "wav_lengths": torch.tensor([16_000, 16_000]),
        "targets": torch.tensor([[1, 2], [2, 1]]),
        "target_lengths": torch.tensor([2, 2]),
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = model.training_step(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]
    model.eval()
    assert model.transcribe_ids(batch["wav"]) == [[1, 2], [2, 1]]


@pytest.mark.skipif(__import__("shutil").which("espeak-ng") is None, reason="espeak-ng not installed")
def test_bundled_recogniser_transcribes_a_training_voice():
    import jiwer

    from flexitts.corpus.synth import synthesize
    from flexitts.corpus.voices import Speaker, resolve_voice
    from flexitts.text import PhonemeTable, phonemize
    from flexitts.text import phones_only

    model = CTCPhoneRecognizer.from_pretrained()
    assert PhonemeTable(model.config.symbols) == PhonemeTable.default()
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    wav = torch.from_numpy(synthesize(Speaker("mb-us2", resolve_voice("mb-us2"), rate=155), text))
    [hypothesis] = model.transcribe(wav[None])
    reference = phones_only(phonemize(text))
    assert jiwer.wer(" ".join(reference), " ".join(hypothesis)) < 0.2
    feats, lengths = model.extract(wav[None])
    assert feats.shape == (1, num_base_frames(wav.shape[0]), model.feature_dim) and torch.isfinite(feats).all()


def test_read_features_decodes_what_the_head_reads_at_the_recognisers_rate():
    import torch

    from codec.asr.ctc_model import CTCPhoneRecognizer, CTCRecognizerConfig

    torch.manual_seed(0)
    asr = CTCPhoneRecognizer(CTCRecognizerConfig(symbols=["<blank>", "a", "b", "c"], dim=8, num_layers=1,
                                                 num_heads=2, ffn_dim=16)).eval()
    with torch.no_grad():  # a head that reads phone k off feature dimension k
        asr.head.weight.zero_()
        asr.head.bias.zero_()
        for k in range(4):
            asr.head.weight[k, k] = 10.0
    feats = torch.zeros(2, 6, 8)
    for t, k in enumerate([1, 1, 0, 2, 3, 3]):
        feats[:, t, k] = 1.0
    ids = asr.read_features(feats, torch.tensor([6, 4]))
    assert ids == [[1, 2, 3], [1, 2]]  # repeats collapse, the blank separates, padding is ignored


def test_speaker_augmentation_warps_formants_and_tempo_only_in_training():
    import torch

    from codec.asr.augment import speed_perturb, warp_mel
    from codec.asr.ctc_model import CTCPhoneRecognizer, CTCRecognizerConfig

    feats = torch.zeros(2, 3, 40)
    feats[:, :, 10] = 1.0  # a formant at bin 10
    assert torch.allclose(warp_mel(feats, torch.ones(2)), feats)
    warped = warp_mel(feats, torch.tensor([1.2, 0.8]))
    assert int(warped[0, 0].argmax()) == 12 and int(warped[1, 0].argmax()) == 8  # up for alpha > 1, down below
    wav = torch.randn(2, 16000)
    slow, lengths = speed_perturb(wav, torch.tensor([16000, 8000]), 1.1)
    assert slow.shape[-1] == 17600 and lengths.tolist() == [17600, 8800]
    same, same_lengths = speed_perturb(wav, torch.tensor([16000, 8000]), 1.0)
    assert same is wav and same_lengths.tolist() == [16000, 8000]

    torch.manual_seed(0)
    asr = CTCPhoneRecognizer(CTCRecognizerConfig(symbols=["<blank>", "a", "b"], dim=16, num_layers=1, num_heads=2,
                                                 ffn_dim=32, speed_perturb=0.1, vtlp=0.1, dropout=0.0))
    batch = {"wav": torch.randn(2, 8000), "wav_lengths": torch.tensor([8000, 6000]),
             "targets": torch.tensor([[1, 2], [2, 0]]), "target_lengths": torch.tensor([2, 1])}
    loss = asr.train().training_step(batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    asr.eval()  # inference never perturbs: the same audio gives the same features
    a, _ = asr.encode(batch["wav"], batch["wav_lengths"])
    b, _ = asr.encode(batch["wav"], batch["wav_lengths"])
    assert torch.equal(a, b)
