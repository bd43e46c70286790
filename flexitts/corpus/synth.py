"""Speaking one sentence with espeak-ng: run it, decode its WAV, bring it to 16 kHz mono, trim, write.

espeak-ng does the heavy work in its own process, so a pool of threads each waiting on one `espeak-ng --stdout`
keeps every core busy without the start-up cost of worker processes; the Python work per utterance (decode,
resample with a cached kernel, trim, write) is small and mostly outside the GIL.
"""
from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import numpy as np

from flexitts.corpus.voices import Speaker

SAMPLE_RATE = 16000
# Silence kept before the first and after the last voiced frame when trimming.
KEEP_SILENCE_S = 0.1
# A 10 ms frame counts as voiced when its RMS is within this many dB of the loudest frame's.
TRIM_DB = 40.0
_FRAME = SAMPLE_RATE // 100

# Harvard sentences (public domain): the text whose duration calibrates each speaker's seconds per character.
CALIBRATION_TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish. "
    "Rice is often served in round bowls."
)
# Fixed time per utterance outside the per-character rate: the kept silence at both ends.
UTTERANCE_OVERHEAD_S = 2 * KEEP_SILENCE_S

_resamplers: dict[int, object] = {}
_resampler_lock = threading.Lock()


class SynthesisError(Exception):
    """espeak-ng failed on one utterance (it is skipped, not fatal)."""


def _resampler(orig_rate: int):
    """A torchaudio `Resample` to 16 kHz, built once per source rate: its sinc kernel is the costly part."""
    with _resampler_lock:
        if orig_rate not in _resamplers:
            import torchaudio

            _resamplers[orig_rate] = torchaudio.transforms.Resample(orig_rate, SAMPLE_RATE)
        return _resamplers[orig_rate]


def _decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Samples (int16) and rate of espeak-ng's `--stdout` WAV.

    espeak-ng writes a streaming header whose size fields are 0x7fffffff, which libsndfile rejects or
    misreads, so the canonical 44-byte PCM16 mono header is parsed here and the rest taken as samples.
    """
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE" or data[36:40] != b"data":
        raise SynthesisError("espeak-ng wrote no WAV data")
    channels = int.from_bytes(data[22:24], "little")
    rate = int.from_bytes(data[24:28], "little")
    bits = int.from_bytes(data[34:36], "little")
    if channels != 1 or bits != 16:
        raise SynthesisError(f"unexpected espeak-ng output ({channels} channels, {bits} bits)")
    payload = data[44:]
    samples = np.frombuffer(payload[: len(payload) // 2 * 2], dtype="<i2")
    if samples.size == 0:
        raise SynthesisError("espeak-ng produced no audio")
    return samples, rate


def run_espeak(speaker: Speaker, text: str, espeak: str = "espeak-ng", timeout: float = 60.0) -> tuple[np.ndarray, int]:
    """Speak `text` as `speaker`: int16 samples at espeak-ng's native rate for the voice."""
    # The text goes through stdin, never argv, so a sentence starting with '-' is not read as an option.
    try:
        done = subprocess.run(
            [espeak, *speaker.espeak_args(), "--stdout"],
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SynthesisError(f"espeak-ng did not run: {error}") from None
    if done.returncode != 0:
        message = " ".join(done.stderr.decode("utf-8", "replace").split())
        raise SynthesisError(f"espeak-ng exited with status {done.returncode}: {message}")
    return _decode_wav(done.stdout)


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """float32 samples in [-1, 1] at 16 kHz."""
    wav = samples.astype(np.float32) / 32768.0
    if rate == SAMPLE_RATE:
        return wav
    import torch

    with torch.no_grad():
        return _resampler(rate)(torch.from_numpy(wav)).numpy()


def trim_silence(wav: np.ndarray, keep_s: float = KEEP_SILENCE_S, threshold_db: float = TRIM_DB) -> np.ndarray:
    """Cut leading and trailing silence down to `keep_s` seconds; a wholly silent signal is returned as is."""
    frames = wav.size // _FRAME
    if frames == 0:
        return wav
    rms = np.sqrt(np.mean(np.square(wav[: frames * _FRAME].reshape(frames, _FRAME), dtype=np.float64), axis=1))
    top = float(rms.max())
    if top <= 0.0:
        return wav
    voiced = np.flatnonzero(rms >= top * 10.0 ** (-threshold_db / 20.0))
    keep = int(round(keep_s * SAMPLE_RATE))
    start = max(0, int(voiced[0]) * _FRAME - keep)
    end = min(wav.size, (int(voiced[-1]) + 1) * _FRAME + keep)
    return wav[start:end]


def synthesize(speaker: Speaker, text: str, espeak: str = "espeak-ng") -> np.ndarray:
    """`text` spoken by `speaker`: float32 mono 16 kHz samples, silence trimmed. Raises `SynthesisError`."""
    samples, rate = run_espeak(speaker, text, espeak)
    wav = trim_silence(to_16k(samples, rate))
    if wav.size < _FRAME or float(np.abs(wav).max()) < 1e-4:
        raise SynthesisError("espeak-ng produced silence")
    return wav


def synthesize_to_file(speaker: Speaker, text: str, path: str | os.PathLike, espeak: str = "espeak-ng") -> Path:
    """Speak `text` into `path` (16 kHz mono PCM16, written atomically). Raises `SynthesisError`."""
    from flexitts.audio import save_audio

    return save_audio(path, synthesize(speaker, text, espeak), SAMPLE_RATE)


def calibrate(speaker: Speaker, espeak: str = "espeak-ng") -> float:
    """Seconds of trimmed speech per character of text for `speaker` (from `CALIBRATION_TEXT`)."""
    seconds = synthesize(speaker, CALIBRATION_TEXT, espeak).size / SAMPLE_RATE
    return max(seconds - UTTERANCE_OVERHEAD_S, 0.1) / len(CALIBRATION_TEXT)
