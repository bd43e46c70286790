"""Teacher-forced AR samples for NAR training: what `sample_ar_codes` draws (per item, as alone), the file's round
trip, the CLI, the NAR dataset's `ar_codes` windows and the model's swap."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ar import ARModel
from flexitts.cli.main import main
from flexitts.data.token_cache import TokenCache
from flexitts.errors import ConfigError, DataError
from flexitts.text import PhonemeTable
from flexitts.training.ar import ARTokenDataset, collate_ar
from flexitts.training.ar_samples import read_ar_samples, sample_ar_codes, sample_key, write_ar_samples
from tests.test_ar_model import tiny_config
from tests.test_ar_training import write_cache


def table_model(seed: int = 0) -> ARModel:
    torch.manual_seed(seed)
    return ARModel(tiny_config(symbols=list(PhonemeTable.default().symbols))).eval()


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> TokenCache:
    return TokenCache(write_cache(tmp_path_factory.mktemp("tokens") / "cache", 9, seed=3))


def test_greedy_samples_are_each_items_own_teacher_forced_argmax(cache):
    model = table_model()
    samples = sample_ar_codes(cache, model, top_k=1, max_units=120)  # several items per batch
    assert set(samples) == {sample_key(cache.item(i).id, s) for i in range(len(cache)) for s in cache.settings}
    dataset = ARTokenDataset(cache, model, prompt_prob=1.0, seed=0)
    assert any(e.prefix >= 0 for e in dataset.examples)
    eos = model.config.eos_id
    for i, example in enumerate(dataset.examples):
        item = cache.item(example.index)
        own = len(item.codes[example.setting])
        logits = model.teacher_forced_outputs(collate_ar([dataset[i]]))["code_logits"]  # one item alone, prompt first
        logits[:, eos] = float("-inf")
        expected = logits[-own - 1 : -1].argmax(-1).numpy()  # its own codes' positions; the last one is EOS
        got = samples[sample_key(item.id, example.setting)]
        assert got.dtype == np.int16 and np.array_equal(got, expected)


def test_sampling_is_seeded_and_stays_in_the_top_k(cache):
    model = table_model()
    first = sample_ar_codes(cache, model, ["r6.25"], top_k=3, seed=1)
    assert all(k.endswith("/r6.25") for k in first) and len(first) == len(cache)
    again = sample_ar_codes(cache, model, ["r6.25"], top_k=3, seed=1)
    other = sample_ar_codes(cache, model, ["r6.25"], top_k=3, seed=2)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert any(not np.array_equal(first[k], other[k]) for k in first)
    greedy = sample_ar_codes(cache, model, ["r6.25"], top_k=1)
    wide = sample_ar_codes(cache, model, ["r6.25"], top_k=0, seed=1)
    agree = lambda a: np.mean(np.concatenate([a[k] == greedy[k] for k in a]))  # noqa: E731
    assert agree(first) > agree(wide)  # fewer candidates, closer to the argmax
    assert all(0 <= int(v.min()) and int(v.max()) < model.config.codebook_size for v in wide.values())


def test_samples_file_round_trip_and_cli(cache, tmp_path):
    samples = {"u0/t1": np.array([3, 1, 4], np.int16), "u1/t1": np.array([1, 5], np.int16)}
    path = write_ar_samples(tmp_path, samples, {"seed": 0})
    read = read_ar_samples(tmp_path)
    assert path == tmp_path / "ar_samples.npz" and set(read) == set(samples)
    assert all(np.array_equal(read[k], samples[k]) for k in samples) and read["u0/t1"].dtype == np.int64
    with pytest.raises(DataError, match="flexitts data ar-samples"):
        read_ar_samples(tmp_path / "missing")

    model = table_model()
    model.save_pretrained(tmp_path / "ar")
    assert main(["data", "ar-samples", "--cache", str(cache.root), "--checkpoint", str(tmp_path / "ar"),
                 "--settings", "t1", "--top-k", "1"]) == 0
    from_cli = read_ar_samples(cache.root)
    direct = sample_ar_codes(cache, model, ["t1"], top_k=1)
    assert set(from_cli) == set(direct) and all(np.array_equal(from_cli[k], direct[k]) for k in direct)


def test_nar_dataset_ar_codes_follow_the_token_window(tmp_path):
    from flexitts.training.nar import NARDataset, collate_nar
    from nar.mel import MelConfig
    from tests.test_nar import write_token_cache

    write_token_cache(tmp_path / "cache", tmp_path, [0.5, 3.3, 0.7])
    cache = TokenCache(tmp_path / "cache")
    shift = lambda codes: (np.asarray(codes) * 7 + 3) % 32768  # noqa: E731  # a known map, to check positions
    samples = {sample_key(cache.item(i).id, s): shift(cache.item(i).codes[s]) for i in (0, 1) for s in cache.settings}
    data = NARDataset(cache, MelConfig(), max_seconds=1.0, ar_samples=samples)
    for seed in range(4):
        torch.manual_seed(seed)
        batch = collate_nar([data[i] for i in range(len(data))])
        for b in (0, 1):  # item 1 (3.3 s) is cut to a random 1 s window
            count = int((batch["durations"][b] > 0).sum())
            assert torch.equal(batch["ar_codes"][b, :count], torch.from_numpy(shift(batch["codes"][b, :count].numpy())))
        assert torch.equal(batch["ar_codes"][2], batch["codes"][2])  # no sample: the codec's codes
    samples["u0/t1"] = samples["u0/t1"][:-1]
    with pytest.raises(DataError, match="ar-samples"):
        [NARDataset(cache, MelConfig(), ar_samples=samples)[0] for _ in range(8)]


def test_the_nar_swaps_in_ar_codes_only_for_items_with_phones():
    from nar.model import Voicebox
    from tests.test_nar import tiny_config as nar_config
    from tests.test_nar_phones import PHONES

    net = Voicebox(nar_config(code_encoder_layers=1, num_phones=PHONES, ar_code_prob=1.0))
    codes = torch.randint(0, net.config.codebook_size, (6, 10))
    ar_codes = torch.randint(0, net.config.codebook_size, (6, 10))
    with_phones = torch.tensor([True, False, True, True, False, True])
    swapped = net._swap_in_ar_codes(codes, ar_codes, with_phones)
    assert torch.equal(swapped[with_phones], ar_codes[with_phones]) and torch.equal(swapped[~with_phones], codes[~with_phones])
    assert torch.equal(net._swap_in_ar_codes(codes, None, with_phones), codes)
    net.config.ar_code_prob = 0.5
    torch.manual_seed(0)
    shares = [float((net._swap_in_ar_codes(codes, ar_codes, torch.ones(6, dtype=torch.bool)) == ar_codes).all(1).float().mean())
              for _ in range(200)]
    assert 0.4 < float(np.mean(shares)) < 0.6
    with pytest.raises(ConfigError, match="ar_code_prob"):
        nar_config(code_encoder_layers=1, num_phones=PHONES, ar_code_prob=2.0)


def test_train_nar_refuses_ar_code_prob_without_samples(tmp_path, capsys):
    from tests.test_nar import write_token_cache

    write_token_cache(tmp_path / "tokens", tmp_path, [0.6, 0.9])
    config = tmp_path / "nar.yaml"
    config.write_text(
        "out_dir: run\n"
        "model: {dim: 32, num_layers: 2, num_heads: 2, time_embed_dim: 32, conv_pos_kernel: 7, conv_pos_groups: 4,"
        " mel: {n_mels: 20}, ar_code_prob: 0.5}\n"
        "training: {max_steps: 1, max_units: 48000}\n"
        "data: {train: tokens}\n"
    )
    assert main(["train", "nar", "--config", str(config), "--no-progress"]) == 2
    assert "ar_code_prob" in capsys.readouterr().err and not (tmp_path / "run").exists()
