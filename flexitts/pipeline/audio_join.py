"""Joining the audio of consecutive text chunks with a short equal-power cross-fade.

`StreamJoiner` does the work piece by piece (for streaming) and `crossfade_join` runs it over a whole list,
so the streamed pieces concatenate to exactly the joined waveform.
"""
from __future__ import annotations

import numpy as np

DEFAULT_CROSSFADE_SECONDS = 0.04


class StreamJoiner:
    """Feed chunk waveforms one at a time; each `push` returns the samples that are final.

    Neighbours overlap by `min(fade, len(previous) // 2, len(next) // 2)` samples, so a chunk's tail that
    may still be faded (`min(fade, len // 2)` samples) is held back until the next chunk or `finish()`.
    """

    def __init__(self, sample_rate: int, seconds: float = DEFAULT_CROSSFADE_SECONDS):
        self.fade = int(seconds * sample_rate)
        self.held = np.zeros(0, dtype=np.float32)
        self.previous_length = 0

    def push(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float32)
        overlap = min(self.fade, self.previous_length // 2, len(chunk) // 2)
        if overlap:
            t = np.linspace(0.0, np.pi / 2, overlap, dtype=np.float32)
            mixed = self.held[len(self.held) - overlap :] * np.cos(t) + chunk[:overlap] * np.sin(t)
            head = np.concatenate([self.held[: len(self.held) - overlap], mixed])
        else:
            head = self.held
        body = chunk[overlap:]
        hold = min(self.fade, len(chunk) // 2, len(body))
        self.held = body[len(body) - hold :]
        self.previous_length = len(chunk)
        return np.concatenate([head, body[: len(body) - hold]])

    def finish(self) -> np.ndarray:
        """The held-back tail of the last chunk."""
        tail, self.held, self.previous_length = self.held, np.zeros(0, dtype=np.float32), 0
        return tail


def crossfade_join(chunks: list[np.ndarray], sample_rate: int, seconds: float = DEFAULT_CROSSFADE_SECONDS) -> np.ndarray:
    """Concatenate `[S_i]` float arrays, overlapping neighbours with an equal-power fade of up to `seconds`."""
    joiner = StreamJoiner(sample_rate, seconds)
    pieces = [joiner.push(chunk) for chunk in chunks] + [joiner.finish()]
    return np.concatenate(pieces).astype(np.float32, copy=False)
