"""`flexitts codec encode|decode`, token files (`codec.tokens_file`) and `flexitts bench codec`, on a tiny codec
that the tests build and save themselves (with its CTC feature extractor saved beside it)."""
from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec import CodecTokens, FlexiCodec, FlexiCodecConfig
from codec.asr.ctc_model import CTCPhoneRecognizer, CTCRecognizerConfig
from codec.tokens_file import FORMAT_VERSION, TokenFileError, load_tokens, save_tokens
from flexitts.cli.main import main

SPEECH_16K = Path(__file__).parent / "data" / "1089-134686-0030.flac"
SPEECH_24K = Path(__file__).parent / "data" / "7176_92135_000004_000000.wav"



def tiny_config(**overrides) -> FlexiCodecConfig:
    values = dict(
        asr="ctc:asr", asr_dim=32, encoder_channels=4, encoder_max_channels=32, encoder_dilations=[1], latent_dim=32,
        aggregator_dim=32, aggregator_layers=1, aggregator_heads=2, aggregator_ffn=64,
        semantic_dim=32, semantic_layers=1, semantic_ffn=64, num_codebooks=3, codebook_size=64,
        decoder_dim=32, decoder_layers=1, decoder_heads=2, decoder_ffn=64,
        vocos_dim=48, vocos_ffn=96, vocos_layers=2, mel_windows=[256, 1024], mel_bins=[20, 64],
    )
    values.update(overrides)
    return FlexiCodecConfig.demo(**values)


def save_tiny_codec(folder: Path, **overrides) -> FlexiCodec:
    """A tiny codec saved with `save_pretrained`, its feature extractor in `folder/asr` (config asr="ctc:asr")."""
    torch.manual_seed(0)
    asr = CTCPhoneRecognizer(CTCRecognizerConfig(symbols=["<pad>", "a", "b"], dim=32, num_layers=1, num_heads=2,
                                                 ffn_dim=64, dropout=0.0)).eval()
    model = FlexiCodec(tiny_config(**overrides), asr_extractor=asr).eval()
    model.save_pretrained(folder)
    asr.save_pretrained(folder / "asr")
    return model


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("codec") / "tiny"
    save_tiny_codec(folder)
    return folder


@pytest.fixture(scope="module")
def codec(codec_dir) -> FlexiCodec:
    return FlexiCodec.from_pretrained(codec_dir)


@pytest.fixture(scope="module")
def foreign_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("foreign") / "other"
    save_tiny_codec(folder, codebook_size=32)  # another layout: another fingerprint
    return folder


@pytest.fixture
def stereo_24k(tmp_path) -> tuple[Path, int]:
    """1.5 s of real speech written by the test as a 24 kHz stereo wav; returns (path, samples at 16 kHz)."""
    data, rate = sf.read(SPEECH_24K, dtype="float32")
    clip = data[: int(1.5 * rate)]
    path = tmp_path / "in.wav"
    sf.write(path, np.stack([clip, 0.8 * clip], axis=1), rate)
    return path, int(1.5 * 16000)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ---------------------------------------------------------------- CLI round trip
def test_encode_decode_round_trip(capsys, tmp_path, codec_dir, codec, stereo_24k):
    wav_in, samples = stereo_24k
    tokens_path, wav_out = tmp_path / "speech.npz", tmp_path / "speech_out.wav"
    code, out, err = run_cli(capsys, "codec", "encode", wav_in, "--out", tokens_path, "--checkpoint", codec_dir,
                             "--threshold", "0.95", "--num-quantizers", "3")
    assert code == 0, err
    line = out.strip()
    assert "\n" not in line and "tokens" in line and "1.50 s" in line and "Hz" in line and "bps" in line
    record = load_tokens(tokens_path, codec)
    assert record.num_quantizers == 3 and record.tokens.acoustic_codes.shape[1] == 2
    assert record.sample_rate == 16000 and record.format_version == FORMAT_VERSION
    assert record.codec_fingerprint == codec.config.fingerprint()
    assert record.meta["scheduler"] == "threshold" and record.meta["merging_threshold"] == 0.95
    assert record.meta["frame_rate"] is None and int(record.tokens.num_samples[0]) == samples
    count = int(record.tokens.num_tokens[0])
    assert f"{count} tokens" in line

    code, out, err = run_cli(capsys, "codec", "decode", tokens_path, "--out", wav_out, "--checkpoint", codec_dir)
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1 and "16000 Hz" in out
    info = sf.info(str(wav_out))
    assert info.samplerate == 16000 and info.channels == 1 and info.frames == samples
    decoded, _ = sf.read(wav_out, dtype="float32")
    assert np.isfinite(decoded).all()
    assert files_in(tmp_path) == {"in.wav", "speech.npz", "speech_out.wav"}  # no temporary files left


