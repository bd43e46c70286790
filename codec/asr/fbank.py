"""Log-mel filterbank front end of the CTC recogniser (80 bins, 25 ms windows, 10 ms hop at 16 kHz)."""
from __future__ import annotations

import torch
from torch import nn

from codec.framing import length_mask


class LogMelFbank(nn.Module):
    """`[B, S]` waveforms to per-utterance mean/variance normalised log-mel frames `[B, F, n_mels]` at 100 Hz.

    The normalisation uses only each item's valid frames, so padding never changes an item's features and
    the recogniser is insensitive to recording gain.
    """

    def __init__(self, sample_rate: int = 16000, n_mels: int = 80, n_fft: int = 512, win_length: int = 400, hop_length: int = 160):
        super().__init__()
        import torchaudio

        self.hop_length = hop_length
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length, n_mels=n_mels,
            center=True, pad_mode="constant", power=2.0,
        )

    def num_frames(self, wav_lengths: torch.Tensor) -> torch.Tensor:
        """Frames the centred STFT gives for `[B]` sample counts."""
        return torch.div(wav_lengths, self.hop_length, rounding_mode="floor") + 1

    def forward(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Zero the padding first: the STFT window straddling an item's end must not see another item's samples.
        wav = wav * length_mask(wav_lengths, wav.shape[-1]).to(wav.dtype)
        feats = torch.log(self.mel(wav.float()) + 1e-6).transpose(1, 2)  # [B, F, n_mels]
        lengths = self.num_frames(wav_lengths).clamp(max=feats.shape[1])
        mask = length_mask(lengths, feats.shape[1])[..., None].to(feats.dtype)
        count = mask.sum(dim=1, keepdim=True).clamp(min=1)
        mean = (feats * mask).sum(dim=1, keepdim=True) / count
        var = (((feats - mean) * mask) ** 2).sum(dim=1, keepdim=True) / count
        return (feats - mean) / torch.sqrt(var + 1e-5) * mask, lengths
