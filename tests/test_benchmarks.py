"""`flexitts bench nar | pipeline | all` on a bundle of tiny random models (tests/tiny_bundle.py).

Random weights say nothing about quality: these tests pin what the reports contain and that their values are in
sane ranges (real-time factors positive, STOI and similarity cosines in [-1, 1], stage shares summing to one),
that the JSON is strict (no NaN), that the plots are PNG files, and that bad input fails with one line.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from flexitts.errors import DataError
from tests.tiny_bundle import REF_AUDIO, REF_TEXT, build_tiny_bundle, write_tiny_manifest

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a CPU shared with other jobs: one thread avoids synchronisation stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, one_thread) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def tts(bundle):
    from flexitts import TTS

    return TTS.from_pretrained(bundle, device="cpu")


def strict_json(path: Path) -> dict:
    """The file's JSON, refusing NaN / Infinity (which `json.dumps` would write)."""

    def refuse(constant: str):
        raise AssertionError(f"{path} holds {constant}")

    return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=refuse)


def in_unit_range(value) -> bool:
    return value is not None and math.isfinite(value) and -1.0 <= value <= 1.0


# ---------------------------------------------------------------------------------------------------- nar
def test_nar_cases_pair_each_utterance_with_a_prompt_of_its_speaker(manifest, tmp_path):
    from flexitts.benchmarks.nar import load_cases

    cases, skipped = load_cases(manifest, limit=5, speaker_prefix="mb-", prompt_seconds=3.0)
    assert skipped == 1 and len(cases) == 2  # mb-b has one utterance; en-us is filtered out
    for case in cases:
        assert case.target.speaker == case.prompt.speaker == "mb-a" and case.prompt_source != case.target.id
        n = case.prompt.wav.shape[-1]
        assert n % 1280 == 0 and 0 < n <= 3.0 * 16000  # whole 80 ms frames, about 3 s
    short, _ = load_cases(manifest, limit=1, speaker_prefix="mb-", prompt_seconds=0.5)
    assert len(short) == 1 and short[0].prompt.wav.shape[-1] == 6 * 1280
    with pytest.raises(DataError, match="speaker starting with"):
        load_cases(manifest, speaker_prefix="zz-")
    lonely = tmp_path / "lonely.jsonl"
    lonely.write_text("\n".join(line for line in Path(manifest).read_text().splitlines() if '"mb-b"' in line) + "\n")
    with pytest.raises(DataError, match="two utterances"):
        load_cases(lonely)


def test_nar_benchmark_reports_rtf_similarity_and_stoi(tts, manifest, tmp_path):
    from flexitts.benchmarks.nar import load_cases, run_nar_benchmark

    cases, _ = load_cases(manifest, limit=2, speaker_prefix="mb-")
    result = run_nar_benchmark(tts, cases, tmp_path / "nar", wer=False, threads=1)
    saved = strict_json(tmp_path / "nar.json")
    assert saved["rows"] == result["rows"] and (tmp_path / "nar.md").read_text().startswith("# NAR and vocoder")
    settings = [(r["steps"], r["cfg"], r["sway"]) for r in saved["rows"]]
    assert settings == [(8, 0.0, None), (8, 2.0, None), (15, 0.0, None), (15, 2.0, None), (32, 0.0, None),
                        (32, 2.0, None), (8, 2.0, -1.0)]
    for row in saved["rows"]:
        assert row["nar_rtf"] > 0 and row["vocoder_rtf"] > 0 and row["wer"] is None
        assert in_unit_range(row["similarity"]) and in_unit_range(row["similarity_original"])
        assert in_unit_range(row["stoi"])
        assert row["per"] >= 0  # the tiny bundle's recogniser reads phones (random ones) from every output
    copy = saved["copy_synthesis"]
    assert copy["vocoder_rtf"] > 0 and in_unit_range(copy["stoi"])
    assert saved["host"]["torch_threads"] == 1 and saved["data"]["utterances"] == 2
    utt = saved["per_utterance"][0]
    assert len(utt["rows"]) == 7 and utt["tokens"] > 0 and utt["prompt"] != utt["id"]
    assert {c["name"] for c in saved["checks"]} >= {"copy-synthesis STOI", "NAR similarity to the prompt (15 steps, cfg 2)"}


