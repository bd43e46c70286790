"""`flexitts.TTS`: text + reference voice -> speech, joining the codec, the AR model, the NAR and the vocoder.

    text ─ normalise, chunk, phonemise ─> phoneme ids per chunk ─┐
    reference ─ trim, clip ─ codec.encode ─> prompt codes + durations ─┤
                             ─ mel ─> prompt mel                       │
    AR (all chunks in one batch) ─> codes + durations per chunk ───────┘
    NAR (flow matching, CFG) ─> mel per chunk ─ vocoder ─> waveform ─ cross-fade ─> speech

The CLI (`flexitts synthesize`), the Gradio app and the Python API all call `TTS.synthesize` or
`TTS.synthesize_stream`; nothing here prints: progress goes to an optional callback.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from flexitts.errors import CheckpointError, ConfigError, TextError
from flexitts.pipeline.audio_join import crossfade_join
from flexitts.pipeline.precision import autocast, resolve_precision
from flexitts.pipeline.sampling_defaults import (DEFAULT_CANDIDATES, DEFAULT_DURATION_TOP_K, DEFAULT_FRAME_RATE,
                                                 DEFAULT_MATCH_PACE, DEFAULT_MATCH_RATE, DEFAULT_PACE, DEFAULT_PHONE_CFG,
                                                 DEFAULT_PHONE_CFG_UNTIL, DEFAULT_PHONE_GUIDE, DEFAULT_CFG_UNTIL,
                                                 DEFAULT_TEXT_CFG, DEFAULT_TOP_K)
from flexitts.pipeline.speed import scale_durations
from flexitts.reference import DEFAULT_MAX_REFERENCE_SECONDS, Reference, prepare_reference

MODEL_FOLDERS = ("codec", "ar", "nar", "vocoder")  # plus the optional "asr" recogniser
DEFAULT_CHUNK_SECONDS = 8.0  # about the length of the utterances the demo AR model was trained on
MAX_CHUNK_BATCH = 8  # chunks (times AR candidates) synthesised together; more would mostly grow peak memory
CANDIDATE_SEED_STRIDE = 7919  # seed offset between a chunk's AR candidates (a prime, so no two chunks share seeds)
Progress = Callable[[str, float], None]  # (stage name, fraction of the whole synthesis done)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """`device` as given, else CUDA, then Apple's MPS, then the CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class ChunkResult:
    """One text chunk's synthesis: its text and phonemes, the AR's codes and durations, and its audio.
    With several AR candidates, `candidate_scores` holds each one's content score (lower is better) and
    `candidate` the index of the one rendered."""

    text: str
    phonemes: list[str]
    codes: np.ndarray  # [G]
    durations: np.ndarray  # [G], 12.5 Hz frames per code
    audio: np.ndarray  # [S] float32
    candidate: int = 0
    candidate_scores: list[float] = field(default_factory=list)


@dataclass
class SynthesisInfo:
    """What `synthesize` did. `codes` / `durations` concatenate every chunk's; `frame_rate` is tokens per
    second of generated speech; `timings` are seconds per stage (and `total`); `rtf` = total / audio seconds."""

    codes: np.ndarray
    durations: np.ndarray
    frame_rate: float
    phonemes: list[str]
    chunks: list[ChunkResult]
    reference_phonemes: list[str]
    reference_phonemes_from: str  # "text" (ref_text) or "asr" (the recogniser)
    reference_seconds: float
    reference_clipped: bool
    timings: dict[str, float] = field(default_factory=dict)
    sample_rate: int = 16000
    seed: int = 0

    @property
    def audio_seconds(self) -> float:
        return sum(len(c.audio) for c in self.chunks) / self.sample_rate

    @property
    def rtf(self) -> float:
        return self.timings.get("total", 0.0) / max(1e-9, self.audio_seconds)

    @property
    def reference_pace_seconds(self) -> float:
        """Seconds the text's phoneme symbols would take at the reference's pace (its seconds per symbol)."""
        from ar.generate import paced_length

        return paced_length(len(self.phonemes), len(self.reference_phonemes), self.reference_seconds)

    @property
    def pace_ratio(self) -> float:
        """Seconds of audio rendered (after `speed`) over `reference_pace_seconds`: above 1, the speech is slower
        than the reference's."""
        return self.audio_seconds / max(1e-9, self.reference_pace_seconds)


