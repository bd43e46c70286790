"""Decoder pieces: padding-masked ConvNeXt stacks (semantic projections) and the waveform decoder.

Waveform decoder: the 12.5 Hz latent is upsampled by a transposed conv (x4 for the default STFT hop of 320
samples, 50 Hz), runs through a Vocos ConvNeXt backbone (`vocos.models.VocosBackbone`) and an ISTFT head
(`vocos.heads.ISTFTHead`: log-magnitude and phase per bin, inverse STFT with "same" padding) to 16 kHz.
Why hop 320 / n_fft 1280: the backbone runs at 50 frames per second instead of Vocos' usual ~100 (half the
compute, which dominates decoding on a CPU), and 80 ms windows still overlap 4x; WavTokenizer decodes with the
same 25 ms / 100 ms ratio. Both are config values.

The vocos modules are used as parameter containers with our own forward passes, because theirs pad with the
neighbouring item's frames: here every convolution's input is zeroed past each item's end, the spectrum of
padded frames is zeroed, and the ISTFT's window-envelope normalisation counts only each item's own frames, so
decoding a padded batch gives each item what it gets alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codec.framing import HOP_SAMPLES, length_mask


class ConvNeXtStack(nn.Module):
    """`[B, G, in_dim]` -> `[B, G, out_dim]`: Linear in, Vocos ConvNeXt blocks (kernel 7 over tokens), Linear out."""

    def __init__(self, in_dim: int, dim: int, layers: int, ffn: int, out_dim: int | None = None):
        super().__init__()
        from vocos.modules import ConvNeXtBlock  # imported here: vocos pulls in encodec at import time

        self.proj_in = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(dim=dim, intermediate_dim=ffn, layer_scale_init_value=1.0 / max(1, layers)) for _ in range(layers)
        )
        self.proj_out = nn.Linear(dim, out_dim) if out_dim is not None else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[:, None, :].to(x.dtype)
        h = self.proj_in(x).transpose(1, 2)  # [B, C, G]
        for block in self.blocks:
            h = block(h * m)  # the depthwise conv must see zeros past the item's end
        return self.proj_out((h * m).transpose(1, 2)) * mask[..., None].to(x.dtype)


class WaveDecoder(nn.Module):
    """`[B, T, latent_dim]` at 12.5 Hz with `[B]` frame counts -> `[B, T * 1280]` waveform (0 past each item)."""

    def __init__(self, latent_dim: int, dim: int, ffn: int, layers: int, hop: int = 320, n_fft: int = 1280):
        super().__init__()
        from vocos.heads import ISTFTHead
        from vocos.models import VocosBackbone

        self.factor = HOP_SAMPLES // hop
        self.hop, self.n_fft = hop, n_fft
        self.upsample = (
            nn.ConvTranspose1d(latent_dim, latent_dim, kernel_size=2 * self.factor, stride=self.factor,
                               padding=self.factor // 2)
            if self.factor > 1 else nn.Identity()
        )
        self.backbone = VocosBackbone(input_channels=latent_dim, dim=dim, intermediate_dim=ffn, num_layers=layers)
        self.head = ISTFTHead(dim=dim, n_fft=n_fft, hop_length=hop, padding="same")

    def _istft(self, spec: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Inverse STFT ("same" padding) of `[B, n_fft/2+1, L]` with a per-item window envelope -> `[B, L * hop]`."""
        window = self.head.istft.window.to(spec.real.dtype)
        length = spec.shape[-1]
        pad = (self.n_fft - self.hop) // 2
        frames = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward") * window[None, :, None]
        size = (length - 1) * self.hop + self.n_fft

        def overlap_add(columns: torch.Tensor) -> torch.Tensor:
            out = F.fold(columns, output_size=(1, size), kernel_size=(1, self.n_fft), stride=(1, self.hop))
            return out[:, 0, 0, pad : size - pad]

        envelope = overlap_add(window.square()[None, :, None] * frame_mask[:, None, :].to(window.dtype))
        return overlap_add(frames) / envelope.clamp(min=1e-8)

    def forward(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1] * self.factor
        h = self.upsample(x.transpose(1, 2))[..., :steps]  # [B, C, L] at the STFT frame rate
        step_lengths = frames * self.factor
        mask = length_mask(step_lengths, steps)  # [B, L]
        m = mask[:, None, :].to(h.dtype)
        bb = self.backbone
        h = bb.embed(h * m)
        h = bb.norm(h.transpose(1, 2)).transpose(1, 2)
        for block in bb.convnext:
            h = block(h * m)
        h = bb.final_layer_norm(h.transpose(1, 2))  # [B, L, dim]
        mag, phase = self.head.out(h).transpose(1, 2).chunk(2, dim=1)
        mag = torch.exp(mag).clamp(max=1e2)  # as vocos' ISTFTHead: guards against huge magnitudes
        spec = torch.polar(mag.float(), phase.float()) * m.float()
        wav = self._istft(spec, mask)
        return wav * length_mask(frames * HOP_SAMPLES, wav.shape[-1]).to(wav.dtype)
