"""`flexitts bench all`: every component benchmark in one run, with a summary page and plots.

Runs, on one loaded bundle and one manifest:
- dynamic: vectorised merge vs loop, pruned vs plain DP, and frame rate vs threshold on the manifest's ASR
  features (the bundle codec's own extractor);
- codec: encode/decode speed, memory and quality per frame rate (`flexitts.benchmarks.codec`);
- ar: AR generation speed at 12.5 / 8.3 / 6.25 Hz (`flexitts.cli.bench_ar`);
- nar: NAR resynthesis and vocoder copy-synthesis (`flexitts.benchmarks.nar`);
- pipeline: whole TTS per token rate (`flexitts.benchmarks.pipeline`);
and writes each component's own report into `out/` (dynamic.*, codec_bench.*, ar_bench.*, nar_bench.*,
pipeline_bench.*), then `out/bench.json` and `out/bench.md` (machine description, one summary table per
component, the plots) and PNG plots in `out/plots/`. A component that fails is recorded with its error and the
others still run. `quick=True` uses small sizes (a smoke test of the whole suite).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from flexitts.evaluation.tables import cell, verdict

COMPONENTS = ("dynamic", "codec", "ar", "nar", "pipeline")  # the order of the reports
# The order of the runs: the pipeline first, so that its peak memory is the TTS's own and not raised by the
# recognisers and speaker encoder that the codec and NAR benchmarks load (they stay resident afterwards).
RUN_ORDER = ("pipeline", "ar", "nar", "codec", "dynamic")
DEFAULT_OUT = "reports"
Progress = Callable[[str], None] | None


@dataclass(frozen=True)
class Sizes:
    """How much work each component does."""

    merge_frames: int
    merge_repeats: int
    dp_configs: tuple[tuple[int, int, int], ...]
    dp_repeats: int
    feature_limit: int  # utterances whose ASR features give the tau / frame-rate table
    codec_limit: int
    codec_quantizers: tuple[int, ...]
    ar_repeats: int
    nar_limit: int
    nar_steps: tuple[int, ...]
    pipeline_sentences: int


SIZES = {
    "default": Sizes(merge_frames=200_000, merge_repeats=3, dp_configs=((600, 300, 8), (1000, 500, 4)), dp_repeats=3,
                     feature_limit=60, codec_limit=10, codec_quantizers=(1, 2, 4, 8), ar_repeats=3, nar_limit=8,
                     nar_steps=(8, 15, 32), pipeline_sentences=5),
    "quick": Sizes(merge_frames=20_000, merge_repeats=1, dp_configs=((200, 100, 8),), dp_repeats=1, feature_limit=4,
                   codec_limit=1, codec_quantizers=(1, 8), ar_repeats=1, nar_limit=1, nar_steps=(8, 15, 32),
                   pipeline_sentences=1),
}


# ---------------------------------------------------------------- machine
def _cpuinfo() -> dict[str, Any]:
    model, cores = None, set()
    physical = core = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and model is None:
                    model = value
                elif key == "physical id":
                    physical = value
                elif key == "core id":
                    core = value
                elif not key and core is not None:  # blank line: end of one processor's block
                    cores.add((physical, core))
                    physical = core = None
            if core is not None:
                cores.add((physical, core))
    except OSError:
        pass
    return {"model": model or platform.processor() or platform.machine() or "unknown",
            "physical_cores": len(cores) or None}


def _memory_total_mb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def machine_description(threads: int | None = None) -> dict[str, Any]:
    """CPU model (/proc/cpuinfo), logical CPUs and those usable here, physical cores, memory, load, torch and
    Python versions, and the torch thread count the benchmark uses (`threads`, default torch's current)."""
    import torch

    from flexitts.benchmarks.codec import cpu_count

    cpu = _cpuinfo()
    description = {
        "cpu_model": cpu["model"], "cpus_logical": os.cpu_count(), "cpus_usable": cpu_count(),
        "physical_cores": cpu["physical_cores"], "memory_total_mb": _memory_total_mb(),
        "torch": torch.__version__, "torch_threads": int(threads) if threads is not None else torch.get_num_threads(),
        "python": platform.python_version(), "platform": platform.platform(terse=True), "machine": platform.machine(),
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        description["cuda_device"] = torch.cuda.get_device_name(0)
    return description


# ---------------------------------------------------------------- the run
def run_all_benchmarks(out: str | os.PathLike = DEFAULT_OUT, *, checkpoint: str | None = None,
                       manifest: str | os.PathLike | None = None, speaker_prefix: str | None = None,
                       quick: bool = False, wer: bool = True, ref: str | None = None, ref_text: str | None = None,
                       voice: str = "mb-us1", threads: int | None = None, device: str = "cpu",
                       skip: Sequence[str] = (), sizes: Sizes | None = None, tts: Any = None,
                       progress: Progress = None) -> dict[str, Any]:
    """Run the component benchmarks into `out/` and write `out/bench.json`, `out/bench.md` and `out/plots/*.png`.

    Args:
        checkpoint: TTS bundle (default: the bundled demo); `tts` may pass an already loaded one instead.
        manifest: test utterances (default: the demo test split with its 'mb-' speakers); speaker_prefix filters
            the codec and NAR utterances (default: 'mb-' for the demo split, none otherwise).
        quick: small sizes (`SIZES['quick']`); `sizes` overrides both.
        wer: pocketsphinx WER in the codec and NAR benchmarks.
        ref, ref_text, voice: the pipeline's reference (default: the bundled voice `voice`).
        threads: torch threads of every component (default: every CPU this process may use).
        skip: components not to run.
    Returns:
        The dict written to `bench.json`.
    """
    from flexitts.benchmarks.codec import cpu_count
    from flexitts.benchmarks.nar import json_safe, resolve_manifest
    from flexitts.benchmarks.pipeline import resolve_voice
    from flexitts.errors import ConfigError, DataError
    from flexitts.fileio import write_json_atomic, write_text_atomic

    unknown = sorted(set(skip) - set(COMPONENTS))
    if unknown:
        raise ConfigError(f"unknown component(s) {unknown}: choose from {', '.join(COMPONENTS)}")
    chosen = [c for c in COMPONENTS if c not in skip]
    if not chosen:
        raise ConfigError("every component is skipped: nothing to run")
    size = sizes or SIZES["quick" if quick else "default"]
    threads = cpu_count() if threads is None else int(threads)
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    say = progress or (lambda _msg: None)
    root = Path(out)
    # Inputs first: a typo fails in a second, before anything runs or is written.
    needs_data = any(c in chosen for c in ("dynamic", "codec", "nar"))
    if needs_data:
        manifest_path, _, prefix = resolve_manifest(None if manifest is None else str(manifest), None, speaker_prefix)
        if not manifest_path.is_file():
            raise DataError(f"manifest '{manifest_path}' does not exist")
    else:
        manifest_path, prefix = None, None
    voice_ref = resolve_voice(ref, ref_text, voice, checkpoint) if "pipeline" in chosen else None
    if tts is None:
        from flexitts import TTS

        say("loading the bundle")
        tts = TTS.from_pretrained(checkpoint, device=device)
    root.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    context = {"tts": tts, "root": root, "manifest": manifest_path, "prefix": prefix, "size": size, "wer": wer,
               "threads": threads, "voice": voice_ref, "checkpoint": checkpoint, "say": say}
    components: dict[str, Any] = {}
    results: dict[str, dict[str, Any]] = {}
    for name in RUN_ORDER:
        if name not in chosen:
            components[name] = {"status": "skipped"}
            continue
        say(f"== {name}")
        t0 = time.perf_counter()
        try:
            result, paths = RUNNERS[name](context)
        except Exception as error:  # recorded; the other components still run
            components[name] = {"status": "error", "wall_s": round(time.perf_counter() - t0, 2),
                                "error": f"{type(error).__name__}: {' '.join(str(error).split())}"}
            say(f"{name} failed: {components[name]['error']}")
            continue
        results[name] = result
        components[name] = {"status": "ok", "wall_s": round(time.perf_counter() - t0, 2),
                            "report": {k: os.path.relpath(p, root) for k, p in paths.items()},
                            "summary": SUMMARIES[name](result)}
    plots = _plots(results, root / "plots", say)
    summary = {
        "benchmark": "all",
        "machine": {**machine_description(threads), "device": str(tts.device)},
        "settings": {"quick": quick, "sizes": asdict(size), "wer": wer, "threads": threads,
                     "checkpoint": checkpoint or "bundled demo",
                     "manifest": str(manifest_path) if manifest_path else None, "speaker_prefix": prefix,
                     "reference": str(voice_ref[0]) if voice_ref else None,
                     "voice": voice_ref[2] if voice_ref else None},
        "components": {name: components[name] for name in COMPONENTS},
        "run_order": [name for name in RUN_ORDER if name in chosen],
        "plots": {k: os.path.relpath(p, root) for k, p in plots.items()},
        "wall_s": round(time.perf_counter() - started, 2),
    }
    summary = json_safe(summary)
    write_json_atomic(root / "bench.json", summary)
    write_text_atomic(root / "bench.md", render_markdown(summary))
    return summary


# ---------------------------------------------------------------- components
def _run_dynamic(ctx: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Path]]:
    from codec.dynamic.bench import run_dynamic_benchmark
    from flexitts.benchmarks.codec import torch_threads
    from flexitts.data.features import manifest_features

    size = ctx["size"]
    with torch_threads(ctx["threads"]):
        features = manifest_features(ctx["manifest"], ctx["tts"].codec.asr_extractor, limit=size.feature_limit)
    result = run_dynamic_benchmark(ctx["root"], features, merge_frames=size.merge_frames,
                                   merge_repeats=size.merge_repeats, dp_configs=size.dp_configs,
                                   dp_repeats=size.dp_repeats, num_threads=ctx["threads"], progress=ctx["say"])
    return result, {"json": ctx["root"] / "dynamic.json", "md": ctx["root"] / "dynamic.md"}


def _run_codec(ctx: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Path]]:
    from flexitts.benchmarks.codec import load_utterances, report_paths, run_codec_benchmark

    size, codec = ctx["size"], ctx["tts"].codec
    utterances = load_utterances(ctx["manifest"], limit=size.codec_limit, speaker_prefix=ctx["prefix"],
                                 sample_rate=codec.sample_rate)
    out = ctx["root"] / "codec_bench"
    info = {"checkpoint": ctx["checkpoint"] or "bundled demo", "manifest": str(ctx["manifest"]),
            "speaker_prefix": ctx["prefix"], "limit": size.codec_limit}
    result = run_codec_benchmark(codec, utterances, out, quantizers=size.codec_quantizers, wer=ctx["wer"],
                                 threads=ctx["threads"], info=info, progress=ctx["say"])
    json_path, md_path = report_paths(out)
    return result, {"json": json_path, "md": md_path}


