"""NAR + vocoder benchmark (`flexitts bench nar`): resynthesis from ground-truth tokens, and copy-synthesis.

For each test utterance (default: the demo test split, mbrola speakers only, since pocketsphinx only
understands those):
- the bundle's codec encodes it at its default threshold: ground-truth semantic codes and durations;
- the prompt is the first ~3 s (whole 80 ms base frames) of ANOTHER utterance of the same speaker: its codes,
  durations (the cropped audio encoded alone) and mel;
- the NAR (flow matching) generates the mel of the utterance from its codes and durations in the prompt's
  voice, and the vocoder renders it; one row per (steps, cfg) in 8/15/32 x 0/2, plus sway sampling (-1) at
  8 steps and cfg 2;
- vocoder copy-synthesis (wav -> mel -> vocoder) of the original audio.

Measured per row: real-time factors of the NAR and the vocoder (processing seconds / generated seconds, after an
untimed warm-up, on the reported number of torch threads), pocketsphinx WER of the output beside the WER of the
original recordings, resemblyzer similarity to the prompt audio (and the original's, the ceiling), STOI against
the original (durations are the ground truth, so output and original are aligned frame for frame), and the peak
RSS during the NAR call. Copy-synthesis: STOI, WER and the vocoder's RTF.

`run_nar_benchmark(tts, cases, out)` writes `out.json` and `out.md` atomically and returns the JSON dict.
The CLI (`add_parser`) is registered by `flexitts/cli/bench.py`; nothing heavy is imported at module import.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from flexitts.evaluation.tables import cell, checks_table

DEFAULT_STEPS = (8, 15, 32)
DEFAULT_CFGS = (0.0, 2.0)
SWAY_ROW = (8, 2.0, -1.0)  # (steps, cfg, sway): F5-TTS' sway sampling at few steps
DEFAULT_PROMPT_SECONDS = 3.0
DEFAULT_OUT = "reports/nar_bench"
DEMO_LIMIT = 30
# Issue 6's bar.
TARGET_WER_RATIO = 2.0  # NAR resynthesis at 15 steps
TARGET_SIMILARITY = 0.75
TARGET_COPY_STOI = 0.90
TARGET_COPY_WER_RATIO = 1.3
BASE_RATE = 12.5

Progress = Callable[[str], None] | None


@dataclass
class NarCase:
    """One benchmark item: the utterance to resynthesise and the same speaker's prompt (already cropped)."""

    target: Any  # BenchUtterance at the codec's rate (16 kHz)
    prompt: Any  # BenchUtterance: the first whole base frames (~3 s) of another utterance of the speaker
    prompt_source: str  # id of the utterance the prompt was cut from


# ---------------------------------------------------------------- data
PHONE_SOURCES = ("text", "codes")
PHONE_SOURCE_TEXT = {"text": "the target's transcript aligned by CTC forced alignment",
                     "codes": "the target's phones as the codec reads them from its codes alone (no transcript)"}


def _case_phones(tts: Any, case: NarCase, codes: Any, durations: Any, prompt_durations: Any,
                 source: str = "text") -> dict[str, Any]:
    """`Voicebox.sample`'s `phones` and `prompt_phones` of one case, `[1, 2 * frames]` each.

    The target's phones come from its transcript, forced-aligned (`source="text"`), or from its codes alone, read
    by the codec (`"codes"`: `code_phone_subframes`, no transcript); the prompt's are read from its audio by
    greedy CTC either way."""
    import torch

    from ar.pointer import spoken_positions
    from flexitts.data.phone_alignment import (code_phone_subframes, greedy_phone_subframes, phone_onsets,
                                               phone_subframes, pointer_skip_symbols)
    from flexitts.errors import ConfigError
    from flexitts.text import phonemize

    if source not in PHONE_SOURCES:
        raise ConfigError(f"phones come from one of {', '.join(PHONE_SOURCES)}, not '{source}'")
    if not getattr(tts.nar.config, "num_phones", 0) or getattr(tts, "asr", None) is None:
        raise ConfigError("--phones needs a phone-conditioned NAR (num_phones) and the bundle's CTC recogniser")
    asr, table = tts.asr, tts.table
    if source == "codes":
        target = code_phone_subframes(tts.codec, codes, durations)
    else:
        ids = table.encode(phonemize(case.target.text))
        ids = [ids[i] for i in spoken_positions(ids, list(table.symbols), pointer_skip_symbols(table.symbols))]
        wav = case.target.wav[None].to(tts.device)
        onsets = phone_onsets(asr, wav, torch.tensor([wav.shape[-1]], device=tts.device), [ids])[0]
        target = phone_subframes(ids, onsets, int(durations.sum()))
    log_probs, _, lengths = asr(case.prompt.wav[None].to(tts.device))
    prompt = greedy_phone_subframes(log_probs[0, : int(lengths[0])], asr.config.blank_id, asr.config.frame_rate,
                                    int(prompt_durations.sum()))
    return {"phones": torch.from_numpy(target)[None].to(tts.device),
            "prompt_phones": torch.from_numpy(prompt)[None].to(tts.device)}


