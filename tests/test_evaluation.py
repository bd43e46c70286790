"""The evaluators on known cases (WER, STOI, PESQ, MCD, log-mel distance, speaker similarity) and
`flexitts eval codec` end to end on a tiny codec that the tests build and save."""
from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from flexitts.audio import load_audio
from flexitts.cli.main import main
from flexitts.evaluation import metrics
from flexitts.evaluation.wer import normalize_for_wer, word_error_rate

DATA = Path(__file__).parent / "data"
SPEAKER_A1 = DATA / "1089-134686-0030.flac"  # LibriSpeech speaker 1089
SPEAKER_A2 = DATA / "1089-134686-0032.flac"  # the same speaker
SPEAKER_B = DATA / "7176_92135_000004_000000.wav"  # LibriTTS speaker 7176 (24 kHz)
TEXTS = {SPEAKER_A1.name: "Beware of making that mistake.",
         SPEAKER_B.name: "But even the unsuccessful dramatist has his moments."}


def speech(path: Path) -> torch.Tensor:
    wav, _ = load_audio(path, target_rate=16000)
    return wav


def with_noise(wav: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    noise = torch.from_numpy(np.random.default_rng(seed).standard_normal(wav.shape[-1])).float()
    scale = wav.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt() / 10 ** (snr_db / 20)
    return wav + scale * noise


# ---------------------------------------------------------------- WER
def test_wer_known_cases():
    text = "He is called, as you know, the Apostle of the Indies!"
    assert word_error_rate([text], [text]) == 0.0
    assert word_error_rate([text], ["he is called as you know the apostle of the indies"]) == 0.0  # normalised
    # one substitution in six words
    assert word_error_rate(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(1 / 6, abs=1e-12)
    # one substitution + one deletion over four words; corpus level: (2 + 1) / (4 + 2) edits per word
    assert word_error_rate(["a b c d"], ["a x c"]) == pytest.approx(0.5, abs=1e-12)
    assert word_error_rate(["a b c d", "e f"], ["a x c", "e f g"]) == pytest.approx(3 / 6, abs=1e-12)
    assert normalize_for_wer("It's 2 o'clock, Dr. Smith.") == "it's two o'clock dr smith"
    with pytest.raises(ValueError):
        word_error_rate(["a"], ["a", "b"])


# ---------------------------------------------------------------- signal metrics
def test_identical_audio_is_perfect():
    wav = speech(SPEAKER_A1)
    assert metrics.stoi(wav, wav) == pytest.approx(1.0, abs=1e-6)
    pesq = metrics.pesq_wb(wav, wav)
    assert pesq == pytest.approx(4.644, abs=1e-3) and pesq == pytest.approx(metrics.PESQ_MAX_WB, abs=1e-6)
    assert metrics.mel_cepstral_distortion(wav, wav) == 0.0
    assert metrics.log_mel_distance(wav, wav) == 0.0
    # numpy input and a sample of length slack give the same answers (the common length is compared)
    padded = torch.cat([wav, torch.zeros(7)])
    assert metrics.mel_cepstral_distortion(wav.numpy(), padded) == 0.0
    assert metrics.stoi(wav.numpy(), padded) == pytest.approx(1.0, abs=1e-6)


def test_metrics_degrade_with_noise():
    wav = speech(SPEAKER_A1)
    rows = []
    for snr in (30.0, 15.0, 5.0):
        noisy = with_noise(wav, snr)
        rows.append((metrics.mel_cepstral_distortion(wav, noisy), metrics.log_mel_distance(wav, noisy),
                     metrics.stoi(wav, noisy), metrics.pesq_wb(wav, noisy)))
    mcd, mel, stoi, pesq = (list(column) for column in zip(*rows))
    assert 0 < mcd[0] < mcd[1] < mcd[2], mcd
    assert 0 < mel[0] < mel[1] < mel[2], mel
    assert 1.0 > stoi[0] > stoi[1] > stoi[2], stoi
    assert metrics.PESQ_MAX_WB > pesq[0] > pesq[1] > pesq[2] >= 1.0, pesq
    # c0 (overall level) is left out of MCD: a gain change costs almost nothing there, ln 2 per mel bin here
    half = 0.5 * wav
    assert metrics.mel_cepstral_distortion(wav, half) < 0.1
    assert metrics.log_mel_distance(wav, half) == pytest.approx(math.log(2), abs=0.02)
    assert metrics.MCD_CONSTANT == pytest.approx(10 * math.sqrt(2) / math.log(10))


def test_metric_edge_cases():
    silence = torch.zeros(16000)
    assert metrics.pesq_wb(silence, silence) is None  # PESQ finds no speech: no score, no exception
    with pytest.raises(ValueError, match="empty"):
        metrics.mel_cepstral_distortion(torch.zeros(0), torch.zeros(10))
    # other rates are resampled to 16 kHz for wideband PESQ
    wav24, rate = load_audio(SPEAKER_B)
    assert rate == 24000 and metrics.pesq_wb(wav24, wav24, rate) == pytest.approx(metrics.PESQ_MAX_WB, abs=1e-3)


def test_speaker_similarity_same_above_different():
    from flexitts.evaluation.similarity import SpeakerSimilarity

    sim = SpeakerSimilarity()
    a1, a2, b = speech(SPEAKER_A1), speech(SPEAKER_A2), speech(SPEAKER_B)
    same, different = sim.score(a1, 16000, a2, 16000), sim.score(a1, 16000, b, 16000)
    assert sim.score(a1, 16000, a1, 16000) == pytest.approx(1.0, abs=1e-5)
    assert same > different + 0.1, (same, different)
    assert sim.score(a2, 16000, b, 16000) < same


# ---------------------------------------------------------------- flexitts eval codec
@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory) -> Path:
    from flexitts.benchmarks.codec import torch_threads
    from tests.test_codec_cli import save_tiny_codec

    folder = tmp_path_factory.mktemp("codec") / "tiny"
    with torch_threads(1):
        save_tiny_codec(folder)
    return folder


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Two short utterances of two speakers (one at 24 kHz), with their transcripts."""
    folder = tmp_path_factory.mktemp("data")
    lines = []
    for index, (path, speaker) in enumerate([(SPEAKER_A1, "s1089"), (SPEAKER_B, "s7176")]):
        data, rate = sf.read(path, dtype="float32")
        name = f"u{index}.wav"
        sf.write(folder / name, data, rate)
        lines.append(json.dumps({"audio": name, "text": TEXTS[path.name], "speaker": speaker, "id": f"u{index}"}))
    (folder / "test.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "test.jsonl"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


MEAN_KEYS = {"frame_rate", "tokens", "bitrate_bps", "content_bitrate_bps", "wer", "wer_original", "wer_ratio",
             "stoi", "pesq", "pesq_scored", "mcd", "mel_distance", "similarity", "per", "code_per"}
HEADER = ("| setting | frame rate (Hz) | bitrate (bps) | WER ↓ | GT WER | STOI ↑ | PESQ ↑ | MCD (dB) ↓ | SIM ↑ | PER ↓ "
          "| code PER ↓ |")
SCORES = ("frame_rate", "bitrate_bps", "wer", "wer_original", "stoi", "pesq", "mcd", "mel_distance", "similarity")


def test_eval_codec_end_to_end(capsys, tmp_path, codec_dir, manifest):
    from codec import FlexiCodec

    out = tmp_path / "reports" / "codec_eval"
    code, stdout, err = run_cli(capsys, "eval", "codec", "--manifest", manifest, "--checkpoint", codec_dir,
                                "--frame-rate", "8.3", "--scheduler", "dp", "--out", out)
    assert code == 0, err
    result = json.loads((tmp_path / "reports" / "codec_eval.json").read_text())
    markdown = (tmp_path / "reports" / "codec_eval.md").read_text()
    assert stdout == markdown + "\n"
    assert {"evaluation", "command", "codec", "data", "methods", "setting", "mean", "per_utterance"} <= set(result)
    codec = FlexiCodec.from_pretrained(codec_dir)
    assert result["codec"]["fingerprint"] == codec.config.fingerprint()
    assert result["setting"]["scheduler"] == "dp" and result["setting"]["frame_rate"] == 8.3
    assert result["setting"]["num_quantizers"] == codec.config.max_quantizers
    assert result["data"]["utterances"] == 2 and result["data"]["speakers"] == ["s1089", "s7176"]
    mean = result["mean"]
    assert MEAN_KEYS <= set(mean)
    # dp makes exactly round(seconds * rate) tokens per utterance
    assert abs(mean["frame_rate"] - 8.3) < 0.3
    assert mean["bitrate_bps"] == pytest.approx(codec.bitrate(codec.config.max_quantizers, mean["frame_rate"]))
    assert 0 < mean["content_bitrate_bps"] < mean["bitrate_bps"]
    assert mean["wer"] >= 0 and 0 <= mean["wer_original"] <= 0.25  # pocketsphinx reads the real recordings well
    assert -0.5 <= mean["stoi"] <= 1 and mean["mcd"] > 0 and mean["mel_distance"] > 0
    assert mean["pesq"] is None or 1.0 <= mean["pesq"] <= metrics.PESQ_MAX_WB
    assert -1 <= mean["similarity"] <= 1
    # The tiny codec's recogniser (random) reads phones from the original, the decoded audio and the codes.
    assert mean["per"] >= 0 and mean["code_per"] >= 0
    assert all(isinstance(i["phones_codes"], str) for i in result["per_utterance"])
    assert len(result["per_utterance"]) == 2
    for item in result["per_utterance"]:
        assert {"id", "hypothesis", "hypothesis_original", "wer", "wer_original", "stoi", "pesq", "mcd",
                "similarity", "tokens", "frame_rate"} <= set(item)
        assert abs(item["tokens"] - item["seconds"] * 8.3) <= 1
    assert result["per_utterance"][0]["hypothesis_original"] == "beware of making that mistake"
    # the markdown has the Table-5-style table with this setting's row, and the command that reproduces it
    assert HEADER in markdown
    assert f"| dp, 8.3 Hz target | {mean['frame_rate']:.2f} | {mean['bitrate_bps']:.0f} | {mean['wer']:.3f} |" \
        in markdown
    assert result["command"] in markdown and shlex.split(result["command"])[:3] == ["flexitts", "eval", "codec"]
    assert "## Per utterance" in markdown and "| u0 | s1089 |" in markdown
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["codec_eval.json", "codec_eval.md"]


def test_results_table_rows_are_reproduced_by_their_commands(capsys, tmp_path, codec_dir, manifest):
    from codec import FlexiCodec
    from flexitts.evaluation.codec_eval import write_results_page

    code, stdout, err = run_cli(capsys, "eval", "codec", "--manifest", manifest, "--checkpoint", codec_dir,
                                "--limit", "1", "--table", "results", "--out", tmp_path / "results")
    assert code == 0, err
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    page = (tmp_path / "results.md").read_text()
    assert stdout == page + "\n"
    assert [(r["setting"]["scheduler"], r["setting"]["frame_rate"]) for r in rows] == [
        ("threshold", 12.5), ("threshold", 8.3), ("threshold", 6.25), ("dp", 8.3), ("entropy", 8.3)]
    assert rows[0]["frame_rate"] > rows[1]["frame_rate"] > rows[2]["frame_rate"]
    codec = FlexiCodec.from_pretrained(codec_dir)
    assert HEADER + " command |" in page
    for row in rows:
        assert f"`{row['command']}` |" in page and "--limit 1" in row["command"]
        assert row["bitrate_bps"] == pytest.approx(codec.bitrate(codec.config.max_quantizers, row["frame_rate"]))
        assert row["wer_original"] == rows[0]["wer_original"]  # the same recordings under every setting
    assert page.count("\n| ") == 1 + len(rows)  # header + one line per row (the separator starts with "|-")

    # The command written beside the dp row prints the same numbers (not just similar ones).
    dp = rows[3]
    argv = shlex.split(dp["command"])
    assert argv[:3] == ["flexitts", "eval", "codec"]
    code, stdout, err = run_cli(capsys, *argv[1:], "--out", tmp_path / "dp")
    assert code == 0, err
    single = json.loads((tmp_path / "dp.json").read_text())
    assert single["command"] == dp["command"]
    for key in SCORES:
        assert single["mean"][key] == dp[key], key
    line = next(line for line in page.splitlines() if line.startswith("| dp, 8.3 Hz target |"))
    assert line.rsplit(" | `", 1)[0] + " |" in stdout

    # write_results_page: any rows, commands given explicitly
    path = write_results_page(tmp_path / "docs" / "results.md", rows[:1], ["my command"], title="Demo results",
                              intro="Measured by the tests.")
    text = path.read_text()
    assert text.startswith("# Demo results\n\nMeasured by the tests.") and "`my command` |" in text
    with pytest.raises(Exception, match="1 rows but 2 commands"):
        write_results_page(tmp_path / "x.md", rows[:1], ["a", "b"])


@pytest.mark.parametrize("argv, message", [
    (["--limit", "0"], "--limit"),
    (["--table", "results", "--frame-rate", "8.3"], "--table results"),
    (["--scheduler", "entropy", "--threshold", "0.9"], "entropy"),
    (["--frame-rate", "-1"], "frame-rate"),
    (["--num-quantizers", "9"], "1..4"),
])
def test_eval_codec_bad_input(capsys, tmp_path, codec_dir, manifest, argv, message):
    code, out, err = run_cli(capsys, "eval", "codec", "--manifest", manifest, "--checkpoint", codec_dir,
                             "--out", tmp_path / "r", *argv)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "r.json").exists()


def test_whisper_recognizer_plumbing(tmp_path):
    """`--recognizer whisper:PATH` loads an openai-whisper checkpoint from disk (a random tiny one the test
    saves) and transcribes with it; unknown specs are one-line errors."""
    pytest.importorskip("whisper")
    from whisper.model import ModelDimensions, Whisper

    from flexitts.errors import ConfigError
    from flexitts.evaluation.wer import PocketsphinxRecognizer, WhisperRecognizer, make_recognizer

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2, n_audio_layer=1,
                           n_vocab=51864, n_text_ctx=16, n_text_state=16, n_text_head=2, n_text_layer=1)
    model = Whisper(dims)
    torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, tmp_path / "tiny.pt")
    recognizer = make_recognizer(f"whisper:{tmp_path / 'tiny.pt'}")
    assert isinstance(recognizer, WhisperRecognizer)
    noise = 0.01 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    text = recognizer.transcribe(noise, 16000)
    assert isinstance(text, str) and text == recognizer.transcribe(noise, 16000)  # greedy decoding repeats
    assert isinstance(make_recognizer(None), PocketsphinxRecognizer)
    with pytest.raises(ConfigError):
        make_recognizer("kaldi")
