"""`flexitts eval codec`: reconstruction quality of a `FlexiCodec` on a manifest, the way codec papers report it.

For one setting (scheduler, threshold or target frame rate, number of quantizers) every utterance is encoded and
decoded, and the decoded audio is compared with the original:

- intelligibility: pocketsphinx WER of the decoded audio, with the WER of the original audio ("GT WER") beside it
  (corpus level over the set; per utterance in the details);
- STOI, wideband PESQ, mel-cepstral distortion and log-mel distance (`flexitts.evaluation.metrics`);
- speaker similarity: resemblyzer cosine between the original and the decoded audio;
- the average frame rate reached (tokens / seconds) and the bitrate at it (content + duration bits).

`evaluate_codec(codec, utterances, setting)` gives one result; `results_rows(codec, manifest, configs)` evaluates
several settings on the same utterances (the original audio is transcribed and embedded once) and returns one row
per setting, each with the `flexitts eval codec` command that reproduces it; `write_results_page(path, rows)`
writes them as a markdown page in the style of the FlexiCodec paper's Table 5.

Every number is deterministic for a given codec, data and machine: encoding and decoding have no randomness, and
pocketsphinx's feature front end (dither generator and cepstral-mean state) is reset before each transcription,
so a transcript does not depend on what was recognised before it: a row of the results page and the single
command written next to it give the same figures.
"""
from __future__ import annotations

import os
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from flexitts.errors import ConfigError, DataError, DependencyError
from flexitts.evaluation.tables import cell

SCHEDULERS = ("threshold", "dp", "entropy")
# The results page: the threshold rule at the three frame rates of the FlexiCodec paper, and each scheduler at the
# same average rate (8.3 Hz, the paper's headline setting).
RESULTS_RATES = (12.5, 8.3, 6.25)
RESULTS_COMPARE_RATE = 8.3
METHODS = {
    "wer": "pocketsphinx (bundled en-us model; openai-whisper with --recognizer whisper:PATH), corpus-level WER after lower-casing and removing punctuation; "
           "GT WER: the same recogniser on the original audio",
    "stoi": "pystoi, classic (not extended)",
    "pesq": "wideband PESQ (pesq package, P.862.2, MOS-LQO; 4.64 = identical)",
    "mcd": "mel-cepstral distortion in dB, 10*sqrt(2)/ln(10) * mean over frames of the Euclidean distance of mel "
           "cepstra c1..c12 (13 cepstra: cosine transform of 40 natural-log magnitude mel bands, scaled as a "
           "cepstrum; 25 ms windows every 10 ms; c0 excluded), frames aligned one to one",
    "mel_distance": "mean |ln mel(original) - ln mel(decoded)|, 80 magnitude mel bins, n_fft 1024, hop 256",
    "similarity": "resemblyzer d-vector cosine between original and decoded audio",
    "bitrate": "content + duration bits per token x average tokens per second (codec/bitrates.py)",
    "per": "phone error rate of the decoded audio against the original, both read by the bundled CTC recogniser "
           "(the codec's own ASR; 0 = the same phones)",
    "code_per": "the same for the phones the recogniser's CTC head reads straight from the semantic codes "
                "(the codec's sub-frame reader at the recogniser's rate when it has one, else align_proj of the decoded "
                "embedding unmerged to 12.5 Hz): the phonetic content the AR and "
                "NAR models receive",
}

Progress = Callable[[str], None] | None