def load_cases(manifest: str | os.PathLike, limit: int | None = None, speaker_prefix: str | None = None,
               prompt_seconds: float = DEFAULT_PROMPT_SECONDS, sample_rate: int = 16000) -> tuple[list[NarCase], int]:
    """The first `limit` utterances of `manifest` (speakers starting with `speaker_prefix` when given) whose
    speaker has another utterance to prompt with, each with its prompt; also how many were passed over for
    lack of one. Prompts: the next utterance of the speaker (cyclically), cut to whole base frames."""
    from flexitts.audio import load_audio
    from flexitts.benchmarks.codec import BenchUtterance
    from flexitts.data.manifest import read_manifest
    from flexitts.errors import DataError
    from flexitts.evaluation.tts_eval import pick_references

    if limit is not None and limit < 1:
        raise DataError(f"--limit must be at least 1, got {limit}")
    if not prompt_seconds > 0:
        raise DataError(f"the prompt length must be positive, got {prompt_seconds}")
    path = Path(manifest)
    pool = read_manifest(path)
    if speaker_prefix:
        pool = [r for r in pool if r.speaker.startswith(speaker_prefix)]
        if not pool:
            raise DataError(f"manifest '{path}' has no speaker starting with '{speaker_prefix}': change --speaker-prefix")
    counts: dict[str, int] = {}
    for row in pool:
        counts[row.speaker] = counts.get(row.speaker, 0) + 1
    eligible = [r for r in pool if counts[r.speaker] >= 2]
    if not eligible:
        raise DataError(f"no speaker in '{path}' has two utterances: a prompt must come from another utterance "
                        "of the same speaker")
    skipped = len(pool) - len(eligible)
    rows = eligible[:limit] if limit is not None else eligible
    prompts = pick_references(rows, pool)
    frame = round(sample_rate / BASE_RATE)  # samples per 80 ms base frame (1280 at 16 kHz)
    wanted = max(1, int(prompt_seconds * BASE_RATE + 1e-6))

    def utterance(row: Any, index: int) -> Any:
        wav, _ = load_audio(row.resolve(path.parent), target_rate=sample_rate)
        return BenchUtterance(str(row.extra.get("id", f"{path.stem}-{index}")), wav, row.text, row.speaker)

    position = {id(r): i for i, r in enumerate(pool)}
    cases = []
    for row, ref in zip(rows, prompts):
        target, source = utterance(row, position[id(row)]), utterance(ref, position[id(ref)])
        frames = max(1, min(wanted, source.wav.shape[-1] // frame))
        prompt = BenchUtterance(f"{source.id}[:{frames * frame}]", source.wav[: frames * frame].clone(), "", source.speaker)
        cases.append(NarCase(target, prompt, source.id))
    return cases, skipped


# ---------------------------------------------------------------- the benchmark
def benchmark_rows(steps: Sequence[int] = DEFAULT_STEPS, cfgs: Sequence[float] = DEFAULT_CFGS,
                   sway_row: tuple[int, float, float] | None = SWAY_ROW) -> list[tuple[int, float, float | None]]:
    """(steps, cfg, sway) of every row: the grid with uniform time steps, then the sway row if any."""
    rows: list[tuple[int, float, float | None]] = [(int(s), float(c), None) for s in steps for c in cfgs]
    if sway_row is not None:
        rows.append((int(sway_row[0]), float(sway_row[1]), float(sway_row[2])))
    return rows


def run_nar_benchmark(tts: Any, cases: Sequence[NarCase], out: str | os.PathLike, *,
                      steps: Sequence[int] = DEFAULT_STEPS, cfgs: Sequence[float] = DEFAULT_CFGS,
                      sway_row: tuple[int, float, float] | None = SWAY_ROW, rescale_cfg: float = 0.75,
                      wer: bool = True, similarity: bool = True, phones: bool = True, threads: int | None = None,
                      seed: int = 0, merging_threshold: float | None = None,
                      info: dict[str, Any] | None = None, progress: Progress = None,
                      phones_from: str | None = None) -> dict[str, Any]:
    """Benchmark the NAR and the vocoder of `tts` (a `flexitts.TTS`: its codec, nar, vocoder and mel) on `cases`.

    Args:
        tts: the loaded bundle; only `codec`, `nar`, `vocoder`, `mel` and `device` are used.
        cases: utterances with their prompts (`load_cases`).
        out: report path without extension (writes `<out>.json` and `<out>.md`).
        steps, cfgs: the grid of Euler steps x guidance weights; sway_row: an extra (steps, cfg, sway) row or None.
        wer: pocketsphinx on originals, resyntheses and copy-syntheses; similarity: resemblyzer.
        phones: phone error rate of each output against the original, both read by the bundle's CTC recogniser
            (`flexitts.evaluation.phones`; skipped when the bundle has none).
        threads: torch intra-op threads (default: every CPU this process may use); seed: noise seed of the first
            utterance (utterance i uses seed + i in every row, so rows differ only by their settings).
        phones_from: for a phone-conditioned NAR, where the target's phones come from: "text" (the transcript,
            forced-aligned), "codes" (the codec's reading of the codes alone) or None (codes alone, no phones).
    """
    import torch

    from flexitts.audio import resample
    from flexitts.benchmarks.codec import (PeakMemory, corpus_wer, cpu_count, max_rss_mb, mean_finite, torch_threads,
                                           write_report)
    from flexitts.errors import DataError
    from flexitts.evaluation.phones import PhoneReader, phone_error_rate
    from flexitts.pipeline.precision import autocast

    if not cases:
        raise DataError("the NAR benchmark needs at least one utterance")
    grid = benchmark_rows(steps, cfgs, sway_row)
    if any(s < 1 for s, _, _ in grid) or any(c < 0 for _, c, _ in grid):
        raise DataError("steps must be at least 1 and cfg weights non-negative")
    threads = cpu_count() if threads is None else int(threads)
    if threads < 1:
        raise DataError(f"threads must be at least 1, got {threads}")
    say = progress or (lambda _msg: None)
    recognizer = _recognizer() if wer else None
    speaker_sim = _similarity() if similarity else None
    reader = PhoneReader(tts.asr) if phones and getattr(tts, "asr", None) is not None else None
    stoi = _stoi_function()

    codec, nar, vocoder, mel_fn, device = tts.codec, tts.nar, tts.vocoder, tts.mel, tts.device
    precision = getattr(tts, "precision", "fp32")
    mel_cfg = nar.config.mel
    sr, hop, fpb = int(mel_cfg.sample_rate), int(mel_cfg.hop_length), int(mel_cfg.frames_per_base)
    codec_rate = int(codec.sample_rate)
    threshold = float(codec.config.default_threshold if merging_threshold is None else merging_threshold)
    if not 0 < threshold <= 1:
        raise DataError(f"merging threshold must be in (0, 1], got {threshold}")
    cuda = torch.device(device).type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def tokens_of(wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tok = codec.encode(wav.to(device), codec_rate, num_quantizers=1, merging_threshold=threshold)
        g = int(tok.num_tokens[0])
        return tok.semantic_codes[0, :g], tok.token_lengths[0, :g]

    def at_mel_rate(wav: torch.Tensor) -> torch.Tensor:
        return resample(wav, codec_rate, sr)

    mem_nar = PeakMemory()
    per_utt: list[dict[str, Any]] = []
    prepared = []
    started = time.perf_counter()
    with torch_threads(threads), torch.inference_mode():
        for case in cases:  # tokens and prompt features (not timed)
            codes, durations = tokens_of(case.target.wav)
            p_codes, p_durs = tokens_of(case.prompt.wav)
            p_mel, p_frames = mel_fn(at_mel_rate(case.prompt.wav)[None].to(device))
            if int(p_frames[0]) != fpb * int(p_durs.sum()):
                raise DataError(f"prompt of {case.target.id}: {int(p_frames[0])} mel frames but its tokens cover "
                                f"{int(p_durs.sum())} base frames")
            phones = _case_phones(tts, case, codes, durations, p_durs, phones_from) if phones_from else {}
            prepared.append((codes, durations, p_codes, p_durs, p_mel, phones))

        def render(k: int, n_steps: int, cfg: float, sway: float | None) -> tuple[torch.Tensor, float, float]:
            codes, durations, p_codes, p_durs, p_mel, phones = prepared[k]
            with mem_nar.measure():
                sync()
                t0 = time.perf_counter()
                with autocast(precision, torch.device(device)):  # as the pipeline runs it (TTS.precision)
                    mel, lengths = nar.sample(codes[None], durations[None], prompt_mel=p_mel,
                                              prompt_codes=p_codes[None], prompt_durations=p_durs[None],
                                              steps=n_steps, cfg=cfg, rescale_cfg=rescale_cfg, seed=seed + k,
                                              sway=sway, **phones)
                mel = mel.float()
                sync()
                t_nar = time.perf_counter() - t0
            t0 = time.perf_counter()
            wav = vocoder(mel, lengths)
            sync()
            t_voc = time.perf_counter() - t0
            return wav[0, : int(lengths[0]) * hop].float().cpu(), t_nar, t_voc

        # Warm-up (untimed): the first calls pay for lazy initialisation and allocator growth.
        render(0, 1, grid[0][1], None)
        vocoder.copy_synthesis(at_mel_rate(cases[0].target.wav)[None])

        sums = {r: {"nar_s": 0.0, "vocoder_s": 0.0, "seconds": 0.0, "hyps": [], "sims": [], "stois": [], "phones": []}
                for r in grid}
        copy_stats: dict[str, Any] = {"vocoder_s": 0.0, "seconds": 0.0, "hyps": [], "stois": [], "phones": []}
        originals, original_sims, original_phones = [], [], []
        for k, case in enumerate(cases):
            target = at_mel_rate(case.target.wav)
            n = target.shape[-1]
            codes, durations = prepared[k][0], prepared[k][1]
            gen_seconds = int(durations.sum()) * fpb * hop / sr
            say(f"utterance {k + 1}/{len(cases)} ({case.target.id}, {case.target.seconds:.1f} s, "
                f"{len(codes)} tokens, prompt {case.prompt.seconds:.2f} s of {case.prompt_source})")
            prompt_audio = at_mel_rate(case.prompt.wav)
            hyp_orig = recognizer.transcribe(target, sr) if recognizer else None
            prompt_embedding = speaker_sim.embed(prompt_audio, sr) if speaker_sim else None
            sim_orig = float(speaker_sim.embed(target, sr) @ prompt_embedding) if speaker_sim else None
            originals.append(hyp_orig)
            original_phones.append(reader.read(target, sr) if reader else "")
            original_sims.append(sim_orig)
            row: dict[str, Any] = {
                "id": case.target.id, "speaker": case.target.speaker, "text": case.target.text,
                "seconds": round(case.target.seconds, 3), "generated_seconds": round(gen_seconds, 3),
                "tokens": int(len(codes)), "frame_rate_hz": round(len(codes) * BASE_RATE / max(1, int(durations.sum())), 3),
                "prompt": case.prompt_source, "prompt_seconds": round(case.prompt.seconds, 3),
                "prompt_tokens": int(len(prepared[k][2])), "hyp_original": hyp_orig,
                "similarity_original": _round(sim_orig), "rows": [],
            }
            # copy-synthesis
            sync()
            t0 = time.perf_counter()
            copy = vocoder.copy_synthesis(target[None])[0].float().cpu()
            sync()
            copy_stats["vocoder_s"] += time.perf_counter() - t0
            copy_stats["seconds"] += n / sr
            copy_stoi = stoi(target, copy, sr)
            copy_hyp = recognizer.transcribe(copy, sr) if recognizer else None
            copy_stats["stois"].append(copy_stoi)
            copy_stats["hyps"].append(copy_hyp)
            copy_stats["phones"].append(reader.read(copy, sr) if reader else "")
            row["copy_synthesis"] = {"stoi": _round(copy_stoi), "hyp": copy_hyp}
            for key in grid:
                n_steps, cfg, sway = key
                wav, t_nar, t_voc = render(k, n_steps, cfg, sway)
                wav = wav[:n]  # past the original's end is the padding of its last base frame
                s = sums[key]
                s["nar_s"] += t_nar
                s["vocoder_s"] += t_voc
                s["seconds"] += gen_seconds
                hyp = recognizer.transcribe(wav, sr) if recognizer else None
                sim = float(speaker_sim.embed(wav, sr) @ prompt_embedding) if speaker_sim else None
                value = stoi(target, wav, sr)
                s["hyps"].append(hyp)
                s["sims"].append(sim)
                s["stois"].append(value)
                s["phones"].append(reader.read(wav, sr) if reader else "")
                row["rows"].append({"steps": n_steps, "cfg": cfg, "sway": sway, "nar_rtf": _round(t_nar / gen_seconds),
                                    "vocoder_rtf": _round(t_voc / gen_seconds), "hyp": hyp, "similarity": _round(sim),
                                    "stoi": _round(value)})
            per_utt.append(row)

    texts = [c.target.text for c in cases]
    wer_original = corpus_wer(texts, originals) if recognizer else None
    sim_original = mean_finite(original_sims) if speaker_sim else None
    rows = []
    for (n_steps, cfg, sway), s in sums.items():
        w = corpus_wer(texts, s["hyps"]) if recognizer else None
        rows.append({
            "steps": n_steps, "cfg": cfg, "sway": sway,
            "nar_rtf": s["nar_s"] / s["seconds"], "vocoder_rtf": s["vocoder_s"] / s["seconds"],
            "nar_seconds": s["nar_s"], "vocoder_seconds": s["vocoder_s"], "generated_seconds": s["seconds"],
            "wer": w, "wer_original": wer_original,
            "wer_ratio": (w / wer_original) if w is not None and wer_original else None,
            "similarity": mean_finite(s["sims"]) if speaker_sim else None, "similarity_original": sim_original,
            "stoi": mean_finite(s["stois"]),
            "per": phone_error_rate(original_phones, s["phones"]) if reader else None,
        })
    copy_wer = corpus_wer(texts, copy_stats["hyps"]) if recognizer else None
    copy_row = {
        "vocoder_rtf": copy_stats["vocoder_s"] / copy_stats["seconds"], "seconds": copy_stats["seconds"],
        "stoi": mean_finite(copy_stats["stois"]), "wer": copy_wer, "wer_original": wer_original,
        "per": phone_error_rate(original_phones, copy_stats["phones"]) if reader else None,
        "wer_ratio": (copy_wer / wer_original) if copy_wer is not None and wer_original else None,
    }
    from flexitts.benchmarks.all import machine_description

    result: dict[str, Any] = {
        "benchmark": "nar",
        "models": {"nar_parameters": sum(p.numel() for p in nar.parameters()),
                   "vocoder_parameters": sum(p.numel() for p in vocoder.parameters()),
                   "codec_threshold": threshold,
                   "codec_default_threshold": float(codec.config.default_threshold),
                   "mel": {"sample_rate": sr, "hop_length": hop, "n_mels": int(mel_cfg.n_mels)}},
        "settings": {"rescale_cfg": rescale_cfg, "seed": seed, "wer": bool(recognizer), "similarity": bool(speaker_sim),
                     "per": bool(reader), "phones_from": phones_from,
                     "warmup": "one untimed 1-step NAR call, vocoder and copy-synthesis of the first utterance",
                     "stoi": "pystoi, classic, output against the original (aligned: ground-truth durations)",
                     "similarity_to": "the prompt audio (resemblyzer cosine)",
                     "rtf": "processing seconds / generated seconds (whole base frames)", **(info or {})},
        "host": {**machine_description(threads), "device": str(device), "nar_precision": precision},
        "data": {"utterances": len(cases), "seconds": sum(c.target.seconds for c in cases),
                 "prompt_seconds_mean": sum(c.prompt.seconds for c in cases) / len(cases),
                 "frame_rate_hz": sum(len(p[0]) for p in prepared) * BASE_RATE / max(1, sum(int(p[1].sum()) for p in prepared)),
                 "speakers": sorted({c.target.speaker for c in cases})},
        "rows": rows,
        "copy_synthesis": copy_row,
        "memory": {"nar_peak_rss_mb": mem_nar.peak_mb, "nar_peak_delta_mb": mem_nar.delta_mb,
                   "process_peak_rss_mb": max_rss_mb()},
        "wall_s": time.perf_counter() - started,
        "per_utterance": per_utt,
    }
    result["checks"] = _checks(result)
    result = json_safe(result)
    write_report(out, result, render_markdown)
    return result


def _checks(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 6's bar: 15-step cfg-2 resynthesis WER and similarity; copy-synthesis STOI and WER."""
    checks = []
    row = next((r for r in res["rows"] if r["steps"] == 15 and r["cfg"] == 2.0 and r["sway"] is None), None)
    if row is not None:
        if row["wer"] is not None and row["wer_original"] is not None:
            checks.append({"name": "NAR WER (15 steps, cfg 2)", "value": row["wer"],
                           "limit": f"<= {TARGET_WER_RATIO:g} x original ({row['wer_original']:.3f})",
                           "pass": row["wer"] <= TARGET_WER_RATIO * row["wer_original"]})
        if row["similarity"] is not None:
            checks.append({"name": "NAR similarity to the prompt (15 steps, cfg 2)", "value": row["similarity"],
                           "limit": f">= {TARGET_SIMILARITY}", "pass": row["similarity"] >= TARGET_SIMILARITY})
    copy = res["copy_synthesis"]
    checks.append({"name": "copy-synthesis STOI", "value": copy["stoi"], "limit": f">= {TARGET_COPY_STOI}",
                   "pass": copy["stoi"] is not None and copy["stoi"] >= TARGET_COPY_STOI})
    if copy["wer"] is not None and copy["wer_original"] is not None:
        checks.append({"name": "copy-synthesis WER", "value": copy["wer"],
                       "limit": f"<= {TARGET_COPY_WER_RATIO:g} x original ({copy['wer_original']:.3f})",
                       "pass": copy["wer"] <= TARGET_COPY_WER_RATIO * copy["wer_original"]})
    return checks


# ---------------------------------------------------------------- metrics helpers
def _recognizer() -> Any:
    from flexitts.errors import DependencyError
    from flexitts.evaluation.wer import PocketsphinxRecognizer

    recognizer = PocketsphinxRecognizer()
    try:
        recognizer._get_decoder()
    except DependencyError as error:
        raise DependencyError(f"{error} (or pass --no-wer)") from None
    return recognizer


def _similarity() -> Any:
    from flexitts.errors import DependencyError
    from flexitts.evaluation.similarity import SpeakerSimilarity

    scorer = SpeakerSimilarity()
    try:
        scorer._get_encoder()
    except DependencyError as error:
        raise DependencyError(f"{error} (or pass --no-similarity)") from None
    return scorer


def _stoi_function() -> Callable[[Any, Any, int], float | None]:
    """`stoi(reference, degraded, rate)` over their common length (`flexitts.evaluation.metrics.stoi`; None
    where it is not finite). Checks that pystoi is installed before the benchmark starts."""
    from flexitts.errors import DependencyError
    from flexitts.evaluation import metrics

    try:
        import pystoi  # noqa: F401
    except ImportError:
        raise DependencyError("pystoi is not installed: run `make setup` or `pip install flexitts[eval]`") from None

    def score(ref: Any, deg: Any, rate: int) -> float | None:
        value = metrics.stoi(ref, deg, rate)
        return value if math.isfinite(value) else None

    return score


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def json_safe(obj: Any) -> Any:
    """`obj` with NaN / inf floats replaced by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


# ---------------------------------------------------------------- markdown


def row_label(row: dict[str, Any]) -> str:
    return f"{row['steps']} steps, cfg {row['cfg']:g}" + (f", sway {row['sway']:g}" if row.get("sway") is not None else "")


def render_markdown(res: dict[str, Any]) -> str:
    h, d, s, m, c = res["host"], res["data"], res["settings"], res["models"], res["copy_synthesis"]
    lines = [
        "# NAR and vocoder benchmark", "",
        f"NAR {m['nar_parameters']:,} parameters, vocoder {m['vocoder_parameters']:,}; mel {m['mel']['n_mels']} bins at "
        f"{m['mel']['sample_rate']} Hz, hop {m['mel']['hop_length']}"
        + (f"; bundle `{s['checkpoint']}`" if s.get("checkpoint") else "") + ".",
        f"Data: {d['utterances']} utterances, {d['seconds']:.1f} s"
        + (f" from `{s['manifest']}`" if s.get("manifest") else "")
        + f"; speakers {', '.join(d['speakers'])}. Ground-truth codes and durations from the codec at "
          + ("its default threshold" if m['codec_threshold'] == m.get('codec_default_threshold', m['codec_threshold'])
             else "merging threshold") + f" {m['codec_threshold']:g} ({d.get('frame_rate_hz', float('nan')):.2f} tokens/s); prompt: the first {d['prompt_seconds_mean']:.2f} s (mean; whole "
          "80 ms frames) of another utterance of the same speaker."
          + (f" The NAR also gets phones: {PHONE_SOURCE_TEXT[s['phones_from']]}, the prompt's read by greedy CTC (the "
             "bundle's recogniser)." if s.get("phones_from") else ""),
        f"Host: {h['cpu_model']}, {h['torch_threads']} torch threads on {h['cpus_usable']} CPUs ({h['device']}, NAR in {h.get('nar_precision', 'fp32')}; "
        f"1-min load average {h['load_avg_1min']}), torch {h['torch']}. {s['warmup'].capitalize()}. RTF: {s['rtf']}. "
        "Timings are wall-clock and depend on machine load.", "",
        "## Resynthesis from ground-truth tokens", "",
        "WER: pocketsphinx, corpus level" + ("" if s["wer"] else " (not run)") + ". Similarity: "
        + (s["similarity_to"] if s["similarity"] else "not run") + f". STOI: {s['stoi']}. PER: phone error rate "
        "of the output against the original, both read by the bundle's CTC recogniser"
        + ("" if s.get("per") else " (not run)") + ".", "",
        "| setting | NAR RTF | vocoder RTF | WER | WER original | ratio | similarity | original's similarity | STOI | PER |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(f"| {row_label(r)} | {r['nar_rtf']:.4f} | {r['vocoder_rtf']:.4f} | {cell(r['wer'])} | "
                     f"{cell(r['wer_original'])} | {cell(r['wer_ratio'], 2)} | {cell(r['similarity'])} | "
                     f"{cell(r['similarity_original'])} | {cell(r['stoi'])} | {cell(r.get('per'))} |")
    mem = res["memory"]
    lines += ["", f"Peak RSS during the NAR calls: {cell(mem['nar_peak_rss_mb'], 1)} MiB "
                  f"({cell(mem['nar_peak_delta_mb'], 1)} MiB above the RSS before a call); whole process "
                  f"{mem['process_peak_rss_mb']:.1f} MiB.", "",
              "## Vocoder copy-synthesis (wav -> mel -> vocoder)", "",
              "| vocoder RTF | STOI | WER | WER original | ratio | PER |", "|---:|---:|---:|---:|---:|---:|",
              f"| {c['vocoder_rtf']:.4f} | {cell(c['stoi'])} | {cell(c['wer'])} | {cell(c['wer_original'])} | "
              f"{cell(c['wer_ratio'], 2)} | {cell(c.get('per'))} |", "",
              *checks_table(res["checks"], issue=6)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- CLI
def add_parser(components: argparse._SubParsersAction) -> None:
    parser = components.add_parser("nar", help="NAR resynthesis + vocoder: RTF, WER, similarity; copy-synthesis STOI")
    parser.add_argument("--checkpoint", default=None, metavar="BUNDLE",
                        help="TTS bundle folder or URI (default: the bundled demo models)")
    parser.add_argument("--manifest", default=None,
                        help="test utterances (default: corpus/demo/test.jsonl, mbrola voices, first 30)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N usable utterances")
    parser.add_argument("--speaker-prefix", default=None,
                        help="keep only speakers whose name starts with this (default: 'mb-' for the demo split)")
    parser.add_argument("--prompt-seconds", type=float, default=DEFAULT_PROMPT_SECONDS,
                        help="prompt length, rounded down to whole 80 ms frames (default: 3)")
    parser.add_argument("--steps", type=int, nargs="+", default=list(DEFAULT_STEPS), metavar="N",
                        help="Euler steps of the grid (default: 8 15 32)")
    parser.add_argument("--cfg", type=float, nargs="+", default=list(DEFAULT_CFGS), metavar="W",
                        help="guidance weights of the grid (default: 0 2)")
    parser.add_argument("--no-sway", action="store_true", help="leave out the sway-sampling row (8 steps, cfg 2, sway -1)")
    parser.add_argument("--no-wer", action="store_true", help="skip pocketsphinx WER (much faster)")
    parser.add_argument("--no-similarity", action="store_true", help="skip resemblyzer similarity")
    parser.add_argument("--no-per", action="store_true", help="skip the recogniser's phone error rate against the original")
    parser.add_argument("--phones", nargs="?", const="text", choices=PHONE_SOURCES, default=None,
                        help="also give a phone-conditioned NAR the target's phones: 'text' (the default: the "
                        "transcript, CTC forced alignment) or 'codes' (read from the codes alone by the codec, no "
                        "transcript); the prompt's come from greedy CTC on its audio")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (utterance i uses seed + i)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="merging threshold of the ground-truth codes (1 = unmerged 12.5 Hz; default: the codec's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every CPU available)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="NAR arithmetic: auto (bfloat16 where the device has it natively), fp32 or bf16")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"report path without extension (default: {DEFAULT_OUT})")
    parser.set_defaults(func=run_cli)


def resolve_manifest(manifest: str | None, limit: int | None, speaker_prefix: str | None,
                     demo_limit: int = DEMO_LIMIT) -> tuple[Path, int | None, str | None]:
    """(manifest, limit, prefix): the demo test split with `demo_limit` and 'mb-' when no manifest is given."""
    from flexitts.benchmarks.codec import DEMO_SPEAKER_PREFIX, default_manifest

    if manifest is None:
        prefix = DEMO_SPEAKER_PREFIX if speaker_prefix is None else speaker_prefix
        return default_manifest(), limit or demo_limit, prefix or None
    return Path(manifest), limit, speaker_prefix or None


def run_cli(args: argparse.Namespace) -> int:
    from flexitts import TTS
    from flexitts.benchmarks.codec import report_paths
    from flexitts.errors import ConfigError

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if any(s < 1 for s in args.steps) or any(not (w >= 0) for w in args.cfg):
        raise ConfigError("--steps must be at least 1 and --cfg non-negative")
    manifest, limit, prefix = resolve_manifest(args.manifest, args.limit, args.speaker_prefix)
    tts = TTS.from_pretrained(args.checkpoint, device=args.device, precision=args.precision)
    cases, skipped = load_cases(manifest, limit, prefix, args.prompt_seconds, tts.codec.sample_rate)
    info = {"checkpoint": args.checkpoint or "bundled demo", "manifest": str(manifest), "speaker_prefix": prefix,
            "limit": limit, "skipped_without_prompt": skipped}
    result = run_nar_benchmark(tts, cases, args.out, steps=args.steps, cfgs=args.cfg,
                               sway_row=None if args.no_sway else SWAY_ROW, wer=not args.no_wer,
                               similarity=not args.no_similarity, phones=not args.no_per, threads=args.threads, seed=args.seed,
                               merging_threshold=args.threshold, info=info, phones_from=args.phones,
                               progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    json_path, md_path = report_paths(args.out)
    shown = next((r for r in result["rows"] if r["steps"] == 15 and r["cfg"] == 2.0), result["rows"][0])
    print(f"wrote {json_path} and {md_path}: {len(cases)} utterances; {row_label(shown)}: NAR RTF "
          f"{shown['nar_rtf']:.3f}, vocoder RTF {shown['vocoder_rtf']:.3f}, WER {cell(shown['wer'])} "
          f"(original {cell(shown['wer_original'])}), similarity {cell(shown['similarity'])}; copy-synthesis STOI "
          f"{cell(result['copy_synthesis']['stoi'])} ({result['host']['torch_threads']} torch threads)")
    return 0
