"""Shared fixtures: small audio files written per test, and the bundled real speech samples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Derived data the code caches (`$FLEXITTS_CACHE`: code-phone tables, parsed sentences) goes to a folder of
    this test session, not the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEXITTS_CACHE", str(tmp_path_factory.mktemp("flexitts_cache")))
        yield


@pytest.fixture(autouse=True)
def one_thread():
    """Tests use tiny models: on one thread they run far faster (and do not fight a busy CPU)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def real_speech_16k() -> Path:
    """A 2.7 s LibriSpeech utterance at 16 kHz (flac)."""
    return DATA / "1089-134686-0030.flac"


@pytest.fixture
def real_speech_24k() -> Path:
    """A 3.0 s LibriTTS utterance at 24 kHz (wav)."""
    return DATA / "7176_92135_000004_000000.wav"


def tone(seconds: float, rate: int, freq: float = 220.0, channels: int = 1, amplitude: float = 0.5) -> np.ndarray:
    """A sine tone `[T]` (or `[T, C]` with slightly different channels)."""
    t = np.arange(int(seconds * rate)) / rate
    wave = amplitude * np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels == 1:
        return wave
    return np.stack([wave * (1.0 - 0.1 * c) for c in range(channels)], axis=1)


@pytest.fixture
def write_wav(tmp_path: Path):
    """Write an array to `tmp_path/name` and return the path."""

    def _write(name: str, data: np.ndarray, rate: int, **kwargs) -> Path:
        path = tmp_path / name
        sf.write(path, data, rate, **kwargs)
        return path

    return _write