def _run_ar(ctx: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Path]]:
    from flexitts.benchmarks.codec import torch_threads
    from flexitts.cli.bench_ar import DEFAULT_RATES, DEFAULT_TEXT, benchmark_ar, write_report
    from flexitts.text import PhonemeTable, normalize_text, phonemize

    model = ctx["tts"].ar
    phonemes = PhonemeTable(model.config.symbols).encode(phonemize(normalize_text(DEFAULT_TEXT)))
    ctx["say"](f"AR: {len(phonemes)} phoneme symbols at {', '.join(f'{r:g}' for r in DEFAULT_RATES)} Hz")
    with torch_threads(ctx["threads"]):
        result = benchmark_ar(model, phonemes, DEFAULT_RATES, repeats=ctx["size"].ar_repeats)
    json_path, md_path = write_report(result, ctx["root"] / "ar_bench")
    return result, {"json": json_path, "md": md_path}


def _run_nar(ctx: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Path]]:
    from flexitts.benchmarks.codec import report_paths
    from flexitts.benchmarks.nar import load_cases, run_nar_benchmark

    size, tts = ctx["size"], ctx["tts"]
    cases, skipped = load_cases(ctx["manifest"], size.nar_limit, ctx["prefix"], sample_rate=tts.codec.sample_rate)
    out = ctx["root"] / "nar_bench"
    info = {"checkpoint": ctx["checkpoint"] or "bundled demo", "manifest": str(ctx["manifest"]),
            "speaker_prefix": ctx["prefix"], "limit": size.nar_limit, "skipped_without_prompt": skipped}
    result = run_nar_benchmark(tts, cases, out, steps=size.nar_steps, wer=ctx["wer"], threads=ctx["threads"],
                               info=info, progress=ctx["say"])
    json_path, md_path = report_paths(out)
    return result, {"json": json_path, "md": md_path}


