"""The AR model: layout and alignment, padding invariance, save/load, generation (KV cache, seeds, batching,
length limits, prompting), input errors. Tiny random models; float64 where tokens must match exactly."""
from __future__ import annotations

import inspect
import math

import pytest
import torch

from ar import ARConfig, ARModel, collate_examples
from codec.common.errors import ConfigError, FlexiTTSError, TextError

SYMBOLS = ["<pad>", "<unk>", "<sos>", "<eos>", "<task>", "<sep>"] + [f"p{i}" for i in range(30)]



def tiny_config(**overrides) -> ARConfig:
    sizes = dict(
        symbols=SYMBOLS, codebook_size=64, code_embedding="fsq", fsq_levels=[4, 4, 4], head_rank=16,
        hidden_size=32, num_layers=2, num_heads=2, ffn_size=64, dropout=0.0, max_positions=512,
    )
    return ARConfig(**{**sizes, **overrides})


def tiny_model(dtype: torch.dtype = torch.float32, seed: int = 0, **overrides) -> ARModel:
    torch.manual_seed(seed)
    return ARModel(tiny_config(**overrides)).to(dtype).eval()


def random_batch(sizes: list[tuple[int, int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Items with (phonemes, tokens) sizes; random ids, codes, durations 1..8, rates 5..12.5 Hz."""
    g = torch.Generator().manual_seed(seed)
    phonemes = [torch.randint(6, len(SYMBOLS), (p,), generator=g).tolist() for p, _ in sizes]
    codes = [torch.randint(0, 64, (n,), generator=g).tolist() for _, n in sizes]
    durations = [torch.randint(1, 9, (n,), generator=g).tolist() for _, n in sizes]
    rates = [5.0 + 7.5 * float(torch.rand(1, generator=g)) for _ in sizes]
    return collate_examples(phonemes, codes, durations, rates)


def fit_batch(model: ARModel, batch: dict[str, torch.Tensor], steps: int = 60,
              lr: float = 1e-2) -> tuple[dict[str, float], dict[str, float]]:
    """Train `model` on one batch for `steps` AdamW steps; the training step's outputs (floats) of the first step
    and of the last."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    first = None
    for _ in range(steps):
        optimizer.zero_grad()
        out = model.training_step(batch)
        out["loss"].backward()
        optimizer.step()
        first = first or {k: float(v.detach()) for k, v in out.items()}
    return first, {k: float(v.detach()) for k, v in out.items()}


def sub_batch(batch: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    """Item i alone, without any padding."""
    p, g = int(batch["phoneme_lengths"][i]), int(batch["code_lengths"][i])
    return {
        "phonemes": batch["phonemes"][i : i + 1, :p], "phoneme_lengths": batch["phoneme_lengths"][i : i + 1],
        "codes": batch["codes"][i : i + 1, :g], "durations": batch["durations"][i : i + 1, :g],
        "code_lengths": batch["code_lengths"][i : i + 1], "rate": batch["rate"][i : i + 1],
    }


def test_config_checks_and_presets():
    with pytest.raises(ConfigError):
        ARConfig(symbols=["a", "b"])  # no <pad> first
    with pytest.raises(ConfigError):
        tiny_config(fsq_levels=[4, 4])  # 16 codes != 64
    with pytest.raises(ConfigError):
        tiny_config(code_embedding="other")
    demo = ARModel(ARConfig.demo(SYMBOLS))
    assert 2e6 < demo.num_parameters() < 6e6  # small enough for the demo bundle
    paper = ARConfig.paper(SYMBOLS)
    layer = 4 * paper.hidden_size**2 + 3 * paper.hidden_size * paper.ffn_size
    tables = 2 * paper.hidden_size * (paper.codebook_size + 1)
    assert 2e8 < paper.num_layers * layer + tables < 1e9  # hundreds of millions


def test_method_and_function_agree():
    """`ARModel.generate` is `ar.generate` with the model bound: same leading arguments, options passed on."""
    import inspect

    from ar import generate

    method = [p.name for p in inspect.signature(ARModel.generate).parameters.values()][1:5]
    function = [p.name for p in inspect.signature(generate).parameters.values()][1:5]
    assert method == function
    model = tiny_model()
    a = model.generate([6, 7, 8], prompt_codes=[1, 2], prompt_durations=[1, 3], seed=4, top_k=0, max_new_tokens=6, rate=6.0)
    b = generate(model, [6, 7, 8], [1, 2], [1, 3], seed=4, top_k=0, max_new_tokens=6, rate=6.0)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.durations, b.durations)
    with pytest.raises(TypeError):
        model.generate([6, 7, 8], no_such_option=1)


def test_layout_and_duration_alignment():
    """Code targets are s_1..s_G, EOS from TASK..s_G; duration targets at s_j are d_j; inputs carry d_{j-1}."""
    model = tiny_model()
    batch = random_batch([(5, 4), (3, 6)])
    out = model.teacher_forced_outputs(batch)
    for i in range(2):
        g = int(batch["code_lengths"][i])
        codes = out["code_targets"][out["code_item"] == i]
        assert codes[:-1].tolist() == batch["codes"][i, :g].tolist() and int(codes[-1]) == model.config.eos_id
        assert (out["dur_targets"][out["dur_item"] == i] + 1).tolist() == batch["durations"][i, :g].tolist()
    # The input at speech position j is e(s_j) + D(d_{j-1}), with D(start) first.
    embeds, mask, positions = model.embed_sequence(
        batch["phonemes"], batch["phoneme_lengths"], batch["codes"], batch["durations"], batch["code_lengths"], batch["rate"]
    )
    p, g = 5, 4
    expected = model.code_embedding(batch["codes"][0, :g]) + model.duration_embedding(
        torch.tensor([model.config.duration_start] + (batch["durations"][0, : g - 1] - 1).tolist())
    )
    assert torch.allclose(embeds[0, 3 + p : 3 + p + g], expected)
    assert mask.sum(1).tolist() == [3 + 5 + 4, 3 + 3 + 6] and positions[1, -1] == mask.shape[1] - 1


def test_duration_head_learns_the_duration_of_its_own_token():
    """Data where d_j = s_j % 8 + 1: learnable only if the state at s_j (which sees s_j) predicts d_j. Then greedy
    generation must keep the rule, so generation stores each duration with the right token."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    codes = [torch.randint(0, 64, (12,), generator=g).tolist() for _ in range(8)]
    batch = collate_examples([[7 + i, 8, 9] for i in range(8)], codes, [[c % 8 + 1 for c in row] for row in codes], [10.0] * 8)
    model = tiny_model()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(120):
        optimizer.zero_grad()
        out = model.training_step(batch)
        out["loss"].backward()
        optimizer.step()
    assert float(out["dur_acc"]) > 0.95
    model.eval()
    generated = model.generate([[7, 8, 9]] * 3, seed=[0, 1, 2], top_k=0, min_len_ratio=3.0, max_len_ratio=3.0)
    for tokens, durations in generated.unbatch():
        assert durations.tolist() == [c % 8 + 1 for c in tokens.tolist()]


def test_training_step_lowers_the_loss():
    model = tiny_model()
    model.train()
    batch = random_batch([(6, 10), (4, 7), (8, 12)])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(model.training_step(batch)["loss"].detach())
    for _ in range(40):
        optimizer.zero_grad()
        out = model.training_step(batch)
        out["loss"].backward()
        optimizer.step()
    assert float(out["loss"].detach()) < 0.5 * first
    assert set(out) == {"loss", "code_loss", "dur_loss", "code_acc", "dur_acc"}
    # Every parameter takes part (DDP stalls on unused ones), with either code embedding and head.
    for m in (model, tiny_model(code_embedding="table", head_rank=0)):
        m.zero_grad()
        m.training_step(batch)["loss"].backward()
        assert [n for n, p in m.named_parameters() if p.grad is None] == []


def test_padding_does_not_change_per_item_losses():
    model = tiny_model()
    batch = random_batch([(9, 3), (2, 11), (5, 5)])
    together = model.item_losses(batch)
    for i in range(3):
        alone = model.item_losses(sub_batch(batch, i))
        for key in together:
            assert torch.allclose(together[key][i], alone[key][0], atol=1e-5), (key, i)
    # The batch loss is the token-weighted mean of the items' losses.
    tokens = batch["code_lengths"] + 1
    weighted = (together["code_loss"] * tokens).sum() / tokens.sum()
    assert torch.allclose(model.training_step(batch)["code_loss"], weighted, atol=1e-5)


def test_save_and_load_give_the_same_model(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "ar")
    loaded = ARModel.from_pretrained(tmp_path / "ar")
    assert loaded.config == model.config and loaded.config.symbols == SYMBOLS
    batch = random_batch([(4, 6), (7, 3)])
    a, b = model.item_losses(batch), loaded.item_losses(batch)
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = model.generate([6, 7, 8, 9], seed=3, max_new_tokens=8)
    y = loaded.generate([6, 7, 8, 9], seed=3, max_new_tokens=8)
    assert torch.equal(x.codes, y.codes) and torch.equal(x.durations, y.durations)


def test_kv_cache_gives_exactly_the_tokens_of_full_recomputation():
    model = tiny_model(torch.float64)
    kwargs = dict(
        prompt_codes=[[1, 2, 3, 60], None], prompt_durations=[[1, 4, 2, 8], None], prompt_phonemes=[[10, 11], None],
        rate=[8.3, 6.25], top_k=0, temperature=1.0, duration_top_k=0, seed=5, max_new_tokens=20,
    )
    cached = model.generate([[6, 7, 8, 9, 10, 11, 12], [20, 21, 22]], use_cache=True, **kwargs)
    full = model.generate([[6, 7, 8, 9, 10, 11, 12], [20, 21, 22]], use_cache=False, **kwargs)
    assert torch.equal(cached.codes, full.codes) and torch.equal(cached.durations, full.durations)
    assert cached.lengths.min() >= 1
    # float32 with the default top-k 25 as well.
    model32 = tiny_model(torch.float32)
    a = model32.generate([6, 7, 8, 9, 10, 11, 12], seed=1, max_new_tokens=15, use_cache=True)
    b = model32.generate([6, 7, 8, 9, 10, 11, 12], seed=1, max_new_tokens=15, use_cache=False)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.durations, b.durations)


def test_seed_reproducibility_and_batch_independence():
    model = tiny_model(torch.float64)
    texts = [[6, 7, 8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18, 19, 20, 21, 22, 23]]
    prompts = dict(prompt_codes=[[5, 6], [7], None], prompt_durations=[[2, 3], [1], None], prompt_phonemes=[[30], None, None])
    a = model.generate(texts, seed=11, top_k=0, **prompts)
    b = model.generate(texts, seed=11, top_k=0, **prompts)
    c = model.generate(texts, seed=12, top_k=0, **prompts)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.durations, b.durations)
    assert not torch.equal(a.codes, c.codes)
    # An int seed seeds every item alike: each item of the batch equals generating it alone.
    for i, text in enumerate(texts):
        alone = model.generate(
            text, seed=11, top_k=0, prompt_codes=prompts["prompt_codes"][i], prompt_durations=prompts["prompt_durations"][i],
            prompt_phonemes=prompts["prompt_phonemes"][i],
        )
        codes, durations = a.item(i)
        assert torch.equal(alone.codes[0], codes) and torch.equal(alone.durations[0], durations)
        assert bool(alone.ended_by_eos[0]) == bool(a.ended_by_eos[i])


def test_greedy_generation_is_a_fixed_point_of_teacher_forcing():
    """Greedy tokens fed back teacher-forced give the same argmaxes: generation builds the training layout."""
    model = tiny_model(torch.float64, seed=3)
    prompt_codes, prompt_durations, prompt_phonemes, text = [4, 9, 33], [2, 1, 5], [8, 9], [10, 11, 12, 13]
    out = model.generate(text, prompt_codes=prompt_codes, prompt_durations=prompt_durations, prompt_phonemes=prompt_phonemes,
                         rate=7.0, top_k=1, min_len_ratio=3.0, max_len_ratio=3.0)  # min = max: EOS never wins
    codes, durations = out.item(0)
    batch = collate_examples([model.join_text(prompt_phonemes, text)], [prompt_codes + codes.tolist()],
                             [prompt_durations + durations.tolist()], [7.0])
    batch["rate"] = batch["rate"].double()
    forced = model.teacher_forced_outputs(batch)
    eos = model.config.eos_id
    predicted = forced["code_logits"][:, :eos].argmax(-1)  # EOS was masked while generating
    assert predicted[len(prompt_codes) : len(prompt_codes) + len(codes)].tolist() == codes.tolist()
    assert (forced["dur_logits"].argmax(-1) + 1)[len(prompt_codes) :].tolist() == durations.tolist()


def _force_eos(model: ARModel, logit: float) -> None:
    """Make EOS overwhelmingly likely (or unlikely) at every step."""
    last = model.code_head.proj[-1]
    with torch.no_grad():
        last.bias[model.config.eos_id] = logit


def test_eos_is_never_accepted_before_the_minimum_length():
    model = tiny_model()
    _force_eos(model, 1e4)
    text = list(range(6, 26))  # 20 new phonemes; the prompt's do not count
    out = model.generate([text, text[:7]], prompt_codes=[[1, 2, 3], None], prompt_durations=[[1, 1, 1], None],
                         prompt_phonemes=[[6, 7, 8, 9, 10], None], min_len_ratio=0.5, seed=0)
    assert out.lengths.tolist() == [10, max(1, math.floor(7 * 0.5))]
    assert out.ended_by_eos.all()


def test_generation_always_stops_at_the_maximum_length():
    model = tiny_model()
    _force_eos(model, -1e4)
    out = model.generate([list(range(6, 16)), [6, 7, 8]], max_len_ratio=1.5, seed=0, top_k=0)
    assert out.lengths.tolist() == [15, math.ceil(3 * 1.5)] and not out.ended_by_eos.any()
    assert (out.durations[0] >= 1).all() and (out.durations[1, 5:] == 0).all() and (out.durations[1, :5] >= 1).all()
    capped = model.generate(list(range(6, 16)), max_len_ratio=1.5, max_new_tokens=4, seed=0)
    assert capped.lengths.tolist() == [4]


def test_pace_bounds_the_new_speech_in_frames():
    from ar.generate import paced_frame_bounds

    # Prompt: 5 phonemes over 10 frames = 2 frames a phoneme; 20 new phonemes -> 40 frames expected.
    assert paced_frame_bounds(20, 5, 10, (0.8, 1.25)) == (32, 50)
    assert paced_frame_bounds(20, 0, 10, (0.8, 1.25)) == (0, None)  # no transcript: not paced
    prompt = dict(prompt_codes=[[1, 2, 3]], prompt_durations=[[4, 4, 2]], prompt_phonemes=[[6, 7, 8, 9, 10]])
    text = list(range(6, 26))
    model = tiny_model()
    _force_eos(model, 1e4)  # EOS wins whenever it is allowed: the speech ends at the first step past 32 frames
    early = model.generate(text, pace=(0.8, 1.25), duration_top_k=0, seed=0, **prompt)
    frames = int(early.durations[0].sum())
    assert early.ended_by_eos.all() and 32 <= frames < 32 + model.config.max_duration
    assert int(early.durations[0, : early.lengths[0] - 1].sum()) < 32  # it did not go on past the bound
    _force_eos(model, -1e4)  # EOS never wins: stopped once 50 frames are covered, long before 2 tokens a phoneme
    late = model.generate(text, pace=(0.8, 1.25), duration_top_k=0, seed=0, **prompt)
    frames = int(late.durations[0].sum())
    assert not late.ended_by_eos.any() and 50 <= frames < 50 + model.config.max_duration
    assert int(late.lengths[0]) < 2 * len(text)
    # Without a prompt transcript the item is not paced: the token limit alone stops it.
    free = model.generate(text, pace=(0.8, 1.25), max_len_ratio=1.5, seed=0)
    assert free.lengths.tolist() == [30]
    with pytest.raises(ConfigError):
        model.generate(text, pace=(1.5, 1.0), **prompt)


def test_match_rate_brings_the_mean_duration_to_the_asked_rate():
    from ar.sampling import tilt_to_mean

    logits = torch.randn(4, 8, dtype=torch.float64)
    values = torch.arange(1, 9)
    target = torch.tensor([1.5, 2.0, 4.0, 7.5], dtype=torch.float64)
    tilted = tilt_to_mean(logits, values, target)
    assert torch.allclose((torch.softmax(tilted, -1) * values).sum(-1), target, atol=1e-6)
    # The tilt is exponential in the value: log-ratios to the untilted logits are linear in it.
    shift = tilted - logits
    assert torch.allclose(shift[:, 2] - shift[:, 1], shift[:, 1] - shift[:, 0], atol=1e-9)

    model = tiny_model(torch.float64)
    _force_eos(model, -1e4)
    texts = [list(range(6, 36))] * 4
    for rate in (12.5 / 3, 12.5 / 1.5):
        out = model.generate(texts, rate=rate, duration_top_k=0, match_rate=True, seed=[0, 1, 2, 3],
                             max_len_ratio=2.0)
        assert out.lengths.tolist() == [60] * 4
        # Each item on its own (not just the batch on average) covers its 60 tokens' worth of frames at the
        # asked rate to within a couple of frames: the deficit feedback keeps the error from accumulating.
        frames = out.durations.sum(dim=1).double()
        assert torch.all((frames - 60 * 12.5 / rate).abs() <= 2.5), (rate, frames.tolist())
        # A low duration temperature is applied before the tilt, so the draws keep the asked mean (tempering
        # the tilted distribution would pull every draw towards its mode: 2-3 frames short here).
        cold = model.generate(texts, rate=rate, duration_top_k=0, duration_temperature=0.3, match_rate=True,
                              seed=[0, 1, 2, 3], max_len_ratio=2.0)
        frames = cold.durations.sum(dim=1).double()
        assert torch.all((frames - 60 * 12.5 / rate).abs() <= 1.5), (rate, frames.tolist())
        # The log tilt meets the rate too.
        gentle = model.generate(texts, rate=rate, duration_top_k=0, match_rate="log", seed=[0, 1, 2, 3],
                                max_len_ratio=2.0)
        frames = gentle.durations.sum(dim=1).double()
        assert torch.all((frames - 60 * 12.5 / rate).abs() <= 2.5), (rate, frames.tolist())
    with pytest.raises(ConfigError, match="match_rate"):
        model.generate(texts, rate=8.3, match_rate="cubic")


def test_log_tilt_is_power_law_and_spares_the_longest_class():
    from ar.sampling import tilt_to_mean

    logits = torch.zeros(1, 8, dtype=torch.float64)  # uniform over 1..8 frames: mean 4.5
    values = torch.arange(1, 9)
    target = torch.tensor([6.0], dtype=torch.float64)
    linear = torch.softmax(tilt_to_mean(logits, values, target), -1)
    log = tilt_to_mean(logits, values, target, feature=values.double().log())
    assert torch.allclose((torch.softmax(log, -1) * values).sum(-1), target, atol=1e-6)
    # p'(k) ∝ k^lam: log-probabilities are linear in log k.
    slope = (log[0, 1:] - log[0, :-1]) / (values[1:].double().log() - values[:-1].double().log())
    assert torch.allclose(slope, slope[0].expand_as(slope), atol=1e-6)
    # For the same mean, the log tilt puts less mass on the longest class than the exponential one.
    assert torch.softmax(log, -1)[0, -1] < linear[0, -1]


def test_rate_conditions_the_model():
    model = tiny_model()
    batch = random_batch([(4, 5)])
    slow = model.item_losses({**batch, "rate": torch.tensor([6.25])})["code_loss"]
    fast = model.item_losses({**batch, "rate": torch.tensor([12.5])})["code_loss"]
    assert not torch.allclose(slow, fast)


def test_bad_inputs_are_one_line_errors():
    model = tiny_model()
    cases = [
        (dict(phonemes=[]), TextError),
        (dict(phonemes=[6, 7], top_p=0.0), ConfigError),
        (dict(phonemes=[6, 7], temperature=-1.0), ConfigError),
        (dict(phonemes=[6, 999]), TextError),
        (dict(phonemes=[6, 7], prompt_codes=[1, 2], prompt_durations=[1]), ConfigError),
        (dict(phonemes=[6, 7], prompt_codes=[1], prompt_durations=[9]), ConfigError),
        (dict(phonemes=[6, 7], prompt_codes=[64], prompt_durations=[1]), ConfigError),
        (dict(phonemes=[6, 7], rate=0.0), ConfigError),
        (dict(phonemes=[[6, 7], [8]], rate=[1.0, 2.0, 3.0]), ConfigError),
        (dict(phonemes=list(range(6, 30)) * 20), ConfigError),  # beyond max_positions
    ]
    for kwargs, error in cases:
        with pytest.raises(error) as info:
            model.generate(**kwargs)
        assert isinstance(info.value, FlexiTTSError) and "\n" not in str(info.value)


def test_padded_tensor_inputs_and_one_prompt_for_many_texts():
    model = tiny_model(torch.float64)
    texts = [[6, 7, 8, 9], [10, 11]]
    lists = model.generate(texts, prompt_codes=[[0, 5], [3]], prompt_durations=[[2, 1], [4]], seed=2, top_k=0)
    padded = model.generate(
        torch.tensor([[6, 7, 8, 9], [10, 11, 0, 0]]), prompt_codes=torch.tensor([[0, 5], [3, 0]]),
        prompt_durations=torch.tensor([[2, 1], [4, 0]]), seed=2, top_k=0,
    )
    assert torch.equal(lists.codes, padded.codes) and torch.equal(lists.lengths, padded.lengths)
    # A single prompt serves every text of a batch (one voice, many sentences).
    shared = model.generate(texts, prompt_codes=[1, 2, 3], prompt_durations=[1, 2, 3], prompt_phonemes=[12, 13], seed=2)
    first = model.generate(texts[0], prompt_codes=[1, 2, 3], prompt_durations=[1, 2, 3], prompt_phonemes=[12, 13], seed=2)
    assert torch.equal(shared.item(0)[0], first.item(0)[0])


def test_fsq_code_head_is_a_product_of_digit_distributions():
    from ar.embeddings import fsq_digits

    model = tiny_model(code_head="fsq")
    head = model.code_head
    hidden = torch.randn(3, model.config.hidden_size)
    logits = head(hidden)  # [3, V + 1]
    assert logits.shape == (3, 65)
    raw = head.proj(hidden)
    digits = fsq_digits(torch.arange(64), [4, 4, 4])  # [V, K]
    expected = sum(raw[:, k * 4 + digits[:, k]] for k in range(3))
    torch.testing.assert_close(logits[:, :64], expected)
    # Without EOS, p(code) is the product of the per-digit softmaxes.
    p = torch.softmax(logits[:, :64], dim=-1)
    per_digit = [torch.softmax(raw[:, k * 4 : k * 4 + 4], dim=-1) for k in range(3)]
    product = per_digit[0][:, digits[:, 0]] * per_digit[1][:, digits[:, 1]] * per_digit[2][:, digits[:, 2]]
    torch.testing.assert_close(p, product)
    # Generation works with it, and the cache still gives the uncached tokens.
    phonemes = torch.tensor([3, 4, 5, 6, 7])
    a = model.generate(phonemes, seed=0, max_new_tokens=8)
    b = model.generate(phonemes, seed=0, max_new_tokens=8, use_cache=False)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.durations, b.durations)


def test_text_guided_greedy_generation_is_a_fixed_point_of_guided_teacher_forcing():
    """With text CFG, each greedy code is the argmax of `lc + w (lc - lu)`, where `lc` and `lu` are the
    teacher-forced log-probabilities of the same tokens with and without the text: the text-free copies see
    exactly the tokens the guided rows drew, and durations follow the text-conditioned rows."""
    import torch.nn.functional as F

    model = tiny_model(torch.float64, seed=5)
    prompt_codes, prompt_durations, prompt_phonemes, text = [4, 9, 33], [2, 1, 5], [8, 9], [10, 11, 12, 13]
    weight = 1.5
    kwargs = dict(prompt_codes=prompt_codes, prompt_durations=prompt_durations, prompt_phonemes=prompt_phonemes,
                  rate=7.0, top_k=1, min_len_ratio=3.0, max_len_ratio=3.0)
    out = model.generate(text, text_cfg=weight, **kwargs)
    codes, durations = out.item(0)
    plain = model.generate(text, **kwargs).item(0)[0]
    assert codes.tolist() != plain.tolist()  # the guidance changes the draws of this random model

    def forced(phonemes):
        batch = collate_examples([phonemes], [prompt_codes + codes.tolist()], [prompt_durations + durations.tolist()], [7.0])
        batch["rate"] = batch["rate"].double()
        return model.teacher_forced_outputs(batch)

    with_text, without = forced(model.join_text(prompt_phonemes, text)), forced([])
    eos = model.config.eos_id
    lc, lu = F.log_softmax(with_text["code_logits"], -1), F.log_softmax(without["code_logits"], -1)
    guided = (lc + weight * (lc - lu))[:, :eos]  # EOS was masked while generating (min = max length)
    span = slice(len(prompt_codes), len(prompt_codes) + len(codes))
    assert guided.argmax(-1)[span].tolist() == codes.tolist()
    assert (with_text["dur_logits"].argmax(-1) + 1)[len(prompt_codes):].tolist() == durations.tolist()
    # Batched with another text, an item draws what it draws alone; the cache changes nothing.
    pair = model.generate([text, [20, 21, 22]], text_cfg=weight, seed=0, use_cache=False, **{**kwargs, "prompt_codes": [prompt_codes] * 2,
                          "prompt_durations": [prompt_durations] * 2, "prompt_phonemes": [prompt_phonemes] * 2})
    assert pair.item(0)[0].tolist() == codes.tolist() and pair.codes.shape[0] == 2
    with pytest.raises(ConfigError):
        model.generate(text, text_cfg=-1.0)


def test_text_dropout_trains_the_text_free_prediction():
    """`text_drop_prob` close to 1: the training loss is the loss of the same batch with no text; 0: with it."""
    batch = random_batch([(6, 5), (4, 7)], seed=2)
    model = tiny_model(torch.float64, seed=1, text_drop_prob=0.999999)
    batch = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
    no_text = {**batch, "phoneme_lengths": torch.zeros_like(batch["phoneme_lengths"])}
    model.train()
    dropped = model.training_step(batch)["loss"]
    model.eval()
    assert torch.allclose(dropped, model.training_step(no_text)["loss"])
    assert not torch.allclose(dropped, model.training_step(batch)["loss"])  # eval mode keeps the text
    with pytest.raises(ConfigError):
        tiny_config(text_drop_prob=1.0)


def test_backbone_cache_keyword_follows_the_installed_transformers():
    """The KV cache goes under `cache` where forward takes it (transformers >= 5.24) and `past_key_values` before."""
    from transformers import LlamaModel

    from ar.model import _cache_keyword

    class NewBackbone:
        def forward(self, inputs_embeds=None, cache=None, use_cache=None): ...

    class OldBackbone:
        def forward(self, inputs_embeds=None, past_key_values=None, use_cache=None): ...

    assert _cache_keyword(NewBackbone) == "cache"
    assert _cache_keyword(OldBackbone) == "past_key_values"
    assert _cache_keyword(LlamaModel) in inspect.signature(LlamaModel.forward).parameters
