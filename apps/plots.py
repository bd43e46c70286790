"""The demo's signature picture: the output mel spectrogram with the dynamic token boundaries drawn on it.

Every AR token covers `d` 12.5 Hz frames (80 ms each, 4 mel frames at 50 Hz). A vertical line marks where each
token starts; tokens that merged several frames (`d > 1`) are shaded and labelled with their duration, and a
strip under the spectrogram shows every token's duration as a bar. Text chunks (long texts are synthesised in
pieces and cross-faded) are placed where the joiner put them.

Only matplotlib's object-oriented API is used (no pyplot state), so concurrent requests can draw at once.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

BASE_RATE = 12.5  # Hz: one unmerged token


@dataclass
class TokenSpan:
    """One AR token on the output's time axis."""

    start: float  # seconds
    end: float  # seconds
    duration: int  # 12.5 Hz frames the AR gave it (before any speed change)


def token_spans(chunk_durations: Sequence[np.ndarray], chunk_samples: Sequence[int], sample_rate: int,
                rendered_durations: Sequence[np.ndarray] | None = None,
                crossfade_seconds: float = 0.04) -> tuple[list[TokenSpan], list[float]]:
    """Place every chunk's tokens on the joined waveform's time axis.

    Args:
        chunk_durations: per chunk, the AR's durations `[G_i]` (12.5 Hz frames per token).
        chunk_samples: per chunk, its waveform length in samples.
        sample_rate: of the waveforms.
        rendered_durations: per chunk, the durations actually rendered (after a speed change); default the AR's.
        crossfade_seconds: the joiner's fade; neighbours overlap by `min(fade, len_prev // 2, len_next // 2)`.

    Returns:
        (token spans, start times of the chunks after the first).
    """
    rendered_durations = list(chunk_durations) if rendered_durations is None else list(rendered_durations)
    fade = int(crossfade_seconds * sample_rate)
    spans: list[TokenSpan] = []
    chunk_starts: list[float] = []
    offset, previous = 0, 0
    for k, (durations, rendered, samples) in enumerate(zip(chunk_durations, rendered_durations, chunk_samples)):
        samples = int(samples)
        if k:
            offset += previous - min(fade, previous // 2, samples // 2)
            chunk_starts.append(offset / sample_rate)
        rendered = np.asarray(rendered, dtype=np.float64)
        total = float(rendered.sum())
        if total > 0:
            per_frame = samples / total  # samples per rendered 12.5 Hz frame (1280 at 16 kHz)
            ends = np.cumsum(rendered) * per_frame
            starts = np.concatenate([[0.0], ends[:-1]])
            for d, s, e in zip(np.asarray(durations), starts, ends):
                spans.append(TokenSpan((offset + s) / sample_rate, (offset + e) / sample_rate, int(d)))
        previous = samples
    return spans, chunk_starts


def boundary_figure(mel: np.ndarray, frames_per_second: float, spans: Sequence[TokenSpan],
                    chunk_starts: Sequence[float] = (), title: str | None = None, width_inches: float | None = None):
    """A matplotlib `Figure`: the mel `[F, n_mels]` with token starts, merged tokens shaded and labelled, and a
    duration strip below. The width grows with the audio (11 to 24 inches at 100 dpi) unless given."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    mel = np.asarray(mel, dtype=np.float32)
    seconds = mel.shape[0] / frames_per_second if mel.size else 0.0
    seconds = max(seconds, spans[-1].end if spans else 0.0, 1e-3)
    if width_inches is None:
        width_inches = min(24.0, max(11.0, 0.8 * seconds))
    fig = Figure(figsize=(width_inches, 4.2), dpi=100, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [4, 1.2]})
    n_mels = mel.shape[1] if mel.ndim == 2 and mel.size else 1
    if mel.size:
        top.imshow(mel.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                   extent=(0.0, mel.shape[0] / frames_per_second, 0, n_mels))
    top.set_xlim(0.0, seconds)
    top.set_ylim(0, n_mels)
    top.set_ylabel("mel bin")
    top.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))

    axis_width_px = width_inches * 100 * 0.9
    px_per_second = axis_width_px / seconds
    max_duration = max([s.duration for s in spans] + [1])
    cmap = _duration_colours(max_duration)
    for i, span in enumerate(spans):
        if span.duration > 1:  # faint over the spectrogram, solid in a label band at its top
            top.axvspan(span.start, span.end, color=cmap(span.duration), alpha=0.10 if i % 2 else 0.16, linewidth=0)
            top.axvspan(span.start, span.end, ymin=0.9, ymax=1.0, color=cmap(span.duration), alpha=0.9, linewidth=0)
            if (span.end - span.start) * px_per_second >= 9:
                top.text((span.start + span.end) / 2, n_mels * 0.95, f"{span.duration}", ha="center", va="center",
                         fontsize=8, color="black" if span.duration > max_duration / 2 else "white", fontweight="bold")
    if spans:  # thinner, fainter lines when tokens are only a few pixels wide
        crowded = min(1.0, px_per_second * seconds / len(spans) / 12.0)
        top.vlines([s.start for s in spans], 0, n_mels, colors="white", linewidth=0.3 + 0.4 * crowded,
                   alpha=0.35 + 0.4 * crowded)
    for start in chunk_starts:
        top.axvline(start, color="cyan", linewidth=1.4, linestyle="--")
        bottom.axvline(start, color="cyan", linewidth=1.4, linestyle="--")

    if spans:
        bottom.bar([s.start for s in spans], [s.duration for s in spans], width=[s.end - s.start for s in spans],
                   align="edge", color=[cmap(s.duration) for s in spans], edgecolor="black", linewidth=0.3)
    bottom.set_ylim(0, max_duration + 0.5)
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
    bottom.set_ylabel("frames\n/token", fontsize=8)
    bottom.set_xlabel("time (s)")
    if title:
        top.set_title(title, fontsize=10)
    return fig


def _duration_colours(max_duration: int):
    from matplotlib import colormaps

    palette = colormaps["viridis"]
    return lambda d: palette(0.15 + 0.8 * (min(d, max_duration) - 1) / max(1, max_duration - 1))


def figure_png(fig) -> bytes:
    """Render a `Figure` to PNG bytes with the Agg backend (no GUI, thread-safe per figure)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_title(num_tokens: int, base_frames: int, seconds: float, rate: float, speed: float = 1.0) -> str:
    """E.g. `27 tokens for 3.36 s of speech: 8.04 tokens/s on average (42 at 12.5 Hz, 1.56x fewer)`."""
    fewer = base_frames / max(1, num_tokens)
    text = (f"{num_tokens} tokens for {seconds:.2f} s of speech: {rate:.2f} tokens/s on average "
            f"({base_frames} at 12.5 Hz, {fewer:.2f}x fewer)")
    if speed != 1.0:
        text += f", speed x{speed:g}"
    return text
