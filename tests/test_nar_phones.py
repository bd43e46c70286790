"""Phone conditioning of the NAR: a new phone embedding changes nothing until trained, phones reach the sample and
its batching stays exact, training uses them, the data pipeline aligns them with the codes, and the pointer AR's
progress turns back into phone onsets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from codec.common.errors import ConfigError
from flexitts.data.phone_alignment import onsets_from_progress, phone_subframes
from codec.common.pretrained import init_state_for
from nar import Voicebox
from tests.test_nar import make_batch, make_tokens, prompt_for, tiny_config, write_token_cache

PHONES = 12


def phone_model(seed: int = 0, perturb: bool = True) -> Voicebox:
    torch.manual_seed(seed)
    net = Voicebox(tiny_config(code_encoder_layers=2, num_phones=PHONES)).eval()
    if perturb:
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return net


def random_phones(durations: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """`[B, 2 * max frames]` ids in 1..PHONES-1, zero past each item's frames."""
    gen = torch.Generator().manual_seed(seed)
    frames = durations.sum(1)
    ids = torch.randint(1, PHONES, (durations.shape[0], 2 * int(frames.max())), generator=gen)
    return ids * (torch.arange(ids.shape[1])[None, :] < 2 * frames[:, None])


def test_config_checks():
    with pytest.raises(ConfigError, match="code encoder"):
        tiny_config(num_phones=10)
    with pytest.raises(ConfigError, match="phone_rank"):
        tiny_config(code_encoder_layers=1, num_phones=10, phone_rank=0)


def test_a_new_phone_embedding_leaves_a_trained_model_unchanged():
    torch.manual_seed(0)
    base = Voicebox(tiny_config(code_encoder_layers=2)).eval()
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.05 * torch.randn_like(p))
    grown = phone_model(perturb=False)
    grown.load_state_dict(init_state_for(grown, base.state_dict(), "the NAR without phones"))
    codes, durs = make_tokens([6])
    prompt = prompt_for(base, [3])
    expected, _ = base.sample(codes, durs, **prompt, steps=2, seed=1)
    got, _ = grown.sample(codes, durs, **prompt, steps=2, seed=1, phones=random_phones(durs),
                          prompt_phones=random_phones(prompt["prompt_durations"], 1))
    torch.testing.assert_close(got, expected)


def test_phones_change_the_sample_and_padding_never_does():
    model = phone_model()
    codes, durs = make_tokens([7, 3], seed=1)
    prompt = prompt_for(model, [2, 4])
    phones, prompt_phones = random_phones(durs, 2), random_phones(prompt["prompt_durations"], 3)
    without, _ = model.sample(codes, durs, **prompt, steps=2, cfg=2.0, seed=11)
    mel, n = model.sample(codes, durs, **prompt, steps=2, cfg=2.0, seed=11, phones=phones, prompt_phones=prompt_phones)
    assert not torch.allclose(mel, without, atol=1e-3)
    for b in range(2):
        g, gp = int((durs[b] > 0).sum()), int((prompt["prompt_durations"][b] > 0).sum())
        fp = int(prompt["prompt_durations"][b].sum())
        alone, m = model.sample(codes[b : b + 1, :g], durs[b : b + 1, :g], prompt["prompt_mel"][b : b + 1, : 4 * fp],
                                prompt["prompt_codes"][b : b + 1, :gp], prompt["prompt_durations"][b : b + 1, :gp],
                                steps=2, cfg=2.0, seed=11, phones=phones[b : b + 1, : 2 * int(durs[b].sum())],
                                prompt_phones=prompt_phones[b : b + 1, : 2 * fp])
        torch.testing.assert_close(mel[b, : int(m[0])], alone[0], atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError, match="2 ids per 12.5 Hz frame"):
        model.sample(codes, durs, **prompt, steps=1, phones=phones[:, :3])


def test_training_learns_from_phones():
    torch.manual_seed(0)
    net = Voicebox(tiny_config(dim=48, num_layers=2, code_encoder_layers=1, prior_loss_weight=1.0, num_phones=PHONES,
                               phone_drop_prob=0.0))
    batch = make_batch(net, [8, 6, 5])
    batch["phones"] = random_phones(batch["durations"], 4)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    first = None
    for _ in range(30):
        out = net.training_step(batch)
        first = first or float(out["loss"].detach())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert float(out["loss"].detach()) < 0.7 * first
    assert float(net.phone_embed.proj.weight.detach().abs().sum()) > 0  # the phones are used, not left at zero


