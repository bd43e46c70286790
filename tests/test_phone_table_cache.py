"""The code-phone table's disk cache: built once per codec, read back bit for bit, rebuilt when anything it
depends on changes or the file is damaged, and never a failure when the cache folder cannot be written."""
from __future__ import annotations

import pytest
import torch

from codec.phone_table_cache import cached_code_phone_table, code_phone_table_key
from tests.test_codec_model import tiny_codec


@pytest.fixture
def codec():
    model = tiny_codec(phone_subframes=2)
    with torch.no_grad():
        model.semantic_decoder.proj_out.weight.normal_(std=0.5)
    return model


def test_the_table_is_saved_once_and_read_back_exactly(codec, tmp_path, monkeypatch):
    built = codec.code_phone_table()
    first = cached_code_phone_table(codec, tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name == f"{code_phone_table_key(codec)}.safetensors"
    assert torch.equal(first, built)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached table was built again")

    monkeypatch.setattr(codec, "code_phone_table", no_rebuild)
    again = cached_code_phone_table(codec, tmp_path)
    assert torch.equal(again, built) and again.dtype == torch.float32


def test_a_changed_weight_or_recogniser_head_names_another_table(codec, tmp_path):
    key = code_phone_table_key(codec)
    before = cached_code_phone_table(codec, tmp_path)
    with torch.no_grad():
        codec.semantic_decoder.proj_out.weight.mul_(-1.0)
    assert code_phone_table_key(codec) != key
    after = cached_code_phone_table(codec, tmp_path)
    assert not torch.equal(after, before) and torch.equal(after, codec.code_phone_table())
    assert len(list(tmp_path.iterdir())) == 2
    with torch.no_grad():
        codec.asr_extractor.head.bias.add_(1.0)  # the recogniser is not part of the codec's state dict
    assert code_phone_table_key(codec) not in {key} | {f.stem for f in tmp_path.iterdir()}


def test_a_damaged_file_is_rebuilt_and_replaced(codec, tmp_path):
    path = tmp_path / f"{code_phone_table_key(codec)}.safetensors"
    path.write_bytes(b"not a safetensors file")
    table = cached_code_phone_table(codec, tmp_path)
    assert torch.equal(table, codec.code_phone_table())
    assert torch.equal(cached_code_phone_table(codec, tmp_path), table)  # the rebuilt file reads back
    assert path.stat().st_size > 4 * table.numel()


def test_an_unwritable_cache_folder_still_gives_the_table(codec, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    table = cached_code_phone_table(codec, blocker / "tables")
    assert torch.equal(table, codec.code_phone_table())
