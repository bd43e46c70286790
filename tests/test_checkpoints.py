"""Checkpoint resolution (local, hf://, https://) and safetensors-only loading."""
from __future__ import annotations

import pytest
import torch

from flexitts.checkpoints import load_safetensors, resolve_checkpoint, save_safetensors
from flexitts.errors import CheckpointError


def test_local_safetensors_round_trip(tmp_path):
    state = {"w": torch.randn(3, 4), "b": torch.arange(5)}
    path = save_safetensors(state, tmp_path / "model.safetensors")
    resolved = resolve_checkpoint(str(path))
    assert resolved == path
    loaded = load_safetensors(resolved)
    assert set(loaded) == {"w", "b"}
    assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["b"], state["b"])
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_local_folder_resolves(tmp_path):
    assert resolve_checkpoint(tmp_path) == tmp_path


def test_missing_local_path_is_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist") as info:
        resolve_checkpoint(tmp_path / "nope.safetensors")
    assert "\n" not in str(info.value)


def test_https_failure_names_the_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEXITTS_CACHE", str(tmp_path / "cache"))
    uri = "https://127.0.0.1:9/flexitts/model.safetensors"  # port 9 (discard): refused at once
    with pytest.raises(CheckpointError, match="127.0.0.1:9") as info:
        resolve_checkpoint(uri)
    assert "local path" in str(info.value)


def test_hf_failure_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEXITTS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # an unreachable hub, as on this offline machine
    with pytest.raises(CheckpointError, match="hf://flexitts/demo/model.safetensors"):
        resolve_checkpoint("hf://flexitts/demo/model.safetensors")


def test_pickle_checkpoints_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="pickle"):
        load_safetensors(path)


def test_corrupt_safetensors(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_safetensors(path)


def test_unreachable_https_uses_the_cache_when_it_can(tmp_path, monkeypatch):
    from cached_path.util import resource_to_filename

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("FLEXITTS_CACHE", str(cache))
    uri = "https://127.0.0.1:9/flexitts/model.safetensors"
    path = save_safetensors({"w": torch.ones(2)}, cache / resource_to_filename(uri))
    assert resolve_checkpoint(uri) == path
    assert torch.equal(load_safetensors(resolve_checkpoint(uri))["w"], torch.ones(2))


def test_unreachable_hub_uses_a_cached_snapshot(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FLEXITTS_CACHE", str(cache))
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")
    repo = cache / "models--flexitts--demo"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    path = save_safetensors({"w": torch.full((3,), 7.0)}, repo / "snapshots" / "0123abcd" / "codec" / "model.safetensors")
    resolved = resolve_checkpoint("hf://flexitts/demo/codec/model.safetensors")
    assert resolved == path and torch.equal(load_safetensors(resolved)["w"], torch.full((3,), 7.0))
