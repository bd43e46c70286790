"""Codec training losses: multi-scale mel L1, LSGAN adversarial and feature-matching terms, and the
discriminator (multi-period + multi-resolution).

The multi-resolution sub-discriminators are `vocos.discriminators.DiscriminatorR` (DAC's band-split STFT
discriminator). The multi-period one is written here with configurable widths: vocos' `DiscriminatorP` has
HiFi-GAN's fixed 32-128-512-1024-1024 channels (about 8M parameters per period), too heavy for CPU training;
the paper preset uses those widths. Losses follow DESIGN.md: LSGAN (vocos' own losses are hinge), feature
matching as L1 between real and generated feature maps summed over layers (DAC).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from codec.framing import length_mask


class MultiScaleMelLoss(nn.Module):
    """Sum over scales of the L1 distance of log10 mel magnitudes (DAC's reconstruction loss).

    Each scale has an STFT window `w` (hop `w / 4`) and its own number of mel bins. Frames past an item's
    length are left out, so padding does not dilute the loss. Filterbanks and windows are non-persistent
    buffers: they never enter a checkpoint.
    """

    def __init__(self, sample_rate: int, windows: list[int], n_mels: list[int]):
        super().__init__()
        import torchaudio

        self.windows = [int(w) for w in windows]
        for i, (w, m) in enumerate(zip(self.windows, n_mels)):
            with torch.device("cpu"):  # real values even when the model is built under a meta/default device
                fb = torchaudio.functional.melscale_fbanks(w // 2 + 1, 0.0, sample_rate / 2, int(m), sample_rate,
                                                           norm="slaney", mel_scale="slaney")
                window = torch.hann_window(w)
            self.register_buffer(f"fb{i}", fb, persistent=False)  # [w/2+1, m]
            self.register_buffer(f"win{i}", window, persistent=False)

    def log_mel(self, wav: torch.Tensor, scale: int) -> torch.Tensor:
        """`[B, S]` -> `[B, F, m]` log10 mel magnitudes at scale `scale` (centred STFT, hop = window / 4)."""
        w = self.windows[scale]
        spec = torch.stft(wav.float(), n_fft=w, hop_length=w // 4, window=getattr(self, f"win{scale}"),
                          center=True, pad_mode="constant", return_complex=True).abs()
        return torch.log10((spec.transpose(1, 2) @ getattr(self, f"fb{scale}")).clamp(min=1e-5))

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Mel L1 of `[B, S]` waveforms, optionally over each item's first `lengths[b]` samples only."""
        total = y.new_zeros(())
        for i, w in enumerate(self.windows):
            a, b = self.log_mel(y_hat, i), self.log_mel(y, i)
            diff = (a - b).abs().mean(dim=-1)  # [B, F]
            if lengths is None:
                total = total + diff.mean()
            else:
                mask = length_mask(torch.div(lengths, w // 4, rounding_mode="floor") + 1, diff.shape[1]).to(diff.dtype)
                total = total + (diff * mask).sum() / mask.sum().clamp(min=1.0)
        return total


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN period discriminator: the waveform folded to `[B, 1, S/p, p]`, 2-D convs along time."""

    def __init__(self, period: int, channels: list[int], kernel: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        widths = [1] + list(channels)
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(widths[i], widths[i + 1], (kernel, 1), (stride if i < len(channels) - 1 else 1, 1),
                                  padding=(kernel // 2, 0)))
            for i in range(len(channels))
        )
        self.post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, steps = x.shape
        if steps % self.period:
            x = F.pad(x, (0, self.period - steps % self.period), mode="reflect")
        h = x.view(batch, 1, -1, self.period)
        fmaps = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.1)
            fmaps.append(h)
        h = self.post(h)
        fmaps.append(h)
        return h.flatten(1), fmaps


class CodecDiscriminator(nn.Module):
    """Multi-period (HiFi-GAN) + multi-resolution (DAC / vocos) discriminators on 16 kHz waveforms `[B, S]`."""

    def __init__(self, periods: list[int], period_channels: list[int], fft_sizes: list[int], resolution_channels: int):
        super().__init__()
        import warnings

        from vocos.discriminators import DiscriminatorR

        self.periods = nn.ModuleList(PeriodDiscriminator(p, period_channels) for p in periods)
        with warnings.catch_warnings():  # vocos uses the deprecated (still working) torch.nn.utils.weight_norm
            warnings.simplefilter("ignore", FutureWarning)
            self.resolutions = nn.ModuleList(DiscriminatorR(window_length=w, channels=resolution_channels) for w in fft_sizes)

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Returns (logits of each sub-discriminator, feature maps of each sub-discriminator)."""
        logits, fmaps = [], []
        for disc in list(self.periods) + list(self.resolutions):
            out, fmap = disc(wav)
            logits.append(out)
            fmaps.append(fmap)
        return logits, fmaps


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: real logits towards 1, generated towards 0, summed over sub-discriminators."""
    return sum(((1 - r) ** 2).mean() + (f ** 2).mean() for r, f in zip(real, fake))  # type: ignore[return-value]


def generator_adversarial_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN generator term: generated logits towards 1."""
    return sum(((1 - f) ** 2).mean() for f in fake)  # type: ignore[return-value]


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between real (detached) and generated feature maps, summed over layers and sub-discriminators."""
    return sum(F.l1_loss(g, r.detach()) for rs, gs in zip(real, fake) for r, g in zip(rs, gs))  # type: ignore[return-value]
