"""The shared training loop: loss falls, exact resume, checkpoints, samplers and pickle-free state."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from flexitts.errors import CheckpointError, ConfigError
from flexitts.training.config import load_run_config
from flexitts.training.loop import Trainer, TrainingConfig, latest_checkpoint, seed_everything
from flexitts.training.sampler import BucketBatchSampler
from flexitts.training.state_io import load_state, save_state


class Regressor(nn.Module):
    """A tiny model with dropout (so RNG state matters for exact resume)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 1))

    def training_step(self, batch):
        loss = ((self.net(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()
        return {"loss": loss}

    def save_pretrained(self, directory):
        from flexitts.checkpoints import save_safetensors

        save_safetensors(self.state_dict(), f"{directory}/model.safetensors")


def _data(n=64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    return [{"x": x[i], "y": y[i]} for i in range(n)]


def _collate(items):
    return {"x": torch.stack([i["x"] for i in items]), "y": torch.stack([i["y"] for i in items])}


def _train(out, steps, resume=False, budget=None):
    data = _data()
    seed_everything(0)
    model = Regressor()
    config = TrainingConfig(
        max_steps=steps, max_units=8, learning_rate=5e-2, warmup_steps=2, checkpoint_every=5, keep_last=2,
        log_every=1, time_budget_minutes=budget,
    )
    result = Trainer(model, data, _collate, [1] * len(data), config, out).fit(resume=resume, progress=False)
    return model, result


def test_loss_falls_and_outputs_are_written(tmp_path):
    _, result = _train(tmp_path, 40)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == list(range(1, 41))
    assert sum(r["loss"] for r in log[-5:]) < 0.25 * sum(r["loss"] for r in log[:5])
    assert (result.model_dir / "model.safetensors").is_file()
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-00000035", "step-00000040"]  # keep_last=2, no temp folders left


def test_resume_is_exact(tmp_path):
    straight, _ = _train(tmp_path / "a", 12)
    _, first = _train(tmp_path / "b", 12, budget=0.0)  # stops after one step, with a checkpoint
    assert first.stopped_by_budget and first.step == 1
    resumed, second = _train(tmp_path / "b", 12, resume=True)
    assert second.step == 12
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    log_a = (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()
    log_b = (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(l)["loss"] for l in log_a] == [json.loads(l)["loss"] for l in log_b]


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        _train(tmp_path, 3, resume=True)
    assert latest_checkpoint(tmp_path) is None


def test_sampler_respects_budget_covers_everything_and_resumes():
    lengths = [5, 1, 9, 3, 3, 7, 2, 8, 6, 4] * 3
    sampler = BucketBatchSampler(lengths, max_units=16, seed=3)
    epoch = sampler.epoch_batches(0)
    assert sorted(i for batch in epoch for i in batch) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 16 or len(b) == 1 for b in epoch)
    assert sampler.epoch_batches(1) != epoch  # a new order every epoch
    stream = iter(sampler)
    first = [next(stream) for _ in range(7)]
    state = sampler.state_dict()
    later = [next(stream) for _ in range(20)]
    again = BucketBatchSampler(lengths, max_units=16, seed=3)
    again.load_state_dict(state)
    assert [b for _, b in zip(range(20), iter(again))] == later
    ranks = [BucketBatchSampler(lengths, 16, seed=3, rank=r, world_size=2).epoch_batches(0) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) and not set(map(tuple, ranks[0])) & set(map(tuple, ranks[1]))
    del first


def test_state_io_round_trip_without_pickle(tmp_path):
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "tuple": (1, "a"), "none": None}
    save_state(state, tmp_path, "opt")
    back = load_state(tmp_path, "opt")
    assert back["tuple"] == (1, "a") and back["none"] is None
    fresh = torch.optim.AdamW(model.parameters())
    fresh.load_state_dict(back["optimizer"])
    for k, v in optimizer.state_dict()["state"][0].items():
        assert torch.equal(v, fresh.state_dict()["state"][0][k])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["opt.json", "opt.safetensors"]


def test_run_config_errors(tmp_path):
    good = tmp_path / "run.yaml"
    good.write_text("out_dir: out\nmodel: {dim: 8}\ntraining: {max_steps: 3}\ndata: {train: t.jsonl}\n")
    run = load_run_config(good)
    assert run.training.max_steps == 3 and run.model == {"dim": 8} and run.resolve("t.jsonl") == tmp_path / "t.jsonl"
    for text, match in [
        ("trainig: {}\n", "unknown section"),
        ("training: {max_stepz: 3}\n", "max_stepz"),
        ("training: {mixed_precision: fp8}\n", "mixed_precision"),
        ("model: [1, 2]\n", "mapping"),
        ("training: {max_steps: [\n", "cannot parse"),
    ]:
        good.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_run_config(good)
    with pytest.raises(ConfigError, match="does not exist"):
        load_run_config(tmp_path / "missing.yaml")


def test_log_rows_average_over_their_own_steps(tmp_path):
    data = _data()
    seed_everything(0)
    config = TrainingConfig(max_steps=5, max_units=8, learning_rate=1e-2, warmup_steps=1, log_every=2, checkpoint_every=5)
    Trainer(Regressor(), data, _collate, [1] * len(data), config, tmp_path / "a").fit(progress=False)
    seed_everything(0)
    every = TrainingConfig(max_steps=5, max_units=8, learning_rate=1e-2, warmup_steps=1, log_every=1, checkpoint_every=5)
    Trainer(Regressor(), data, _collate, [1] * len(data), every, tmp_path / "b").fit(progress=False)
    coarse = [json.loads(l) for l in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    fine = [json.loads(l)["loss"] for l in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in coarse] == [2, 4, 5]
    assert [r["loss"] for r in coarse] == pytest.approx([(fine[0] + fine[1]) / 2, (fine[2] + fine[3]) / 2, fine[4]])
