"""`flexitts.TTS` and `flexitts synthesize` on a bundle of tiny random models that the test writes.

Random weights say nothing about quality; these tests pin the pipeline's contract: lengths and rates
agree with the generated durations, seeds reproduce, streaming equals one-shot synthesis, references
are handled in any format, and bad input fails with one line and no output file.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from flexitts.errors import AudioError, CheckpointError, ConfigError, DataError, TextError

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from tests.tiny_bundle import build_tiny_bundle

    return build_tiny_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def tts(bundle):
    from flexitts import TTS

    return TTS.from_pretrained(bundle, device="cpu")


REF_TEXT = "Chapter one, the beginning."


def test_lengths_rates_and_info(tts, real_speech_16k):
    wav, rate, info = tts.synthesize("Hello world, this is a test.", real_speech_16k, ref_text=REF_TEXT,
                                     merging_threshold=0.9, seed=3, steps=2)
    assert rate == 16000 and wav.dtype == np.float32 and np.isfinite(wav).all()
    assert len(info.chunks) == 1 and len(wav) == int(info.durations.sum()) * 1280
    assert len(info.codes) == len(info.durations) and info.durations.min() >= 1
    assert info.frame_rate == pytest.approx(len(info.codes) * 12.5 / info.durations.sum())
    assert info.reference_phonemes_from == "text" and "h" in "".join(info.phonemes)
    assert set(info.timings) >= {"reference", "text", "ar", "nar", "vocoder", "total"} and info.rtf > 0


def test_seed_reproduces_and_stream_equals_one_shot(tts, real_speech_16k):
    text = "First sentence here. And then a second one follows. A third closes it."
    options = dict(ref_text=REF_TEXT, seed=7, steps=2, chunk_seconds=1.5)
    a, _, info = tts.synthesize(text, real_speech_16k, **options)
    b, _, _ = tts.synthesize(text, real_speech_16k, **options)
    assert len(info.chunks) >= 2 and np.array_equal(a, b)
    pieces = list(tts.synthesize_stream(text, real_speech_16k, **options))
    assert pieces[-1][1] is not None and all(p[1] is None for p in pieces[:-1])
    assert len(pieces) == len(info.chunks) + 1
    np.testing.assert_allclose(np.concatenate([p[0] for p in pieces]), a, atol=1e-4)
    c, _, _ = tts.synthesize(text, real_speech_16k, **{**options, "seed": 8})
    assert not np.array_equal(a[: min(len(a), len(c))], c[: min(len(a), len(c))])


def test_reference_any_format_and_asr_path(tts, real_speech_16k, tmp_path):
    speech, rate = sf.read(real_speech_16k, dtype="float32")
    stereo_44k = tmp_path / "ref.flac"
    import torchaudio

    resampled = torchaudio.functional.resample(torch.from_numpy(speech), rate, 44100).numpy()
    sf.write(stereo_44k, np.stack([resampled, resampled * 0.5], axis=1), 44100)
    _, _, info = tts.synthesize("Say this.", stereo_44k, seed=0, steps=1)
    assert info.reference_phonemes_from == "asr" and info.reference_phonemes
    _, _, info = tts.synthesize("Say this.", speech, ref_sample_rate=rate, ref_text=REF_TEXT, seed=0, steps=1,
                                max_reference_seconds=1.0)
    # A clipped reference no longer matches its transcript: the recogniser supplies the phonemes.
    assert info.reference_clipped and info.reference_seconds <= 1.0 and info.reference_phonemes_from == "asr"


def test_speed_and_frame_rate(tts, real_speech_16k):
    # At 4 tokens/s most tokens last several frames, so halving them is not held back by the 1-frame minimum.
    # One candidate: the draw this seed gives (the tiny bundle's random scorer would pick among 8 arbitrarily).
    slow = dict(ref_text=REF_TEXT, seed=1, steps=1, frame_rate=4.0, candidates=1)
    _, _, info = tts.synthesize("A short sentence to say.", real_speech_16k, **slow)
    fast, _, fast_info = tts.synthesize("A short sentence to say.", real_speech_16k, speed=2.0, **slow)
    assert np.array_equal(fast_info.durations, info.durations)  # speed acts after the AR
    assert len(fast) < 0.65 * int(info.durations.sum()) * 1280
    # The pace is that of the audio rendered: the same text and reference, about half the seconds.
    assert fast_info.reference_pace_seconds == pytest.approx(info.reference_pace_seconds)
    assert fast_info.pace_ratio < 0.65 * info.pace_ratio
    with pytest.raises(ConfigError):
        tts.synthesize("Hi there.", real_speech_16k, merging_threshold=0.9, frame_rate=8.0)
    # No setting = the pipeline's default token rate (the same default as the CLI and the web demo).
    from flexitts.pipeline.sampling_defaults import DEFAULT_FRAME_RATE

    info = tts.synthesize("A short sentence to say.", real_speech_16k, ref_text=REF_TEXT, seed=1, steps=1)[2]
    explicit = tts.synthesize("A short sentence to say.", real_speech_16k, ref_text=REF_TEXT, seed=1, steps=1,
                              frame_rate=DEFAULT_FRAME_RATE)[2]
    assert np.array_equal(explicit.codes, info.codes) and np.array_equal(explicit.durations, info.durations)
    other = tts.synthesize("A short sentence to say.", real_speech_16k, ref_text=REF_TEXT, seed=1, steps=1,
                           merging_threshold=1.0)[2]
    assert other.frame_rate == pytest.approx(12.5) and info.frame_rate < 12.0


def test_candidates_render_the_best_scored_draw(tts, real_speech_16k, monkeypatch):
    """With k AR candidates the chunk renders the draw of lowest content score; candidate j is the draw a
    one-candidate run makes with seed + j * CANDIDATE_SEED_STRIDE. (The tiny bundle's random recogniser scores
    every draw alike, so a scorer with fixed scores stands in for it here; tests/test_rerank.py checks the real
    scorer on the demo bundle.)"""
    import torch

    from flexitts.tts import CANDIDATE_SEED_STRIDE

    seen = []

    class FixedScores:
        def score(self, codes, durations, phones):
            seen.append([c.tolist() for c in codes])
            return torch.tensor([2.0, 0.5, 1.0])

    options = dict(ref_text=REF_TEXT, seed=11, steps=1)
    with monkeypatch.context() as patch:
        patch.setattr(tts, "_content_scorer", lambda: FixedScores())
        _, _, info = tts.synthesize("A short sentence to say.", real_speech_16k, candidates=3, **options)
    chunk = info.chunks[0]
    assert chunk.candidate == 1 and chunk.candidate_scores == [2.0, 0.5, 1.0]
    assert len({tuple(c) for c in seen[0]}) == 3  # three different draws were scored
    for j in range(3):
        alone = tts.synthesize("A short sentence to say.", real_speech_16k, candidates=1,
                               **{**options, "seed": 11 + j * CANDIDATE_SEED_STRIDE})[2].chunks[0]
        assert alone.candidate_scores == [] and alone.codes.tolist() == seen[0][j]
    assert chunk.codes.tolist() == seen[0][1]
    # The real scorer runs on the bundle and scores each draw.
    real = tts.synthesize("A short sentence to say.", real_speech_16k, candidates=2, **options)[2].chunks[0]
    assert len(real.candidate_scores) == 2 and all(np.isfinite(real.candidate_scores))
    with pytest.raises(ConfigError):
        tts.synthesize("Hi there.", real_speech_16k, candidates=0)


def test_text_guidance_option(tts, real_speech_16k):
    options = dict(ref_text=REF_TEXT, seed=2, steps=1)
    a = tts.synthesize("A short sentence to say.", real_speech_16k, text_cfg=1.0, **options)[2]
    b = tts.synthesize("A short sentence to say.", real_speech_16k, text_cfg=1.0, **options)[2]
    plain = tts.synthesize("A short sentence to say.", real_speech_16k, **options)[2]
    assert np.array_equal(a.codes, b.codes) and not np.array_equal(a.codes, plain.codes)
    with pytest.raises(ConfigError):
        tts.synthesize("Hi there.", real_speech_16k, text_cfg=-0.5)


def test_bad_input(tts, real_speech_16k, tmp_path):
    with pytest.raises(AudioError):
        tts.synthesize("Hello.", tmp_path / "missing.wav")
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(AudioError, match="silent"):
        tts.synthesize("Hello.", tmp_path / "silent.wav")
    for text in ("", "   ", "\U0001F600\U0001F389"):
        with pytest.raises(TextError):
            tts.synthesize(text, real_speech_16k, ref_text=REF_TEXT)
    with pytest.raises(CheckpointError):
        from flexitts import TTS

        TTS.from_pretrained(tmp_path / "no-such-bundle")


def test_cli_writes_speech_and_fails_cleanly(bundle, real_speech_16k, tmp_path, capsys):
    from flexitts.cli.main import main

    out = tmp_path / "out.wav"
    assert main(["synthesize", "--text", "Hello there.", "--ref", str(real_speech_16k), "--ref-text", REF_TEXT,
                 "--out", str(out), "--checkpoint", str(bundle), "--seed", "0", "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    data, rate = sf.read(out)
    assert rate == 16000 and len(data) > 1280 and "tokens/s" in printed and str(out) in printed
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF....not audio")
    cases = [
        ["--text", "Hello.", "--ref", str(tmp_path / "missing.wav")],
        ["--text", "Hello.", "--ref", str(tmp_path / "corrupt.wav")],
        ["--text", "", "--ref", str(real_speech_16k)],
        ["--text", "\U0001F600", "--ref", str(real_speech_16k)],
    ]
    for k, case in enumerate(cases):
        target = tmp_path / f"bad{k}.wav"
        assert main(["synthesize", *case, "--out", str(target), "--checkpoint", str(bundle)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("flexitts: error:") and not target.exists()
    assert main(["synthesize", "--text", "Hi.", "--ref", str(real_speech_16k), "--out", str(tmp_path / "no" / "x.wav"),
                 "--checkpoint", str(bundle)]) == 2
    assert main(["synthesize", "--text", "Hi.", "--ref", str(real_speech_16k), "--out", str(tmp_path / "y.wav"),
                 "--checkpoint", str(tmp_path / "nothing")]) == 2
    assert not (tmp_path / "no").exists() and not (tmp_path / "y.wav").exists()


def test_demo_bundle_speaks_through_the_cli(tmp_path, capsys):
    """`flexitts synthesize` with the shipped demo bundle (the `make demo` path): speech-length audio that is not
    silence and carries the text: the bundle's recogniser reads nearly the same phones from it as from the
    sentence spoken by the reference's corpus voice directly, and far from those of another sentence."""
    from codec.asr import CTCPhoneRecognizer
    from flexitts.benchmarks.pipeline import bundled_voice
    from flexitts.cli.main import main
    from flexitts.evaluation.phones import PhoneReader, phone_error_rate
    from flexitts.evaluation.tts_eval import _direct_speaker, _speak

    voice, voice_text = bundled_voice("mb-us1")
    text, other = "The garden was full of yellow flowers.", "Please bring me a cup of hot coffee."
    out = tmp_path / "demo.wav"
    assert main(["synthesize", "--text", text, "--ref", str(voice), "--ref-text", voice_text, "--out", str(out),
                 "--seed", "0"]) == 0
    assert str(out) in capsys.readouterr().out
    wav, rate = sf.read(out, dtype="float32")
    assert 1.2 < len(wav) / rate < 4.5  # about 2.5 s when spoken directly
    frames = wav[: len(wav) // 1280 * 1280].reshape(-1, 1280)  # 80 ms frames
    loud = np.sqrt((frames ** 2).mean(axis=1)) > 0.1 * np.abs(wav).max()
    assert np.sqrt((wav ** 2).mean()) > 0.01 and loud.mean() > 0.4  # sound over most of it, not silence
    reader, speaker = PhoneReader(CTCPhoneRecognizer.from_pretrained().float()), _direct_speaker("mb-us1")
    said = reader.read(wav, rate)
    to_text = phone_error_rate([reader.read(_speak(speaker, text, rate), rate)], [said])
    to_other = phone_error_rate([reader.read(_speak(speaker, other, rate), rate)], [said])
    assert to_text < 0.5 and to_other > to_text + 0.2


def test_demo_bundle_keeps_the_reference_pace_with_match_pace():
    """At a low token rate the demo AR's longer durations slow the speech down; `match_pace` packs more phones into
    each token instead, so the speech keeps the reference's pace (`info.pace_ratio` near 1) at the same rate."""
    from flexitts import TTS
    from flexitts.benchmarks.pipeline import bundled_voice

    tts = TTS.from_pretrained()
    voice, voice_text = bundled_voice("mb-us1")
    text = "The garden was full of yellow flowers, and the children played there every afternoon."
    for seed in (0, 1):
        runs = {paced: tts.synthesize(text, str(voice), voice_text, seed=seed, frame_rate=6.25, candidates=1,
                                      match_pace=paced)[2] for paced in (False, True)}
        assert runs[False].pace_ratio > 1.3 and 0.85 < runs[True].pace_ratio < 1.15
        assert all(5.9 < info.frame_rate < 7.0 for info in runs.values())  # the asked rate either way
        assert runs[True].reference_pace_seconds == pytest.approx(runs[False].reference_pace_seconds)


def test_cli_passes_sampling_defaults_and_match_rate(monkeypatch, tmp_path, capsys):
    """The CLI hands TTS the shared defaults, and --match-rate's names map onto `match_rate`'s values."""
    from types import SimpleNamespace

    from flexitts.cli.main import main
    from flexitts.pipeline.sampling_defaults import (DEFAULT_CFG_UNTIL, DEFAULT_DURATION_TOP_K, DEFAULT_MATCH_PACE,
                                                     DEFAULT_MATCH_RATE)
    from flexitts.tts import TTS

    calls = []

    class Recorder:
        def synthesize(self, text, ref, **options):
            calls.append(options)
            return np.full(16000, 0.1, dtype=np.float32), 16000, SimpleNamespace(frame_rate=8.0, rtf=0.1, seed=0, pace_ratio=1.0)

    monkeypatch.setattr(TTS, "from_pretrained", classmethod(lambda cls, *a, **k: Recorder()))
    base = ["synthesize", "--text", "Hi.", "--ref", "ref.wav", "--out", str(tmp_path / "x.wav")]
    for extra in ([], ["--match-rate", "off"], ["--match-rate", "linear"], ["--match-rate", "log"], ["--match-pace"]):
        assert main([*base, *extra]) == 0
    assert calls[0]["match_rate"] == DEFAULT_MATCH_RATE and calls[0]["duration_top_k"] == DEFAULT_DURATION_TOP_K
    assert calls[0]["frame_rate"] is None and calls[0]["merging_threshold"] is None  # TTS applies its default rate
    assert calls[0]["cfg_until"] == DEFAULT_CFG_UNTIL
    assert [c["match_rate"] for c in calls[1:4]] == [False, "linear", "log"]
    assert calls[0]["match_pace"] == DEFAULT_MATCH_PACE and calls[4]["match_pace"] is True
    with pytest.raises(SystemExit):
        main([*base, "--match-rate", "cubic"])
    assert "invalid choice" in capsys.readouterr().err


def test_eval_tts_same_speaker(tts, real_speech_16k, tmp_path):
    from flexitts.data.manifest import Utterance, write_manifest
    from flexitts.evaluation.tts_eval import evaluate_tts, pick_references, render_tts_markdown

    speech, rate = sf.read(real_speech_16k, dtype="float32")
    rows = []
    for i, (speaker, text) in enumerate([("a", "One two three four."), ("a", "Five six seven eight."), ("b", "Nine ten."), ("b", "Eleven twelve.")]):
        sf.write(tmp_path / f"{i}.wav", speech[i * 3000 : i * 3000 + 24000], rate)
        rows.append(Utterance(f"{i}.wav", text, speaker, 1.5))
    write_manifest(tmp_path / "m.jsonl", rows)
    refs = pick_references(rows, rows)
    assert [r.audio for r in refs] == ["1.wav", "0.wav", "3.wav", "2.wav"]
    result = evaluate_tts(tts, tmp_path / "m.jsonl", limit=2, options={"steps": 1})
    assert result["utterances"] == 2 and result["original_wer"] >= 0 and result["wer"] >= 0
    assert -1 <= result["similarity"] <= 1 and result["original_similarity"] > result["similarity"]
    assert result["tokens_per_second"] > 0 and "| WER |" in render_tts_markdown(result)
    # The bundle's recogniser reads phones from the outputs and the originals (random ones: a random tiny model).
    assert result["per"] >= 0 and all(isinstance(i["original_phones"], str) for i in result["items"])
    assert "direct_wer" not in result and "direct_length_ratio" not in result
    originals = sum(i["original_seconds"] for i in result["items"])
    assert result["length_ratio"] == pytest.approx(sum(i["seconds"] for i in result["items"]) / originals)
    # The report records every setting in effect: the defaults, the options over them, the rate resolved.
    from flexitts.pipeline.sampling_defaults import DEFAULT_FRAME_RATE, DEFAULT_MATCH_RATE

    settings = result["settings"]
    assert settings["steps"] == 1 and settings["match_rate"] == DEFAULT_MATCH_RATE and "seed" not in settings
    assert settings["frame_rate"] == DEFAULT_FRAME_RATE and settings["merging_threshold"] is None
    # `offset` moves the window over the sentences: the next one, and its header says so.
    further = evaluate_tts(tts, tmp_path / "m.jsonl", limit=1, offset=2, options={"steps": 1})
    assert [i["audio"] for i in further["items"]] == ["2.wav"] and "after the first 2" in render_tts_markdown(further)
    with pytest.raises(DataError, match="offset"):
        evaluate_tts(tts, tmp_path / "m.jsonl", limit=1, offset=-1)


def test_eval_tts_direct_voice_baseline(tts, real_speech_16k, tmp_path):
    """`direct_voice` scores the sentences as spoken by that corpus voice through espeak-ng: the WER baseline
    of "the same sentences spoken by that voice directly"."""
    from flexitts.data.manifest import Utterance, write_manifest
    from flexitts.evaluation.tts_eval import evaluate_tts, render_tts_markdown
    from flexitts.evaluation.wer import word_error_rate

    speech, rate = sf.read(real_speech_16k, dtype="float32")
    sf.write(tmp_path / "0.wav", speech[:24000], rate)
    write_manifest(tmp_path / "m.jsonl", [Utterance("0.wav", "We were just waiting for someone to take the lead.", "a", 1.5)])
    with pytest.raises(DataError, match="direct-voice"):
        evaluate_tts(tts, tmp_path / "m.jsonl", ref_strategy="fixed", ref=str(real_speech_16k), direct_voice="mb-zz9")
    result = evaluate_tts(tts, tmp_path / "m.jsonl", ref_strategy="fixed", ref=str(real_speech_16k),
                          options={"steps": 1}, direct_voice="mb-us1")
    item = result["items"][0]
    assert result["direct_voice"] == "mb-us1"
    assert result["direct_wer"] == word_error_rate([item["text"]], [item["direct_hypothesis"]])
    # espeak-ng's clear diphone speech is mostly recognised; the random tiny bundle's output is not.
    assert result["direct_wer"] < 0.2 and "waiting" in item["direct_hypothesis"]
    expected_ratio = result["wer"] / result["direct_wer"] if result["direct_wer"] > 0 else None
    assert result["direct_wer_ratio"] == (pytest.approx(expected_ratio) if expected_ratio else None)
    assert "spoken directly by the corpus voice mb-us1" in render_tts_markdown(result)
    # The pace against the voice's own: the output's seconds over those of the sentence spoken directly.
    assert 1.5 < item["direct_seconds"] < 5.0  # about 2.5 s
    assert result["direct_length_ratio"] == pytest.approx(item["seconds"] / item["direct_seconds"])
    assert f"{result['direct_length_ratio']:.2f}x as long as the voice" in render_tts_markdown(result)


def test_nar_precision_choice(bundle, real_speech_16k):
    import torch

    from flexitts import TTS
    from flexitts.errors import ConfigError
    from flexitts.pipeline.precision import autocast, has_fast_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if has_fast_bf16(cpu) else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError):
        resolve_precision("fp8", cpu)
    with autocast("bf16", cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast("fp32", cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    # Both precisions synthesise the same length of audio; bf16 stays close to fp32.
    runs = {}
    for precision in ("fp32", "bf16"):
        tts = TTS.from_pretrained(bundle, device="cpu", precision=precision)
        assert tts.precision == precision
        wav, _, info = tts.synthesize("One two three.", real_speech_16k, ref_text=REF_TEXT, seed=0, steps=2)
        runs[precision] = wav
    a, b = runs["fp32"], runs["bf16"]
    assert a.shape == b.shape and b.dtype == a.dtype
    assert float(abs(a - b).mean()) < 0.1 * float(abs(a).mean()) + 1e-4


def test_phone_pointer_ar_gets_the_reference_phone_onsets(tts, real_speech_16k):
    import dataclasses

    from ar import ARConfig, ARModel
    from ar.pointer import spoken_positions
    from codec.common.pretrained import init_state_for
    from flexitts import TTS
    from flexitts.data.phone_alignment import pointer_skip_symbols
    from flexitts.pipeline.sampling_defaults import DEFAULT_PHONE_CFG

    symbols = list(tts.ar.config.symbols)
    config = ARConfig(**{**dataclasses.asdict(tts.ar.config), "phone_pointer": True,
                         "pointer_skip": pointer_skip_symbols(symbols)})
    ar = ARModel(config)
    ar.load_state_dict(init_state_for(ar, tts.ar.state_dict(), "the tiny AR"))
    from nar import Voicebox

    nar = Voicebox(dataclasses.replace(tts.nar.config, num_phones=len(symbols), code_encoder_layers=1))
    nar.load_state_dict(init_state_for(nar, tts.nar.state_dict(), "the tiny NAR"))
    with torch.no_grad():  # make the phones matter
        nar.phone_embed.proj.weight.normal_(std=0.5)
    pointed = TTS(tts.codec, ar, nar, tts.vocoder, tts.asr, device="cpu")
    seen = {}
    original = nar.sample

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    nar.sample = spy
    for ref_text in (REF_TEXT, None):  # from the transcript, and from the recogniser
        prompt = pointed.encode_reference(real_speech_16k, ref_text, frame_rate=8.3)
        phones = spoken_positions(prompt.phoneme_ids, symbols, config.pointer_skip)
        assert prompt.onsets is not None and len(prompt.onsets) == len(phones) > 0
        assert np.all(np.diff(prompt.onsets) > 0) and prompt.onsets[-1] <= int(prompt.durations.sum()) + 1
    wav, _, info = pointed.synthesize("Hello there.", real_speech_16k, ref_text=REF_TEXT, seed=1, steps=1, candidates=2)
    assert len(wav) > 0 and len(info.codes) >= 1
    # The NAR got the new speech's phones where the AR's pointer started them, and the reference's.
    phones, prompt_phones = seen["phones"], seen["prompt_phones"]
    assert phones.shape == (1, 2 * int(info.durations.sum())) and prompt_phones.shape[1] == 2 * int(prompt.durations.sum())
    said = torch.unique_consecutive(phones[0][phones[0] > 0]).tolist()
    text_phones = [i for i in pointed.table.encode(info.phonemes) if i in set(said)]
    assert said and set(said) <= set(text_phones)
    assert seen["phone_cfg"] == DEFAULT_PHONE_CFG
    guided, _, _ = pointed.synthesize("Hello there.", real_speech_16k, ref_text=REF_TEXT, seed=1, steps=1, candidates=2,
                                      phone_cfg=DEFAULT_PHONE_CFG + 2.0)
    assert seen["phone_cfg"] == DEFAULT_PHONE_CFG + 2.0 and len(guided) == len(wav) and not np.allclose(guided, wav)
    assert tts.encode_reference(real_speech_16k, REF_TEXT).onsets is None  # no pointer, no alignment work


def test_eval_tts_options_parse_as_json_and_are_checked(capsys):
    from flexitts.cli.eval import parse_options
    from flexitts.cli.main import main
    from flexitts.tts import synthesis_options

    known = synthesis_options()
    assert {"duration_temperature", "pace", "candidates", "steps"} <= set(known) and "streaming" not in known
    parsed = parse_options(["duration_temperature=0.7", "pace=[0.9, 1.1]", "match_rate=false"], known)
    assert parsed == {"duration_temperature": 0.7, "pace": [0.9, 1.1], "match_rate": False}
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        parse_options(["duration_temperature"], known)
    # An unknown option is refused before any model loads: one line, exit status 2.
    assert main(["eval", "tts", "--manifest", "missing.jsonl", "--option", "durations=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "durations is not a synthesis option" in err