def _run_pipeline(ctx: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Path]]:
    from flexitts.benchmarks.codec import report_paths
    from flexitts.benchmarks.pipeline import run_pipeline_benchmark

    ref, ref_text, voice = ctx["voice"]
    out = ctx["root"] / "pipeline_bench"
    info = {"checkpoint": ctx["checkpoint"] or "bundled demo", "voice": voice}
    result = run_pipeline_benchmark(ctx["tts"], str(ref), ref_text, out, sentences=ctx["size"].pipeline_sentences,
                                    threads=ctx["threads"], info=info, progress=ctx["say"])
    json_path, md_path = report_paths(out)
    return result, {"json": json_path, "md": md_path}


RUNNERS = {"dynamic": _run_dynamic, "codec": _run_codec, "ar": _run_ar, "nar": _run_nar, "pipeline": _run_pipeline}


# ---------------------------------------------------------------- summaries (what bench.json / bench.md keep)
def _pick(row: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: row.get(k) for k in keys}


def _summary_dynamic(res: dict[str, Any]) -> dict[str, Any]:
    merge, features = res["merge"], res.get("features") or {}
    return {
        "merge": _pick(merge, ("frames", "segments", "speedup_fresh_output", "speedup_reused_output")),
        "dp": [_pick(r, ("T", "G", "max_len", "state_reduction_pct", "time_plain_s", "time_pruned_s",
                         "same_segmentation")) for r in res["dp"]],
        "tau_vs_rate": features.get("tau_vs_rate") or [],
        "targets": [{"target_hz": t["target_hz"], "tau_median": t["threshold"]["tau_median"],
                     "threshold_rate_hz": t["threshold"]["corpus_rate_hz"], "global_tau": t["threshold_global"]["tau"],
                     "dp_rate_hz": t["dp"]["corpus_rate_hz"]} for t in features.get("targets") or []],
        "feature_utterances": features.get("utterances"),
    }