@dataclass(frozen=True)
class CodecSetting:
    """One codec operating point. With neither `threshold` nor `frame_rate`, the codec's default threshold."""

    scheduler: str = "threshold"
    threshold: float | None = None
    frame_rate: float | None = None
    num_quantizers: int | None = None  # None: all of the codec's quantizers

    @classmethod
    def of(cls, value: "CodecSetting | Mapping[str, Any]") -> "CodecSetting":
        """A setting from itself or a dict such as `{"scheduler": "dp", "frame_rate": 8.3}`."""
        if isinstance(value, CodecSetting):
            return value
        unknown = set(value) - {"scheduler", "threshold", "frame_rate", "num_quantizers"}
        if unknown:
            raise ConfigError(f"unknown codec setting keys {sorted(unknown)}: use scheduler, threshold, frame_rate, "
                              "num_quantizers")
        return cls(**dict(value))

    def check(self, max_quantizers: int | None = None) -> "CodecSetting":
        """Raise `ConfigError` for a setting the codec cannot run; return self."""
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler must be one of {SCHEDULERS}, not '{self.scheduler}'")
        if self.threshold is not None and self.frame_rate is not None:
            raise ConfigError("give a threshold or a frame rate, not both")
        if self.frame_rate is not None and not self.frame_rate > 0:
            raise ConfigError(f"--frame-rate must be a positive number of tokens per second, got {self.frame_rate:g}")
        if self.scheduler == "entropy" and self.threshold is not None:
            raise ConfigError("--scheduler entropy takes --frame-rate, not --threshold")
        if max_quantizers is not None and self.num_quantizers is not None \
                and not 1 <= self.num_quantizers <= max_quantizers:
            raise ConfigError(f"--num-quantizers must be in 1..{max_quantizers} for this codec "
                              f"(1 = semantic codes only), got {self.num_quantizers}")
        return self

    def label(self) -> str:
        if self.frame_rate is not None:
            target = f"{self.frame_rate:g} Hz target"
        elif self.threshold is not None:
            target = f"tau {self.threshold:g}"
        else:
            target = "default threshold"
        quantizers = "" if self.num_quantizers is None else f", {self.num_quantizers} quantizers"
        return f"{self.scheduler}, {target}{quantizers}"

    def cli_args(self) -> list[str]:
        """The `flexitts eval codec` options that select this setting."""
        args = []
        if self.threshold is not None:
            args += ["--threshold", f"{self.threshold:g}"]
        if self.frame_rate is not None:
            args += ["--frame-rate", f"{self.frame_rate:g}"]
        if self.scheduler != "threshold":
            args += ["--scheduler", self.scheduler]
        if self.num_quantizers is not None:
            args += ["--num-quantizers", str(self.num_quantizers)]
        return args


def results_settings(num_quantizers: int | None = None, rates: Sequence[float] = RESULTS_RATES,
                     compare_rate: float = RESULTS_COMPARE_RATE) -> list[CodecSetting]:
    """The results page's rows: the threshold rule at each of `rates`, then dp and entropy at `compare_rate`."""
    settings = [CodecSetting("threshold", frame_rate=float(r), num_quantizers=num_quantizers) for r in rates]
    settings += [CodecSetting(scheduler, frame_rate=float(compare_rate), num_quantizers=num_quantizers)
                 for scheduler in ("dp", "entropy")]
    return settings


def eval_command(setting: CodecSetting, manifest: str | os.PathLike, checkpoint: str | None = None,
                 limit: int | None = None, speaker_prefix: str | None = None, recognizer: str | None = None) -> str:
    """The shell command that evaluates `setting` on the same data (its summary row is the row reproduced)."""
    args = ["flexitts", "eval", "codec", "--manifest", str(manifest)]
    if speaker_prefix:
        args += ["--speaker-prefix", speaker_prefix]
    if limit is not None:
        args += ["--limit", str(limit)]
    if checkpoint:
        args += ["--checkpoint", str(checkpoint)]
    if recognizer:
        args += ["--recognizer", recognizer]
    return shlex.join(args + setting.cli_args())


# ---------------------------------------------------------------- evaluation
def _utterance_wer(text: str, hypothesis: str | None) -> float | None:
    from flexitts.evaluation.wer import normalize_for_wer, word_error_rate

    if hypothesis is None or not normalize_for_wer(text):
        return None
    return word_error_rate([text], [hypothesis])


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


