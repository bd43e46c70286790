"""The GAN half of waveform-generator training, shared by the codec and the vocoder.

A model mixing this in keeps its discriminator outside its own weights (in `__dict__`, so neither
`state_dict` nor `parameters()` see it): the Trainer gives it a second optimiser and checkpoints it apart.
The model's config derives from `WaveformGANConfig` (`use_gan`, `gan_start_step`, `lambda_adv`, `lambda_fm` and the
`disc_*` sizes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from codec.framing import length_mask
from codec.losses import CodecDiscriminator, discriminator_loss, feature_matching_loss, generator_adversarial_loss


@dataclass
class WaveformGANConfig:
    """The adversarial-training settings of a waveform generator's config (a base of the codec's and the
    vocoder's config dataclasses): GAN on/off and its start step, loss weights, discriminator sizes."""

    use_gan: bool = False
    gan_start_step: int = 0
    lambda_adv: float = 1.0
    lambda_fm: float = 2.0
    disc_periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    disc_period_channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 128])
    disc_fft_sizes: list[int] = field(default_factory=lambda: [2048, 1024, 512])
    disc_resolution_channels: int = 16

    def __post_init__(self) -> None:
        # Lists of ints, not tuples, so that a JSON round trip gives back an equal config.
        for name in ("disc_periods", "disc_period_channels", "disc_fft_sizes"):
            setattr(self, name, [int(x) for x in getattr(self, name)])


class WaveformGANMixin:
    """`build_discriminator`, `discriminator_step` and the generator's adversarial terms for an `nn.Module`
    (list it before `nn.Module` among the bases)."""

    config: Any

    def _init_gan(self) -> None:
        self.__dict__["_discriminator"] = None

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        # `.to()`, `.cuda()`, `.half()` of the model also apply to the attached discriminator (the mixin comes
        # before nn.Module in the bases, so this wraps nn.Module._apply).
        super()._apply(fn, recurse)  # type: ignore[misc]
        disc = self.__dict__.get("_discriminator")
        if isinstance(disc, nn.Module):
            disc._apply(fn, recurse)
        return self

    def build_discriminator(self) -> CodecDiscriminator:
        """Create (or return) the multi-period + multi-resolution discriminator used when `config.use_gan`."""
        if self.__dict__["_discriminator"] is None:
            c = self.config
            disc = CodecDiscriminator(c.disc_periods, c.disc_period_channels, c.disc_fft_sizes, c.disc_resolution_channels)
            self.__dict__["_discriminator"] = disc.to(next(self.parameters()).device)  # type: ignore[attr-defined]
        return self.__dict__["_discriminator"]

    @property
    def discriminator(self) -> CodecDiscriminator | None:
        return self.__dict__["_discriminator"]

    def gan_active(self, step: int) -> bool:
        """Whether the adversarial terms apply at `step` (GAN on, discriminator attached, start step reached)."""
        c = self.config
        return bool(c.use_gan) and self.__dict__["_discriminator"] is not None and step >= c.gan_start_step

    def adversarial_losses(self, y_hat: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted LSGAN + feature-matching generator loss of `[B, S]` audio, and its detached parts."""
        c = self.config
        disc = self.__dict__["_discriminator"]
        disc.requires_grad_(False)  # the generator's loss must not leave gradients on the discriminator
        try:
            fake_logits, fake_maps = disc(y_hat)
            with torch.no_grad():
                _, real_maps = disc(target)
        finally:
            disc.requires_grad_(True)
        adv = generator_adversarial_loss(fake_logits)
        fm = feature_matching_loss(real_maps, fake_maps)
        return c.lambda_adv * adv + c.lambda_fm * fm, {"adv": adv.detach(), "fm": fm.detach()}

    def generator_outputs(self, loss: torch.Tensor, parts: dict[str, torch.Tensor], y_hat: torch.Tensor,
                          target: torch.Tensor, step: int, return_audio: bool = False) -> dict[str, torch.Tensor]:
        """The end of a generator's `training_step`: add the adversarial terms when the GAN is on at `step`,
        and return `{"loss", **parts}` with the generated audio under "audio" when the discriminator (or the
        caller) needs it."""
        gan_active = self.gan_active(step)
        if gan_active:
            adversarial, gan_parts = self.adversarial_losses(y_hat, target)
            loss = loss + adversarial
            parts = {**parts, **gan_parts}
        out = {"loss": loss, **parts}
        if return_audio or gan_active:  # the discriminator's step needs what the generator made
            out["audio"] = y_hat
        return out

    def discriminator_step(self, batch: dict[str, Any], generated: torch.Tensor) -> dict[str, torch.Tensor]:
        """LSGAN discriminator loss on the batch's real audio and `generated` (`[B, S']`, detached here)."""
        disc = self.build_discriminator()
        wav = batch["wav"].to(generated.device, generated.dtype)
        lengths = batch.get("wav_lengths")
        if lengths is not None:
            wav = wav * length_mask(lengths.to(wav.device), wav.shape[1]).to(wav.dtype)
        steps = generated.shape[1]
        real = F.pad(wav, (0, max(0, steps - wav.shape[1])))[:, :steps]
        real_logits, _ = disc(real)
        fake_logits, _ = disc(generated.detach())
        loss = discriminator_loss(real_logits, fake_logits)
        return {"loss": loss, "disc": loss.detach()}
