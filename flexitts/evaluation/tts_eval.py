"""`flexitts eval tts`: synthesise each sentence of a manifest with a reference voice, then measure
intelligibility (pocketsphinx WER beside the original recording's WER, and optionally beside the WER of the same
sentences spoken directly by the reference's corpus voice), speaker similarity to the reference (and the original's,
as a ceiling), real-time factor and tokens per second of speech."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from flexitts.data.manifest import Utterance, read_manifest
from flexitts.errors import DataError

REF_STRATEGIES = ("same-speaker", "fixed")


def pick_references(rows: Sequence[Utterance], pool: Sequence[Utterance]) -> list[Utterance]:
    """For each row, another utterance of its speaker from `pool` (the next one after it, cyclically)."""
    by_speaker: dict[str, list[Utterance]] = {}
    for utt in pool:
        by_speaker.setdefault(utt.speaker, []).append(utt)
    chosen = []
    for row in rows:
        candidates = [u for u in by_speaker.get(row.speaker, []) if u.audio != row.audio]
        if not candidates:
            raise DataError(f"speaker '{row.speaker}' has no other utterance to use as the reference")
        position = sum(1 for u in by_speaker[row.speaker] if u.audio < row.audio)
        chosen.append(candidates[position % len(candidates)])
    return chosen


def evaluate_tts(
    tts: Any,
    manifest: str | os.PathLike,
    ref_strategy: str = "same-speaker",
    ref: str | None = None,
    ref_text: str | None = None,
    limit: int | None = None,
    speaker_prefix: str | None = None,
    seed: int = 0,
    use_ref_text: bool = True,
    options: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    recognizer: str | None = None,
    direct_voice: str | None = None,
    offset: int = 0,
) -> dict[str, Any]:
    """Per-utterance and mean figures; `options` go to `tts.synthesize` (threshold, steps, cfg, ...).

    `direct_voice`: a corpus voice (`mb-us1`, see `flexitts.corpus.voices`) that also speaks every sentence
    through espeak-ng at the corpus's default pitch and rate: `direct_wer` is its WER, the baseline when the
    reference is that voice ("the same sentences spoken by that voice directly")."""
    from flexitts.audio import load_audio
    from flexitts.evaluation.phones import PhoneReader, phone_error_rate
    from flexitts.evaluation.similarity import SpeakerSimilarity
    from flexitts.evaluation.wer import make_recognizer, word_error_rate

    if ref_strategy not in REF_STRATEGIES:
        raise DataError(f"ref strategy must be one of {REF_STRATEGIES}, not '{ref_strategy}'")
    if ref_strategy == "fixed" and ref is None:
        raise DataError("--ref-strategy fixed needs --ref (and preferably --ref-text)")
    path = Path(manifest)
    pool = read_manifest(path)
    if offset < 0:
        raise DataError(f"offset must be >= 0, not {offset}")
    # `offset` skips the first sentences (of those speakers): a further set that the same seeds cover alike.
    rows = [u for u in pool if speaker_prefix is None or u.speaker.startswith(speaker_prefix)][offset:][:limit]
    if not rows:
        raise DataError(f"'{path}' has no utterance{' of speakers ' + speaker_prefix + '*' if speaker_prefix else ''}")
    refs = pick_references(rows, pool) if ref_strategy == "same-speaker" else [None] * len(rows)
    asr, similarity = make_recognizer(recognizer), SpeakerSimilarity()
    direct_speaker = _direct_speaker(direct_voice) if direct_voice else None
    # Phones of the output against those of the original, both read by the bundle's recogniser (when it has one).
    reader = PhoneReader(tts.asr) if getattr(tts, "asr", None) is not None else None
    items = []
    for number, (row, reference) in enumerate(zip(rows, refs)):
        ref_audio = str(reference.resolve(path.parent)) if reference is not None else ref
        text_of_ref = (reference.text if reference is not None else ref_text) if use_ref_text else None
        started = time.perf_counter()
        wav, rate, info = tts.synthesize(row.text, ref_audio, ref_text=text_of_ref, seed=seed + number, **(options or {}))
        seconds = time.perf_counter() - started
        original, _ = load_audio(row.resolve(path.parent), target_rate=rate)
        reference_wav, _ = load_audio(ref_audio, target_rate=rate)
        items.append({
            "audio": row.audio, "speaker": row.speaker, "text": row.text, "reference": str(ref_audio),
            "hypothesis": asr.transcribe(wav, rate), "original_hypothesis": asr.transcribe(original, rate),
            "phones": reader.read(wav, rate) if reader else None,
            "original_phones": reader.read(original, rate) if reader else None,
            "similarity": similarity.score(wav, rate, reference_wav, rate),
            "original_similarity": similarity.score(original, rate, reference_wav, rate),
            "seconds": len(wav) / rate, "original_seconds": len(original) / rate,
            "rtf": seconds / max(1e-9, len(wav) / rate),
            "tokens": int(len(info.codes)), "frame_rate": info.frame_rate, "timings": info.timings,
        })
        if direct_speaker is not None:
            spoken = _speak(direct_speaker, row.text, rate)
            items[-1]["direct_hypothesis"] = asr.transcribe(spoken, rate)
            items[-1]["direct_seconds"] = len(spoken) / rate
        if progress is not None:
            progress(number + 1, len(rows))
    texts = [i["text"] for i in items]
    wer = word_error_rate(texts, [i["hypothesis"] for i in items])
    gt_wer = word_error_rate(texts, [i["original_hypothesis"] for i in items])
    total_seconds = sum(i["seconds"] for i in items)
    direct: dict[str, Any] = {}
    if direct_speaker is not None:
        direct_wer = word_error_rate(texts, [i["direct_hypothesis"] for i in items])
        direct = {"direct_voice": direct_speaker.id, "direct_wer": direct_wer,
                  "direct_wer_ratio": _ratio(wer, direct_wer),
                  # The output's pace against the voice's own: above 1, the output speaks more slowly.
                  "direct_length_ratio": total_seconds / max(1e-9, sum(i["direct_seconds"] for i in items))}
    return {
        "manifest": str(path), "ref_strategy": ref_strategy, "utterances": len(items), "offset": offset,
        "options": options or {},
        "settings": _settings(options or {}),
        "wer": wer, "original_wer": gt_wer, "wer_ratio": _ratio(wer, gt_wer),
        "per": phone_error_rate([i["original_phones"] for i in items], [i["phones"] for i in items]) if reader else None,
        "similarity": float(np.mean([i["similarity"] for i in items])),
        "original_similarity": float(np.mean([i["original_similarity"] for i in items])),
        "rtf": float(np.mean([i["rtf"] for i in items])),
        "tokens_per_second": sum(i["tokens"] for i in items) / max(1e-9, total_seconds),
        "length_ratio": total_seconds / max(1e-9, sum(i["original_seconds"] for i in items)),
        **direct,
        "items": items,
    }


def _settings(options: dict[str, Any]) -> dict[str, Any]:
    """Every synthesis setting of a run: `TTS.synthesize`'s defaults with `options` over them, the token rate
    resolved (neither a threshold nor a rate: the default rate)."""
    from flexitts.tts import synthesis_options, token_rate_setting

    settings = {k: v for k, v in {**synthesis_options(), **options}.items() if k not in ("seed", "progress")}
    settings["merging_threshold"], settings["frame_rate"] = token_rate_setting(settings["merging_threshold"],
                                                                               settings["frame_rate"])
    return settings


def _ratio(wer: float, baseline: float) -> float | None:
    """`wer / baseline`, or None when the baseline is a perfect 0."""
    return wer / baseline if baseline > 0 else None


def _direct_speaker(voice: str) -> Any:
    """The corpus speaker of `voice` at the default pitch and rate (`DataError` if espeak-ng or it is missing)."""
    from flexitts.corpus.voices import Speaker, check_dependencies, resolve_voice
    from flexitts.errors import FlexiTTSError

    try:
        resolved = resolve_voice(voice)
        check_dependencies([resolved])
    except FlexiTTSError as error:
        raise DataError(f"--direct-voice: {error}") from None
    return Speaker(resolved.id, resolved)


def _speak(speaker: Any, text: str, rate: int) -> np.ndarray:
    """`text` spoken by the corpus speaker at `rate` Hz."""
    import torch

    from flexitts.audio import resample
    from flexitts.corpus.synth import SAMPLE_RATE, synthesize

    return resample(torch.from_numpy(synthesize(speaker, text)), SAMPLE_RATE, rate).numpy()


def _ratio_text(ratio: float | None) -> str:
    return f"{ratio:.2f}" if ratio is not None else "n/a"


def render_tts_markdown(result: dict[str, Any]) -> str:
    """A short markdown table of the means."""
    ratio = _ratio_text(result["wer_ratio"])
    per = f"{result['per']:.3f}" if result.get("per") is not None else "n/a"
    direct = []
    if result.get("direct_wer") is not None:
        direct_ratio = _ratio_text(result["direct_wer_ratio"])
        direct = [f"The same sentences spoken directly by the corpus voice {result['direct_voice']} (espeak-ng): "
                  f"WER {result['direct_wer']:.3f}; the output's WER is {direct_ratio}x that."]
        if result.get("direct_length_ratio") is not None:
            direct.append(f"The output lasts {result['direct_length_ratio']:.2f}x as long as the voice speaking "
                          "directly (above 1: slower speech).")
        direct.append("")
    return "\n".join([
        f"# TTS evaluation: {result['manifest']} ({result['utterances']} utterances"
        + (f" after the first {result['offset']}" if result.get("offset") else "")
        + f", references: {result['ref_strategy']})",
        "",
        "| WER | original WER | ratio | similarity to reference | original's similarity | RTF | tokens/s | PER |",
        "|---|---|---|---|---|---|---|---|",
        f"| {result['wer']:.3f} | {result['original_wer']:.3f} | {ratio} | {result['similarity']:.3f} | "
        f"{result['original_similarity']:.3f} | {result['rtf']:.3f} | {result['tokens_per_second']:.2f} | {per} |",
        "",
        *direct,
        *([f"The output lasts {result['length_ratio']:.2f}x as long as the originals.", ""]
          if result.get("length_ratio") is not None else []),
        "PER: phone error rate of the output against the original recording, both read by the bundle's CTC "
        "recogniser (0 = the same phones; `flexitts.evaluation.phones`).",
        "",
        f"Options: `{result['options']}`",
        "",
        f"Settings (the pipeline's defaults with those options): `{result.get('settings', {})}`",
        "",
    ])