def _summary_codec(res: dict[str, Any]) -> dict[str, Any]:
    q_max = res["settings"]["quantizers"][-1]
    speed = {r["target_hz"]: r for r in res["speed"]}
    rows = []
    for r in res["quality"]:
        if r["num_quantizers"] != q_max:
            continue
        s = speed.get(r["target_hz"], {})
        rows.append({**_pick(r, ("target_hz", "num_quantizers", "average_hz", "bitrate_bps", "stoi", "pesq_wb", "wer",
                                 "wer_original")), "encode_rtf": s.get("encode_rtf"), "decode_rtf": s.get("decode_rtf")})
    return {"utterances": res["data"]["utterances"], "rows": rows,
            "encode_peak_rss_mb": res["memory"]["encode_peak_rss_mb"],
            "checks": [_pick(c, ("name", "value", "pass")) for c in res["checks"]]}


def _summary_ar(res: dict[str, Any]) -> dict[str, Any]:
    return {"phonemes": res["phonemes"], "use_cache": res["use_cache"],
            "rows": [_pick(r, ("rate_hz", "tokens", "ar_seconds", "tokens_per_second", "rtf", "token_ratio",
                               "time_ratio")) for r in res["rows"]]}


def _summary_nar(res: dict[str, Any]) -> dict[str, Any]:
    return {"utterances": res["data"]["utterances"],
            "rows": [_pick(r, ("steps", "cfg", "sway", "nar_rtf", "vocoder_rtf", "wer", "wer_original", "similarity",
                               "similarity_original", "stoi")) for r in res["rows"]],
            "copy_synthesis": _pick(res["copy_synthesis"], ("vocoder_rtf", "stoi", "wer", "wer_original")),
            "checks": [_pick(c, ("name", "value", "pass")) for c in res["checks"]]}