def test_nar_benchmark_gives_a_phone_nar_the_aligned_phones(tts, manifest, tmp_path):
    import dataclasses

    from flexitts import TTS
    from flexitts.benchmarks.nar import load_cases, run_nar_benchmark
    from flexitts.data.phone_alignment import code_phone_subframes
    from flexitts.errors import ConfigError
    from codec.common.pretrained import init_state_for
    from nar import Voicebox

    cases, _ = load_cases(manifest, limit=1, speaker_prefix="mb-")
    options = dict(steps=[1], cfgs=[2.0], sway_row=None, wer=False, similarity=False, threads=1)
    with pytest.raises(ConfigError, match="phone-conditioned"):
        run_nar_benchmark(tts, cases, tmp_path / "plain", phones_from="text", **options)
    nar = Voicebox(dataclasses.replace(tts.nar.config, num_phones=len(tts.table.symbols), code_encoder_layers=1))
    nar.load_state_dict(init_state_for(nar, tts.nar.state_dict(), "the tiny NAR"))
    seen = []
    original = nar.sample
    nar.sample = lambda *a, **k: seen.append(k) or original(*a, **k)
    phoned = TTS(tts.codec, tts.ar, nar, tts.vocoder, tts.asr, device="cpu")
    with pytest.raises(ConfigError, match="text, codes"):
        run_nar_benchmark(phoned, cases, tmp_path / "bad", phones_from="words", **options)
    given = {}
    for source in ("text", "codes"):
        seen.clear()
        result = run_nar_benchmark(phoned, cases, tmp_path / source, phones_from=source, **options)
        assert result["settings"]["phones_from"] == source
        assert "The NAR also gets phones" in (tmp_path / f"{source}.md").read_text()
        assert seen and all(k["phones"].shape[0] == 1 and k["phones"].shape[1] % 2 == 0 for k in seen)
        given[source] = seen[-1]["phones"][0]
    assert int((given["text"] > 0).sum()) > 0
    # From the codes: exactly the codec's own reading of the case's codes, none of the transcript.
    tok = tts.codec.encode(cases[0].target.wav, tts.codec.sample_rate, num_quantizers=1)
    g = int(tok.num_tokens[0])
    expected = code_phone_subframes(tts.codec, tok.semantic_codes[0, :g], tok.token_lengths[0, :g])
    assert given["codes"].tolist() == expected.tolist()
    assert given["codes"].shape == given["text"].shape