def test_phone_subframes_and_onsets_from_progress():
    assert phone_subframes([5, 6, 7], np.array([0.5, 1.0, 2.5]), 3).tolist() == [0, 5, 6, 6, 6, 7]
    assert phone_subframes([], np.zeros(0), 2).tolist() == [0, 0, 0, 0]
    # Tokens of 2, 1, 4, 2 frames starting phones {0}, {}, {1, 2}, {3}: the phones share their token's frames.
    onsets = onsets_from_progress([2, 1, 4, 2], [1, 1, 3, 4])
    assert onsets.tolist() == [0.0, 3.0, 5.0, 7.0]
    assert phone_subframes([9, 8, 7, 6], onsets, 9).tolist() == [9] * 6 + [8] * 4 + [7] * 4 + [6] * 4
    assert len(onsets_from_progress([3, 2], [0, 0])) == 0


def test_nar_dataset_phones_follow_the_token_window(tmp_path):
    from flexitts.data.phone_alignment import spoken_positions
    from flexitts.data.token_cache import TokenCache, write_token_cache_index, write_token_cache_item
    from flexitts.errors import DataError
    from flexitts.text import PhonemeTable
    from flexitts.training.nar import NARDataset, collate_nar
    from nar.mel import MelConfig

    write_token_cache(tmp_path / "cache", tmp_path, [0.5, 3.3, 0.7])
    with pytest.raises(DataError, match="flexitts data align"):
        NARDataset(TokenCache(tmp_path / "cache"), MelConfig(), max_seconds=1.0, phones=True)
    cache = TokenCache(tmp_path / "cache")
    symbols = PhonemeTable.default().symbols
    cycle = PhonemeTable.default().encode(["a", "b", "d", "e", "f"])
    for n in range(len(cache)):  # one phone per base frame: phone k (cycling through 5) starts at frame k
        item = cache.item(n)
        item.phonemes = np.asarray([cycle[k % 5] for k in range(item.frames)])
        item.phone_onsets = np.arange(item.frames, dtype=np.float32)
        write_token_cache_item(tmp_path / "cache", item, n)
    write_token_cache_index(tmp_path / "cache", {"settings": ["t1", "t0.5"], "phone_onsets": True}, len(cache))
    data = NARDataset(TokenCache(tmp_path / "cache"), MelConfig(), max_seconds=1.0, phones=True)
    assert len(spoken_positions(data.cache.item(0).phonemes, symbols)) == data.cache.item(0).frames
    for seed in range(4):
        torch.manual_seed(seed)
        batch = collate_nar([data[i] for i in range(len(data))])
        frames = batch["durations"].sum(1)
        assert batch["phones"].shape[1] == 2 * int(frames.max())
        for b in range(len(data)):
            row = batch["phones"][b, : 2 * int(frames[b])].view(-1, 2)
            assert bool((row[:, 0] == row[:, 1]).all()) and bool((batch["phones"][b, 2 * int(frames[b]):] == 0).all())
            position = [cycle.index(int(x)) for x in row[:, 0]]  # consecutive frames, consecutive phones
            assert all((q - p) % 5 == 1 for p, q in zip(position, position[1:]))
        assert int(batch["phones"][0, 0]) == cycle[0] and int(batch["phones"][2, 0]) == cycle[0]  # uncut items