def _summary_pipeline(res: dict[str, Any]) -> dict[str, Any]:
    return {"sentences": res["settings"]["sentences"],
            "rows": [_pick(r, ("label", "frame_rate", "rtf", "ar_steps_per_second", "audio_seconds", "peak_rss_mb",
                               "stage_share", "stage_rtf")) for r in res["rows"]],
            "checks": [_pick(c, ("name", "value", "pass")) for c in res["checks"]]}


SUMMARIES = {"dynamic": _summary_dynamic, "codec": _summary_codec, "ar": _summary_ar, "nar": _summary_nar,
             "pipeline": _summary_pipeline}


def _plots(results: dict[str, dict[str, Any]], folder: Path, say: Callable[[str], None]) -> dict[str, Path]:
    from flexitts.benchmarks import plots

    jobs = [("frame_rate_vs_threshold", "dynamic", plots.plot_frame_rate_vs_threshold),
            ("wer_vs_frame_rate", "codec", plots.plot_wer_vs_frame_rate),
            ("rtf_per_stage", "pipeline", plots.plot_rtf_per_stage),
            ("nar_steps", "nar", plots.plot_nar_steps)]
    made: dict[str, Path] = {}
    for name, component, plot in jobs:
        if component not in results:
            continue
        try:
            path = plot(results[component], folder / f"{name}.png")
        except Exception as error:  # a plot must never cost the numbers
            say(f"plot {name} failed: {type(error).__name__}: {error}")
            continue
        if path is not None:
            made[name] = path
    return made


# ---------------------------------------------------------------- markdown


def render_markdown(res: dict[str, Any]) -> str:
    m, s, comps = res["machine"], res["settings"], res["components"]
    lines = [
        "# FlexiTTS benchmarks", "",
        f"`flexitts bench all{' --quick' if s['quick'] else ''}{'' if s['wer'] else ' --no-wer'}` on bundle "
        f"`{s['checkpoint']}`" + (f", manifest `{s['manifest']}`" if s["manifest"] else "")
        + (f" (speakers `{s['speaker_prefix']}*`)" if s.get("speaker_prefix") else "")
        + f"; {res['wall_s']:.0f} s in all. Timings are wall-clock and depend on machine load.", "",
        "## Machine", "",
        "| | |", "|---|---|",
        f"| CPU | {m['cpu_model']} |",
        f"| cores | {m['cpus_logical']} logical ({m['cpus_usable']} usable here), {cell(m['physical_cores'])} physical |",
        f"| memory | {cell(m['memory_total_mb'], 0)} MiB |",
        f"| torch | {m['torch']}, {m['torch_threads']} threads, device {m['device']}"
        + (f" ({m['cuda_device']})" if m.get("cuda_device") else "") + " |",
        f"| Python | {m['python']} on {m['platform']} |",
        f"| load | 1-min load average {m['load_avg_1min']} at the end |", "",
    ]
    status = ", ".join(f"{k} {v['status']}" + (f" ({v['wall_s']:.0f} s)" if "wall_s" in v else "")
                       for k, v in comps.items())
    lines += [f"Components: {status}.", ""]
    for name in COMPONENTS:
        comp = comps.get(name, {"status": "skipped"})
        lines += [f"## {name}", ""]
        if comp["status"] != "ok":
            lines += [f"{comp['status'].capitalize()}" + (f": {comp['error']}" if comp.get("error") else "."), ""]
            continue
        lines += [f"Full report: [{comp['report']['md']}]({comp['report']['md']}) "
                  f"([json]({comp['report']['json']})).", ""]
        lines += MARKDOWN[name](comp["summary"]) + [""]
        for plot, component in (("frame_rate_vs_threshold", "dynamic"), ("wer_vs_frame_rate", "codec"),
                                ("nar_steps", "nar"), ("rtf_per_stage", "pipeline")):
            if component == name and plot in res["plots"]:
                lines += [f"![{plot}]({res['plots'][plot]})", ""]
    return "\n".join(lines) + "\n"


