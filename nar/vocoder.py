"""`Vocoder`: Vocos (ConvNeXt backbone + ISTFT head) from the shared mel features to a waveform.

Built from hyper-parameters with the `vocos` package's modules (`VocosBackbone`, `ISTFTHead`), so its weights
have Vocos' own names (`backbone.*`, `head.*`): a public Vocos mel checkpoint loads with
`Vocoder.from_vocos_checkpoint`. The forward pass is ours: every convolution's input is zeroed past an item's
end and the ISTFT's window envelope counts only the item's own frames, so a padded batch gives each item what
it gets alone (Vocos' own forward lets padding leak into the last frames). Without `lengths` it equals Vocos'
`decode` exactly.

Training (`training_step`): wav -> mel -> vocoder -> multi-scale mel L1 (`codec.losses.MultiScaleMelLoss`)
plus, when a discriminator is attached (`build_discriminator`), LSGAN and feature matching with
`codec.losses.CodecDiscriminator` (multi-period + vocos' multi-resolution discriminators). The discriminator is
kept out of the module tree (and so out of `state_dict`), as in `codec.model.FlexiCodec`.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from codec.common.errors import CheckpointError, ConfigError
from codec.common.pretrained import PretrainedMixin
from codec.framing import length_mask
from codec.gan import WaveformGANConfig, WaveformGANMixin
from codec.losses import MultiScaleMelLoss
from nar.mel import MelConfig, MelSpectrogram


@dataclass
class VocoderConfig(WaveformGANConfig):
    """Sizes and training settings of `Vocoder` (defaults: the demo preset)."""

    mel: MelConfig = field(default_factory=MelConfig)
    dim: int = 256
    intermediate_dim: int = 768
    num_layers: int = 8
    layer_scale_init_value: float | None = None  # None: 1 / num_layers (Vocos' default)
    istft_n_fft: int | None = None  # None: mel.n_fft (as every Vocos config)
    # --- training ---
    mel_windows: list[int] = field(default_factory=lambda: [256, 512, 1024, 2048])
    mel_bins: list[int] = field(default_factory=lambda: [20, 40, 80, 160])
    lambda_mel: float = 15.0
    use_gan: bool = True  # the other GAN settings: `codec.gan.WaveformGANConfig`

    def __post_init__(self) -> None:
        super().__post_init__()
        self.mel = MelConfig.from_any(self.mel)
        for name in ("mel_windows", "mel_bins"):
            setattr(self, name, [int(x) for x in getattr(self, name)])
        if (self.n_fft - self.mel.hop_length) % 2 or self.n_fft < self.mel.hop_length:
            raise ConfigError("the ISTFT head needs n_fft >= hop_length with n_fft - hop_length even")
        if len(self.mel_windows) != len(self.mel_bins) or not self.mel_windows:
            raise ConfigError("mel_windows and mel_bins must be non-empty and of equal length")
        if self.dim < 1 or self.intermediate_dim < 1 or self.num_layers < 1:
            raise ConfigError("dim, intermediate_dim and num_layers must be positive")

    @property
    def n_fft(self) -> int:
        return int(self.istft_n_fft or self.mel.n_fft)

    @classmethod
    def demo(cls, **overrides: Any) -> "VocoderConfig":
        """The demo bundle's size: 8 ConvNeXt layers of 256 (768 inner), 16 kHz / 80-bin mel, light discriminators."""
        return cls(**overrides)

    @classmethod
    def paper(cls, **overrides: Any) -> "VocoderConfig":
        """Vocos' published size (512 / 1536 / 8 layers) on FlexiCodec's 24 kHz, 128-bin mel, HiFi-GAN widths."""
        values: dict[str, Any] = dict(mel=MelConfig.paper(), dim=512, intermediate_dim=1536, num_layers=8,
                                      mel_windows=[32, 64, 128, 256, 512, 1024, 2048],
                                      mel_bins=[5, 10, 20, 40, 80, 160, 320],
                                      disc_period_channels=[32, 128, 512, 1024, 1024], disc_resolution_channels=32)
        values.update(overrides)
        return cls(**values)