def test_encode_frame_rate_and_scheduler(capsys, tmp_path, codec_dir, stereo_24k):
    wav_in, samples = stereo_24k
    path = tmp_path / "dp.npz"
    code, _, err = run_cli(capsys, "codec", "encode", wav_in, "--out", path, "--checkpoint", codec_dir,
                           "--frame-rate", "6.25", "--scheduler", "dp", "--device", "cpu")
    assert code == 0, err
    record = load_tokens(path)
    frames = math.ceil(samples / 1280)
    assert int(record.tokens.num_tokens[0]) == math.floor(frames / 12.5 * 6.25 + 0.5)  # dp: exactly round(s * rate)
    assert record.meta["scheduler"] == "dp" and record.meta["frame_rate"] == 6.25
    assert record.meta["merging_threshold"] is None
    assert record.num_quantizers == 4  # all by default
    with pytest.raises(SystemExit) as exit_info:  # argparse: the two rate knobs exclude each other
        main(["codec", "encode", str(wav_in), "--out", str(path), "--threshold", "0.9", "--frame-rate", "6.25"])
    assert exit_info.value.code == 2
    capsys.readouterr()


@pytest.mark.parametrize("value", ["0", "5"])
def test_num_quantizers_bounds(capsys, tmp_path, codec_dir, stereo_24k, value):
    wav_in, _ = stereo_24k
    out_path = tmp_path / "q.npz"
    code, out, err = run_cli(capsys, "codec", "encode", wav_in, "--out", out_path, "--checkpoint", codec_dir,
                             "--num-quantizers", value)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "1..4" in err and "Traceback" not in err
    assert not out_path.exists()


def test_output_in_missing_folder_is_refused(capsys, tmp_path, codec_dir, stereo_24k):
    wav_in, _ = stereo_24k
    missing = tmp_path / "no" / "such"
    code, _, err = run_cli(capsys, "codec", "encode", wav_in, "--out", missing / "t.npz", "--checkpoint", codec_dir)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err
    assert not (tmp_path / "no").exists()
    good = tmp_path / "t.npz"
    assert run_cli(capsys, "codec", "encode", wav_in, "--out", good, "--checkpoint", codec_dir)[0] == 0
    code, _, err = run_cli(capsys, "codec", "decode", good, "--out", missing / "o.wav", "--checkpoint", codec_dir)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err
    assert not (tmp_path / "no").exists()
    assert files_in(tmp_path) == {"in.wav", "t.npz"}
    with pytest.raises(TokenFileError, match="does not exist"):  # the API refuses too
        save_tokens(missing / "t.npz", load_tokens(good).tokens, FlexiCodecConfig())


def test_missing_input_and_bad_extension(capsys, tmp_path, codec_dir):
    code, _, err = run_cli(capsys, "codec", "encode", tmp_path / "nope.wav", "--out", tmp_path / "t.npz",
                           "--checkpoint", codec_dir)
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "codec", "decode", tmp_path / "nope.npz", "--out", tmp_path / "o.wav",
                           "--checkpoint", codec_dir)
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    assert files_in(tmp_path) == set()