def _md_dynamic(s: dict[str, Any]) -> list[str]:
    m = s["merge"]
    lines = [f"Merge of {m['frames']:,} frames: {m['speedup_fresh_output']:.1f}x faster than the Python loop "
             f"({m['speedup_reused_output']:.1f}x with a reused output buffer).", "",
             "| DP T | G | max_len | states saved by pruning | plain (ms) | pruned (ms) | same result |",
             "|---:|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r['T']} | {r['G']} | {r['max_len']} | {r['state_reduction_pct']:.1f}% | "
              f"{1e3 * r['time_plain_s']:.1f} | {1e3 * r['time_pruned_s']:.1f} | {cell(r['same_segmentation'])} |"
              for r in s["dp"]]
    if s["tau_vs_rate"]:
        lines += ["", f"Frame rate vs threshold on {s['feature_utterances']} utterances:", "",
                  "| tau | " + " | ".join(f"{r['tau']:.2f}" for r in s["tau_vs_rate"]) + " |",
                  "|---|" + "---:|" * len(s["tau_vs_rate"]),
                  "| Hz | " + " | ".join(f"{r['corpus_rate_hz']:.2f}" for r in s["tau_vs_rate"]) + " |"]
    if s["targets"]:
        lines += ["", "| target Hz | median tau (per utterance) | reached | one global tau | dp reached |",
                  "|---:|---:|---:|---:|---:|"]
        lines += [f"| {t['target_hz']:g} | {t['tau_median']:.3f} | {t['threshold_rate_hz']:.2f} | {t['global_tau']:.3f} | "
                  f"{t['dp_rate_hz']:.2f} |" for t in s["targets"]]
    return lines


def _checks_md(checks: list[dict[str, Any]]) -> list[str]:
    if not checks:
        return []
    return ["", "Checks: " + "; ".join(f"{c['name']} {cell(c['value'])} {verdict(c)}"
                                       for c in checks) + "."]


def _md_codec(s: dict[str, Any]) -> list[str]:
    lines = [f"{s['utterances']} utterances, the largest number of quantizers:", "",
             "| target Hz | reached Hz | Q | bitrate (bps) | encode RTF | decode RTF | STOI | PESQ-WB | WER | WER original |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['target_hz']:g} | {r['average_hz']:.2f} | {r['num_quantizers']} | {r['bitrate_bps']:.0f} | "
              f"{cell(r['encode_rtf'], 4)} | {cell(r['decode_rtf'], 4)} | {cell(r['stoi'])} | {cell(r['pesq_wb'], 2)} | "
              f"{cell(r['wer'])} | {cell(r['wer_original'])} |" for r in s["rows"]]
    return lines + _checks_md(s["checks"])


def _md_ar(s: dict[str, Any]) -> list[str]:
    lines = [f"{s['phonemes']} phoneme symbols, the same speech length at every rate, KV cache "
             f"{'on' if s['use_cache'] else 'off'}:", "",
             "| rate (Hz) | tokens | AR time (s) | tokens/s | RTF | tokens vs 12.5 Hz | time vs 12.5 Hz |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['rate_hz']:g} | {r['tokens']} | {r['ar_seconds']:.3f} | {r['tokens_per_second']:.1f} | "
              f"{r['rtf']:.4f} | {r['token_ratio']:.2f} | {r['time_ratio']:.2f} |" for r in s["rows"]]
    return lines


