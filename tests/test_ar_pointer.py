"""The AR's phone pointer: phone onsets by CTC forced alignment, token progress, the cache's alignment, the
model's zero start and training, and generation that walks the text (EOS waits for the last phone; batching,
the KV cache and text guidance keep their guarantees)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ar import ARConfig, ARModel
from ar.pointer import even_onsets, spoken_positions, token_progress
from codec.common.errors import ConfigError, TextError
from codec.common.pretrained import init_state_for
from flexitts.data.phone_alignment import ctc_onsets, phone_onsets, pointer_skip_symbols
from flexitts.data.phone_alignment import spoken_positions as data_spoken_positions
from flexitts.data.token_cache import TokenCache, TokenItem, align_token_cache, read_token_cache_item, write_token_cache_item
from flexitts.errors import DataError
from flexitts.text import PhonemeTable
from flexitts.training.ar import ARTokenDataset, collate_ar
from tests.test_ar_model import SYMBOLS, fit_batch, random_batch, tiny_config
from tests.conftest import tone
from tests.test_ar_training import write_cache

SKIP = ["<pad>", "<unk>", "<sos>", "<eos>", "<task>", "<sep>", "p0", "p1"]  # p0/p1 stand for stress and space


def pointer_model(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> ARModel:
    torch.manual_seed(seed)
    return ARModel(tiny_config(phone_pointer=True, pointer_skip=SKIP, **overrides)).to(dtype).eval()


def with_pointer(batch: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Add the pointer's keys to a `random_batch`: its phones, and a progress that grows by 0..2 per token."""
    g = torch.Generator().manual_seed(seed)
    spoken, progress = [], []
    for i in range(batch["phonemes"].shape[0]):
        ids = batch["phonemes"][i, : int(batch["phoneme_lengths"][i])].tolist()
        phones = [ids[k] for k in spoken_positions(ids, SYMBOLS, SKIP)]
        steps = torch.randint(0, 3, (int(batch["code_lengths"][i]),), generator=g)
        progress.append(torch.cumsum(steps, 0).clamp(max=len(phones)).tolist())
        spoken.append(phones)
    rows = max(1, max(len(s) for s in spoken))
    out = dict(batch)
    out["spoken"] = torch.tensor([s + [0] * (rows - len(s)) for s in spoken])
    out["spoken_lengths"] = torch.tensor([len(s) for s in spoken])
    out["progress"] = torch.zeros_like(batch["codes"])
    for i, p in enumerate(progress):
        out["progress"][i, : len(p)] = torch.tensor(p, dtype=torch.long)
    return out


# -- alignment ------------------------------------------------------------------------------------------------
def test_token_progress_counts_the_phones_started_by_each_token_end():
    durations = torch.tensor([2, 1, 3, 2])  # token ends at 2, 3, 6, 8
    onsets = torch.tensor([0.0, 0.5, 2.0, 2.5, 5.9, 7.0])
    assert token_progress(durations, onsets).tolist() == [2, 4, 5, 6]
    assert token_progress(durations, onsets[[3, 0, 5, 1, 2, 4]]).tolist() == [2, 4, 5, 6]  # any order
    random = torch.rand(40) * 30
    progress = token_progress(torch.randint(1, 9, (12,)), random)
    assert bool((progress[1:] >= progress[:-1]).all()) and int(progress.max()) <= 40
    assert even_onsets(4, 8).tolist() == [0.0, 2.0, 4.0, 6.0]


def test_spoken_positions_skip_what_is_not_a_phone():
    ids = [SYMBOLS.index(s) for s in ["p5", "p0", "p1", "p7", "<sep>", "p9"]]
    assert spoken_positions(ids, SYMBOLS, SKIP) == [0, 3, 5]
    table = PhonemeTable.default()
    symbols = list(table.symbols)
    text = table.encode(["h", "ə", "l", "ˈ", "oʊ", " ", "w", "ɜː", "l", "d", "."])
    assert [symbols[text[i]] for i in data_spoken_positions(text, symbols)] == ["h", "ə", "l", "oʊ", "w", "ɜː", "l", "d"]
    assert "ˈ" in pointer_skip_symbols(symbols) and "ə" not in pointer_skip_symbols(symbols)