class CodecEvaluator:
    """Evaluates settings of one codec on fixed utterances, caching what depends only on the originals
    (their transcripts and speaker embeddings).

    Args:
        codec: a `FlexiCodec` (put in eval mode).
        utterances: `BenchUtterance`s at the codec's rate (see `flexitts.benchmarks.codec.load_utterances`).
        wer / pesq / similarity: whether to run pocketsphinx, PESQ and resemblyzer (all on by default).
    """

    def __init__(self, codec: Any, utterances: Sequence[Any], wer: bool = True, pesq: bool = True,
                 similarity: bool = True, recognizer: str | None = None):
        from flexitts.evaluation import metrics

        if not utterances:
            raise DataError("the codec evaluation needs at least one utterance")
        self.codec = codec.eval()
        self.utterances = list(utterances)
        self.rate = int(codec.sample_rate)
        self.recognizer = None
        if wer:
            from flexitts.evaluation.wer import PocketsphinxRecognizer, make_recognizer

            self.recognizer = make_recognizer(recognizer)
            if isinstance(self.recognizer, PocketsphinxRecognizer):
                self.recognizer._get_decoder()  # fail now (DependencyError) rather than after the first encode
        self.speaker = None
        if similarity:
            from flexitts.evaluation.similarity import SpeakerSimilarity

            self.speaker = SpeakerSimilarity()
            self.speaker._get_encoder()
        if pesq and not metrics.pesq_available():
            raise DependencyError("pesq is not installed: run `make setup` or `pip install flexitts[eval]`")
        self.pesq = pesq
        try:
            import pystoi  # noqa: F401
        except ImportError:
            raise DependencyError("pystoi is not installed: run `make setup` or `pip install flexitts[eval]`") from None
        self._originals: dict[int, dict[str, Any]] = {}
        # With the bundled CTC recogniser as the codec's ASR: phones of the decoded audio and of the semantic
        # codes themselves (read through the recogniser's head), against its reading of the original.
        asr = codec.asr_extractor
        self.asr = asr if hasattr(asr, "read_features") else None
        if self.asr is not None:
            from flexitts.evaluation.phones import PhoneReader

            self.phones = PhoneReader(self.asr)

    def transcribe(self, wav: torch.Tensor) -> str:
        """pocketsphinx transcript (independent of earlier calls: the recogniser resets its front end)."""
        return self.recognizer.transcribe(wav, self.rate)

    def original(self, index: int) -> dict[str, Any]:
        """Transcript and speaker embedding of utterance `index`'s original audio (computed once)."""
        if index not in self._originals:
            wav = self.utterances[index].wav
            self._originals[index] = {
                "hypothesis": self.transcribe(wav) if self.recognizer is not None else None,
                "embedding": self.speaker.embed(wav, self.rate) if self.speaker is not None else None,
                "phones": self.phones.read(wav, self.rate) if self.asr is not None else None,
            }
        return self._originals[index]

    def evaluate(self, setting: CodecSetting | Mapping[str, Any], progress: Progress = None) -> dict[str, Any]:
        """Per-utterance and mean figures of one setting (see the module docstring)."""
        from flexitts.benchmarks.codec import corpus_wer, mean_finite
        from flexitts.evaluation import metrics
        from flexitts.evaluation.phones import phone_error_rate

        codec = self.codec
        setting = CodecSetting.of(setting).check(codec.config.max_quantizers)
        q = setting.num_quantizers or codec.config.max_quantizers
        say = progress or (lambda _msg: None)
        items: list[dict[str, Any]] = []
        scores: list[dict[str, float | None]] = []  # unrounded, for the means
        started = time.perf_counter()
        for index, utt in enumerate(self.utterances):
            say(f"{setting.label()}: utterance {index + 1}/{len(self.utterances)} ({utt.id}, {utt.seconds:.1f} s)")
            original = self.original(index)
            n = utt.wav.shape[-1]
            with torch.inference_mode():
                tokens = codec.encode(utt.wav, self.rate, num_quantizers=q, merging_threshold=setting.threshold,
                                      frame_rate=setting.frame_rate, scheduler=setting.scheduler)
                decoded = codec.decode(tokens)[0, :n].float().cpu()
            count = int(tokens.num_tokens[0])
            phones = code_phones = None
            if self.asr is not None:
                phones = self.phones.read(decoded, self.rate)
                with torch.inference_mode():
                    code_phones = " ".join(map(str, codec.read_code_phones(tokens.semantic_codes[0, :count],
                                                                           tokens.token_lengths[0, :count])))
            hypothesis = self.transcribe(decoded) if self.recognizer is not None else None
            similarity = None
            if self.speaker is not None:
                similarity = float(np.dot(original["embedding"], self.speaker.embed(decoded, self.rate)))
            score = {
                "stoi": metrics.stoi(utt.wav, decoded, self.rate),
                "pesq": metrics.pesq_wb(utt.wav, decoded, self.rate) if self.pesq else None,
                "mcd": metrics.mel_cepstral_distortion(utt.wav, decoded, self.rate),
                "mel_distance": metrics.log_mel_distance(utt.wav, decoded, self.rate),
                "similarity": similarity,
            }
            scores.append(score)
            items.append({
                "id": utt.id, "speaker": utt.speaker, "seconds": round(utt.seconds, 3), "text": utt.text,
                "tokens": count, "frame_rate": round(count / utt.seconds, 4),
                "hypothesis": hypothesis, "hypothesis_original": original["hypothesis"],
                "wer": _round(_utterance_wer(utt.text, hypothesis)),
                "wer_original": _round(_utterance_wer(utt.text, original["hypothesis"])),
                "phones": phones, "phones_codes": code_phones, "phones_original": original["phones"],
                **{key: _round(value) for key, value in score.items()},
            })
        seconds = sum(u.seconds for u in self.utterances)
        tokens = sum(i["tokens"] for i in items)
        average_hz = tokens / seconds
        texts = [u.text for u in self.utterances]
        wer = corpus_wer(texts, [i["hypothesis"] for i in items]) if self.recognizer is not None else None
        gt_wer = corpus_wer(texts, [i["hypothesis_original"] for i in items]) if self.recognizer is not None else None
        mean = {
            "frame_rate": average_hz, "tokens": tokens,
            "bitrate_bps": codec.bitrate(q, average_hz),
            "content_bitrate_bps": codec.bitrate(q, average_hz, include_duration=False),
            "wer": wer, "wer_original": gt_wer, "wer_ratio": wer / gt_wer if wer is not None and gt_wer else None,
            "stoi": mean_finite([x["stoi"] for x in scores]),
            "pesq": mean_finite([x["pesq"] for x in scores]),
            "pesq_scored": sum(x["pesq"] is not None for x in scores),
            "mcd": mean_finite([x["mcd"] for x in scores]),
            "mel_distance": mean_finite([x["mel_distance"] for x in scores]),
            "similarity": mean_finite([x["similarity"] for x in scores]),
            "per": phone_error_rate([i["phones_original"] for i in items], [i["phones"] for i in items])
            if self.asr is not None else None,
            "code_per": phone_error_rate([i["phones_original"] for i in items], [i["phones_codes"] for i in items])
            if self.asr is not None else None,
        }
        return {
            "setting": {**asdict(setting), "num_quantizers": q, "label": setting.label(),
                        "default_threshold": codec.config.default_threshold
                        if setting.threshold is None and setting.frame_rate is None else None},
            "mean": mean,
            "seconds_taken": round(time.perf_counter() - started, 2),
            "per_utterance": items,
        }