def _md_nar(s: dict[str, Any]) -> list[str]:
    from flexitts.benchmarks.nar import row_label

    c = s["copy_synthesis"]
    lines = [f"{s['utterances']} utterances, ground-truth tokens, a ~3 s prompt of the same speaker:", "",
             "| setting | NAR RTF | vocoder RTF | WER | WER original | similarity | original's | STOI |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {row_label(r)} | {r['nar_rtf']:.4f} | {r['vocoder_rtf']:.4f} | {cell(r['wer'])} | "
              f"{cell(r['wer_original'])} | {cell(r['similarity'])} | {cell(r['similarity_original'])} | "
              f"{cell(r['stoi'])} |" for r in s["rows"]]
    lines += ["", f"Vocoder copy-synthesis: RTF {c['vocoder_rtf']:.4f}, STOI {cell(c['stoi'])}, WER {cell(c['wer'])} "
                  f"(original {cell(c['wer_original'])})."]
    return lines + _checks_md(s["checks"])


def _md_pipeline(s: dict[str, Any]) -> list[str]:
    stages = ("reference", "text", "ar", "nar", "vocoder", "other")
    lines = [f"{s['sentences']} sentences at the pipeline's defaults:", "",
             "| setting | AR steps / s of speech | RTF | peak RSS (MiB) | " + " | ".join(stages) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(stages)]
    lines += [f"| {r['label']} | {r['ar_steps_per_second']:.2f} | {r['rtf']:.3f} | {cell(r['peak_rss_mb'], 0)} | "
              + " | ".join(f"{100 * r['stage_share'][k]:.0f}%" for k in stages) + " |" for r in s["rows"]]
    return lines + _checks_md(s["checks"])


MARKDOWN = {"dynamic": _md_dynamic, "codec": _md_codec, "ar": _md_ar, "nar": _md_nar, "pipeline": _md_pipeline}


# ---------------------------------------------------------------- CLI
def add_parser(components: argparse._SubParsersAction) -> None:
    parser = components.add_parser("all", help="every benchmark (dynamic, codec, ar, nar, pipeline) + bench.md/json, plots")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"report folder (default: {DEFAULT_OUT})")
    parser.add_argument("--checkpoint", default=None, metavar="BUNDLE",
                        help="TTS bundle folder or URI (default: the bundled demo models)")
    parser.add_argument("--manifest", default=None,
                        help="test utterances (default: corpus/demo/test.jsonl, mbrola voices for codec and NAR)")
    parser.add_argument("--speaker-prefix", default=None,
                        help="keep only these speakers in the codec and NAR benchmarks (default: 'mb-' for the demo split)")
    parser.add_argument("--ref", default=None, help="pipeline reference audio (default: the bundled voice --voice)")
    parser.add_argument("--ref-text", default=None, help="transcript of --ref")
    parser.add_argument("--voice", default="mb-us1", help="bundled voice for the pipeline (default: mb-us1)")
    parser.add_argument("--quick", action="store_true", help="small sizes: one utterance / sentence per component")
    parser.add_argument("--no-wer", action="store_true", help="skip pocketsphinx WER (much faster)")
    parser.add_argument("--skip", nargs="+", default=[], choices=COMPONENTS, metavar="COMPONENT",
                        help=f"components not to run ({', '.join(COMPONENTS)})")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every CPU available)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    from flexitts.errors import ConfigError

    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    result = run_all_benchmarks(args.out, checkpoint=args.checkpoint, manifest=args.manifest,
                                speaker_prefix=args.speaker_prefix, quick=args.quick, wer=not args.no_wer, ref=args.ref,
                                ref_text=args.ref_text, voice=args.voice, threads=args.threads, device=args.device,
                                skip=args.skip, progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    root = Path(args.out)
    failed = [k for k, v in result["components"].items() if v["status"] == "error"]
    print(f"wrote {root / 'bench.md'} and {root / 'bench.json'} ({len(result['plots'])} plots in {root / 'plots'}) "
          f"in {result['wall_s']:.0f} s" + (f"; FAILED: {', '.join(failed)} (see bench.md)" if failed else ""))
    return 1 if failed else 0