def _peaked_log_probs(frames: int, vocab: int, peaks: dict[int, int]) -> torch.Tensor:
    """Blank everywhere except `peaks` (frame -> label)."""
    logits = torch.full((frames, vocab), -8.0)
    logits[:, 0] = 0.0
    for frame, label in peaks.items():
        logits[frame, label] = 4.0
    return torch.log_softmax(logits, dim=-1)


def test_ctc_onsets_find_each_phone_including_repeats():
    log_probs = _peaked_log_probs(20, 6, {2: 3, 7: 4, 8: 4, 11: 4, 15: 5})  # "3 4 4 5": the two 4s split by blanks
    assert ctc_onsets(log_probs, [3, 4, 4, 5]).tolist() == [2.0, 7.0, 11.0, 15.0]
    # Fewer frames than the targets need: spread evenly, still one onset per phone.
    assert ctc_onsets(_peaked_log_probs(3, 6, {}), [1, 2, 3, 3]).tolist() == [0.0, 0.75, 1.5, 2.25]
    assert ctc_onsets(log_probs, []).shape == (0,)


class _PeakRecognizer(torch.nn.Module):
    """Stands in for the CTC recogniser: 25 Hz frames, phone k of the text peaking at frame 4k + 1."""

    def __init__(self, phones: list[int], vocab: int):
        super().__init__()
        self.phones, self.vocab = phones, vocab
        self.config = type("Config", (), {"frame_rate": 25.0, "blank_id": 0, "symbols": list(PhonemeTable.default().symbols)})()

    def forward(self, wav: torch.Tensor, wav_lengths: torch.Tensor):
        frames = wav.shape[1] // 640
        lp = _peaked_log_probs(frames, self.vocab, {4 * k + 1: p for k, p in enumerate(self.phones)})
        lengths = torch.div(wav_lengths, 640, rounding_mode="floor")
        return lp[None].expand(wav.shape[0], -1, -1), None, lengths


def test_phone_onsets_are_in_base_frames_and_the_cache_keeps_them(tmp_path, write_wav):
    table = PhonemeTable.default()
    ids = table.encode(["h", "ə", " ", "l", "oʊ"])
    phones = [ids[i] for i in data_spoken_positions(ids, table.symbols)]
    recognizer = _PeakRecognizer(phones, len(table.symbols))
    wav = torch.zeros(1, 16000)
    onsets = phone_onsets(recognizer, wav, torch.tensor([16000]), [phones])[0]
    assert onsets.tolist() == [0.5, 2.5, 4.5, 6.5]  # 25 Hz frames 1, 5, 9, 13

    audio = write_wav("u0.wav", tone(1.0, 16000), 16000)
    item = TokenItem("u0", "s", audio, "hello", np.asarray(ids), 13, {"t1": np.arange(13)}, {"t1": np.ones(13, np.int64)})
    root = tmp_path / "cache"
    write_token_cache_item(root, item, 0)
    from flexitts.data.token_cache import write_token_cache_index

    write_token_cache_index(root, {"settings": ["t1"]}, 1)
    assert not TokenCache(root).aligned and TokenCache(root).item(0).phone_onsets is None
    cache = align_token_cache(root, recognizer, progress=None)
    assert cache.aligned
    np.testing.assert_array_equal(read_token_cache_item(root / "items" / "000000.npz").phone_onsets, onsets)
    np.testing.assert_array_equal(cache.item(0).codes["t1"], np.arange(13))  # the tokens are kept
    align_token_cache(root, _PeakRecognizer([], 5))  # resumes: nothing left to align, nothing rewritten
    np.testing.assert_array_equal(TokenCache(root).item(0).phone_onsets, onsets)


# -- model ----------------------------------------------------------------------------------------------------
def test_config_needs_the_symbols_to_skip():
    with pytest.raises(ConfigError, match="pointer_skip"):
        tiny_config(phone_pointer=True)
    with pytest.raises(ConfigError, match="max_advance"):
        tiny_config(phone_pointer=True, pointer_skip=SKIP, max_advance=0)


