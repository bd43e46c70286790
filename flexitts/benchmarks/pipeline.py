"""Whole-pipeline TTS benchmark (`flexitts bench pipeline`): speed and memory of `TTS.synthesize`.

The first N of a fixed list of test sentences are spoken in a bundled voice (default `mb-us1`, from
`voices/voices.json` of the demo bundle) at the pipeline's defaults (15 NAR steps, cfg 2), once per token-rate
setting: `frame_rate=` 12.5, the pipeline's default (`DEFAULT_FRAME_RATE`) and 6.25 Hz and the codec's default merging threshold.
Per setting:
- whole-pipeline real-time factor (synthesis seconds / output audio seconds), summed over the sentences;
- each stage's share of the time (reference encoding, text front end, AR, NAR, vocoder, and the rest) and its RTF;
- peak memory: the process's resident-set high-water mark during a call (VmHWM, reset before each call;
  `ru_maxrss` for the whole run), models included;
- AR steps per second of output speech (generated tokens / seconds of speech they cover) and AR throughput.

The reference is encoded anew for every sentence by default (its prompt cache is cleared), so the `reference`
stage counts as a user of `flexitts synthesize` pays it; `cached_reference=True` measures a warm service instead.
One untimed synthesis warms the pipeline up first.

`run_pipeline_benchmark(tts, ref_audio, ref_text, out)` writes `out.json` and `out.md` atomically.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from flexitts.pipeline.sampling_defaults import DEFAULT_FRAME_RATE
from flexitts.evaluation.tables import cell, checks_table

DEFAULT_RATES = (12.5, DEFAULT_FRAME_RATE, 6.25)
DEFAULT_SENTENCES = 10
DEFAULT_VOICE = "mb-us1"
DEFAULT_OUT = "reports/pipeline_bench"
STAGES = ("reference", "text", "ar", "nar", "vocoder")
# Issue 7's bar (at the pipeline's defaults).
TARGET_RTF = 0.5
TARGET_PEAK_MB = 2048.0
TARGET_AR_STEPS_PER_SECOND = 8.5
WARMUP_TEXT = "A short warm up sentence."

# Fixed test sentences (public-domain proverbs and plain statements; none is in the demo corpus' sources).
SENTENCES = (
    "The early bird catches the worm, but the second mouse gets the cheese.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "A journey of a thousand miles begins with a single step.",
    "The old lighthouse keeper climbed the stairs every evening to light the lamp.",
    "We walked along the river until the sun went down behind the hills.",
    "Rain is expected tomorrow afternoon, so remember to take an umbrella.",
    "She opened the window and listened to the birds singing in the garden.",
    "The train to the city leaves at half past seven from the second platform.",
    "Good habits formed in youth make all the difference later in life.",
    "He forgot his keys on the kitchen table and had to wait outside for an hour.",
    "The museum will be closed on Monday while the new exhibition is installed.",
    "Every morning the baker sells fresh bread to the people of the village.",
    "They built a small wooden boat and sailed it across the quiet lake.",
    "The children laughed when the puppy chased its own tail around the room.",
    "If you want to learn a new language, practice a little every single day.",
    "The mountain path was steep and narrow, but the view from the top was worth it.",
    "Our neighbour grows tomatoes, beans and sunflowers in his back yard.",
    "The meeting was postponed because half of the team was travelling.",
    "Thunder rolled across the valley as the storm moved slowly to the east.",
    "A good book and a warm cup of tea make a perfect winter evening.",
)

Progress = Callable[[str], None] | None


# ---------------------------------------------------------------- voices
def voices_file(bundle: str | os.PathLike | None = None) -> Path:
    """`voices/voices.json` of a local bundle folder when it has one, else of the demo bundle in the package."""
    from codec.common.pretrained import demo_bundle_dir

    if bundle is not None and (Path(bundle) / "voices" / "voices.json").is_file():
        return Path(bundle) / "voices" / "voices.json"
    return demo_bundle_dir() / "voices" / "voices.json"


def bundled_voice(name: str = DEFAULT_VOICE, bundle: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(audio path, transcript) of the bundled example voice `name` (see `voices/voices.json`)."""
    from flexitts.errors import DataError

    path = voices_file(bundle)
    if not path.is_file():
        raise DataError(f"no bundled voices ('{path}' is missing): pass --ref and --ref-text")
    try:
        voices = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read '{path}': {error}") from None
    for voice in voices:
        if voice.get("name") == name:
            return path.parent / voice["audio"], str(voice.get("text", ""))
    names = ", ".join(str(v.get("name")) for v in voices)
    raise DataError(f"no bundled voice '{name}': choose one of {names}")