def masked_istft(spec: torch.Tensor, window: torch.Tensor, n_fft: int, hop: int, frame_mask: torch.Tensor) -> torch.Tensor:
    """Inverse STFT with "same" padding of `[B, n_fft/2+1, L]` -> `[B, L * hop]`; the window envelope of each item
    counts only its valid frames (`frame_mask [B, L]`), so it matches what the item gives alone."""
    length = spec.shape[-1]
    pad = (n_fft - hop) // 2
    frames = torch.fft.irfft(spec, n_fft, dim=1, norm="backward") * window[None, :, None]
    size = (length - 1) * hop + n_fft

    def overlap_add(columns: torch.Tensor) -> torch.Tensor:
        out = F.fold(columns, output_size=(1, size), kernel_size=(1, n_fft), stride=(1, hop))
        return out[:, 0, 0, pad: size - pad]

    envelope = overlap_add(window.square()[None, :, None] * frame_mask[:, None, :].to(window.dtype))
    return overlap_add(frames) / envelope.clamp(min=1e-8)


class Vocoder(WaveformGANMixin, nn.Module, PretrainedMixin):
    """Normalised log mel `[B, F, M]` (as `MelSpectrogram(config.mel)` gives) -> waveform `[B, F * hop]`."""

    config_class = VocoderConfig
    bundle_name = "vocoder"

    def __init__(self, config: VocoderConfig):
        super().__init__()
        from vocos.heads import ISTFTHead  # imported here: vocos pulls in encodec at import time
        from vocos.models import VocosBackbone

        self.config = config
        c = config
        self.sample_rate = c.mel.sample_rate
        self.hop = c.mel.hop_length
        self.mel = MelSpectrogram(c.mel)  # no weights
        self.backbone = VocosBackbone(input_channels=c.mel.n_mels, dim=c.dim, intermediate_dim=c.intermediate_dim,
                                      num_layers=c.num_layers, layer_scale_init_value=c.layer_scale_init_value)
        self.head = ISTFTHead(dim=c.dim, n_fft=c.n_fft, hop_length=self.hop, padding="same")
        self.mel_loss = MultiScaleMelLoss(self.sample_rate, c.mel_windows, c.mel_bins)  # no weights
        # Kept out of the module tree (and so out of state_dict): not this model's weights.
        self._init_gan()
        self._train_calls = 0

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ inference
    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """`[B, F, M]` mel (+ `[B]` valid frames) -> `[B, F * hop]` waveform, zero past `lengths * hop`."""
        if mel.dim() == 2:
            mel = mel[None]
        if mel.dim() != 3 or mel.shape[-1] != self.config.mel.n_mels:
            raise ConfigError(f"the vocoder expects mel [B, F, {self.config.mel.n_mels}], got {tuple(mel.shape)}")
        batch, frames, _ = mel.shape
        if lengths is None:
            lengths = torch.full((batch,), frames, dtype=torch.long, device=mel.device)
        mask = length_mask(lengths.to(mel.device), frames)  # [B, F]
        m = mask[:, None, :].to(mel.dtype)
        bb = self.backbone
        h = bb.embed(mel.transpose(1, 2) * m)
        h = bb.norm(h.transpose(1, 2)).transpose(1, 2)
        for block in bb.convnext:
            h = block(h * m)  # the depthwise conv must see zeros past the item's end
        h = bb.final_layer_norm(h.transpose(1, 2))  # [B, F, dim]
        mag, phase = self.head.out(h).transpose(1, 2).chunk(2, dim=1)
        mag = torch.exp(mag).clamp(max=1e2)  # as vocos' ISTFTHead: guards against huge magnitudes
        spec = torch.polar(mag.float(), phase.float()) * m.float()
        wav = masked_istft(spec, self.head.istft.window.float(), self.config.n_fft, self.hop, mask)
        return wav * length_mask(lengths.to(wav.device) * self.hop, wav.shape[-1]).to(wav.dtype)

    @torch.no_grad()
    def copy_synthesis(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """`[B, S]` waveform -> mel -> vocoder -> `[B, S]` (trimmed to the input length; zero past `lengths`)."""
        mel, frames = self.mel(wav.to(self.device), lengths)
        out = self(mel, frames)[:, : wav.shape[-1]]
        if lengths is not None:
            out = out * length_mask(lengths.to(out.device), out.shape[-1]).to(out.dtype)
        return out

    # ------------------------------------------------------------------ pretrained Vocos
    @classmethod
    def from_vocos_checkpoint(cls, path_or_uri: str | os.PathLike, config_yaml: str | os.PathLike | None = None,
                              device: str | torch.device = "cpu", **overrides: Any) -> "Vocoder":
        """Load a pretrained Vocos mel vocoder (its `pytorch_model.bin` and `config.yaml`, as `Vocos.from_pretrained`
        downloads them).

        Args:
            path_or_uri: a folder holding both files, the weights file itself (`.bin`/`.pt` or `.safetensors`), or a
                remote folder `hf://org/repo` / `https://.../` whose files are fetched through cached-path.
            config_yaml: the config file (path or URI) when it is not beside the weights.
            overrides: extra `VocoderConfig` fields (training settings).
        The mel features become `MelConfig(mean=0, std=1, log_floor=1e-7, mel_scale="htk", norm=None,
        pad_mode="reflect")`: exactly Vocos' `MelSpectrogramFeatures` with "center" padding.
        """
        from codec.common.checkpoints import is_remote, resolve_checkpoint

        text = os.fspath(path_or_uri)
        weights: Path | None = None
        if is_remote(text) and not text.endswith((".bin", ".pt", ".pth", ".safetensors")):
            base = text.rstrip("/")
            config_file = resolve_checkpoint(config_yaml or f"{base}/config.yaml", what="Vocos config")
            weights = resolve_checkpoint(f"{base}/pytorch_model.bin", what="Vocos checkpoint")
        else:
            local = resolve_checkpoint(text, what="Vocos checkpoint")
            if local.is_dir():
                found = [local / n for n in ("pytorch_model.bin", "model.safetensors") if (local / n).is_file()]
                if not found:
                    raise CheckpointError(f"'{local}' holds neither pytorch_model.bin nor model.safetensors")
                weights = found[0]
                folder = local
            else:
                weights, folder = local, local.parent
            config_file = resolve_checkpoint(config_yaml or folder / "config.yaml", what="Vocos config")
        model = cls(vocos_config(config_file, **overrides))
        state = _load_vocos_state(weights)
        state = {k: v for k, v in state.items() if not k.startswith("feature_extractor.")}
        own = model.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise CheckpointError(f"{weights} does not match the Vocos config: missing {missing[:3]}, unexpected {unexpected[:3]}")
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
        return model.to(device).eval()

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], step: int | None = None, return_audio: bool = False) -> dict[str, torch.Tensor]:
        """Generator losses of one batch.

        Args:
            batch: `wav [B, S]` at `sample_rate` and `wav_lengths [B]`; optional `step` (int, the trainer's step:
                drives `gan_start_step`).
            return_audio: also return the generated waveform under "audio" (always done while the GAN is on:
                the trainer hands it to `discriminator_step`).
        Returns:
            `loss` (weighted total) and its detached parts `mel`, with GAN `adv` and `fm`.
        """
        c = self.config
        if step is None:
            step = int(batch["step"]) if "step" in batch else self._train_calls
        self._train_calls += 1
        wav = batch["wav"].to(self.device)
        lengths = batch.get("wav_lengths")
        lengths = torch.full((wav.shape[0],), wav.shape[1], device=wav.device) if lengths is None else lengths.to(wav.device).long()
        wav = wav * length_mask(lengths, wav.shape[1]).to(wav.dtype)
        with torch.no_grad():
            mel, frames = self.mel(wav, lengths)
        y_hat = self(mel.to(self.backbone.embed.weight.dtype), frames)
        y_hat = y_hat * length_mask(lengths, y_hat.shape[1]).to(y_hat.dtype)
        target = F.pad(wav, (0, max(0, y_hat.shape[1] - wav.shape[1])))[:, : y_hat.shape[1]]
        mel_l1 = self.mel_loss(y_hat, target, lengths)
        loss = c.lambda_mel * mel_l1
        out = {"mel": mel_l1.detach()}
        return self.generator_outputs(loss, out, y_hat, target, step, return_audio)


