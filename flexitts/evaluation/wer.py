"""Word error rate with offline recognisers.

Normalisation follows DESIGN.md: lower-case, punctuation removed, whitespace collapsed. pocketsphinx's
English model ships inside its wheel, so WER works offline; it is usable on mbrola voices, not on espeak's
formant voices.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from flexitts.errors import ConfigError, DependencyError

_PUNCT = re.compile(r"[^\w\s']|_")


def normalize_for_wer(text: str) -> str:
    """Numbers spelled out, lower-case, accents and punctuation stripped (in-word apostrophes kept), single spaces."""
    from flexitts.text.numbers import spell_numbers

    text = unicodedata.normalize("NFKD", spell_numbers(text))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = _PUNCT.sub(" ", text)
    text = re.sub(r"(^|\s)'+|'+(\s|$)", " ", text)  # quotes, not apostrophes
    return " ".join(text.split())


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus-level WER (total edits / total reference words) after `normalize_for_wer`."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalize_for_wer(r) for r in references]
    hyps = [normalize_for_wer(h) for h in hypotheses]
    keep = [i for i, r in enumerate(refs) if r]  # an empty reference has no defined WER
    if not keep:
        raise ValueError("every reference is empty after normalisation")
    return float(jiwer.wer([refs[i] for i in keep], [hyps[i] for i in keep]))


@dataclass
class PocketsphinxRecognizer:
    """Offline English recogniser (pocketsphinx's bundled en-us model). Input: 16 kHz mono `[T]`."""

    sample_rate: int = 16000
    _decoder: object = field(default=None, init=False, repr=False)

    def _get_decoder(self):
        if self._decoder is None:
            try:
                from pocketsphinx import Decoder
            except ImportError:
                raise DependencyError("pocketsphinx is not installed: run `make setup` or `pip install flexitts[eval]`") from None
            # Dither (with a fixed seed, for repeatable results) helps on synthetic speech with digital silence.
            self._decoder = Decoder(samprate=self.sample_rate, loglevel="FATAL", dither=True, seed=1)
        return self._decoder

    def transcribe(self, wav: torch.Tensor | np.ndarray, sample_rate: int) -> str:
        """Transcribe one waveform `[T]` (any rate; resampled to 16 kHz)."""
        from flexitts.audio import resample

        wav = torch.as_tensor(wav, dtype=torch.float32).reshape(-1)
        wav = resample(wav, sample_rate, self.sample_rate)
        pcm = (wav.clamp(-1, 1) * 32767).round().to(torch.int16).numpy()
        decoder = self._get_decoder()
        # Reseed the dither and reset the cepstral-mean estimate: without it a transcript depends on the
        # utterances recognised before it.
        decoder.reinit_feat()
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


@dataclass
class WhisperRecognizer:
    """openai-whisper transcription from a checkpoint on disk (an official `.pt`, a path or cached-path URI);
    greedy decoding in English, float32 (for CPUs). Input: any rate, mono `[T]`."""

    checkpoint: str
    device: str = "cpu"
    _model: object = field(default=None, init=False, repr=False)

    def _get_model(self):
        if self._model is None:
            try:
                import whisper
            except ImportError:
                raise DependencyError("openai-whisper is not installed: run `make setup`") from None
            from flexitts.checkpoints import resolve_checkpoint

            path = resolve_checkpoint(self.checkpoint, what="whisper checkpoint")
            self._model = whisper.load_model(str(path), device=self.device)
        return self._model

    def transcribe(self, wav: torch.Tensor | np.ndarray, sample_rate: int) -> str:
        from flexitts.audio import resample

        audio = resample(torch.as_tensor(wav, dtype=torch.float32).reshape(-1), sample_rate, 16000).numpy()
        result = self._get_model().transcribe(audio, language="en", fp16=False, temperature=0.0,
                                              condition_on_previous_text=False, verbose=None)
        return str(result["text"]).strip()


def make_recognizer(spec: str | None = None) -> PocketsphinxRecognizer | WhisperRecognizer:
    """`None` / "pocketsphinx": the offline pocketsphinx recogniser; "whisper:PATH_OR_URI": openai-whisper."""
    if spec in (None, "", "pocketsphinx"):
        return PocketsphinxRecognizer()
    if spec.startswith("whisper:") and len(spec) > len("whisper:"):
        return WhisperRecognizer(spec[len("whisper:"):])
    raise ConfigError(f"recogniser '{spec}' is not known: use pocketsphinx or whisper:PATH_TO_CHECKPOINT.pt")
