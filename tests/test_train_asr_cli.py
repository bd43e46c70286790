"""`flexitts train asr` and `flexitts eval asr` end to end on a tiny corpus (a few steps, tiny model)."""
from __future__ import annotations

import json
import shutil

import pytest

from flexitts.cli.main import main

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from flexitts.corpus import synthesize_corpus

    out = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(out, 0.004, voices=["mb-us1", "mb-us2"], heldout_speakers=["mb-us2"], progress=False)
    return out


def test_train_resume_and_eval(corpus, tmp_path, capsys):
    config = tmp_path / "asr.yaml"
    config.write_text(
        f"out_dir: run\nmodel: {{dim: 32, num_layers: 1, num_heads: 2, ffn_dim: 64}}\n"
        "training: {max_steps: 4, max_units: 480000, warmup_steps: 1, checkpoint_every: 2, log_every: 1}\n"
        f"data: {{train: {corpus}/train.jsonl, valid: {corpus}/valid.jsonl, valid_limit: 4}}\n"
    )
    assert main(["train", "asr", "--config", str(config), "--no-progress"]) == 0
    assert "asr: step 4" in capsys.readouterr().out
    run = tmp_path / "run"
    assert (run / "model" / "model.safetensors").is_file()
    assert [json.loads(l)["step"] for l in (run / "train_log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    # Raising max_steps and resuming continues from step 4.
    config.write_text(config.read_text().replace("max_steps: 4", "max_steps: 6"))
    assert main(["train", "asr", "--config", str(config), "--resume", "--no-progress"]) == 0
    assert "asr: step 6" in capsys.readouterr().out
    report = tmp_path / "per.json"
    assert main(["eval", "asr", "--manifest", f"{corpus}/test.jsonl", "--checkpoint", str(run / "model"), "--json", str(report)]) == 0
    figures = json.loads(report.read_text())[f"{corpus}/test.jsonl"]
    assert 0.0 <= figures["per"] and {s[:6] for s in figures["per_speaker"]} == {"mb-us1", "mb-us2"}


def test_train_errors_are_one_line(tmp_path, capsys):
    config = tmp_path / "asr.yaml"
    config.write_text("model: {dim: 32}\ndata: {train: missing.jsonl}\n")
    assert main(["train", "asr", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.jsonl" in err
    config.write_text("model: {dim: 32, symbols: [a]}\n")
    assert main(["train", "asr", "--config", str(config), "--data", str(config)]) == 2