def test_a_new_pointer_leaves_a_trained_model_unchanged():
    torch.manual_seed(0)
    base = ARModel(tiny_config()).eval()
    model = pointer_model(seed=1)
    model.load_state_dict(init_state_for(model, base.state_dict(), "base"))
    batch = random_batch([(9, 12), (14, 7)])
    with torch.no_grad():
        expected = base.item_losses(batch)["code_loss"]
        got = model.item_losses(with_pointer(batch))["code_loss"]
    torch.testing.assert_close(got, expected)


def test_padding_does_not_change_pointer_losses():
    model = pointer_model(dtype=torch.float64)
    batch = with_pointer(random_batch([(9, 12), (14, 7), (5, 3)]))
    with torch.no_grad():
        together = model.teacher_forced_outputs(batch)
        for i in range(3):
            keep = {k: v[i : i + 1] for k, v in batch.items()}
            g, p, s = int(keep["code_lengths"][0]), int(keep["phoneme_lengths"][0]), int(keep["spoken_lengths"][0])
            alone = model.teacher_forced_outputs({**keep, "codes": keep["codes"][:, :g], "durations": keep["durations"][:, :g],
                                                  "progress": keep["progress"][:, :g], "phonemes": keep["phonemes"][:, :p],
                                                  "spoken": keep["spoken"][:, : max(1, s)]})
            rows = together["dur_item"] == i
            torch.testing.assert_close(together["adv_logits"][rows], alone["adv_logits"])
            torch.testing.assert_close(together["code_logits"][together["code_item"] == i], alone["code_logits"])


def test_pointer_training_learns_codes_and_advances():
    model = pointer_model()
    first, last = fit_batch(model, with_pointer(random_batch([(9, 12), (14, 10), (6, 8)])))
    assert last["adv_loss"] < 0.5 * first["adv_loss"] and last["adv_acc"] > 0.9
    assert last["loss"] < 0.5 * first["loss"]
    assert model.pointer_code.mix[1].weight.abs().sum() > 0  # the pointer is used, not left at zero


# -- generation -----------------------------------------------------------------------------------------------
def _biased(model: ARModel, eos: float, advance: int | None = None) -> ARModel:
    with torch.no_grad():
        proj = model.code_head.proj
        (proj[-1] if isinstance(proj, torch.nn.Sequential) else proj).bias[model.config.eos_id] = eos
        if advance is not None:
            model.advance_head.bias.zero_()
            model.advance_head.bias[1 : advance + 1] = torch.arange(1, advance + 1) * 15.0  # the most, or as many as are left
    return model


def test_eos_waits_until_every_phone_has_started():
    text = [SYMBOLS.index(s) for s in ["p4", "p0", "p5", "p6", "p1", "p7", "p8"]]  # 5 phones
    eager = _biased(pointer_model(), eos=40.0, advance=1)
    out = eager.generate(text, seed=0, min_len_ratio=0.01)
    assert int(out.lengths[0]) == 5 and bool(out.ended_by_eos[0])  # one phone per token, then EOS
    assert out.progress[0].tolist() == [1, 2, 3, 4, 5]
    assert ARModel(tiny_config()).generate(text, seed=0).progress is None  # no pointer, no progress
    two = _biased(pointer_model(), eos=40.0, advance=2)
    assert int(two.generate(text, seed=0, min_len_ratio=0.01).lengths[0]) == 3  # 2 + 2 + 1 (never past the end)
    # A prompt's phones have all started: the new text's 5 still take 5 tokens.
    prompt = [SYMBOLS.index(s) for s in ["p9", "p10", "p11"]]
    out = eager.generate(text, prompt_codes=[1, 2, 3, 4], prompt_durations=[1, 2, 1, 2], prompt_phonemes=prompt,
                         prompt_onsets=[0.0, 2.0, 4.5], seed=0, min_len_ratio=0.01)
    assert int(out.lengths[0]) == 5 and out.progress[0].tolist() == [1, 2, 3, 4, 5]  # counted from the new text
    # A pace whose upper bound is reached after 2 frames still lets every phone start (then stops, without EOS).
    never = _biased(pointer_model(), eos=-40.0, advance=1)
    out = never.generate(text, prompt_codes=[1, 2, 3, 4], prompt_durations=[1, 2, 1, 2], prompt_phonemes=prompt,
                         seed=0, pace=(0.0, 0.1), duration_top_k=1)
    assert int(out.lengths[0]) == 5 and out.progress[0].tolist() == [1, 2, 3, 4, 5] and not bool(out.ended_by_eos[0])
    plain = ARModel(tiny_config())  # without a pointer the bound cuts as before
    assert int(plain.generate(text, prompt_codes=[1, 2], prompt_durations=[1, 2], prompt_phonemes=prompt, seed=0,
                              pace=(0.0, 0.1)).lengths[0]) == 1