# ---------------------------------------------------------------- token files
def test_tokens_file_round_trip(tmp_path, codec):
    speech, _ = sf.read(SPEECH_16K, dtype="float32")
    wav = torch.zeros(2, 20_000)
    wav[0], wav[1, :12_000] = torch.from_numpy(speech[:20_000]), torch.from_numpy(speech[20_000:32_000])
    lengths = torch.tensor([20_000, 12_000])
    for nq in (1, 3):
        tokens = codec.encode(wav, 16000, num_quantizers=nq, merging_threshold=0.97, wav_lengths=lengths)
        path = save_tokens(tmp_path / f"batch{nq}.npz", tokens, codec, scheduler="threshold", merging_threshold=0.97,
                           note=np.float32(1.5))
        record = load_tokens(path, codec)
        back = record.tokens
        for name in ("semantic_codes", "token_lengths", "num_tokens", "num_samples"):
            a, b = getattr(tokens, name), getattr(back, name)
            assert a.dtype == b.dtype == torch.long and torch.equal(a, b), name
        if nq == 1:
            assert tokens.acoustic_codes is None and back.acoustic_codes is None
        else:
            assert torch.equal(tokens.acoustic_codes, back.acoustic_codes)
        assert record.num_quantizers == nq and record.meta["merging_threshold"] == 0.97 and record.meta["note"] == 1.5
        assert len(record.meta["average_frame_rate"]) == 2
        torch.testing.assert_close(codec.decode(back), codec.decode(tokens))
    # The token file is a plain npz: no pickled objects inside.
    with np.load(tmp_path / "batch3.npz", allow_pickle=False) as data:
        assert str(data["format"]) == "flexitts-codec-tokens" and int(data["format_version"]) == 1
    # a fingerprint string or a config identify the codec as well as the model does
    assert load_tokens(tmp_path / "batch3.npz", codec.config.fingerprint()).num_quantizers == 3
    assert load_tokens(tmp_path / "batch3.npz", codec.config).num_quantizers == 3


def test_foreign_token_file_is_refused(capsys, tmp_path, codec_dir, foreign_dir, codec, stereo_24k):
    wav_in, _ = stereo_24k
    foreign_tokens = tmp_path / "foreign.npz"
    assert run_cli(capsys, "codec", "encode", wav_in, "--out", foreign_tokens, "--checkpoint", foreign_dir)[0] == 0
    foreign_print = FlexiCodec.from_pretrained(foreign_dir).config.fingerprint()
    assert foreign_print != codec.config.fingerprint()
    code, out, err = run_cli(capsys, "codec", "decode", foreign_tokens, "--out", tmp_path / "o.wav",
                             "--checkpoint", codec_dir)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert foreign_print in err and codec.config.fingerprint() in err and "--checkpoint" in err
    assert not (tmp_path / "o.wav").exists()
    with pytest.raises(TokenFileError, match="fingerprint"):
        load_tokens(foreign_tokens, codec)
    # the codec that wrote it decodes it
    code, _, err = run_cli(capsys, "codec", "decode", foreign_tokens, "--out", tmp_path / "o.wav",
                           "--checkpoint", foreign_dir)
    assert code == 0, err


