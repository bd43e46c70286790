"""Audio loading, conversion, validation errors and atomic saving."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from flexitts.audio import (
    REFERENCE_LIMITS,
    AudioLimits,
    audio_duration,
    load_audio,
    peak_normalize,
    save_audio,
    to_mono,
)
from flexitts.errors import AudioError, FlexiTTSError
from tests.conftest import tone


def test_loads_real_flac_and_resamples(real_speech_16k, real_speech_24k):
    wav, rate = load_audio(real_speech_16k)
    assert rate == 16000 and wav.dim() == 1
    assert abs(wav.shape[0] / rate - 2.71) < 0.02
    wav24, rate24 = load_audio(real_speech_24k, target_rate=16000)
    assert rate24 == 16000
    assert abs(wav24.shape[0] - round(3.01 * 16000)) < 200
    assert wav24.abs().max() > 0.05  # still speech after resampling


def test_resampling_preserves_a_tone(write_wav):
    path = write_wav("t.wav", tone(1.0, 24000, freq=440.0), 24000)
    wav, rate = load_audio(path, target_rate=16000)
    assert rate == 16000 and wav.shape[0] == 16000
    spectrum = torch.fft.rfft(wav).abs()
    assert int(spectrum.argmax()) == 440  # 1 s at 16 kHz: bin index == Hz


def test_stereo_is_mixed_down(write_wav):
    path = write_wav("st.wav", tone(0.5, 16000, channels=2), 16000)
    wav, _ = load_audio(path)
    data, _ = sf.read(path, dtype="float32")
    np.testing.assert_allclose(wav.numpy(), data.mean(axis=1), atol=1e-4)
    both, _ = load_audio(path, mono=False)
    assert both.shape[0] == 2


def test_arrays_and_bytes(real_speech_16k):
    data, rate = sf.read(real_speech_16k, dtype="float32")
    from_array, _ = load_audio(data, sample_rate=rate)
    from_tensor, _ = load_audio(torch.from_numpy(data), sample_rate=rate)
    from_bytes, _ = load_audio(real_speech_16k.read_bytes())
    torch.testing.assert_close(from_array, from_tensor)
    torch.testing.assert_close(from_array, from_bytes)
    # [T, C] and [C, T] arrays mean the same thing
    stereo = np.stack([data, data], axis=1)
    np.testing.assert_allclose(load_audio(stereo, sample_rate=rate)[0].numpy(), data, atol=1e-6)
    np.testing.assert_allclose(load_audio(stereo.T, sample_rate=rate)[0].numpy(), data, atol=1e-6)
    with pytest.raises(AudioError, match="sample rate"):
        load_audio(data)


def test_to_mono_and_peak_normalize():
    wav = torch.tensor([[0.2, -0.4], [0.4, 0.0]])
    torch.testing.assert_close(to_mono(wav), torch.tensor([0.3, -0.2]))
    assert float(peak_normalize(torch.tensor([0.1, -0.25])).abs().max()) == pytest.approx(0.95)
    assert torch.equal(peak_normalize(torch.zeros(4)), torch.zeros(4))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda w, p: p / "missing.wav", "does not exist"),
        (lambda w, p: (p / "bad.wav").write_bytes(b"RIFF\x00\x00garbage" * 10) and p / "bad.wav", "corrupt"),
        (lambda w, p: w("empty.wav", np.zeros(0, np.float32), 16000), "empty"),
        (lambda w, p: w("silent.wav", np.zeros(16000, np.float32), 16000), "silent"),
        (lambda w, p: w("short.wav", tone(0.1, 16000), 16000), "too short"),
        (lambda w, p: w("nan.wav", np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT"), "NaN"),
        (lambda w, p: p, "directory"),
    ],
)
def test_validation_errors_are_one_line(write_wav, tmp_path, make, match):
    path = make(write_wav, tmp_path)
    with pytest.raises(AudioError, match=match) as info:
        load_audio(path)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, FlexiTTSError)


def test_reference_limits_reject_long_audio():
    long = tone(31.0, 8000)
    with pytest.raises(AudioError, match="too long"):
        load_audio(long, sample_rate=8000, limits=REFERENCE_LIMITS)
    wav, _ = load_audio(long, sample_rate=8000, limits=AudioLimits(max_seconds=60))
    assert wav.shape[0] == long.shape[0]


def test_save_is_atomic_and_round_trips(tmp_path):
    wav = torch.from_numpy(tone(0.5, 16000))
    out = save_audio(tmp_path / "sub" / "out.wav", wav, 16000)
    back, rate = load_audio(out)
    assert rate == 16000 and audio_duration(out) == pytest.approx(0.5)
    assert torch.allclose(back, wav, atol=1e-4)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.wav"]  # no temp file left behind
    # A failed write leaves the old file intact and no temp file.
    with pytest.raises(AudioError):
        save_audio(tmp_path / "sub" / "out.xyz", wav, 16000)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.wav"]


def test_atomic_writes_get_normal_permissions(tmp_path):
    import os

    from flexitts.fileio import write_text_atomic

    write_text_atomic(tmp_path / "a.txt", "hello")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
