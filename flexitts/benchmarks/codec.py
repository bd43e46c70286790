"""Codec benchmark (`flexitts bench codec`): speed, memory and reconstruction quality of a `FlexiCodec`.

For every utterance and every target frame rate (12.5 / 8.3 / 6.25 Hz by default, via `encode(frame_rate=)`),
the audio is encoded once with all quantizers; the tokens are then decoded with the first Q codes per token for
each Q in the grid (1, 2, 4, 8, capped at the codec's maximum). Residual VQ makes a prefix of the codebooks exactly
what encoding with fewer quantizers gives, so the grid needs one encode per frame rate.

Measured:
- real-time factor (processing seconds / audio seconds) of encode (ASR features included) and decode, on the CPU
  threads torch is given (reported), after one untimed warm-up call;
- peak memory: the process's peak resident set size (`VmHWM`, reset through `/proc/self/clear_refs` before each
  encode / decode) minus the resident size just before the call, the largest over utterances; plus the whole
  process's high-water mark (`resource.getrusage().ru_maxrss`). Where `/proc` is unavailable only the latter;
- quality per (frame rate, Q): STOI (`pystoi`), log-mel L1 distance, wideband PESQ (`pesq`, when installed),
  and pocketsphinx WER of the decoded audio next to the WER of the original audio (`flexitts.evaluation.wer`);
- the average frame rate reached and the bitrate (content + duration bits) of each cell.

`run_codec_benchmark(codec, utterances, out)` writes `out.json` and `out.md` atomically and returns the JSON dict.
"""
from __future__ import annotations

import math
import os
import platform
import resource
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from flexitts.errors import DataError, DependencyError
from flexitts.evaluation.metrics import MEL  # the log-mel distance settings, quoted in the report
from flexitts.evaluation.tables import cell, checks_table

DEFAULT_FRAME_RATES = (12.5, 8.3, 6.25)
DEFAULT_QUANTIZERS = (1, 2, 4, 8)
DEFAULT_MANIFEST = Path("corpus") / "demo" / "test.jsonl"
DEMO_LIMIT = 30
# pocketsphinx recognises mbrola voices, not espeak's formant voices (DESIGN.md): the demo split's WER uses these.
DEMO_SPEAKER_PREFIX = "mb-"
# Issue 4's bar for the demo codec.
TARGET_STOI = 0.80
TARGET_WER_RATIO = 2.0
TARGET_RTF = 0.1

Progress = Callable[[str], None] | None


@dataclass
class BenchUtterance:
    """One utterance of the benchmark: 16 kHz mono samples `[T]` and its transcript."""

    id: str
    wav: torch.Tensor
    text: str = ""
    speaker: str = "unknown"

    @property
    def seconds(self) -> float:
        return self.wav.shape[-1] / 16000  # the codec's rate (codec.framing.SAMPLE_RATE)


# ---------------------------------------------------------------- data
def default_manifest() -> Path:
    """`corpus/demo/test.jsonl` under the working directory, else under the source checkout."""
    repo = Path(__file__).resolve().parents[2]
    for candidate in (Path.cwd() / DEFAULT_MANIFEST, repo / DEFAULT_MANIFEST):
        if candidate.is_file():
            return candidate
    raise DataError(f"no --manifest given and the demo test split '{DEFAULT_MANIFEST}' is not here: build the corpus "
                    "(`flexitts corpus synth --out corpus/demo ...`) or pass --manifest")