def test_bench_nar_cli_with_wer(bundle, manifest, tmp_path, capsys):
    from flexitts.cli.main import main

    out = tmp_path / "reports" / "nar_bench"
    assert main(["bench", "nar", "--checkpoint", str(bundle), "--manifest", str(manifest), "--limit", "1",
                 "--steps", "2", "--cfg", "2", "--no-sway", "--no-similarity", "--threads", "1",
                 "--out", str(out)]) == 0
    assert "nar_bench.json" in capsys.readouterr().out
    saved = strict_json(out.with_suffix(".json"))
    (row,) = saved["rows"]
    assert (row["steps"], row["cfg"], row["sway"]) == (2, 2.0, None) and row["similarity"] is None
    assert row["wer"] >= 0 and row["wer_original"] >= 0 and saved["copy_synthesis"]["wer"] >= 0
    assert isinstance(saved["per_utterance"][0]["hyp_original"], str)
    assert saved["settings"]["skipped_without_prompt"] == 2  # mb-b and en-us: no --speaker-prefix given
    # Bad input: one line on stderr, non-zero exit, no report.
    for case in (["--manifest", str(tmp_path / "missing.jsonl")], ["--manifest", str(manifest), "--limit", "0"],
                 ["--manifest", str(manifest), "--speaker-prefix", "zz-"]):
        target = tmp_path / "bad"
        assert main(["bench", "nar", "--checkpoint", str(bundle), *case, "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("flexitts: error:") and err.count("\n") == 1 and not target.with_suffix(".json").exists()


# ---------------------------------------------------------------------------------------------------- pipeline
def test_pipeline_benchmark_rates_shares_memory(tts, tmp_path):
    from flexitts.benchmarks.pipeline import STAGES, run_pipeline_benchmark

    result = run_pipeline_benchmark(tts, str(REF_AUDIO), REF_TEXT, tmp_path / "pipe", sentences=1, steps=2, threads=1)
    saved = strict_json(tmp_path / "pipe.json")
    assert saved["rows"] == result["rows"] and (tmp_path / "pipe.md").is_file()
    from flexitts.pipeline.sampling_defaults import DEFAULT_FRAME_RATE

    assert [r["frame_rate"] for r in saved["rows"]] == [12.5, DEFAULT_FRAME_RATE, 6.25, None]
    assert saved["rows"][-1]["merging_threshold"] == pytest.approx(tts.codec.config.default_threshold)
    assert [r["default"] for r in saved["rows"]] == [False, True, False, False]  # the checks read the default rate's row
    for row in saved["rows"]:
        assert row["rtf"] > 0 and row["audio_seconds"] > 0 and row["tokens"] > 0
        assert row["ar_steps_per_second"] > 0 and row["ar_tokens_per_second_generated"] > 0
        assert set(row["stage_share"]) == {*STAGES, "other"}
        assert sum(row["stage_share"].values()) == pytest.approx(1.0, abs=1e-6)
        assert row["stage_rtf"]["nar"] > 0 and row["stage_seconds"]["reference"] > 0  # encoded in every call
        assert row["peak_rss_mb"] is None or row["peak_rss_mb"] > 10
        assert row["pace_ratio"] == pytest.approx(row["speech_seconds"] / row["reference_pace_seconds"])
    assert "length vs the reference's pace" in (tmp_path / "pipe.md").read_text()
    assert {c["name"].split(" (")[0] for c in saved["checks"]} == {
        "whole-pipeline RTF", "AR steps per second of speech", "peak memory"}
    assert len(saved["per_sentence"]) == 4 and saved["host"]["torch_threads"] == 1


def test_bundled_voices_and_pipeline_cli_errors(bundle, tmp_path, capsys):
    from flexitts.benchmarks.pipeline import bundled_voice
    from flexitts.cli.main import main

    audio, text = bundled_voice("mb-us1")
    assert audio.name == "mb-us1.flac" and text
    with pytest.raises(DataError, match="mb-us1"):
        bundled_voice("no-such-voice")
    for case in (["--sentences", "0"], ["--ref", str(tmp_path / "missing.wav")], ["--voice", "nobody"],
                 ["--rates", "40"]):
        assert main(["bench", "pipeline", "--checkpoint", str(bundle), *case, "--out", str(tmp_path / "p")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("flexitts: error:") and err.count("\n") == 1
    assert not (tmp_path / "p.json").exists()


# ---------------------------------------------------------------------------------------------------- all
def test_bench_all_quick_writes_summary_and_plots(bundle, manifest, tmp_path, capsys):
    from flexitts.cli.main import main

    out = tmp_path / "reports"
    assert main(["bench", "all", "--quick", "--no-wer", "--checkpoint", str(bundle), "--manifest", str(manifest),
                 "--ref", str(REF_AUDIO), "--ref-text", REF_TEXT, "--threads", "1", "--out", str(out)]) == 0
    assert "bench.md" in capsys.readouterr().out
    summary = strict_json(out / "bench.json")
    assert {k: v["status"] for k, v in summary["components"].items()} == {
        "dynamic": "ok", "codec": "ok", "ar": "ok", "nar": "ok", "pipeline": "ok"}
    machine = summary["machine"]
    assert machine["cpu_model"] and machine["torch"] == torch.__version__ and machine["torch_threads"] == 1
    assert machine["cpus_logical"] >= 1 and summary["settings"]["quick"] is True
    for name in ("dynamic.json", "codec_bench.json", "ar_bench.json", "nar_bench.json", "pipeline_bench.json"):
        strict_json(out / name)
    assert set(summary["plots"]) >= {"frame_rate_vs_threshold", "wer_vs_frame_rate", "rtf_per_stage"}
    for relative in summary["plots"].values():
        assert (out / relative).read_bytes()[:8] == PNG_MAGIC
    markdown = (out / "bench.md").read_text()
    assert "## Machine" in markdown and machine["cpu_model"] in markdown
    assert "(plots/rtf_per_stage.png)" in markdown and "(plots/frame_rate_vs_threshold.png)" in markdown
    pipeline = summary["components"]["pipeline"]["summary"]
    assert len(pipeline["rows"]) == 4 and all(r["rtf"] > 0 for r in pipeline["rows"])
    nar = summary["components"]["nar"]["summary"]
    assert all(r["nar_rtf"] > 0 and in_unit_range(r["similarity"]) for r in nar["rows"])
    assert in_unit_range(nar["copy_synthesis"]["stoi"])
    codec = summary["components"]["codec"]["summary"]
    assert [r["target_hz"] for r in codec["rows"]] == [12.5, 8.3, 6.25]
    assert all(r["encode_rtf"] > 0 and in_unit_range(r["stoi"]) for r in codec["rows"])


def test_bench_all_records_a_failing_component(tts, tmp_path, monkeypatch):
    from flexitts.benchmarks import all as bench_all

    def broken(ctx):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setitem(bench_all.RUNNERS, "ar", broken)
    summary = bench_all.run_all_benchmarks(tmp_path, tts=tts, skip=["dynamic", "codec", "nar", "pipeline"], threads=1)
    assert summary["components"]["ar"] == {"status": "error", "wall_s": summary["components"]["ar"]["wall_s"],
                                           "error": "RuntimeError: boom second line"}
    assert summary["components"]["nar"]["status"] == "skipped" and summary["plots"] == {}
    assert "RuntimeError: boom second line" in (tmp_path / "bench.md").read_text()
    with pytest.raises(Exception, match="unknown component"):
        bench_all.run_all_benchmarks(tmp_path, tts=tts, skip=["nothing"])


def test_plots_skip_results_without_data(tmp_path):
    from flexitts.benchmarks import plots

    assert plots.plot_frame_rate_vs_threshold({"features": None}, tmp_path / "a.png") is None
    assert plots.plot_wer_vs_frame_rate({"quality": []}, tmp_path / "b.png") is None
    assert plots.plot_rtf_per_stage({"rows": []}, tmp_path / "c.png") is None
    assert not list(tmp_path.iterdir())


def test_report_cells_and_check_tables():
    from flexitts.evaluation.tables import cell, checks_table

    assert [cell(None), cell(float("nan")), cell(float("inf")), cell(True), cell(False)] == ["-", "-", "-", "yes", "no"]
    assert (cell(0.12345), cell(0.12345, 1), cell(7), cell("x")) == ("0.123", "0.1", "7", "x")
    checks = [{"name": "WER ratio", "value": 1.5, "limit": "<= 2", "pass": True},
              {"name": "STOI", "value": 0.8, "limit": ">= 0.9", "pass": False},
              {"name": "RTF at 6.25 Hz", "value": None, "limit": "-", "pass": None}]
    lines = checks_table(checks, issue=6, digits=2)
    assert lines[0] == "## Checks (issue 6)"
    assert lines[4:] == ["| WER ratio | 1.50 | <= 2 | PASS |", "| STOI | 0.80 | >= 0.9 | FAIL |",
                         "| RTF at 6.25 Hz | - | - | reported |"]