def test_phone_guidance_is_the_extrapolation_from_codes_alone_to_codes_and_phones():
    model = phone_model(seed=3)
    codes, durs = make_tokens([6, 4], seed=2)
    prompt = prompt_for(model, [3, 2])
    phones, prompt_phones = random_phones(durs, 5), random_phones(prompt["prompt_durations"], 6)
    # One Euler step from the same noise is x0 + v: the guided step must be x_c + w (x_c - x_np) exactly.
    one = dict(steps=1, cfg=0.0, rescale_cfg=0.0, seed=[7, 8])
    with_phones, _ = model.sample(codes, durs, **prompt, **one, phones=phones, prompt_phones=prompt_phones)
    codes_alone, _ = model.sample(codes, durs, **prompt, **one)
    guided, _ = model.sample(codes, durs, **prompt, **one, phones=phones, prompt_phones=prompt_phones, phone_cfg=1.5)
    torch.testing.assert_close(guided, with_phones + 1.5 * (with_phones - codes_alone), atol=1e-5, rtol=1e-5)
    # Without phones there is nothing to guide towards: phone_cfg changes nothing.
    plain, _ = model.sample(codes, durs, **prompt, steps=2, cfg=2.0, seed=4)
    torch.testing.assert_close(model.sample(codes, durs, **prompt, steps=2, cfg=2.0, seed=4, phone_cfg=2.0)[0], plain)
    # With text guidance too, an item's result does not depend on the batch around it.
    both, n = model.sample(codes, durs, **prompt, steps=2, cfg=2.0, seed=[4, 5], phones=phones,
                           prompt_phones=prompt_phones, phone_cfg=1.0)
    g, fp = int((durs[1] > 0).sum()), int(prompt["prompt_durations"][1].sum())
    gp = int((prompt["prompt_durations"][1] > 0).sum())
    alone, _ = model.sample(codes[1:, :g], durs[1:, :g], prompt["prompt_mel"][1:, : 4 * fp], prompt["prompt_codes"][1:, :gp],
                            prompt["prompt_durations"][1:, :gp], steps=2, cfg=2.0, seed=[5],
                            phones=phones[1:, : 2 * int(durs[1].sum())], prompt_phones=prompt_phones[1:, : 2 * fp],
                            phone_cfg=1.0)
    torch.testing.assert_close(both[1, : int(n[1])], alone[0], atol=1e-4, rtol=1e-4)
    # The guidance interval: none of the steps (until 0) is no phone guidance, all of them (until 1) the full one.
    three = dict(steps=3, cfg=2.0, seed=[4, 5], phones=phones, prompt_phones=prompt_phones)
    full, _ = model.sample(codes, durs, **prompt, **three, phone_cfg=2.0)
    unguided, _ = model.sample(codes, durs, **prompt, **three)
    torch.testing.assert_close(model.sample(codes, durs, **prompt, **three, phone_cfg=2.0, phone_cfg_until=0.0)[0], unguided)
    torch.testing.assert_close(model.sample(codes, durs, **prompt, **three, phone_cfg=2.0, phone_cfg_until=1.0)[0], full)
    first, _ = model.sample(codes, durs, **prompt, **three, phone_cfg=2.0, phone_cfg_until=0.2)  # the first step only
    assert not torch.allclose(first, full, atol=1e-4) and not torch.allclose(first, unguided, atol=1e-4)
    with pytest.raises(ConfigError, match="phone_cfg"):
        model.sample(codes, durs, **prompt, steps=1, phones=phones, prompt_phones=prompt_phones, phone_cfg=-1.0)


def test_code_noise_corrupts_only_items_with_phones():
    net = Voicebox(tiny_config(code_encoder_layers=1, num_phones=PHONES, code_noise_prob=1.0, code_noise_max=0.5))
    torch.manual_seed(0)
    codes = torch.randint(0, net.config.codebook_size, (400, 100))
    with_phones = torch.arange(400) % 2 == 0
    noisy = net._corrupt_codes(codes, with_phones)
    changed = (noisy != codes).float()
    assert float(changed[~with_phones].sum()) == 0  # without phones the codes are all there is to follow
    share = changed[with_phones].mean(1)  # ~ U(0, 0.5) per item
    assert abs(float(share.mean()) - 0.25) < 0.03 and float(share.max()) < 0.7 and float(share.min()) < 0.05
    assert int(noisy.min()) >= 0 and int(noisy.max()) < net.config.codebook_size
    net.config.code_noise_prob = 0.0
    assert torch.equal(net._corrupt_codes(codes, with_phones), codes)
    with pytest.raises(ConfigError, match="code_noise"):
        tiny_config(code_encoder_layers=1, num_phones=PHONES, code_noise_prob=1.5)