def _codec_info(codec: Any, checkpoint: str | None) -> dict[str, Any]:
    config = codec.config
    return {"fingerprint": config.fingerprint(), "parameters": codec.num_parameters(),
            "max_quantizers": config.max_quantizers, "codebook_size": config.codebook_size,
            "semantic_codebook_size": config.semantic_codebook_size, "max_len": config.max_len,
            "checkpoint": checkpoint or "bundled demo codec"}


def _data_info(utterances: Sequence[Any], manifest: str | os.PathLike | None, limit: int | None,
               speaker_prefix: str | None) -> dict[str, Any]:
    return {"manifest": None if manifest is None else str(manifest), "limit": limit, "speaker_prefix": speaker_prefix,
            "utterances": len(utterances), "seconds": round(sum(u.seconds for u in utterances), 3),
            "speakers": sorted({u.speaker for u in utterances})}


def evaluate_codec(codec: Any, utterances: Sequence[Any], setting: CodecSetting | Mapping[str, Any], *,
                   manifest: str | os.PathLike | None = None, checkpoint: str | None = None, limit: int | None = None,
                   speaker_prefix: str | None = None, wer: bool = True, pesq: bool = True, similarity: bool = True,
                   progress: Progress = None, recognizer: str | None = None) -> dict[str, Any]:
    """Evaluate one setting; the JSON dict of `flexitts eval codec` (codec, data, methods, setting, mean,
    per_utterance and, when `manifest` is given, the reproducing command)."""
    setting = CodecSetting.of(setting).check(codec.config.max_quantizers)
    evaluator = CodecEvaluator(codec, utterances, wer=wer, pesq=pesq, similarity=similarity, recognizer=recognizer)
    result = evaluator.evaluate(setting, progress)
    return {
        "evaluation": "codec",
        "command": eval_command(setting, manifest, checkpoint, limit, speaker_prefix, recognizer) if manifest is not None else None,
        "codec": _codec_info(codec, checkpoint),
        "data": _data_info(utterances, manifest, limit, speaker_prefix),
        "methods": METHODS,
        **result,
    }


