"""The acoustic stream: a DAC-style CNN from 16 kHz waveform to 12.5 Hz latents (total stride 1280).

Conv(7) -> blocks of [residual units (dilations 1, 3, 9), Snake, strided conv (kernel 2s)] with strides
4, 4, 5, 8, 2 -> Snake -> Conv(3) to `latent_dim`. Weight-normalised convolutions and Snake activations as in DAC.

Padding exactness: every item is zero-padded to a whole number of 80 ms frames, and activations are zeroed
past each item's length before every convolution that looks at neighbours, so an item in a padded batch gets
the latents it gets alone.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from codec.framing import HOP_SAMPLES, length_mask, num_base_frames


class Snake1d(nn.Module):
    """`x + sin^2(alpha x) / alpha` per channel (periodic inductive bias for audio; Snake(0) = 0)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, padding: int = 0) -> nn.Module:
    return weight_norm(nn.Conv1d(cin, cout, kernel, stride=stride, dilation=dilation, padding=padding))


class ResidualUnit(nn.Module):
    """Snake -> dilated Conv(7) -> Snake -> Conv(1), plus the input."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.act1 = Snake1d(channels)
        self.conv1 = _conv(channels, channels, 7, dilation=dilation, padding=3 * dilation)
        self.act2 = Snake1d(channels)
        self.conv2 = _conv(channels, channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.act1(x) * mask)
        return (x + self.conv2(self.act2(y))) * mask


class EncoderBlock(nn.Module):
    """Residual units at `cin` channels, then a strided Conv(2s) to `cout` channels (time / s)."""

    def __init__(self, cin: int, cout: int, stride: int, dilations: list[int]):
        super().__init__()
        self.stride = stride
        self.units = nn.ModuleList(ResidualUnit(cin, d) for d in dilations)
        self.act = Snake1d(cin)
        self.down = _conv(cin, cout, 2 * stride, stride=stride, padding=(stride + 1) // 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = length_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype)
        for unit in self.units:
            x = unit(x, mask)
        lengths = torch.div(lengths, self.stride, rounding_mode="floor")
        x = self.down(self.act(x) * mask)
        return x * length_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype), lengths


class AcousticEncoder(nn.Module):
    """`[B, S]` 16 kHz waveforms -> `[B, T, latent_dim]` at 12.5 Hz, `T = ceil(S / 1280)`."""

    def __init__(self, channels: int, max_channels: int, strides: list[int], dilations: list[int], latent_dim: int):
        super().__init__()
        widths = [min(channels * 2 ** i, max_channels) for i in range(len(strides) + 1)]
        self.conv_in = _conv(1, widths[0], 7, padding=3)
        self.blocks = nn.ModuleList(
            EncoderBlock(widths[i], widths[i + 1], s, dilations) for i, s in enumerate(strides)
        )
        self.act = Snake1d(widths[-1])
        self.conv_out = _conv(widths[-1], latent_dim, 3, padding=1)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self, residual_scale: float = 0.1) -> None:
        """Variance-preserving weights (std 1/sqrt(fan_in)), zero biases, residual branches scaled by 0.1.

        Why: with PyTorch's default init the latents come out ~100x smaller than the waveform and dominated by
        the bias offsets, so the RVQ's normalised lookup maps every frame to the same code and the first
        optimiser steps (offsets of ~lr) wipe out what signal there is. This init keeps the latents at about the
        input's scale for every config size, with near-identity residual units so the stack stays stable.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                fan_in = module.weight.shape[1] * module.weight.shape[2]
                module.weight = torch.randn_like(module.weight) / fan_in ** 0.5  # through weight_norm's inverse
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, ResidualUnit):
                module.conv2.weight = module.conv2.weight * residual_scale

    def forward(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (`[B, T, latent_dim]` zero past each item's frames, `[B]` frame counts)."""
        frames = num_base_frames(wav_lengths)
        total = int(frames.max()) * HOP_SAMPLES
        wav = wav[:, :total] if wav.shape[1] >= total else nn.functional.pad(wav, (0, total - wav.shape[1]))
        # Zero past each item's samples: the item alone is zero-padded to its last whole frame.
        x = (wav * length_mask(wav_lengths, total).to(wav.dtype))[:, None, :]
        lengths = frames * HOP_SAMPLES
        x = self.conv_in(x) * length_mask(lengths, total)[:, None, :].to(x.dtype)
        for block in self.blocks:
            x, lengths = block(x, lengths)
        mask = length_mask(frames, x.shape[-1])[:, None, :].to(x.dtype)
        x = self.conv_out(self.act(x) * mask) * mask
        return x.transpose(1, 2), frames
