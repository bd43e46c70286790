"""The Vocos vocoder: construction from hyper-parameters, pretrained Vocos loading, padding, GAN training, and
`flexitts train vocoder` end to end on a few generated waveforms."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from codec.common.errors import CheckpointError, ConfigError
from nar.mel import MelConfig
from nar.vocoder import Vocoder, VocoderConfig



def tiny_config(**overrides) -> VocoderConfig:
    values = dict(mel=MelConfig(n_mels=20), dim=32, intermediate_dim=64, num_layers=2, mel_windows=[256, 1024],
                  mel_bins=[20, 40], disc_periods=[2, 3], disc_period_channels=[4, 8], disc_fft_sizes=[512],
                  disc_resolution_channels=4)
    values.update(overrides)
    return VocoderConfig(**values)


def speechlike(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    """A harmonic tone with a wandering pitch and a syllable-rate envelope (float32 `[S]`)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 110 + 40 * rng.random() + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t + rng.random() * 6) ** 2
    return (0.2 * wave * envelope + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def test_presets_and_config_round_trip():
    demo, paper = VocoderConfig.demo(), VocoderConfig.paper()
    assert (demo.dim, demo.intermediate_dim, demo.num_layers, demo.mel.n_mels) == (256, 768, 8, 80)
    assert (paper.dim, paper.intermediate_dim, paper.num_layers, paper.mel.sample_rate, paper.n_fft) == (512, 1536, 8, 24000, 1920)
    import dataclasses

    assert VocoderConfig(**json.loads(json.dumps(dataclasses.asdict(demo)))) == demo
    with pytest.raises(ConfigError):
        VocoderConfig(mel_windows=[256], mel_bins=[20, 40])


def test_output_length_and_padding_invariance():
    torch.manual_seed(0)
    voc = Vocoder(tiny_config()).eval()
    mel = torch.randn(2, 24, 20)
    lengths = torch.tensor([24, 13])
    with torch.no_grad():
        wav = voc(mel, lengths)
        alone = voc(mel[1:, :13])
        full = voc(mel)
    assert wav.shape == (2, 24 * 320) and alone.shape == (1, 13 * 320)
    torch.testing.assert_close(wav[1, : 13 * 320], alone[0], atol=1e-5, rtol=1e-4)
    assert wav[1, 13 * 320:].abs().sum() == 0
    torch.testing.assert_close(wav[0], full[0], atol=1e-5, rtol=1e-4)


def test_save_load_identity(tmp_path):
    torch.manual_seed(0)
    voc = Vocoder(tiny_config()).eval()
    voc.build_discriminator()
    voc.save_pretrained(tmp_path / "voc")
    loaded = Vocoder.from_pretrained(tmp_path / "voc")
    assert loaded.config == voc.config and loaded.discriminator is None
    assert not any(k.startswith(("mel.", "mel_loss.", "_discriminator")) for k in loaded.state_dict())
    mel = torch.randn(1, 16, 20)
    with torch.no_grad():
        assert torch.equal(voc(mel), loaded(mel))


def write_vocos_checkpoint(folder, padding: str = "center") -> torch.nn.Module:
    """A tiny `vocos.Vocos` saved as Vocos' hub files: `pytorch_model.bin` (torch.save) and `config.yaml`."""
    from vocos import Vocos

    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "feature_extractor": {"class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
                              "init_args": {"sample_rate": 16000, "n_fft": 256, "hop_length": 64, "n_mels": 20, "padding": padding}},
        "backbone": {"class_path": "vocos.models.VocosBackbone",
                     "init_args": {"input_channels": 20, "dim": 32, "intermediate_dim": 64, "num_layers": 2}},
        "head": {"class_path": "vocos.heads.ISTFTHead",
                 "init_args": {"dim": 32, "n_fft": 256, "hop_length": 64, "padding": "same"}},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(1)
    model = Vocos.from_hparams(str(folder / "config.yaml")).eval()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return model


def test_loads_a_pretrained_vocos_checkpoint(tmp_path):
    reference = write_vocos_checkpoint(tmp_path / "vocos")
    for source in (tmp_path / "vocos", tmp_path / "vocos" / "pytorch_model.bin"):
        voc = Vocoder.from_vocos_checkpoint(source)
        wav = torch.from_numpy(speechlike(0.64, 0))[None]  # 10240 samples: a multiple of 4 hops
        with torch.no_grad():
            features = reference.feature_extractor(wav)  # [B, M, S / hop + 1]
            ours, frames = voc.mel(wav)
            # Our frames are Vocos' frames, without the extra last one of its centred STFT.
            torch.testing.assert_close(ours, features.transpose(1, 2)[:, :-1], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(voc(features.transpose(1, 2)), reference.decode(features), atol=1e-5, rtol=1e-4)
    # Saved in our own format, it loads back with plain from_pretrained.
    voc.save_pretrained(tmp_path / "ours")
    assert Vocoder.from_pretrained(tmp_path / "ours").config == voc.config


def test_vocos_checkpoint_errors(tmp_path):
    write_vocos_checkpoint(tmp_path / "same", padding="same")
    with pytest.raises(ConfigError):
        Vocoder.from_vocos_checkpoint(tmp_path / "same")
    with pytest.raises(CheckpointError):
        Vocoder.from_vocos_checkpoint(tmp_path / "missing")
    bad = tmp_path / "bad"
    write_vocos_checkpoint(bad)
    (bad / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        Vocoder.from_vocos_checkpoint(bad)


def test_training_step_lowers_the_loss_and_gan_protocol():
    torch.manual_seed(0)
    voc = Vocoder(tiny_config(use_gan=False))
    wav = torch.from_numpy(np.stack([speechlike(0.32, 0), speechlike(0.32, 1)]))
    batch = {"wav": wav, "wav_lengths": torch.tensor([5120, 4000]), "step": 0}
    opt = torch.optim.Adam(voc.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        out = voc.training_step(batch)
        assert "audio" not in out  # no discriminator: nothing to hand over
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["mel"]))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses

    gan = Vocoder(tiny_config(gan_start_step=2))
    disc = gan.build_discriminator()
    assert gan.build_discriminator() is disc and not any(k.startswith("_discriminator") for k in gan.state_dict())
    early = gan.training_step({**batch, "step": 1})
    assert "audio" not in early and "adv" not in early  # before gan_start_step: reconstruction only
    out = gan.training_step({**batch, "step": 2})
    assert {"loss", "mel", "adv", "fm", "audio"} <= set(out) and out["audio"].shape == (2, 5120)
    out["loss"].backward()
    assert all(p.grad is None for p in disc.parameters())  # the generator loss leaves the discriminator alone
    d = gan.discriminator_step(batch, out["audio"])
    assert set(d) == {"loss", "disc"} and d["loss"].requires_grad
    d["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())


def test_train_vocoder_end_to_end(tmp_path, capsys):
    from flexitts.cli.main import main
    from flexitts.data.manifest import Utterance, write_manifest

    (tmp_path / "wavs").mkdir()
    rows = []
    for i in range(4):
        sf.write(tmp_path / "wavs" / f"{i}.wav", speechlike(0.9 + 0.2 * i, i), 16000)
        rows.append(Utterance(f"wavs/{i}.wav", "a test", "spk", 0.9 + 0.2 * i))
    write_manifest(tmp_path / "train.jsonl", rows)
    config = tmp_path / "vocoder.yaml"
    config.write_text(
        "out_dir: run\n"
        "model: {dim: 32, intermediate_dim: 64, num_layers: 2, mel_windows: [256, 1024], mel_bins: [20, 40],"
        " disc_periods: [2], disc_period_channels: [4, 8], disc_fft_sizes: [512], disc_resolution_channels: 4,"
        " gan_start_step: 1}\n"
        "training: {max_steps: 3, max_units: 40960, warmup_steps: 1, checkpoint_every: 2, log_every: 1}\n"
        "data: {train: train.jsonl, valid: train.jsonl, valid_limit: 2, crop_seconds: 0.64}\n"
    )
    assert main(["train", "vocoder", "--config", str(config), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "vocoder: step 3" in out and "valid_mel" in out
    run = tmp_path / "run"
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3] and "disc" in log[-1] and "adv" in log[-1]
    model = Vocoder.from_pretrained(run / "model")
    wav = torch.from_numpy(speechlike(0.5, 9))[None]
    assert model.copy_synthesis(wav).shape == wav.shape
    # Resume continues from the newest checkpoint, discriminator included.
    config.write_text(config.read_text().replace("max_steps: 3", "max_steps: 4"))
    assert main(["train", "vocoder", "--config", str(config), "--resume", "--no-progress"]) == 0
    assert "vocoder: step 4" in capsys.readouterr().out