@dataclass
class _Prompt:
    """A reference encoded for one merging setting (cached by the reference's content hash)."""

    codes: torch.Tensor  # [Gp]
    durations: torch.Tensor  # [Gp]
    mel: torch.Tensor  # [Fp, M]
    phoneme_ids: list[int]
    phonemes: list[str]
    phonemes_from: str
    reference: Reference
    onsets: np.ndarray | None = None  # base-frame onsets of the transcript's phones (phone-pointer AR only)


def synthesis_options() -> dict[str, Any]:
    """The keyword options `TTS.synthesize` and `TTS.synthesize_stream` take, with their defaults."""
    import inspect

    internal = {"self", "text", "ref_audio", "ref_text", "streaming"}
    return {name: p.default for name, p in inspect.signature(TTS._run).parameters.items() if name not in internal}


def token_rate_setting(merging_threshold: float | None, frame_rate: float | None) -> tuple[float | None, float | None]:
    """Check a token-rate setting -> `(merging_threshold, frame_rate)`, one of them None: neither given means
    `DEFAULT_FRAME_RATE`."""
    if merging_threshold is not None and frame_rate is not None:
        raise ConfigError("give merging_threshold or frame_rate, not both")
    if frame_rate is not None and not 1.0 <= frame_rate <= 12.5:
        raise ConfigError(f"frame_rate must be between 1 and 12.5 tokens per second, not {frame_rate}")
    if merging_threshold is not None and not 0.0 < merging_threshold <= 1.0:
        raise ConfigError(f"merging_threshold must be in (0, 1], not {merging_threshold}")
    if merging_threshold is None and frame_rate is None:
        frame_rate = DEFAULT_FRAME_RATE
    return merging_threshold, frame_rate