def test_match_pace_packs_the_prompts_phones_per_frame_into_longer_tokens():
    # Every token lasts 4 frames and the advance head prefers 1 phone a token; the prompt speaks 3 phones in
    # 6 frames (0.5 a frame), so at its pace each 4-frame token should move the pointer by about 2.
    text = [SYMBOLS.index(f"p{k}") for k in range(2, 26)]  # 24 phones
    prompt = dict(prompt_codes=[1, 2, 3, 4], prompt_durations=[1, 2, 1, 2],
                  prompt_phonemes=[SYMBOLS.index(s) for s in ["p27", "p28", "p29"]], prompt_onsets=[0.0, 2.0, 4.0])
    model = _biased(pointer_model(), eos=40.0)
    with torch.no_grad():
        model.duration_head.bias.zero_()
        model.duration_head.bias[3] = 20.0  # 4 frames
        model.advance_head.bias.zero_()
        model.advance_head.bias[1] = 5.0
    plain = model.generate(text, seed=0, min_len_ratio=0.01, **prompt)
    paced = model.generate(text, seed=0, min_len_ratio=0.01, match_pace=True, **prompt)
    for out in (plain, paced):
        assert int(out.progress[0, -1]) == 24 and bool(out.ended_by_eos[0])  # every phone spoken either way
        assert bool((out.durations[0] == 4).all())
    assert 24 / (4 * int(plain.lengths[0])) <= 0.35  # about a phone a token: far below the prompt's pace
    phones_per_frame = 24 / (4 * int(paced.lengths[0]))
    assert 0.43 <= phones_per_frame <= 0.57, phones_per_frame
    # Without a prompt there is no pace to match: the same draws as without the option.
    alone = model.generate(text, seed=0, min_len_ratio=0.01)
    assert torch.equal(alone.codes, model.generate(text, seed=0, min_len_ratio=0.01, match_pace=True).codes)


def test_pointer_generation_batches_caches_and_guides_consistently():
    model = pointer_model(dtype=torch.float64)
    texts = [[SYMBOLS.index(f"p{k}") for k in (4, 0, 9, 12, 5)], [SYMBOLS.index(f"p{k}") for k in (20, 21, 1, 22)]]
    prompt = dict(prompt_codes=[[3, 4, 5]], prompt_durations=[[2, 1, 3]], prompt_phonemes=[[SYMBOLS.index("p7"), SYMBOLS.index("p8")]])
    together = model.generate(texts, seed=[5, 6], **prompt)
    for i in range(2):
        alone = model.generate(texts[i], seed=5 + i, **prompt)
        assert torch.equal(together.item(i)[0], alone.item(0)[0]) and torch.equal(together.item(i)[1], alone.item(0)[1])
    paced = model.generate(texts, seed=[5, 6], match_pace=True, **prompt)  # the pace tilt is per item too
    for i in range(2):
        alone = model.generate(texts[i], seed=5 + i, match_pace=True, **prompt)
        assert torch.equal(paced.item(i)[0], alone.item(0)[0]) and torch.equal(paced.item(i)[1], alone.item(0)[1])
    recomputed = model.generate(texts, seed=[5, 6], use_cache=False, **prompt)
    assert torch.equal(recomputed.codes, together.codes) and torch.equal(recomputed.durations, together.durations)
    guided = model.generate(texts, seed=[5, 6], text_cfg=1.0, **prompt)
    assert guided.codes.shape[0] == 2 and bool((guided.lengths > 0).all())
    explicit = model.generate(texts, seed=[5, 6], prompt_onsets=[0.0, 3.0], **prompt)  # = even spreading over 6 frames
    assert torch.equal(explicit.codes, together.codes)
    as_numpy = model.generate(texts, seed=[5, 6], prompt_onsets=list(np.array([0.0, 3.0], np.float32)), **prompt)
    assert torch.equal(as_numpy.codes, together.codes)


