"""PNG plots of benchmark results (matplotlib, Agg: no display, no pyplot global state).

Each function takes the JSON dict a benchmark returned, writes one PNG atomically and returns its path, or
None when the result lacks what the plot needs (e.g. the dynamic benchmark without held-out features).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TARGET_RATES = (12.5, 8.3, 6.25)
STAGE_COLOURS = {"reference": "#8c8c8c", "text": "#bcbd22", "ar": "#1f77b4", "nar": "#ff7f0e",
                 "vocoder": "#2ca02c", "other": "#d62728"}


def _figure(width: float = 6.4, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | os.PathLike) -> Path:
    from flexitts.fileio import atomic_path

    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return Path(path)


def plot_frame_rate_vs_threshold(dynamic: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """Average frame rate against the merging threshold tau (the dynamic benchmark's held-out table)."""
    features = dynamic.get("features") or {}
    table = features.get("tau_vs_rate") or []
    if not table:
        return None
    taus = [r["tau"] for r in table]
    figure = _figure()
    ax = figure.add_subplot(1, 1, 1)
    ax.plot(taus, [r["corpus_rate_hz"] for r in table], "o-", label="corpus rate")
    ax.plot(taus, [r["mean_utt_rate_hz"] for r in table], "s--", alpha=0.7, label="mean utterance rate")
    for hz in TARGET_RATES:
        ax.axhline(hz, color="grey", linewidth=0.6, linestyle=":")
        ax.text(min(taus), hz, f" {hz:g} Hz", va="bottom", fontsize=8, color="grey")
    for k, target in enumerate(features.get("targets") or []):
        ax.plot([target["threshold_global"]["tau"]], [target["threshold_global"]["corpus_rate_hz"]], "kx",
                label="one global tau per target rate" if k == 0 else None)
    ax.set_xlabel("merging threshold tau")
    ax.set_ylabel("average frame rate (Hz)")
    ax.set_title(f"Frame rate vs threshold ({features.get('utterances', '?')} utterances)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(figure, path)


def plot_wer_vs_frame_rate(codec: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """Codec WER (beside the originals') and STOI against the reached frame rate, at the largest Q."""
    quality = codec.get("quality") or []
    if not quality:
        return None
    q_max = max(r["num_quantizers"] for r in quality)
    rows = sorted((r for r in quality if r["num_quantizers"] == q_max), key=lambda r: r["average_hz"])
    rates = [r["average_hz"] for r in rows]
    figure = _figure(9.0, 3.8)
    ax_wer, ax_stoi = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    wers = [r.get("wer") for r in rows]
    if any(w is not None for w in wers):
        ax_wer.plot([h for h, w in zip(rates, wers) if w is not None], [w for w in wers if w is not None], "o-",
                    label="decoded")
        original = next((r.get("wer_original") for r in rows if r.get("wer_original") is not None), None)
        if original is not None:
            ax_wer.axhline(original, color="grey", linestyle="--", label="original audio")
        ax_wer.legend(fontsize=8)
    else:
        ax_wer.text(0.5, 0.5, "WER not run (--no-wer)", ha="center", va="center", transform=ax_wer.transAxes)
        ax_wer.set_xticks([])
        ax_wer.set_yticks([])
    ax_wer.set_xlabel("average frame rate (Hz)")
    ax_wer.set_ylabel("WER (pocketsphinx)")
    ax_wer.set_title(f"WER vs frame rate ({q_max} quantizers)")
    ax_wer.grid(alpha=0.3)
    stois = [r.get("stoi") for r in rows]
    ax_stoi.plot([h for h, s in zip(rates, stois) if s is not None], [s for s in stois if s is not None], "o-",
                 color="#2ca02c")
    ax_stoi.set_xlabel("average frame rate (Hz)")
    ax_stoi.set_ylabel("STOI")
    ax_stoi.set_title("STOI vs frame rate")
    ax_stoi.grid(alpha=0.3)
    return _save(figure, path)


def plot_rtf_per_stage(pipeline: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """Stacked real-time factor of each pipeline stage, one bar per token-rate setting."""
    rows = pipeline.get("rows") or []
    if not rows:
        return None
    stages = list(STAGE_COLOURS)
    figure = _figure(7.0, 4.0)
    ax = figure.add_subplot(1, 1, 1)
    labels = [r["label"] for r in rows]
    bottoms = [0.0] * len(rows)
    for stage in stages:
        values = [float(r["stage_rtf"].get(stage) or 0.0) for r in rows]
        ax.bar(labels, values, bottom=bottoms, label=stage, color=STAGE_COLOURS[stage])
        bottoms = [b + v for b, v in zip(bottoms, values)]
    for x, row in enumerate(rows):
        ax.text(x, bottoms[x], f"{row['rtf']:.3f}\n{row['ar_steps_per_second']:.1f} tok/s", ha="center",
                va="bottom", fontsize=8)
    ax.set_ylim(0, max(bottoms) * 1.25 if max(bottoms) > 0 else 1.0)
    ax.set_ylabel("real-time factor")
    ax.set_title("TTS real-time factor per stage")
    ax.legend(fontsize=8, ncol=3)
    ax.tick_params(axis="x", labelsize=8)
    return _save(figure, path)


def plot_nar_steps(nar: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """NAR real-time factor and similarity / WER against the number of steps, one line per cfg weight."""
    rows = [r for r in nar.get("rows") or [] if r.get("sway") is None]
    if not rows:
        return None
    figure = _figure(9.0, 3.8)
    ax_rtf, ax_q = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    quality_key = "wer" if any(r.get("wer") is not None for r in rows) else "similarity"
    for cfg in sorted({r["cfg"] for r in rows}):
        line = sorted((r for r in rows if r["cfg"] == cfg), key=lambda r: r["steps"])
        ax_rtf.plot([r["steps"] for r in line], [r["nar_rtf"] for r in line], "o-", label=f"cfg {cfg:g}")
        points = [(r["steps"], r.get(quality_key)) for r in line if r.get(quality_key) is not None]
        if points:
            ax_q.plot([p[0] for p in points], [p[1] for p in points], "o-", label=f"cfg {cfg:g}")
    for r in nar.get("rows") or []:
        if r.get("sway") is not None:
            ax_rtf.plot([r["steps"]], [r["nar_rtf"]], "k^", label=f"sway {r['sway']:g}, cfg {r['cfg']:g}")
            if r.get(quality_key) is not None:
                ax_q.plot([r["steps"]], [r[quality_key]], "k^", label=f"sway {r['sway']:g}, cfg {r['cfg']:g}")
    ax_rtf.set_xlabel("steps")
    ax_rtf.set_ylabel("NAR real-time factor")
    ax_rtf.set_title("NAR speed")
    ax_q.set_xlabel("steps")
    ax_q.set_ylabel(quality_key if quality_key == "similarity" else "WER (pocketsphinx)")
    ax_q.set_title("NAR resynthesis " + ("WER" if quality_key == "wer" else "similarity to the prompt"))
    for ax in (ax_rtf, ax_q):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(figure, path)