class TTS:
    """Zero-shot TTS on dynamic-rate tokens. Build with `TTS.from_pretrained()` (the bundled demo models)."""

    def __init__(self, codec: Any, ar: Any, nar: Any, vocoder: Any, asr: Any | None = None,
                 device: str | torch.device | None = None, precision: str = "auto"):
        from flexitts.text import PhonemeTable
        from nar.mel import MelSpectrogram

        self.device = pick_device(device)
        # NAR arithmetic: "auto" is bfloat16 where the device has it natively (flexitts.pipeline.precision).
        self.precision = resolve_precision(precision, self.device)
        self.codec, self.ar, self.nar, self.vocoder = (m.to(self.device).eval() for m in (codec, ar, nar, vocoder))
        self.asr = asr.to(self.device).eval() if asr is not None else None
        if self.asr is not None and getattr(codec.config, "asr", None) == "ctc":
            self.codec.set_asr_extractor(self.asr)
        self.table = PhonemeTable(list(ar.config.symbols))
        if nar.config.mel != vocoder.config.mel:
            raise ConfigError("the NAR model and the vocoder use different mel settings: they must come from one bundle")
        self.mel = MelSpectrogram(nar.config.mel).to(self.device)
        self.sample_rate = int(nar.config.mel.sample_rate)
        self._prompts: dict[tuple[str, str, str | None], _Prompt] = {}
        self._phone_table: torch.Tensor | None = None  # codec.code_phone_table(), on first use (cached on disk)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path_or_uri: str | os.PathLike | None = None, device: str | torch.device | None = None,
                        precision: str = "auto", **models: str | os.PathLike | None) -> "TTS":
        """Load the five models from a folder (or hf:// / https:// URI of one) holding `codec/`, `ar/`, `nar/`,
        `vocoder/` and optionally `asr/`; None loads the demo bundle shipped in the package.

        Keyword arguments named after a model (`ar=`, `nar=`, `vocoder=`, `codec=`, `asr=`) load that one from
        its own folder or URI instead, e.g. a fine-tuned AR model: `TTS.from_pretrained(ar="runs/ar_finetune/model")`.
        `precision`: the NAR's arithmetic, "auto" (bfloat16 where the device has it natively), "fp32" or "bf16".
        """
        unknown = sorted(set(models) - set(MODEL_FOLDERS) - {"asr"})
        if unknown:
            raise ConfigError(f"unknown model name(s) {unknown}: choose from {', '.join(MODEL_FOLDERS)}, asr")
        from ar import ARModel
        from codec import FlexiCodec
        from codec.asr.ctc_model import CTCPhoneRecognizer
        from codec.common.checkpoints import resolve_checkpoint
        from codec.common.pretrained import demo_bundle_dir
        from nar import Voicebox
        from nar.vocoder import Vocoder

        root = Path(demo_bundle_dir() if path_or_uri is None else resolve_checkpoint(path_or_uri, what="TTS bundle"))
        missing = [name for name in MODEL_FOLDERS if models.get(name) is None and not (root / name / "config.json").is_file()]
        if missing:
            hint = "run `make bundle` to rebuild the demo bundle" if path_or_uri is None else "give a folder holding codec/, ar/, nar/ and vocoder/"
            raise CheckpointError(f"'{root}' lacks the model folder(s) {missing}: {hint}")

        def source(name: str) -> str | os.PathLike:
            return models[name] if models.get(name) is not None else root / name  # type: ignore[return-value]

        asr = None
        if models.get("asr") is not None or (root / "asr" / "config.json").is_file():
            asr = CTCPhoneRecognizer.from_pretrained(source("asr"))
        return cls(FlexiCodec.from_pretrained(source("codec")), ARModel.from_pretrained(source("ar")),
                   Voicebox.from_pretrained(source("nar")), Vocoder.from_pretrained(source("vocoder")),
                   asr=asr, device=device, precision=precision)

    # ------------------------------------------------------------------ AR candidates
    def _content_scorer(self) -> "ContentScorer":  # noqa: F821
        from flexitts.pipeline.rerank import ContentScorer

        if self.asr is None or getattr(self.codec.config, "asr", None) != "ctc":
            raise ConfigError("candidates > 1 needs a bundle whose codec reads the CTC phone recogniser's features")
        return ContentScorer(self.codec, self.asr, self.nar, self.vocoder)

    def _phone_ids(self, symbols: list[str]) -> list[int]:
        """A chunk's phoneme symbols -> the recogniser's phone ids (phones only: what its CTC head emits)."""
        from flexitts.text import phones_only

        return self.table.encode(phones_only(symbols))

    # ------------------------------------------------------------------ reference
    def reference_phonemes(self, reference: Reference, ref_text: str | None) -> tuple[list[str], str]:
        """The reference's phoneme symbols: from `ref_text` (unless the audio was clipped, which would make the
        text wrong), else transcribed by the CTC recogniser (phones only)."""
        from flexitts.text import phonemize

        if ref_text is not None and ref_text.strip() and not reference.clipped:
            return phonemize(ref_text), "text"
        if self.asr is None:
            raise ConfigError("no reference text and no phone recogniser in this bundle: pass ref_text")
        with torch.no_grad():
            symbols = self.asr.transcribe(reference.wav[None].to(self.device))[0]
        if not symbols:
            raise TextError("no speech was recognised in the reference audio: pass ref_text or use a clearer recording")
        return symbols, "asr"

    def encode_reference(self, ref_audio: Any, ref_text: str | None = None, merging_threshold: float | None = None,
                         frame_rate: float | None = None, ref_sample_rate: int | None = None,
                         max_reference_seconds: float = DEFAULT_MAX_REFERENCE_SECONDS) -> _Prompt:
        """Prepare and encode a reference (cached by its content, the setting and its text)."""
        threshold, rate = token_rate_setting(merging_threshold, frame_rate)
        reference = prepare_reference(ref_audio, ref_sample_rate, max_reference_seconds)
        key = (reference.key, f"t{threshold}" if rate is None else f"r{rate}", ref_text)
        prompt = self._prompts.get(key)
        if prompt is None:
            with torch.no_grad():
                wav = reference.wav[None].to(self.device)
                tokens = self.codec.encode(wav, 16000, num_quantizers=1, merging_threshold=threshold, frame_rate=rate)
                mel, _ = self.mel(wav)
            g = int(tokens.num_tokens[0])
            phonemes, source = self.reference_phonemes(reference, ref_text)
            prompt = _Prompt(tokens.semantic_codes[0, :g], tokens.token_lengths[0, :g], mel[0],
                             self.table.encode(phonemes), phonemes, source, reference, self._phone_onsets(wav, phonemes))
            self._prompts[key] = prompt
            while len(self._prompts) > 16:  # a small bound: the oldest entry goes first
                self._prompts.pop(next(iter(self._prompts)), None)
        return prompt

    def _pointer_options(self, prompt: _Prompt, rows: int, weight: float) -> dict[str, Any]:
        """`generate` options of a phone-pointer AR: the reference's phone onsets and phone-guided decoding."""
        if not getattr(self.ar.config, "phone_pointer", False):
            return {}
        options: dict[str, Any] = {"prompt_onsets": [prompt.onsets] * rows} if prompt.onsets is not None else {}
        if weight < 0:
            raise ConfigError(f"phone_guide must be >= 0, not {weight}")
        if weight > 0 and self.asr is not None and getattr(self.codec.config, "asr", None) == "ctc" \
                and list(self.asr.config.symbols) == list(self.ar.config.symbols):
            if self._phone_table is None:
                from codec.phone_table_cache import cached_code_phone_table

                self._phone_table = cached_code_phone_table(self.codec)
            options.update(phone_guide=self._phone_table, phone_guide_weight=weight)
        return options

    def _phone_onsets(self, wav: torch.Tensor, phonemes: list[str]) -> np.ndarray | None:
        """Where the reference's phones start (base frames), for a phone-pointer AR: CTC forced alignment by the
        recogniser. None (the AR then spreads them evenly) without a pointer or a recogniser of the AR's table."""
        from ar.pointer import spoken_phones
        from flexitts.data.phone_alignment import phone_onsets

        config = self.ar.config
        if not getattr(config, "phone_pointer", False) or self.asr is None or list(self.asr.config.symbols) != list(config.symbols):
            return None
        phones = spoken_phones(self.table.encode(phonemes), config)  # the phones the AR counts
        return phone_onsets(self.asr, wav, torch.tensor([wav.shape[-1]], device=wav.device), [phones])[0]

    def _nar_phones(self, prompt: _Prompt, durations: list[torch.Tensor],
                    texts: list[tuple[list[int], torch.Tensor | None]] | None) -> dict[str, torch.Tensor]:
        """`Voicebox.sample`'s `phones` / `prompt_phones` for a phone-conditioned NAR: the new speech's phones placed
        where the pointer AR started them, the reference's where its alignment put them; {} otherwise."""
        from torch.nn.utils.rnn import pad_sequence

        from ar.pointer import spoken_phones
        from flexitts.data.phone_alignment import onsets_from_progress, phone_subframes

        config = self.ar.config
        if not getattr(self.nar.config, "num_phones", 0) or texts is None or any(r is None for _, r in texts) \
                or prompt.onsets is None:
            return {}
        rows = []
        for (ids, reached), d in zip(texts, durations):
            phones = spoken_phones(ids, config)
            onsets = onsets_from_progress(d.cpu(), reached.cpu())
            rows.append(torch.from_numpy(phone_subframes(phones[: len(onsets)], onsets, int(d.sum()))))
        ref = torch.from_numpy(phone_subframes(spoken_phones(prompt.phoneme_ids, config), prompt.onsets, int(prompt.durations.sum())))
        return {"phones": pad_sequence(rows, batch_first=True).to(self.device),
                "prompt_phones": ref[None].expand(len(rows), -1).to(self.device)}

    # ------------------------------------------------------------------ text
    def split_text(self, text: str, prompt: _Prompt, chunk_seconds: float = DEFAULT_CHUNK_SECONDS) -> list[str]:
        """Chunks of at most about `chunk_seconds` of speech, with the reference's speaking rate (characters per
        second of its transcript) when known."""
        from flexitts.text import DEFAULT_CHARS_PER_SECOND, has_speakable, normalize_text, split_into_chunks

        if not isinstance(text, str) or not has_speakable(text):
            raise TextError("the text has nothing speakable (empty, emoji or punctuation only): give words to say")
        chars_per_second = DEFAULT_CHARS_PER_SECOND
        if prompt.phonemes_from == "text":
            spoken = len(" ".join(prompt.phonemes))  # phoneme symbols track spoken length better than letters
            letters = max(1, round(spoken * 0.6))
            chars_per_second = min(25.0, max(8.0, letters / max(0.5, prompt.reference.seconds)))
        return split_into_chunks(normalize_text(text), max_seconds=chunk_seconds, chars_per_second=chars_per_second)

    # ------------------------------------------------------------------ synthesis
    def synthesize(self, text: str, ref_audio: Any, ref_text: str | None = None, **options: Any) -> tuple[np.ndarray, int, SynthesisInfo]:
        """Speak `text` in the voice of `ref_audio` (a path, bytes, or an array with `ref_sample_rate=`).

        Options (all keywords): merging_threshold or frame_rate (token rate; default: `DEFAULT_FRAME_RATE`, 8.1),
        temperature (1.0), top_k (5), top_p (1.0), duration_top_k (1: greedy durations, the tilted distribution's
        argmax; 8: sampled from every class),
        duration_temperature (1.0), pace ((0.8, 1.25): the new speech lasts 0.8-1.25 times what the reference's
        pace gives for its phonemes, EOS deciding inside; None: the AR's EOS alone), match_rate ("log": durations
        tilted, by their logarithm, to average 12.5 / rate frames, so the asked token rate is met; True or "linear":
        tilted by the duration itself, more of the longest tokens; False: as predicted), steps (15), cfg (2.0),
        cfg_until (`DEFAULT_CFG_UNTIL`: classifier-free guidance on the NAR steps that start before this flow time),
        rescale_cfg (0.75), sway (None), speed (1.0),
        seed (None: random, reported in info.seed), progress (callback(stage, fraction)), ref_sample_rate,
        max_reference_seconds (10), chunk_seconds (8), candidates (6: AR samples per chunk, the best content scored
        by `flexitts.pipeline.rerank` rendered; 1 = no reranking), text_cfg (0.0: AR guidance on the text),
        phone_guide (`DEFAULT_PHONE_GUIDE`: with a phone-pointer AR, the weight of phone-guided decoding, which pushes
        down codes whose own reading is not the phone due; 0 = off), phone_cfg (`DEFAULT_PHONE_CFG`: with a
        phone-conditioned NAR, the weight of phone guidance, which pulls the speech towards the text's phones where
        the codes disagree; 0 = off), phone_cfg_until (`DEFAULT_PHONE_CFG_UNTIL`: phone guidance on the NAR steps
        that start before this flow time, 0..1), match_pace (`DEFAULT_MATCH_PACE`: with a phone-pointer AR, tilt the
        phone advances to the reference's phones per frame, so the speech keeps the reference's pace at any token
        rate instead of slowing down as the rate falls).
        Returns `(wav float32 [S], sample_rate, info)`.
        """
        parts = list(self._run(text, ref_audio, ref_text, streaming=False, **options))
        info = parts[-1][1]
        return crossfade_join([c.audio for c in info.chunks], self.sample_rate), self.sample_rate, info

    def synthesize_stream(self, text: str, ref_audio: Any, ref_text: str | None = None,
                          **options: Any) -> Iterator[tuple[np.ndarray, SynthesisInfo | None]]:
        """Like `synthesize`, but yields `(audio, None)` pieces as soon as each chunk is rendered and finally
        `(last piece, info)`. Concatenated, the pieces equal `synthesize`'s waveform for the same seed (one
        joiner does the cross-fades of both; each piece holds back its fade region until the next arrives)."""
        from flexitts.pipeline.audio_join import StreamJoiner

        joiner = StreamJoiner(self.sample_rate)
        for audio, info in self._run(text, ref_audio, ref_text, streaming=True, **options):
            if info is not None:  # the end: flush what was held back for the cross-fade
                yield joiner.finish(), info
                return
            yield joiner.push(audio), None

    def _run(self, text: str, ref_audio: Any, ref_text: str | None, streaming: bool, merging_threshold: float | None = None,
             frame_rate: float | None = None, temperature: float = 1.0, top_k: int = DEFAULT_TOP_K, top_p: float = 1.0,
             duration_top_k: int = DEFAULT_DURATION_TOP_K, duration_temperature: float = 1.0,
             pace: tuple[float, float] | None = DEFAULT_PACE, match_rate: bool | str = DEFAULT_MATCH_RATE, steps: int = 15, cfg: float = 2.0,
             rescale_cfg: float = 0.75, sway: float | None = None, speed: float = 1.0, seed: int | None = None,
             progress: Progress | None = None, ref_sample_rate: int | None = None,
             max_reference_seconds: float = DEFAULT_MAX_REFERENCE_SECONDS,
             chunk_seconds: float = DEFAULT_CHUNK_SECONDS, candidates: int = DEFAULT_CANDIDATES,
             text_cfg: float = DEFAULT_TEXT_CFG,
             phone_guide: float = DEFAULT_PHONE_GUIDE,
             phone_cfg: float = DEFAULT_PHONE_CFG,
             phone_cfg_until: float = DEFAULT_PHONE_CFG_UNTIL,
             cfg_until: float = DEFAULT_CFG_UNTIL,
             match_pace: bool = DEFAULT_MATCH_PACE) -> Iterator[tuple[np.ndarray, SynthesisInfo | None]]:
        from flexitts.text import phonemize_batch

        if not 0.25 <= speed <= 4.0:
            raise ConfigError(f"speed must be between 0.25 and 4, not {speed}")
        if steps < 1:
            raise ConfigError(f"steps must be at least 1, not {steps}")
        if candidates < 1:
            raise ConfigError(f"candidates must be at least 1, not {candidates}")
        report = progress or (lambda stage, fraction: None)
        seed = int(torch.randint(0, 2**31 - 1, ()).item()) if seed is None else int(seed)
        timings: dict[str, float] = {}
        started = clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = timings.get(stage, 0.0) + now - clock
            clock = now

        # Resolved once: the AR is asked for the same rate the reference is scheduled to.
        merging_threshold, frame_rate = token_rate_setting(merging_threshold, frame_rate)
        report("reference", 0.0)
        prompt = self.encode_reference(ref_audio, ref_text, merging_threshold, frame_rate, ref_sample_rate, max_reference_seconds)
        lap("reference")
        report("text", 0.1)
        chunks = self.split_text(text, prompt, chunk_seconds)
        phonemes = phonemize_batch(chunks)
        phoneme_ids = [self.table.encode(p) for p in phonemes]
        lap("text")

        report("ar", 0.15)
        generated: list[tuple[torch.Tensor, torch.Tensor]] = []
        choices: list[tuple[int, list[float]]] = []  # per chunk: (candidate rendered, every candidate's score)
        progress_rows: list[torch.Tensor | None] = []  # per chunk: the phone pointer's progress (pointer AR only)
        per_batch = max(1, MAX_CHUNK_BATCH // candidates)
        for start in range(0, len(chunks), per_batch):
            count = min(per_batch, len(chunks) - start)  # chunks in this AR batch
            # Candidate k of chunk i draws from seed + i + k * CANDIDATE_SEED_STRIDE: candidate 0 is the draw
            # a single-candidate run makes.
            rows = [(i, k) for i in range(start, start + count) for k in range(candidates)]
            n = len(rows)
            with torch.no_grad():
                out = self.ar.generate(
                    [torch.tensor(phoneme_ids[i]) for i, _ in rows], prompt_codes=[prompt.codes] * n,
                    prompt_durations=[prompt.durations] * n, prompt_phonemes=[torch.tensor(prompt.phoneme_ids)] * n,
                    rate=frame_rate, temperature=temperature, top_k=top_k, top_p=top_p, duration_top_k=duration_top_k,
                    duration_temperature=duration_temperature, pace=pace, match_rate=match_rate,
                    match_pace=match_pace and self.ar.config.phone_pointer,
                    seed=[seed + i + k * CANDIDATE_SEED_STRIDE for i, k in rows], text_cfg=text_cfg,
                    **self._pointer_options(prompt, n, phone_guide),
                )
            drawn = out.unbatch()
            reached = [None if out.progress is None else out.progress[r, : int(out.lengths[r])] for r in range(n)]
            scores = torch.zeros(count, 0)
            if candidates > 1:
                targets = [self._phone_ids(phonemes[i]) for i in range(start, start + count)]
                scores = self._content_scorer().score(
                    [c for c, _ in drawn], [d for _, d in drawn], [targets[i - start] for i, _ in rows],
                ).view(count, candidates)
            for j in range(count):
                k = int(scores[j].argmin()) if candidates > 1 else 0
                generated.append(drawn[j * candidates + k])
                progress_rows.append(reached[j * candidates + k])
                choices.append((k, scores[j].tolist()))
        lap("ar")

        results: list[ChunkResult] = []
        groups = [[i] for i in range(len(chunks))] if streaming else [
            list(range(s, min(s + MAX_CHUNK_BATCH, len(chunks)))) for s in range(0, len(chunks), MAX_CHUNK_BATCH)]
        for group in groups:
            report("nar", 0.3 + 0.6 * group[0] / len(chunks))
            audio = self._render([generated[i] for i in group], prompt, steps, cfg, rescale_cfg, sway, speed,
                                 [seed + i for i in group], lap,
                                 [(phoneme_ids[i], progress_rows[i]) for i in group], phone_cfg, phone_cfg_until,
                                 cfg_until)
            for i, wav in zip(group, audio):
                codes, durations = generated[i]
                results.append(ChunkResult(chunks[i], phonemes[i], codes.cpu().numpy(), durations.cpu().numpy(), wav,
                                           *choices[i]))
                if streaming:
                    yield wav, None
        timings["total"] = time.perf_counter() - started
        report("done", 1.0)
        codes = np.concatenate([r.codes for r in results]) if results else np.zeros(0, np.int64)
        durations = np.concatenate([r.durations for r in results]) if results else np.zeros(0, np.int64)
        info = SynthesisInfo(
            codes=codes, durations=durations, frame_rate=float(len(codes) * 12.5 / max(1, int(durations.sum()))),
            phonemes=[s for r in results for s in r.phonemes], chunks=results,
            reference_phonemes=prompt.phonemes, reference_phonemes_from=prompt.phonemes_from,
            reference_seconds=prompt.reference.seconds, reference_clipped=prompt.reference.clipped,
            timings=timings, sample_rate=self.sample_rate, seed=seed,
        )
        yield np.zeros(0, dtype=np.float32), info

    def _render(self, items: list[tuple[torch.Tensor, torch.Tensor]], prompt: _Prompt, steps: int, cfg: float,
                rescale_cfg: float, sway: float | None, speed: float, seeds: list[int],
                lap: Callable[[str], None],
                texts: list[tuple[list[int], torch.Tensor | None]] | None = None,
                phone_cfg: float = 0.0, phone_cfg_until: float = 1.0, cfg_until: float = 1.0) -> list[np.ndarray]:
        """NAR + vocoder for a batch of generated (codes, durations): one waveform `[S_i]` per item, with
        classifier-free guidance on the steps before flow time `cfg_until`. `texts` (each item's phoneme ids and
        the pointer AR's progress) feed a phone-conditioned NAR, guided towards them with weight `phone_cfg` on the
        steps before flow time `phone_cfg_until`."""
        from torch.nn.utils.rnn import pad_sequence

        n = len(items)
        codes = pad_sequence([c for c, _ in items], batch_first=True).to(self.device)
        scaled = [scale_durations(d, speed) for _, d in items]
        durations = pad_sequence(scaled, batch_first=True).to(self.device)
        phones = self._nar_phones(prompt, scaled, texts)
        with torch.no_grad():
            with autocast(self.precision, self.device):  # the vocoder stays in float32
                mel, lengths = self.nar.sample(
                    codes, durations, prompt_mel=prompt.mel[None].expand(n, -1, -1),
                    prompt_codes=prompt.codes[None].expand(n, -1), prompt_durations=prompt.durations[None].expand(n, -1),
                    steps=steps, cfg=cfg, rescale_cfg=rescale_cfg, seed=seeds, sway=sway, **phones,
                    phone_cfg=phone_cfg, phone_cfg_until=phone_cfg_until,  # the NAR skips it without phones
                    cfg_until=cfg_until,
                )
            mel = mel.float()
            lap("nar")
            wav = self.vocoder(mel, lengths)
            lap("vocoder")
        hop = self.nar.config.mel.hop_length
        return [wav[i, : int(lengths[i]) * hop].float().cpu().numpy() for i in range(n)]