def results_rows(codec: Any, manifest: str | os.PathLike, configs: Iterable[CodecSetting | Mapping[str, Any]], *,
                 limit: int | None = None, speaker_prefix: str | None = None, checkpoint: str | None = None,
                 progress: Progress = None) -> list[dict[str, Any]]:
    """Evaluate each setting of `configs` on `manifest`'s utterances; one row per setting.

    A row is `label`, `setting` (scheduler, threshold, target frame_rate, num_quantizers), the mean figures
    (`frame_rate` reached, `bitrate_bps`, `wer`, `wer_original`, `stoi`, `pesq`, `mcd`, `similarity`, ...), `codec`
    and `data` (what it ran on) and `command`: the `flexitts eval codec` command that prints the same figures
    (`checkpoint` is only written into it; None means the bundled demo codec).
    """
    from flexitts.benchmarks.codec import load_utterances

    settings = [CodecSetting.of(c).check(codec.config.max_quantizers) for c in configs]
    if not settings:
        raise ConfigError("results_rows needs at least one codec setting")
    utterances = load_utterances(manifest, limit=limit, speaker_prefix=speaker_prefix, sample_rate=codec.sample_rate)
    evaluator = CodecEvaluator(codec, utterances)
    data = _data_info(utterances, manifest, limit, speaker_prefix)
    info = _codec_info(codec, checkpoint)
    rows = []
    for setting in settings:
        result = evaluator.evaluate(setting, progress)
        rows.append({"label": setting.label(), "setting": result["setting"], **result["mean"],
                     "command": eval_command(setting, manifest, checkpoint, limit, speaker_prefix),
                     "codec": info, "data": data})
    return rows


# ---------------------------------------------------------------- markdown


