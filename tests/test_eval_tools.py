"""The offline evaluation tools that `make setup` installs work together: pocketsphinx, resemblyzer."""
from __future__ import annotations

import shutil
from pathlib import Path

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



def test_phone_error_rate_and_reader():
    import torch

    from codec.asr.ctc_model import CTCPhoneRecognizer
    from flexitts.audio import resample
    from flexitts.evaluation.phones import PhoneReader, phone_error_rate

    assert phone_error_rate(["1 2 3 4"], ["1 2 3 4"]) == 0.0
    assert phone_error_rate(["1 2 3 4", "5 6"], ["1 2 9 4", "5 6"]) == pytest.approx(1 / 6)
    assert phone_error_rate(["1 2"], [""]) == 1.0  # nothing read: every phone lost
    assert np.isnan(phone_error_rate([""], ["1"]))  # no reference phones: undefined
    # The bundled recogniser on real speech: its reading is stable across sample rates, and noise destroys it.
    reader = PhoneReader(CTCPhoneRecognizer.from_pretrained(Path(__file__).parent.parent / "flexitts/assets/demo/asr").float())
    wav, rate = load_audio(DATA / "7176_92135_000004_000000.wav")
    at16 = resample(wav, rate, 16000)
    phones = reader.read(at16.numpy(), 16000)
    assert len(phones.split()) >= 10
    assert phone_error_rate([phones], [reader.read(wav.numpy(), rate)]) < 0.2
    noise = torch.randn(at16.shape, generator=torch.Generator().manual_seed(0)) * 0.3
    assert phone_error_rate([phones], [reader.read(noise.numpy(), 16000)]) > 0.6
