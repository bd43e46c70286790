"""The offline evaluation tools that `make setup` installs work together: pocketsphinx, resemblyzer."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from flexitts.audio import load_audio
from flexitts.evaluation.wer import PocketsphinxRecognizer, word_error_rate
from tests.conftest import DATA


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_pocketsphinx_understands_an_mbrola_voice():
    from flexitts.corpus.synth import synthesize
    from flexitts.corpus.voices import Speaker, resolve_voice

    text = "If you want to make god laugh, tell him about your plans for tomorrow."
    wav = synthesize(Speaker("mb-us2", resolve_voice("mb-us2"), rate=150), text)
    recognizer = PocketsphinxRecognizer()
    hypothesis = recognizer.transcribe(wav, 16000)
    assert word_error_rate([text], [hypothesis]) <= 0.35, hypothesis
    # Silence gives no words, not a crash.
    assert recognizer.transcribe(np.zeros(16000, np.float32), 16000).strip() == ""


def test_resemblyzer_tells_speakers_apart():
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder(device="cpu", verbose=False)

    def embed(name: str) -> np.ndarray:
        wav, rate = load_audio(DATA / name, target_rate=16000)
        return encoder.embed_utterance(preprocess_wav(wav.numpy(), source_sr=rate))

    a1, a2 = embed("1089-134686-0030.flac"), embed("1089-134686-0032.flac")
    b = embed("7176_92135_000004_000000.wav")
    assert float(np.linalg.norm(a1)) == pytest.approx(1.0, abs=1e-4)
    same, different = float(a1 @ a2), float(a1 @ b)
    assert same > different + 0.1, (same, different)
