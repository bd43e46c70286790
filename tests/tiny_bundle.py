"""A TTS bundle of tiny random models (asr, codec, ar, nar, vocoder) and a tiny manifest, written by tests.

Random weights say nothing about quality; they let the pipeline, the evaluation and the benchmarks run end to
end in seconds on one CPU thread. Used by `tests/test_tts.py` and `tests/test_benchmarks.py`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"
FSQ = [4, 4, 4]
# Transcripts of the bundled test audio (tests/data/README.md).
SPEECH = {
    "1089-134686-0030.flac": "Beware of making that mistake.",
    "1089-134686-0032.flac": "He is called as you know the apostle of the Indies.",
    "7176_92135_000004_000000.wav": "But even the unsuccessful dramatist has his moments.",
}
REF_AUDIO = DATA / "1089-134686-0030.flac"
REF_TEXT = "Chapter one, the beginning."
EOS_BIAS = 3.0


def build_tiny_bundle(root: str | os.PathLike) -> Path:
    """Write `asr/`, `codec/`, `ar/`, `nar/` and `vocoder/` of tiny random models into `root`; return it."""
    from ar import ARModel
    from codec.asr.ctc_model import CTCPhoneRecognizer, CTCRecognizerConfig
    from flexitts.text import PhonemeTable
    from nar import Voicebox
    from nar.mel import MelConfig
    from nar.vocoder import Vocoder
    from tests.test_ar_model import tiny_config as ar_config
    from tests.test_codec_model import tiny_codec
    from tests.test_nar import tiny_config as nar_config
    from tests.test_vocoder import tiny_config as vocoder_config

    root = Path(root)
    symbols = list(PhonemeTable.default().symbols)
    torch.manual_seed(0)
    asr = CTCPhoneRecognizer(CTCRecognizerConfig(symbols=symbols, dim=32, num_layers=1, num_heads=2, ffn_dim=64, dropout=0.0))
    asr.save_pretrained(root / "asr")
    codec = tiny_codec(fsq_levels=FSQ)
    codec.save_pretrained(root / "codec")
    ar = ARModel(ar_config(symbols=symbols, codebook_size=64, fsq_levels=FSQ))
    with torch.no_grad():  # favour EOS: a random model then stops soon after its minimum length, not at its maximum
        proj = ar.code_head.proj
        (proj[-1] if isinstance(proj, torch.nn.Sequential) else proj).bias[ar.config.eos_id] = EOS_BIAS
    ar.save_pretrained(root / "ar")
    mel = MelConfig(n_mels=20)
    Voicebox(nar_config(mel=mel, codebook_size=64, fsq_levels=FSQ)).save_pretrained(root / "nar")
    Vocoder(vocoder_config(mel=mel)).save_pretrained(root / "vocoder")
    return root


def write_tiny_manifest(root: str | os.PathLike) -> Path:
    """A manifest of the bundled test audio: two utterances of speaker `mb-a` (so each can prompt the other),
    one of `mb-b` (no other utterance: unusable where a same-speaker prompt is needed) and one of a formant
    voice `en-us` (left out by the `mb-` filter). Returns the manifest's path."""
    from flexitts.data.manifest import Utterance, write_manifest

    root = Path(root)
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    rows = []
    for speaker, name in (("mb-a", "1089-134686-0030.flac"), ("mb-a", "1089-134686-0032.flac"),
                          ("mb-b", "7176_92135_000004_000000.wav"), ("en-us", "1089-134686-0030.flac")):
        target = root / "wavs" / f"{speaker}-{name}"
        shutil.copyfile(DATA / name, target)
        rows.append(Utterance(f"wavs/{target.name}", SPEECH[name], speaker, None, {"id": f"{speaker}-{Path(name).stem}"}))
    path = root / "test.jsonl"
    write_manifest(path, rows)
    return path