def test_corrupt_and_foreign_formats_are_refused(capsys, tmp_path, codec_dir, codec):
    speech, _ = sf.read(SPEECH_16K, dtype="float32")
    good = save_tokens(tmp_path / "good.npz", codec.encode(speech[:16_000], 16000), codec)
    raw = good.read_bytes()
    cases = {
        "truncated.npz": raw[: len(raw) // 2],
        "text.npz": b"this is not a zip archive\n",
        "empty.npz": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    np.savez(tmp_path / "other.npz", x=np.arange(3))  # an npz from another tool
    np.save(tmp_path / "array.npy", np.arange(3))
    with np.load(good) as data:  # a complete header, but codes stored as pickled objects (never unpickled)
        arrays = {k: data[k] for k in data.files}
    np.savez(tmp_path / "pickled.npz", **{**arrays, "semantic_codes": arrays["semantic_codes"].astype(object)})
    # A damaged member: flip bytes inside the stored data of a valid archive (its CRC no longer matches).
    damaged = bytearray(raw)
    with zipfile.ZipFile(good) as archive:
        entry = archive.getinfo("semantic_codes.npy")
    start = entry.header_offset + 30 + len(entry.filename) + 80
    damaged[start : start + 8] = bytes(8)
    (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
    bad = [*cases, "other.npz", "array.npy", "pickled.npz", "damaged.npz"]
    for name in bad:
        with pytest.raises(TokenFileError) as error:
            load_tokens(tmp_path / name, codec)
        assert "\n" not in str(error.value) and name in str(error.value)
    # Through the CLI: one line, exit status 2, no output file.
    for name in ("truncated.npz", "other.npz", "damaged.npz"):
        code, out, err = run_cli(capsys, "codec", "decode", tmp_path / name, "--out", tmp_path / "o.wav",
                                 "--checkpoint", codec_dir)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, name
    assert not (tmp_path / "o.wav").exists()
    # Codes out of this codec's range are refused too (a hand-edited file).
    tokens = load_tokens(good).tokens
    big = CodecTokens(tokens.semantic_codes, tokens.acoustic_codes + 1000, tokens.token_lengths, tokens.num_tokens,
                      tokens.num_samples)
    save_tokens(tmp_path / "range.npz", big, codec.config.fingerprint())
    with pytest.raises(TokenFileError, match="does not fit"):
        load_tokens(tmp_path / "range.npz", codec)


# ---------------------------------------------------------------- benchmark
def test_codec_benchmark(tmp_path, codec):
    from flexitts.benchmarks.codec import BenchUtterance, run_codec_benchmark

    speech, _ = sf.read(SPEECH_16K, dtype="float32")
    # Short clips and a small grid: pocketsphinx runs at about half real time on this CPU.
    utterances = [BenchUtterance("a", torch.from_numpy(speech[:14_000].copy()), "for a long time", "s1"),
                  BenchUtterance("b", torch.from_numpy(speech[19_200:32_000].copy()), "he had wished", "s2")]
    result = run_codec_benchmark(codec, utterances, tmp_path / "reports" / "codec_bench", frame_rates=(12.5, 6.25),
                                 quantizers=(1, 8), threads=1, info={"checkpoint": "tiny"})
    json_path, md_path = tmp_path / "reports" / "codec_bench.json", tmp_path / "reports" / "codec_bench.md"
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(result))
    assert md_path.read_text().startswith("# Codec benchmark")
    assert {"codec", "settings", "host", "data", "speed", "memory", "quality", "checks", "per_utterance"} <= set(result)
    assert result["host"]["torch_threads"] == 1 and result["data"]["utterances"] == 2
    assert result["settings"]["quantizers"] == [1, 4]  # 8 is capped at the tiny codec's maximum
    assert result["codec"]["fingerprint"] == codec.config.fingerprint()
    assert [s["target_hz"] for s in result["speed"]] == [12.5, 6.25]
    for s in result["speed"]:
        assert s["encode_rtf"] > 0 and s["decode_rtf"] > 0
    assert abs(result["speed"][0]["average_hz"] - 12.5) < 0.5 and result["speed"][1]["average_hz"] < 9
    assert len(result["quality"]) == 4
    for row in result["quality"]:
        assert -1.0 <= row["stoi"] <= 1.0 and row["mel_distance"] >= 0 and row["decode_rtf"] > 0
        assert row["bitrate_bps"] > 0
        assert row["pesq_wb"] is None or -0.5 <= row["pesq_wb"] <= 4.7
        scored = row["num_quantizers"] == 4 or row["target_hz"] == 12.5  # the default "cross" WER grid
        assert (row["wer"] is not None) == scored
        if scored:
            assert row["wer"] >= 0 and row["wer_original"] >= 0
    memory = result["memory"]
    assert memory["process_peak_rss_mb"] > 0 and memory["method"]
    if memory["encode_peak_delta_mb"] is not None:
        assert memory["encode_peak_delta_mb"] >= 0 and memory["decode_peak_delta_mb"] >= 0
    assert {c["name"].split(" (")[0] for c in result["checks"]} >= {"STOI", "WER"}
    # The bar is at 12.5 Hz; 6.25 Hz figures are reported without a verdict.
    for check in result["checks"]:
        if "6.25 Hz" in check["name"]:
            assert check["pass"] is None and check["limit"].startswith("reported")
        else:
            assert isinstance(check["pass"], bool)
    assert "| reported |" in md_path.read_text()


def test_bench_codec_cli(capsys, tmp_path, codec_dir):
    manifest = tmp_path / "m.jsonl"
    sf.write(tmp_path / "u.wav", sf.read(SPEECH_16K, dtype="float32")[0][:16_000], 16000)
    manifest.write_text(json.dumps({"audio": "u.wav", "text": "for a long time", "speaker": "x"}) + "\n")
    code, out, err = run_cli(capsys, "bench", "codec", "--checkpoint", codec_dir, "--manifest", manifest,
                             "--out", tmp_path / "bench", "--frame-rates", "12.5", "--quantizers", "1", "4",
                             "--threads", "1", "--no-wer", "--no-pesq")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1 and "RTF" in out
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["settings"]["wer"] is False and report["settings"]["manifest"] == str(manifest)
    assert [r["num_quantizers"] for r in report["quality"]] == [1, 4]
    assert (tmp_path / "bench.md").is_file()
    code, _, err = run_cli(capsys, "bench", "codec", "--checkpoint", codec_dir, "--manifest", tmp_path / "none.jsonl",
                           "--out", tmp_path / "bench2")
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "bench2.json").exists()