TABLE_HEADER = [
    "| setting | frame rate (Hz) | bitrate (bps) | WER ↓ | GT WER | STOI ↑ | PESQ ↑ | MCD (dB) ↓ | SIM ↑ | PER ↓ | code PER ↓ |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def table_row(label: str, mean: Mapping[str, Any], extra: str | None = None) -> str:
    """One row of the Table-5-style table (`extra`: one more cell, e.g. the command)."""
    cells = [label, cell(mean["frame_rate"], 2), cell(mean["bitrate_bps"], 0), cell(mean["wer"]),
             cell(mean["wer_original"]), cell(mean["stoi"]), cell(mean["pesq"], 2), cell(mean["mcd"], 2),
             cell(mean["similarity"]), cell(mean.get("per")), cell(mean.get("code_per"))]
    if extra is not None:
        cells.append(extra)
    return "| " + " | ".join(cells) + " |"


def _methods_lines() -> list[str]:
    return [f"- {name}: {text}" for name, text in METHODS.items()]


def render_codec_markdown(result: Mapping[str, Any]) -> str:
    """The markdown report of `evaluate_codec`: the summary row, then one row per utterance."""
    c, d, s = result["codec"], result["data"], result["setting"]
    lines = [
        "# Codec evaluation", "",
        f"Codec {c['fingerprint']} ({c['parameters']:,} parameters, up to {c['max_quantizers']} quantizers), "
        f"checkpoint `{c['checkpoint']}`.",
        f"Data: {d['utterances']} utterances, {d['seconds']:.1f} s"
        + (f" from `{d['manifest']}`" if d.get("manifest") else "") + f"; speakers {', '.join(d['speakers'])}.",
        f"Setting: {s['label']} ({s['num_quantizers']} quantizers"
        + (f", tau {s['default_threshold']:g}" if s.get("default_threshold") is not None else "") + ").",
    ]
    if result.get("command"):
        lines.append(f"Reproduce: `{result['command']}`")
    lines += ["", *TABLE_HEADER, table_row(s["label"], result["mean"]), "", *_methods_lines(), "",
              "## Per utterance", "",
              "| id | speaker | s | tokens | Hz | WER | GT WER | STOI | PESQ | MCD | SIM | hypothesis |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for i in result["per_utterance"]:
        hyp = (i["hypothesis"] or "").replace("|", "/") if i["hypothesis"] is not None else "-"
        lines.append(f"| {i['id']} | {i['speaker']} | {i['seconds']:.2f} | {i['tokens']} | {i['frame_rate']:.2f} | "
                     f"{cell(i['wer'])} | {cell(i['wer_original'])} | {cell(i['stoi'])} | {cell(i['pesq'], 2)} | "
                     f"{cell(i['mcd'], 2)} | {cell(i['similarity'])} | {hyp} |")
    return "\n".join(lines) + "\n"


def render_results_page(rows: Sequence[Mapping[str, Any]], commands: Sequence[str] | None = None, *,
                        title: str = "Codec results", intro: str | None = None) -> str:
    """A markdown page: the Table-5-style table with, in each row, the command that reproduces it."""
    if not rows:
        raise DataError("a results page needs at least one row")
    commands = [r["command"] for r in rows] if commands is None else list(commands)
    if len(commands) != len(rows):
        raise DataError(f"{len(rows)} rows but {len(commands)} commands")
    lines = [f"# {title}", ""]
    if intro:
        lines += [intro, ""]
    first = rows[0]
    if "codec" in first and "data" in first:
        c, d = first["codec"], first["data"]
        lines += [f"Codec {c['fingerprint']} ({c['parameters']:,} parameters), checkpoint `{c['checkpoint']}`; "
                  f"{d['utterances']} utterances ({d['seconds']:.1f} s) from `{d['manifest']}`"
                  + (f", speakers `{d['speaker_prefix']}*`" if d.get("speaker_prefix") else "")
                  + ". Every row is the summary line that the command beside it prints (same data, same codec; "
                    "encoding, decoding and scoring are deterministic, so reruns on this machine give these "
                    "numbers).", ""]
    header = TABLE_HEADER[0] + " command |"
    lines += [header, TABLE_HEADER[1] + "---|"]
    lines += [table_row(r["label"], r, f"`{cmd}`") for r, cmd in zip(rows, commands)]
    quantizers = sorted({str(r["setting"]["num_quantizers"]) for r in rows if r.get("setting")})
    lines += ["", "Frame rate: average tokens per second reached; bitrate: content + duration bits at that rate"
              + (f" with {', '.join(quantizers)} quantizers per token." if quantizers else "."), "",
              *_methods_lines(), ""]
    return "\n".join(lines)


def write_results_page(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
                       commands: Sequence[str] | None = None, **kwargs: Any) -> Path:
    """Write `render_results_page(rows, commands, ...)` to `path` atomically; returns the path."""
    from flexitts.fileio import write_text_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, render_results_page(rows, commands, **kwargs))
    return path


def write_outputs(out: str | os.PathLike, payload: Any, markdown: str) -> tuple[Path, Path]:
    """`OUT.json` and `OUT.md` (".json" / ".md" on `out` are stripped), each written atomically."""
    from flexitts.benchmarks.codec import report_paths
    from flexitts.fileio import write_json_atomic, write_text_atomic

    json_path, md_path = report_paths(out)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(json_path, payload)
    write_text_atomic(md_path, markdown)
    return json_path, md_path