def settings_grid(rates: Sequence[float] = DEFAULT_RATES, threshold: float | None = None) -> list[dict[str, Any]]:
    """The token-rate settings: one per `frame_rate`, then `merging_threshold=threshold` (the codec's default;
    None: no such row). The row at the pipeline's default rate is marked `default` (the checks' row); without one,
    a row with no setting at all (the pipeline's defaults) is added."""
    grid: list[dict[str, Any]] = []
    for r in rates:
        default = math.isclose(float(r), DEFAULT_FRAME_RATE)
        grid.append({"label": f"{float(r):g} Hz" + (" (default)" if default else ""), "frame_rate": float(r),
                     "merging_threshold": None, "default": default})
    if threshold is not None:
        grid.append({"label": f"threshold {threshold:g} (codec default)", "frame_rate": None,
                     "merging_threshold": float(threshold), "default": False})
    if grid and not any(g["default"] for g in grid):
        grid.append({"label": "defaults", "frame_rate": None, "merging_threshold": None, "default": True})
    return grid


# ---------------------------------------------------------------- the benchmark
def run_pipeline_benchmark(tts: Any, ref_audio: Any, ref_text: str | None, out: str | os.PathLike, *,
                           sentences: Sequence[str] | int = DEFAULT_SENTENCES,
                           rates: Sequence[float] = DEFAULT_RATES, threshold_row: bool = True,
                           steps: int = 15, cfg: float = 2.0, seed: int = 0, cached_reference: bool = False,
                           threads: int | None = None, info: dict[str, Any] | None = None,
                           progress: Progress = None) -> dict[str, Any]:
    """Synthesize each sentence at each token-rate setting; write `<out>.json` / `<out>.md`; return the dict.

    Args:
        tts: a loaded `flexitts.TTS`.
        ref_audio, ref_text: the voice (path or array as `TTS.synthesize` takes) and its transcript (None: the
            bundle's recogniser supplies the reference phonemes).
        sentences: the texts, or how many of the fixed `SENTENCES` to use.
        rates: `frame_rate=` settings; threshold_row: add the codec's default threshold.
        steps, cfg: NAR settings (the pipeline's defaults); seed: sentence i uses seed + i at every setting.
        cached_reference: keep the reference's encoding between calls (default: encode it every call).
        threads: torch intra-op threads (default: every CPU this process may use).
    """
    from flexitts.benchmarks.all import machine_description
    from flexitts.benchmarks.codec import PeakMemory, cpu_count, max_rss_mb, torch_threads, write_report
    from flexitts.benchmarks.nar import json_safe
    from flexitts.errors import DataError

    texts = list(SENTENCES[: int(sentences)]) if isinstance(sentences, int) else [str(s) for s in sentences]
    if isinstance(sentences, int) and not 1 <= sentences <= len(SENTENCES):
        raise DataError(f"--sentences must be between 1 and {len(SENTENCES)}, got {sentences}")
    if not texts:
        raise DataError("the pipeline benchmark needs at least one sentence")
    threshold = float(tts.codec.config.default_threshold)
    grid = settings_grid(rates, threshold if threshold_row else None)
    if not grid:
        raise DataError("no token-rate setting to benchmark")
    threads = cpu_count() if threads is None else int(threads)
    if threads < 1:
        raise DataError(f"threads must be at least 1, got {threads}")
    say = progress or (lambda _msg: None)

    def synthesize(text: str, setting: dict[str, Any], seed_: int) -> tuple[Any, int, Any]:
        if not cached_reference:
            getattr(tts, "_prompts", {}).clear()
        return tts.synthesize(text, ref_audio, ref_text=ref_text, frame_rate=setting["frame_rate"],
                              merging_threshold=setting["merging_threshold"], steps=steps, cfg=cfg, seed=seed_)

    memory_supported = PeakMemory().supported
    rows, per_sentence = [], []
    started = time.perf_counter()
    with torch_threads(threads):
        say("warm-up")
        synthesize(WARMUP_TEXT, grid[0], seed)
        for setting in grid:
            row: dict[str, Any] = {"label": setting["label"], "frame_rate": setting["frame_rate"],
                                   "merging_threshold": setting["merging_threshold"], "default": setting["default"],
                                   "stage_seconds": {s: 0.0 for s in STAGES}, "total_seconds": 0.0,
                                   "audio_seconds": 0.0, "speech_seconds": 0.0, "reference_pace_seconds": 0.0,
                                   "tokens": 0, "chunks": 0}
            peak = PeakMemory()
            for i, text in enumerate(texts):
                say(f"{setting['label']}: sentence {i + 1}/{len(texts)}")
                with peak.measure():
                    wav, rate, out_info = synthesize(text, setting, seed + i)
                seconds = len(wav) / rate
                speech = float(out_info.durations.sum()) / 12.5
                for stage in STAGES:
                    row["stage_seconds"][stage] += float(out_info.timings.get(stage, 0.0))
                row["total_seconds"] += float(out_info.timings["total"])
                row["audio_seconds"] += seconds
                row["speech_seconds"] += speech
                row["reference_pace_seconds"] += out_info.reference_pace_seconds
                row["tokens"] += int(len(out_info.codes))
                row["chunks"] += len(out_info.chunks)
                per_sentence.append({"setting": setting["label"], "sentence": i, "text": text,
                                     "audio_seconds": round(seconds, 3), "tokens": int(len(out_info.codes)),
                                     "frame_rate_hz": round(out_info.frame_rate, 3), "rtf": round(out_info.rtf, 4),
                                     "timings": {k: round(v, 4) for k, v in out_info.timings.items()}})
            total, audio = row["total_seconds"], max(1e-9, row["audio_seconds"])
            other = max(0.0, total - sum(row["stage_seconds"].values()))
            row["stage_seconds"]["other"] = other
            row["rtf"] = total / audio
            row["stage_rtf"] = {k: v / audio for k, v in row["stage_seconds"].items()}
            row["stage_share"] = {k: v / max(1e-9, total) for k, v in row["stage_seconds"].items()}
            row["ar_steps_per_second"] = row["tokens"] / max(1e-9, row["speech_seconds"])
            row["pace_ratio"] = row["speech_seconds"] / max(1e-9, row["reference_pace_seconds"])
            row["ar_tokens_per_second_generated"] = row["tokens"] / max(1e-9, row["stage_seconds"]["ar"])
            row["peak_rss_mb"], row["peak_delta_mb"] = peak.peak_mb, peak.delta_mb
            rows.append(row)

    result: dict[str, Any] = {
        "benchmark": "pipeline",
        "settings": {"steps": steps, "cfg": cfg, "seed": seed, "sentences": len(texts),
                     "cached_reference": cached_reference, "codec_threshold": threshold,
                     "reference": str(ref_audio) if isinstance(ref_audio, (str, os.PathLike)) else "array",
                     "reference_text": ref_text,
                     "warmup": "one untimed synthesis of a short sentence at the first setting",
                     "rtf": "synthesis seconds / output audio seconds (sums over the sentences)",
                     "ar_steps_per_second": "generated tokens / seconds of speech they cover (durations x 80 ms)",
                     "pace_ratio": ("seconds of speech / seconds the texts' phoneme symbols take at the reference's "
                                    "pace (above 1: slower than the reference)"),
                     "memory": ("peak RSS (VmHWM, reset via /proc/self/clear_refs before each call), models included"
                                if memory_supported else "ru_maxrss only (the whole process)"), **(info or {})},
        "host": {**machine_description(threads), "device": str(tts.device), "nar_precision": getattr(tts, "precision", "fp32")},
        "texts": texts,
        "rows": rows,
        "memory": {"peak_rss_mb": _max([r["peak_rss_mb"] for r in rows]),
                   "peak_delta_mb": _max([r["peak_delta_mb"] for r in rows]), "process_peak_rss_mb": max_rss_mb()},
        "wall_s": time.perf_counter() - started,
        "per_sentence": per_sentence,
    }
    result["checks"] = _checks(rows)
    result = json_safe(result)
    write_report(out, result, render_markdown)
    return result