def load_utterances(manifest: str | os.PathLike, limit: int | None = None, speaker_prefix: str | None = None,
                    sample_rate: int = 16000) -> list[BenchUtterance]:
    """The first `limit` utterances of `manifest` (only speakers starting with `speaker_prefix` when given)."""
    from flexitts.audio import load_audio
    from flexitts.data.manifest import read_manifest

    path = Path(manifest)
    rows = read_manifest(path)
    if speaker_prefix:
        rows = [r for r in rows if r.speaker.startswith(speaker_prefix)]
        if not rows:
            raise DataError(f"manifest '{path}' has no speaker starting with '{speaker_prefix}': change --speaker-prefix")
    if limit is not None:
        if limit < 1:
            raise DataError(f"--limit must be at least 1, got {limit}")
        rows = rows[:limit]
    out = []
    for index, row in enumerate(rows):
        wav, _ = load_audio(row.resolve(path.parent), target_rate=sample_rate)
        out.append(BenchUtterance(str(row.extra.get("id", f"{path.stem}-{index}")), wav, row.text, row.speaker))
    return out


# ---------------------------------------------------------------- host, threads, memory
def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` torch intra-op threads, restoring the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def max_rss_mb() -> float:
    """The process's peak RSS so far (ru_maxrss: KiB on Linux, bytes on macOS), in MiB."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / (1024 * 1024) if sys.platform == "darwin" else value / 1024


class PeakMemory:
    """Largest (peak RSS during a call - RSS before it) over the calls measured, in MiB."""

    def __init__(self) -> None:
        self.supported = _reset_peak() and _status_kb("VmHWM") is not None
        self.delta_mb: float | None = None
        self.peak_mb: float | None = None

    @contextmanager
    def measure(self) -> Iterator[None]:
        if not self.supported:
            yield
            return
        _reset_peak()
        before = _status_kb("VmRSS") or 0
        yield
        peak = _status_kb("VmHWM") or before
        delta, peak_mb = max(0, peak - before) / 1024, peak / 1024
        self.delta_mb = delta if self.delta_mb is None else max(self.delta_mb, delta)
        self.peak_mb = peak_mb if self.peak_mb is None else max(self.peak_mb, peak_mb)


# ---------------------------------------------------------------- metrics
class _Metrics:
    """STOI, log-mel L1 and wideband PESQ of a decoded waveform against the original (both 16 kHz `[T]`).

    The metric functions are `flexitts.evaluation.metrics`' (one implementation for `flexitts eval codec` and
    this benchmark); this checks the packages once and remembers whether PESQ runs.
    """

    def __init__(self, sample_rate: int = 16000, use_pesq: bool = True):
        from flexitts.evaluation import metrics

        try:
            import pystoi  # noqa: F401
        except ImportError:
            raise DependencyError("pystoi is not installed: run `make setup` or `pip install flexitts[eval]`") from None
        self.sample_rate = sample_rate
        self.use_pesq = bool(use_pesq) and metrics.pesq_available()
        self.pesq_note = ("wideband (pesq package)" if self.use_pesq else "pesq not installed") if use_pesq else "disabled"

    def __call__(self, ref: torch.Tensor, deg: torch.Tensor) -> dict[str, float | None]:
        from flexitts.evaluation import metrics

        return {"stoi": metrics.stoi(ref, deg, self.sample_rate),
                "mel_distance": metrics.log_mel_distance(ref, deg, self.sample_rate),
                "pesq": metrics.pesq_wb(ref, deg, self.sample_rate) if self.use_pesq else None}


def mean_finite(values: Sequence[float | None]) -> float | None:
    """Mean of the finite values that are not None; None when there are none."""
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(kept) if kept else None


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float | None:
    """Corpus-level WER over the pairs whose reference has words after normalisation (None if none has)."""
    from flexitts.evaluation.wer import normalize_for_wer, word_error_rate

    pairs = [(r, h) for r, h in zip(references, hypotheses) if normalize_for_wer(r)]
    if not pairs:
        return None
    return word_error_rate([r for r, _ in pairs], [h for _, h in pairs])


def _truncate(tokens: Any, num_quantizers: int) -> Any:
    """The same tokens with only the first `num_quantizers` codes per token (FSQ + Q-1 codebooks)."""
    from codec.tokens import CodecTokens

    acoustic = tokens.acoustic_codes
    acoustic = None if num_quantizers == 1 or acoustic is None else acoustic[:, : num_quantizers - 1]
    return CodecTokens(tokens.semantic_codes, acoustic, tokens.token_lengths, tokens.num_tokens, tokens.num_samples)


def quantizer_grid(max_quantizers: int, wanted: Sequence[int] = DEFAULT_QUANTIZERS) -> list[int]:
    """`wanted` capped at the codec's maximum; the maximum itself is added when it is below the largest wanted."""
    grid = sorted({int(q) for q in wanted if 1 <= int(q) <= max_quantizers})
    if max_quantizers < max(wanted) and max_quantizers not in grid:
        grid.append(max_quantizers)
    if not grid:
        raise DataError(f"no number of quantizers in {list(wanted)} fits this codec (1..{max_quantizers})")
    return grid


# ---------------------------------------------------------------- the benchmark
def run_codec_benchmark(codec: Any, utterances: Sequence[BenchUtterance], out: str | os.PathLike, *,
                        frame_rates: Sequence[float] = DEFAULT_FRAME_RATES,
                        quantizers: Sequence[int] = DEFAULT_QUANTIZERS, scheduler: str = "threshold",
                        wer: bool = True, wer_grid: str = "cross", pesq: bool = True, threads: int | None = None,
                        info: dict[str, Any] | None = None, progress: Progress = None) -> dict[str, Any]:
    """Benchmark `codec` on `utterances`; write `<out>.json` and `<out>.md`; return the JSON dict.

    Args:
        codec: a `FlexiCodec` (put in eval mode here).
        utterances: 16 kHz mono utterances with transcripts (see `load_utterances`).
        out: report path without extension (".json" / ".md" are stripped if given).
        frame_rates: target average tokens per second; quantizers: codes per token to decode with.
        scheduler: "threshold", "dp" or "entropy".
        wer: run pocketsphinx on original and decoded audio; wer_grid: "cross" (every frame rate at the largest Q,
            every Q at the highest frame rate: pocketsphinx runs at about half real time, so this halves the run)
            or "full" (every cell); pesq: wideband PESQ when the package is installed.
        threads: torch intra-op threads (default: every CPU this process may use).
        info: extra facts for the report (e.g. the checkpoint and manifest).
    """
    if not utterances:
        raise DataError("the codec benchmark needs at least one utterance")
    rates = [float(r) for r in frame_rates]
    if not rates or any(not r > 0 for r in rates):
        raise DataError(f"frame rates must be positive, got {list(frame_rates)}")
    grid = quantizer_grid(codec.config.max_quantizers, quantizers)
    if wer_grid not in ("cross", "full"):
        raise DataError(f"wer_grid must be 'cross' or 'full', not '{wer_grid}'")
    threads = cpu_count() if threads is None else int(threads)
    if threads < 1:
        raise DataError(f"threads must be at least 1, got {threads}")
    say = progress or (lambda _msg: None)
    recognizer = None
    if wer:
        from flexitts.evaluation.wer import PocketsphinxRecognizer

        recognizer = PocketsphinxRecognizer()
        try:
            recognizer._get_decoder()
        except DependencyError as error:
            raise DependencyError(f"{error} (or pass --no-wer)") from None
    metrics = _Metrics(codec.sample_rate, use_pesq=pesq)
    codec.eval()
    mem_encode, mem_decode = PeakMemory(), PeakMemory()
    host = {
        "torch_threads": threads, "cpus": cpu_count(), "torch": torch.__version__, "machine": platform.machine(),
        "python": platform.python_version(), "device": str(codec.device),
        "load_avg_1min_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }

    cuda = codec.device.type == "cuda"

    def encode(utt: BenchUtterance, rate: float) -> Any:
        tokens = codec.encode(utt.wav, codec.sample_rate, num_quantizers=grid[-1], scheduler=scheduler, frame_rate=rate)
        if cuda:  # kernels run asynchronously: wait for them before reading the clock
            torch.cuda.synchronize(codec.device)
        return tokens

    cells = {(r, q): {"seconds": 0.0, "decode_s": 0.0, "tokens": 0, "metrics": [], "hyps": []}
             for r in rates for q in grid}
    encode_s = {r: 0.0 for r in rates}
    per_utt: list[dict[str, Any]] = []
    total_seconds = sum(u.seconds for u in utterances)
    with torch_threads(threads), torch.inference_mode():
        warm = utterances[0]  # first calls pay for lazy loading and allocator growth: not timed
        codec.decode(encode(warm, rates[0]))
        originals = []
        for index, utt in enumerate(utterances):
            say(f"utterance {index + 1}/{len(utterances)} ({utt.id}, {utt.seconds:.1f} s)")
            n = utt.wav.shape[-1]
            hyp_orig = recognizer.transcribe(utt.wav, codec.sample_rate) if recognizer else None
            originals.append(hyp_orig)
            row: dict[str, Any] = {"id": utt.id, "speaker": utt.speaker, "seconds": round(utt.seconds, 3),
                                   "text": utt.text, "hyp_original": hyp_orig, "cells": []}
            for rate in rates:
                with mem_encode.measure():
                    t0 = time.perf_counter()
                    tokens = encode(utt, rate)
                    encode_s[rate] += time.perf_counter() - t0
                count = int(tokens.num_tokens[0])
                for q in grid:
                    with mem_decode.measure():
                        t0 = time.perf_counter()
                        wav = codec.decode(_truncate(tokens, q))[0, :n].cpu()  # .cpu() waits for a GPU
                        took = time.perf_counter() - t0
                    scores = metrics(utt.wav, wav)
                    scored = recognizer is not None and (wer_grid == "full" or q == grid[-1] or rate == max(rates))
                    hyp = recognizer.transcribe(wav, codec.sample_rate) if scored else None
                    grid_cell = cells[(rate, q)]
                    grid_cell["decode_s"] += took
                    grid_cell["seconds"] += utt.seconds
                    grid_cell["tokens"] += count
                    grid_cell["metrics"].append(scores)
                    grid_cell["hyps"].append(hyp)
                    row["cells"].append({"target_hz": rate, "num_quantizers": q, "tokens": count,
                                         **{k: None if v is None else round(v, 4) for k, v in scores.items()},
                                         "hyp": hyp})
            per_utt.append(row)

    texts = [u.text for u in utterances]
    wer_original = corpus_wer(texts, originals) if recognizer else None
    quality = []
    for (rate, q), grid_cell in cells.items():
        achieved = grid_cell["tokens"] / grid_cell["seconds"]
        wer_decoded = corpus_wer(texts, grid_cell["hyps"]) if recognizer and None not in grid_cell["hyps"] else None
        quality.append({
            "target_hz": rate, "num_quantizers": q, "average_hz": achieved,
            "bitrate_bps": codec.bitrate(q, achieved),
            "content_bitrate_bps": codec.bitrate(q, achieved, include_duration=False),
            "stoi": mean_finite([m["stoi"] for m in grid_cell["metrics"]]),
            "mel_distance": mean_finite([m["mel_distance"] for m in grid_cell["metrics"]]),
            "pesq_wb": mean_finite([m["pesq"] for m in grid_cell["metrics"]]),
            "pesq_scored": sum(m["pesq"] is not None for m in grid_cell["metrics"]),
            "wer": wer_decoded, "wer_original": wer_original if wer_decoded is not None else None,
            "wer_ratio": (wer_decoded / wer_original) if wer_decoded is not None and wer_original else None,
            "decode_rtf": grid_cell["decode_s"] / grid_cell["seconds"],
        })
    speed = [{"target_hz": r, "encode_rtf": encode_s[r] / total_seconds,
              "decode_rtf": cells[(r, grid[-1])]["decode_s"] / total_seconds,
              "average_hz": cells[(r, grid[-1])]["tokens"] / total_seconds} for r in rates]
    memory = {
        "method": ("peak RSS (VmHWM, reset via /proc/self/clear_refs before each call) minus RSS before the call, "
                   "largest over utterances; process_peak_rss_mb is ru_maxrss (whole run, pocketsphinx included)")
        if mem_encode.supported else "ru_maxrss only (/proc/self/clear_refs unavailable): the whole process's peak",
        "encode_peak_delta_mb": mem_encode.delta_mb, "decode_peak_delta_mb": mem_decode.delta_mb,
        "encode_peak_rss_mb": mem_encode.peak_mb, "decode_peak_rss_mb": mem_decode.peak_mb,
        "process_peak_rss_mb": max_rss_mb(),
    }
    host["load_avg_1min_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    config = codec.config
    result: dict[str, Any] = {
        "benchmark": "codec",
        "codec": {"fingerprint": config.fingerprint(), "parameters": codec.num_parameters(),
                  "max_quantizers": config.max_quantizers, "codebook_size": config.codebook_size,
                  "semantic_codebook_size": config.semantic_codebook_size, "max_len": config.max_len,
                  "asr": config.asr, "aggregator": config.aggregator},
        "settings": {"scheduler": scheduler, "frame_rates": rates, "quantizers": grid, "wer": bool(recognizer),
                     "wer_grid": wer_grid if recognizer else None, "wer_original": wer_original,
                     "pesq": metrics.pesq_note, "warmup": "one untimed encode + decode of the first utterance",
                     "mel_distance": f"mean |ln mel(original) - ln mel(decoded)|, {MEL['n_mels']} bins, n_fft "
                                     f"{MEL['n_fft']}, hop {MEL['hop_length']}, magnitude, floor {MEL['floor']:g}",
                     "stoi": "pystoi, classic (not extended)", **(info or {})},
        "host": host,
        "data": {"utterances": len(utterances), "seconds": total_seconds,
                 "speakers": sorted({u.speaker for u in utterances})},
        "speed": speed,
        "memory": memory,
        "quality": quality,
        "checks": _checks(speed, quality, grid[-1]),
        "per_utterance": per_utt,
    }
    write_report(out, result)
    return result


def _checks(speed: list[dict], quality: list[dict], q_max: int) -> list[dict[str, Any]]:
    """Issue 4's bar: STOI and WER ratio at the largest Q (12.5 Hz, and reported at 6.25 Hz); RTF of both stages."""
    checks = []
    for row in quality:
        if row["num_quantizers"] != q_max or row["target_hz"] not in (12.5, 6.25):
            continue
        label = f"{row['num_quantizers']} quantizers, {row['target_hz']:g} Hz"
        barred = row["target_hz"] == 12.5  # the issue asks only for the figures at 6.25 Hz
        checks.append({"name": f"STOI ({label})", "value": row["stoi"],
                       "limit": f">= {TARGET_STOI}" if barred else f"reported (bar at 12.5 Hz: >= {TARGET_STOI})",
                       "pass": (row["stoi"] is not None and row["stoi"] >= TARGET_STOI) if barred else None})
        if row["wer"] is not None:
            ok = row["wer_original"] is not None and row["wer"] <= TARGET_WER_RATIO * row["wer_original"]
            limit = f"<= {TARGET_WER_RATIO:g} x original ({row['wer_original']:.3f})"
            checks.append({"name": f"WER ({label})", "value": row["wer"],
                           "limit": limit if barred else f"reported (bar at 12.5 Hz: {limit})", "pass": ok if barred else None})
    for stage in ("encode_rtf", "decode_rtf"):
        worst = max(s[stage] for s in speed)
        checks.append({"name": f"{stage.split('_')[0]} real-time factor (worst frame rate)", "value": worst,
                       "limit": f"<= {TARGET_RTF}", "pass": worst <= TARGET_RTF})
    return checks


# ---------------------------------------------------------------- report files
def report_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """(`<out>.json`, `<out>.md`) for a report path given with or without one of those extensions."""
    base = Path(out)
    if base.suffix in (".json", ".md"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".json"), base.with_name(base.name + ".md")


def write_report(out: str | os.PathLike, result: dict[str, Any],
                 render: Callable[[dict[str, Any]], str] | None = None) -> tuple[Path, Path]:
    """Write `<out>.json` and `<out>.md` (markdown from `render`, default: the codec report's) atomically."""
    from flexitts.fileio import write_json_atomic, write_text_atomic

    json_path, md_path = report_paths(out)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(json_path, result)
    write_text_atomic(md_path, (render or render_markdown)(result))
    return json_path, md_path




def render_markdown(res: dict[str, Any]) -> str:
    h, d, c, s, m = res["host"], res["data"], res["codec"], res["settings"], res["memory"]
    lines = [
        "# Codec benchmark", "",
        f"Codec {c['fingerprint']} ({c['parameters']:,} parameters, up to {c['max_quantizers']} quantizers, "
        f"acoustic codebooks of {c['codebook_size']}, ASR features `{c['asr']}`)"
        + (f", checkpoint `{s['checkpoint']}`" if s.get("checkpoint") else "") + ".",
        f"Data: {d['utterances']} utterances, {d['seconds']:.1f} s"
        + (f" from `{s['manifest']}`" if s.get("manifest") else "") + f"; speakers {', '.join(d['speakers'])}.",
        f"Host: {h['torch_threads']} torch threads on {h['cpus']} CPUs ({h['device']}; 1-min load average "
        f"{h['load_avg_1min_start']} at start, {h.get('load_avg_1min_end')} at end), torch {h['torch']}. "
        f"Scheduler `{s['scheduler']}`; {s['warmup']}. Timings are wall-clock and depend on machine load.", "",
        "## Speed (all quantizers)", "",
        "| target Hz | reached Hz | encode RTF | decode RTF |", "|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['target_hz']:g} | {r['average_hz']:.2f} | {r['encode_rtf']:.4f} | {r['decode_rtf']:.4f} |"
              for r in res["speed"]]
    lines += ["", "## Memory", "",
              f"Encode peak {cell(m['encode_peak_delta_mb'], 1)} MiB above the resident size before the call "
              f"(peak RSS {cell(m['encode_peak_rss_mb'], 1)} MiB); decode {cell(m['decode_peak_delta_mb'], 1)} MiB "
              f"(peak RSS {cell(m['decode_peak_rss_mb'], 1)} MiB); whole process {m['process_peak_rss_mb']:.1f} MiB. "
              f"Method: {m['method']}.", "",
              "## Reconstruction quality", "",
              f"STOI: {s['stoi']}. PESQ: {s['pesq']}. Mel distance: {s['mel_distance']}. "
              + (f"WER: pocketsphinx, corpus level, normalised (lower case, no punctuation), {s['wer_grid']} grid"
                 + (" (every frame rate at the largest Q, every Q at the highest rate)"
                    if s["wer_grid"] == "cross" else "")
                 + f"; WER of the original audio {cell(s['wer_original'])}." if s["wer"] else "WER: not run."),
              "", "| target Hz | Q | reached Hz | bitrate (bps) | STOI | PESQ-WB | mel dist | WER | WER original | "
                  "ratio | decode RTF |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["quality"]:
        lines.append(f"| {r['target_hz']:g} | {r['num_quantizers']} | {r['average_hz']:.2f} | {r['bitrate_bps']:.0f} | "
                     f"{cell(r['stoi'])} | {cell(r['pesq_wb'], 2)} | {cell(r['mel_distance'])} | {cell(r['wer'])} | "
                     f"{cell(r['wer_original'])} | {cell(r['wer_ratio'], 2)} | {r['decode_rtf']:.4f} |")
    lines += ["", *checks_table(res["checks"], issue=4)]
    return "\n".join(lines) + "\n"
