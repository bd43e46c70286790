"""`flexitts train codec`: GAN training under the shared Trainer, and exact resume with the discriminator."""
from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch

from flexitts.checkpoints import load_safetensors
from flexitts.cli.main import main
from flexitts.data.manifest import Utterance, write_manifest

TINY_MODEL = (
    "{encoder_channels: 4, encoder_max_channels: 32, encoder_dilations: [1], latent_dim: 32, aggregator_dim: 32, "
    "aggregator_heads: 2, aggregator_ffn: 64, semantic_dim: 32, semantic_layers: 1, semantic_ffn: 64, "
    "num_codebooks: 2, codebook_size: 64, decoder_dim: 32, decoder_layers: 1, decoder_heads: 2, decoder_ffn: 64, "
    "vocos_dim: 48, vocos_ffn: 96, vocos_layers: 2, mel_windows: [256, 1024], mel_bins: [20, 64], use_gan: true, "
    "gan_start_step: 2, disc_periods: [2, 3], disc_period_channels: [4, 8], disc_fft_sizes: [512], "
    "disc_resolution_channels: 4}"
)


@pytest.fixture
def manifest(tmp_path, real_speech_16k):
    speech, rate = sf.read(real_speech_16k, dtype="float32")
    rows = []
    for i in range(4):
        sf.write(tmp_path / f"u{i}.wav", speech[i * 4000 : i * 4000 + 24000], rate)
        rows.append(Utterance(f"u{i}.wav", "words", "s", 1.5))
    write_manifest(tmp_path / "m.jsonl", rows)
    return tmp_path / "m.jsonl"


def write_config(tmp_path, manifest, out: str, max_steps: int):
    config = tmp_path / f"{out}.yaml"
    config.write_text(
        f"out_dir: {out}\nmodel: {TINY_MODEL}\n"
        f"training: {{max_steps: {max_steps}, max_units: 40960, warmup_steps: 1, checkpoint_every: 2, log_every: 1, threads: 1}}\n"
        f"data: {{train: {manifest}, crop_seconds: 1.28}}\n"
    )
    return config


def test_gan_training_resumes_exactly(tmp_path, manifest, capsys):
    straight = write_config(tmp_path, manifest, "straight", 4)
    assert main(["train", "codec", "--config", str(straight), "--no-progress"]) == 0
    log = [json.loads(l) for l in (tmp_path / "straight" / "train_log.jsonl").read_text().splitlines()]
    assert "disc" not in log[1] and "disc" in log[2] and "adv" in log[3]  # the GAN starts at step 2
    assert (tmp_path / "straight" / "checkpoints" / "step-00000004" / "discriminator.safetensors").is_file()

    # Resume from the step-2 checkpoint (as if killed after it) in a copy of the run.
    import shutil

    shutil.copytree(tmp_path / "straight", tmp_path / "part")
    shutil.rmtree(tmp_path / "part" / "checkpoints" / "step-00000004")
    shutil.rmtree(tmp_path / "part" / "model")
    part = write_config(tmp_path, manifest, "part", 4)
    assert main(["train", "codec", "--config", str(part), "--resume", "--no-progress"]) == 0
    a = load_safetensors(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_safetensors(tmp_path / "part" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    da = load_safetensors(tmp_path / "straight" / "checkpoints" / "step-00000004" / "discriminator.safetensors")
    db = load_safetensors(tmp_path / "part" / "checkpoints" / "step-00000004" / "discriminator.safetensors")
    assert all(torch.equal(da[k], db[k]) for k in da)
    assert "codec: step 4" in capsys.readouterr().out