def _max(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return max(kept) if kept else None


def _checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    row = next((r for r in rows if r["default"]), None)
    if row is None:
        return []
    checks = [
        {"name": "whole-pipeline RTF (defaults)", "value": row["rtf"], "limit": f"<= {TARGET_RTF}",
         "pass": row["rtf"] <= TARGET_RTF},
        {"name": "AR steps per second of speech (defaults)", "value": row["ar_steps_per_second"],
         "limit": f"<= {TARGET_AR_STEPS_PER_SECOND}", "pass": row["ar_steps_per_second"] <= TARGET_AR_STEPS_PER_SECOND},
    ]
    peak = row["peak_rss_mb"]
    if peak is not None:
        checks.append({"name": "peak memory (defaults)", "value": peak, "limit": f"<= {TARGET_PEAK_MB:g} MiB",
                       "pass": peak <= TARGET_PEAK_MB})
    return checks




def render_markdown(res: dict[str, Any]) -> str:
    h, s = res["host"], res["settings"]
    stages = [*STAGES, "other"]
    lines = [
        "# TTS pipeline benchmark", "",
        f"{s['sentences']} fixed sentences"
        + (f", voice `{s['voice']}`" if s.get("voice") else "") + f" (reference `{s['reference']}`), "
        f"{s['steps']} NAR steps, cfg {s['cfg']:g}, seed {s['seed']}"
        + (f", bundle `{s['checkpoint']}`" if s.get("checkpoint") else "") + ". "
        + ("The reference's encoding is cached between calls." if s["cached_reference"]
           else "The reference is encoded anew for every sentence (counted in `reference`)."),
        f"Host: {h['cpu_model']}, {h['torch_threads']} torch threads on {h['cpus_usable']} CPUs ({h['device']}, NAR in {h.get('nar_precision', 'fp32')}; "
        f"1-min load average {h['load_avg_1min']}), torch {h['torch']}. {s['warmup'].capitalize()}. RTF: {s['rtf']}. "
        "Timings are wall-clock and depend on machine load.", "",
        "| setting | tokens/s of speech | length vs the reference's pace | audio (s) | RTF | AR tokens/s | "
        "peak RSS (MiB) | " + " | ".join(f"{k} share" for k in stages) + " |",
        "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(stages),
    ]
    for r in res["rows"]:
        lines.append(f"| {r['label']} | {r['ar_steps_per_second']:.2f} | {r['pace_ratio']:.2f} | {r['audio_seconds']:.1f} | {r['rtf']:.3f} | "
                     f"{r['ar_tokens_per_second_generated']:.1f} | {cell(r['peak_rss_mb'], 0)} | "
                     + " | ".join(f"{100 * r['stage_share'][k]:.1f}%" for k in stages) + " |")
    lines += ["", "Real-time factor per stage:", "",
              "| setting | " + " | ".join(stages) + " | total |", "|---|" + "---:|" * (len(stages) + 1)]
    for r in res["rows"]:
        lines.append(f"| {r['label']} | " + " | ".join(f"{r['stage_rtf'][k]:.4f}" for k in stages)
                     + f" | {r['rtf']:.4f} |")
    m = res["memory"]
    lines += ["", f"Memory: {s['memory']}; highest {cell(m['peak_rss_mb'], 1)} MiB "
                  f"({cell(m['peak_delta_mb'], 1)} MiB above the RSS before a call); whole process "
                  f"{m['process_peak_rss_mb']:.1f} MiB.", ""]
    if res["checks"]:
        lines += checks_table(res["checks"], issue=7, digits=3)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- CLI
def add_parser(components: argparse._SubParsersAction) -> None:
    parser = components.add_parser("pipeline", help="whole TTS: RTF, stage shares, peak memory, AR steps per second")
    parser.add_argument("--checkpoint", default=None, metavar="BUNDLE",
                        help="TTS bundle folder or URI (default: the bundled demo models)")
    parser.add_argument("--ref", default=None, help="reference audio (default: the bundled voice --voice)")
    parser.add_argument("--ref-text", default=None, help="transcript of --ref (default: recognised by the bundle)")
    parser.add_argument("--voice", default=DEFAULT_VOICE,
                        help=f"bundled example voice when no --ref is given (default: {DEFAULT_VOICE})")
    parser.add_argument("--sentences", type=int, default=DEFAULT_SENTENCES,
                        help=f"how many of the {len(SENTENCES)} fixed sentences (default: {DEFAULT_SENTENCES})")
    parser.add_argument("--rates", type=float, nargs="+", default=list(DEFAULT_RATES), metavar="HZ",
                        help=f"frame_rate settings (default: 12.5 {DEFAULT_FRAME_RATE:g} 6.25); the codec's default threshold is always added")
    parser.add_argument("--steps", type=int, default=15, help="NAR steps (default: 15)")
    parser.add_argument("--cfg", type=float, default=2.0, help="NAR guidance weight (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed (sentence i uses seed + i)")
    parser.add_argument("--cached-reference", action="store_true",
                        help="encode the reference once (a warm service) instead of in every call")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every CPU available)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="NAR arithmetic: auto (bfloat16 where the device has it natively), fp32 or bf16")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"report path without extension (default: {DEFAULT_OUT})")
    parser.set_defaults(func=run_cli)


