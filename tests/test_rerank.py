"""`flexitts.pipeline.rerank.ContentScorer` with the demo bundle's models, in both readings (the NAR's prior mel
through the vocoder, and the codes alone): the codes of real speech explain their own transcript's phones better
than another sentence's, the score is per phone, and a candidate too short for its phones scores +inf."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

DEMO = Path(__file__).parent.parent / "flexitts" / "assets" / "demo"
DATA = Path(__file__).parent / "data"
TEXTS = {
    "1089-134686-0030.flac": "Beware of making that mistake.",
    "1089-134686-0032.flac": "He is called as you know the apostle of the Indies.",
    "7176_92135_000004_000000.wav": "But even the unsuccessful dramatist has his moments.",
}


@pytest.fixture(scope="module", params=["prior", "codes"])
def scorer_and_tokens(request):
    from codec import FlexiCodec
    from codec.asr.ctc_model import CTCPhoneRecognizer
    from flexitts.audio import load_audio
    from flexitts.pipeline.rerank import ContentScorer
    from flexitts.text import PhonemeTable, phonemize, phones_only
    from nar import Voicebox
    from nar.vocoder import Vocoder

    torch.set_num_threads(1)
    asr = CTCPhoneRecognizer.from_pretrained(DEMO / "asr").float().eval()
    codec = FlexiCodec.from_pretrained(DEMO / "codec").float().eval()
    codec.set_asr_extractor(asr)
    table = PhonemeTable.default()
    tokens, phones = [], []
    for name, text in TEXTS.items():
        wav, rate = load_audio(DATA / name, target_rate=16000)
        with torch.no_grad():
            tok = codec.encode(torch.as_tensor(wav), rate, num_quantizers=1, frame_rate=8.3)
        g = int(tok.num_tokens[0])
        tokens.append((tok.semantic_codes[0, :g], tok.token_lengths[0, :g]))
        phones.append(table.encode(phones_only(phonemize(text))))
    if request.param == "prior":
        scorer = ContentScorer(codec, asr, Voicebox.from_pretrained(DEMO / "nar").float().eval(),
                               Vocoder.from_pretrained(DEMO / "vocoder").float().eval())
    else:
        scorer = ContentScorer(codec, asr)
    assert scorer.reading == request.param
    return scorer, tokens, phones


def test_codes_explain_their_own_phones_best(scorer_and_tokens):
    scorer, tokens, phones = scorer_and_tokens
    n = len(tokens)
    codes = [c for c, _ in tokens for _ in range(n)]
    durations = [d for _, d in tokens for _ in range(n)]
    targets = [phones[j] for _ in range(n) for j in range(n)]
    scores = scorer.score(codes, durations, targets).view(n, n)  # [speech i, text j]
    assert torch.isfinite(scores).all()
    for i in range(n):
        assert int(scores[i].argmin()) == i, scores
    # Per phone: the same candidate scores alike however many times the batch holds it.
    again = scorer.score([tokens[0][0]] * 2, [tokens[0][1]] * 2, [phones[0]] * 2)
    assert torch.allclose(again, scores[0, 0].expand(2), rtol=1e-4)


def test_a_candidate_too_short_for_its_phones_scores_infinity(scorer_and_tokens):
    scorer, tokens, phones = scorer_and_tokens
    short_codes, short_durs = tokens[0][0][:2], torch.ones(2, dtype=torch.long)  # 2 frames for ~20 phones
    scores = scorer.score([short_codes, tokens[0][0]], [short_durs, tokens[0][1]], [phones[0], phones[0]])
    assert torch.isinf(scores[0]) and torch.isfinite(scores[1])
