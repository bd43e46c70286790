"""The token cache (`flexitts data tokens`): contents, invariants, resume, refusal of a foreign build."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from flexitts.data.manifest import Utterance, write_manifest
from flexitts.data.token_cache import TokenCache, TokenSetting, build_token_cache, read_token_cache_item
from flexitts.errors import DataError

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@pytest.fixture(scope="module")
def codec():
    from tests.test_codec_model import tiny_codec

    return tiny_codec()


@pytest.fixture
def manifest(tmp_path, real_speech_16k):
    speech, rate = sf.read(real_speech_16k, dtype="float32")
    rows = []
    for i, (start, stop) in enumerate([(0, 40000), (5000, 20000), (1000, 30000)]):
        sf.write(tmp_path / f"u{i}.wav", speech[start:stop], rate)
        rows.append(Utterance(f"u{i}.wav", ["Hello there.", "A second one.", "Number three here."][i], f"s{i % 2}",
                              (stop - start) / rate, {"id": f"utt{i}"}))
    path = tmp_path / "m.jsonl"
    write_manifest(path, rows)
    return path


def test_settings_parse():
    assert TokenSetting.parse("t0.48") == TokenSetting(threshold=0.48)
    assert TokenSetting.parse("r8.3").frame_rate == 8.3 and TokenSetting(frame_rate=8.3).name == "r8.3"
    with pytest.raises(DataError):
        TokenSetting.parse("x1")


def test_build_contents_and_resume(codec, manifest, tmp_path):
    out = tmp_path / "cache"
    cache = build_token_cache(manifest, out, codec, ["t1.0", "r6.25"], batch_seconds=3.0)
    assert len(cache) == 3 and cache.settings == ["t1", "r6.25"]
    for index in range(3):
        item = cache.item(index)
        assert item.id == f"utt{index}" and item.audio.is_file() and len(item.phonemes) > 3
        assert item.frames == -(-sf.info(item.audio).frames // 1280)
        assert np.all(item.durations["t1"] == 1) and len(item.codes["t1"]) == item.frames
        assert item.durations["r6.25"].sum() == item.frames and item.durations["r6.25"].min() >= 1
        assert item.durations["r6.25"].max() <= 8 and len(item.codes["r6.25"]) < item.frames
        assert item.codes["t1"].max() < 32768 and item.rates["t1"] == pytest.approx(12.5)
    # Batch composition does not change an item's tokens: one item encoded alone gives the same.
    alone = codec.encode(sf.read(cache.item(1).audio, dtype="float32")[0], 16000, num_quantizers=1, merging_threshold=1.0)
    assert torch.equal(alone.semantic_codes[0], torch.from_numpy(cache.item(1).codes["t1"]))
    # Resume: a lost item is rebuilt identically; the rest are not rewritten.
    before = {f.name: f.stat().st_mtime_ns for f in (out / "items").iterdir()}
    (out / "items" / "000001.npz").unlink()
    (out / "index.jsonl").unlink()
    with pytest.raises(DataError, match="not a complete token cache"):
        TokenCache(out)
    again = build_token_cache(manifest, out, codec, ["t1.0", "r6.25"], batch_seconds=3.0)
    assert np.array_equal(again.item(1).codes["r6.25"], cache.item(1).codes["r6.25"])
    after = {f.name: f.stat().st_mtime_ns for f in (out / "items").iterdir()}
    assert after["000000.npz"] == before["000000.npz"]
    assert read_token_cache_item(out / "items" / "000002.npz").text == "Number three here."


def test_foreign_build_refused(codec, manifest, tmp_path):
    out = tmp_path / "cache"
    build_token_cache(manifest, out, codec, ["t1.0"], batch_seconds=3.0)
    with pytest.raises(DataError, match="another manifest, codec or settings"):
        build_token_cache(manifest, out, codec, ["t0.5"], batch_seconds=3.0)