def test_pointer_generation_errors_are_one_line():
    model = pointer_model()
    with pytest.raises(ConfigError, match="prompt_onsets has 3 onsets"):
        model.generate([SYMBOLS.index("p4")], prompt_codes=[1], prompt_durations=[2], prompt_phonemes=[SYMBOLS.index("p7")],
                       prompt_onsets=[0.0, 1.0, 2.0])
    with pytest.raises(ConfigError, match="match_pace needs a phone-pointer"):
        ARModel(tiny_config()).generate([SYMBOLS.index("p4")], match_pace=True)
    with pytest.raises(TextError, match="no phones"):
        model.generate([SYMBOLS.index("p0"), SYMBOLS.index("p1")])


# -- training data --------------------------------------------------------------------------------------------
def test_dataset_gives_the_joined_phones_and_progress(tmp_path):
    root = write_cache(tmp_path / "cache", 6)
    symbols = list(PhonemeTable.default().symbols)
    config = dataclasses.replace(tiny_config(symbols=symbols), phone_pointer=True, pointer_skip=pointer_skip_symbols(symbols))
    model = ARModel(config)
    with pytest.raises(DataError, match="flexitts data align"):
        ARTokenDataset(TokenCache(root), model)
    cache = TokenCache(root)
    for n in range(len(cache)):  # onsets: one phone every 2 frames
        item = cache.item(n)
        item.phone_onsets = np.arange(len(data_spoken_positions(item.phonemes, symbols)), dtype=np.float32) * 2
        write_token_cache_item(root, item, n)
    from flexitts.data.token_cache import write_token_cache_index

    write_token_cache_index(root, {**{k: v for k, v in cache.meta.items() if k != "format"}, "phone_onsets": True}, len(cache))
    dataset = ARTokenDataset(TokenCache(root), model, prompt_prob=1.0, seed=0)
    example = dataset.examples[0]
    assert example.prefix >= 0
    got = dataset[0]
    ref, item = TokenCache(root).item(example.prefix), TokenCache(root).item(example.index)
    onsets = np.concatenate([ref.phone_onsets, item.phone_onsets + ref.frames])
    durations = np.concatenate([ref.durations[example.setting], item.durations[example.setting]])
    np.testing.assert_array_equal(got["progress"], token_progress(torch.as_tensor(durations), torch.as_tensor(onsets)).numpy())
    assert len(got["spoken"]) == len(onsets)
    batch = collate_ar([dataset[i] for i in range(4)])
    assert batch["spoken"].shape[0] == 4 and batch["progress"].shape == batch["codes"].shape
    out = model.training_step(batch)
    assert torch.isfinite(out["loss"]) and "adv_acc" in out