def resolve_voice(ref: str | None, ref_text: str | None, voice: str,
                  checkpoint: str | None) -> tuple[Path, str | None, str | None]:
    """(reference audio, its text, the voice's name or None): `--ref` as given, else the bundled voice."""
    from flexitts.errors import AudioError

    if ref is not None:
        if not Path(ref).is_file():
            raise AudioError(f"reference audio '{ref}' does not exist")
        return Path(ref), ref_text, None
    audio, text = bundled_voice(voice, checkpoint)
    if not audio.is_file():
        raise AudioError(f"the bundled voice '{voice}' lacks its audio '{audio}'")
    return audio, ref_text if ref_text is not None else text, voice


def run_cli(args: argparse.Namespace) -> int:
    from flexitts import TTS
    from flexitts.benchmarks.codec import report_paths
    from flexitts.errors import ConfigError

    if not 1 <= args.sentences <= len(SENTENCES):
        raise ConfigError(f"--sentences must be between 1 and {len(SENTENCES)}, got {args.sentences}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if any(not 1.0 <= r <= 12.5 for r in args.rates) or args.steps < 1 or args.cfg < 0:
        raise ConfigError("--rates must lie in 1..12.5, --steps be at least 1 and --cfg non-negative")
    ref, ref_text, voice = resolve_voice(args.ref, args.ref_text, args.voice, args.checkpoint)
    tts = TTS.from_pretrained(args.checkpoint, device=args.device, precision=args.precision)
    info = {"checkpoint": args.checkpoint or "bundled demo", "voice": voice}
    result = run_pipeline_benchmark(tts, str(ref), ref_text, args.out, sentences=args.sentences, rates=args.rates,
                                    steps=args.steps, cfg=args.cfg, seed=args.seed,
                                    cached_reference=args.cached_reference, threads=args.threads, info=info,
                                    progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    json_path, md_path = report_paths(args.out)
    row = result["rows"][-1]
    print(f"wrote {json_path} and {md_path}: {row['label']}: RTF {row['rtf']:.3f}, "
          f"{row['ar_steps_per_second']:.2f} AR steps per second of speech, peak RSS {cell(row['peak_rss_mb'], 0)} MiB "
          f"({result['host']['torch_threads']} torch threads)")
    return 0