def vocos_config(config_file: str | os.PathLike, **overrides: Any) -> VocoderConfig:
    """A `VocoderConfig` from a Vocos `config.yaml` (mel features with "center" padding, `VocosBackbone`,
    `ISTFTHead` with "same" padding); anything else is a `ConfigError` naming it."""
    import yaml

    try:
        data = yaml.safe_load(Path(config_file).read_text(encoding="utf-8"))
        fe, bb, head = (data[k] for k in ("feature_extractor", "backbone", "head"))
        fe_args, bb_args, head_args = (dict(part.get("init_args") or {}) for part in (fe, bb, head))
        fe_class, bb_class, head_class = fe["class_path"], bb["class_path"], head["class_path"]
    except Exception as error:  # yaml and key errors alike: the file is not a Vocos config
        raise ConfigError(f"'{config_file}' is not a Vocos config.yaml ({type(error).__name__}: {error})") from None
    if not fe_class.endswith("MelSpectrogramFeatures"):
        raise ConfigError(f"only mel-spectrogram Vocos checkpoints are supported, not {fe_class}")
    if not bb_class.endswith("VocosBackbone") or bb_args.get("adanorm_num_embeddings"):
        raise ConfigError(f"only an unconditioned VocosBackbone is supported, not {bb_class}")
    if not head_class.endswith("ISTFTHead") or head_args.get("padding", "same") != "same":
        raise ConfigError(f"only an ISTFTHead with 'same' padding is supported, not {head_class}")
    if fe_args.get("padding", "center") != "center":
        raise ConfigError("only mel features with 'center' padding are supported")
    n_fft = int(fe_args.get("n_fft", 1024))
    hop = int(fe_args.get("hop_length", 256))
    if int(head_args.get("hop_length", hop)) != hop:
        raise ConfigError("the Vocos head's hop_length differs from its features' hop_length")
    mel = MelConfig(sample_rate=int(fe_args.get("sample_rate", 24000)), hop_length=hop, n_fft=n_fft, win_length=n_fft,
                    n_mels=int(fe_args.get("n_mels", 100)), f_min=0.0, f_max=None, power=1.0, mel_scale="htk",
                    norm=None, log_floor=1e-7, mean=0.0, std=1.0, pad_mode="reflect")
    if int(bb_args.get("input_channels", mel.n_mels)) != mel.n_mels:
        raise ConfigError("the Vocos backbone's input_channels differ from its features' n_mels")
    values: dict[str, Any] = dict(mel=mel, dim=int(bb_args["dim"]), intermediate_dim=int(bb_args["intermediate_dim"]),
                                  num_layers=int(bb_args["num_layers"]),
                                  layer_scale_init_value=bb_args.get("layer_scale_init_value"),
                                  istft_n_fft=int(head_args.get("n_fft", n_fft)))
    values.update(overrides)
    known = {f.name for f in dataclasses.fields(VocoderConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown VocoderConfig field(s) {unknown}")
    return VocoderConfig(**values)


def _load_vocos_state(path: Path) -> dict[str, torch.Tensor]:
    """Weights of a Vocos checkpoint: safetensors, or a PyTorch file read with `weights_only=True` (tensors and
    plain containers only: the restricted unpickler runs no code)."""
    if path.suffix == ".safetensors":
        from codec.common.checkpoints import load_safetensors

        return load_safetensors(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors of many types: not a plain state dict
        raise CheckpointError(f"cannot load Vocos weights from '{path}' as a plain state dict ({type(error).__name__}: "
                              f"{' '.join(str(error).split())[:200]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        # A Lightning training checkpoint: keep the generator, drop discriminators and losses.
        state = {k: v for k, v in state["state_dict"].items() if k.startswith(("backbone.", "head."))}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"'{path}' does not hold a state dict of tensors")
    return state