def test_data_align_cli_adds_onsets_to_every_item(tmp_path, write_wav, capsys):
    from codec.asr.ctc_model import CTCPhoneRecognizer, CTCRecognizerConfig
    from flexitts.cli.main import main
    from flexitts.data.token_cache import write_token_cache_index

    table = PhonemeTable.default()
    torch.manual_seed(0)
    CTCPhoneRecognizer(CTCRecognizerConfig(symbols=list(table.symbols), dim=32, num_layers=1, num_heads=2, ffn_dim=64,
                                           dropout=0.0)).save_pretrained(tmp_path / "asr")
    root = tmp_path / "cache"
    texts = [["h", "ə", " ", "l", "oʊ"], ["w", "ɜː", "l", "d"], ["æ"]]
    for n, symbols in enumerate(texts):
        audio = write_wav(f"u{n}.wav", tone(0.5 + 0.25 * n, 16000), 16000)
        frames = int(-(-(8000 + 4000 * n) // 1280))
        write_token_cache_item(root, TokenItem(f"u{n}", "s", audio, "x", np.asarray(table.encode(symbols)), frames,
                                               {"t1": np.zeros(frames, np.int64)}, {"t1": np.ones(frames, np.int64)}), n)
    write_token_cache_index(root, {"settings": ["t1"]}, len(texts))
    assert main(["data", "align", "--cache", str(root), "--asr", str(tmp_path / "asr")]) == 0
    assert "3 utterances, 9 phones" in capsys.readouterr().out
    cache = TokenCache(root)
    assert cache.aligned
    for n in range(len(cache)):
        onsets = cache.item(n).phone_onsets
        assert len(onsets) == len(data_spoken_positions(cache.item(n).phonemes, table.symbols))
        assert np.all(np.diff(onsets) > 0) and 0 <= onsets.min() and onsets.max() <= cache.item(n).frames


def test_phone_guidance_keeps_codes_to_the_phones_around_the_pointer():
    model = _biased(pointer_model(), eos=-5.0, advance=1)  # one phone per token
    vocab = len(SYMBOLS)
    table = torch.zeros(vocab, 64)
    table[torch.arange(vocab), torch.arange(vocab)] = 1.0  # code c < 36 says phone c
    table[0, vocab:] = 1.0  # the other codes say nothing a text holds
    text = [SYMBOLS.index(f"p{k}") for k in (4, 9, 12, 5, 20, 7)]
    out = model.generate(text, seed=3, phone_guide=table, phone_guide_weight=50.0, min_len_ratio=0.01)
    codes = out.item(0)[0].tolist()
    assert len(codes) >= len(text)
    for n, code in enumerate(codes[: len(text)]):  # code n is drawn with the pointer at phone n
        assert code in {text[k] for k in (n - 1, n, n + 1) if 0 <= k < len(text)}, (n, code)
    free = model.generate(text, seed=3, min_len_ratio=0.01).item(0)[0].tolist()
    assert any(c >= vocab for c in free)  # without guidance the model's own choices include silent codes
    off = model.generate(text, seed=3, phone_guide=table, phone_guide_weight=0.0, min_len_ratio=0.01).item(0)[0].tolist()
    assert off == free
    with pytest.raises(ConfigError, match="phones x codes"):
        model.generate(text, phone_guide=torch.zeros(5, 64))
    with pytest.raises(ConfigError, match="phone-pointer"):
        ARModel(tiny_config()).generate(text, phone_guide=table)


def test_code_phone_table_is_each_codes_own_reading():
    from tests.test_codec_model import tiny_codec

    for overrides in ({}, {"phone_subframes": 2}):  # the 12.5 Hz reading, and the sub-frame reader
        codec = tiny_codec(**overrides)
        with torch.no_grad():
            codec.asr_extractor.head.weight.mul_(20.0)
            codec.semantic_decoder.proj_out.weight.normal_(std=0.5)
        blank, phones = codec.asr_extractor.config.blank_id, len(codec.asr_extractor.config.symbols)
        table = codec.code_phone_table(chunk=1000)
        size = codec.fsq.codebook_size
        assert table.shape == (phones, size)
        torch.testing.assert_close(table.sum(dim=0), torch.ones(size))
        assert float(table[blank].abs().max()) == 0.0
        for code in (0, 17, size - 1):
            logits, _ = codec.code_phone_logits(torch.tensor([[code]]), torch.tensor([[1]]))
            logits[..., blank] = float("-inf")
            assert int(table[:, code].argmax()) in set(logits[0].argmax(dim=-1).tolist())


def test_code_phone_subframes_place_the_codecs_reading_of_the_codes():
    from itertools import groupby

    from flexitts.data.phone_alignment import code_phone_subframes
    from tests.test_codec_model import tiny_codec

    codec = tiny_codec(phone_subframes=2)
    with torch.no_grad():
        codec.asr_extractor.head.weight.mul_(20.0)
        codec.semantic_decoder.proj_out.weight.normal_(std=0.5)
    gen = torch.Generator().manual_seed(4)
    codes = torch.randint(0, codec.fsq.codebook_size, (12,), generator=gen)
    durations = torch.randint(1, 4, (12,), generator=gen)
    placed = code_phone_subframes(codec, codes, durations)
    read = codec.read_code_phones(codes, durations)
    assert placed.shape == (2 * int(durations.sum()),) and placed.dtype == np.int64
    assert read, "the scaled head should read some phones"
    # The same phones in the same order (runs collapsed: a phone read twice in a row fills one run).
    assert [k for k, _ in groupby(placed.tolist()) if k] == [k for k, _ in groupby(read)]
    first = int(np.flatnonzero(placed)[0])
    assert not placed[:first].any() and placed[first:].all()  # silence only before the first phone
