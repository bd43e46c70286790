"""The bundled CTC phone recogniser: log-mel -> 1-D conv subsampling -> Conformer -> CTC over phonemes.

Its last hidden layer, pooled to 12.5 Hz, is the codec's semantic feature (FlexiCodec's recipe of a
CTC-trained ASR encoder, at small scale); greedy CTC decoding transcribes audio to phonemes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from codec.asr.augment import speed_perturb, warp_mel
from codec.asr.base import ASRFeatureExtractor
from codec.asr.conformer import Conformer
from codec.asr.fbank import LogMelFbank
from codec.common.pretrained import PretrainedMixin
from codec.framing import length_mask, num_base_frames, pool_frames


@dataclass
class CTCRecognizerConfig:
    """Sizes of the recogniser. `symbols` is the phoneme table (index 0, `<pad>`, doubles as the CTC blank)."""

    symbols: list[str] = field(default_factory=list)
    sample_rate: int = 16000
    n_mels: int = 80
    subsampling: int = 4  # 100 Hz fbank / 4 = 25 Hz encoder frames
    dim: int = 144
    num_layers: int = 6
    num_heads: int = 4
    ffn_dim: int = 576
    conv_kernel: int = 15
    dropout: float = 0.1
    blank_id: int = 0
    # SpecAugment during training: masks per utterance and their maximum widths
    freq_masks: int = 2
    freq_mask_width: int = 12
    time_masks: int = 4
    time_mask_width: int = 10
    # speaker augmentation in training (codec/asr/augment.py): speed factor in [1 - s, 1 + s] per batch,
    # vocal-tract warp in [1 - v, 1 + v] per item; 0 turns each off
    speed_perturb: float = 0.0
    vtlp: float = 0.0

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / 160 / self.subsampling


class ConvSubsampling(nn.Module):
    """A conv, then stride-2 1-D convolutions: `[B, F, n_mels]` -> `[B, F / factor, dim]`."""

    def __init__(self, n_mels: int, dim: int, factor: int):
        super().__init__()
        if factor not in (1, 2, 4, 8):
            raise ValueError(f"subsampling must be 1, 2, 4 or 8, got {factor}")
        num_stride2 = factor.bit_length() - 1
        self.convs = nn.ModuleList(
            [nn.Conv1d(n_mels, dim, kernel_size=3, padding=1)]
            + [nn.Conv1d(dim, dim, kernel_size=3, stride=2, padding=1) for _ in range(num_stride2)]
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = x.transpose(1, 2)  # [B, C, F]
        for conv in self.convs:
            y = nn.functional.gelu(conv(y))
            if conv.stride[0] == 2:
                lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
            # Zero the padding after every conv, as an unpadded item would see zeros there.
            y = y * length_mask(lengths, y.shape[-1])[:, None, :].to(y.dtype)
        return y.transpose(1, 2), lengths


class CTCPhoneRecognizer(nn.Module, PretrainedMixin, ASRFeatureExtractor):
    """Conformer CTC phone recogniser; also an `ASRFeatureExtractor` (its last hidden layer at 12.5 Hz)."""

    config_class = CTCRecognizerConfig
    bundle_name = "asr"

    def __init__(self, config: CTCRecognizerConfig):
        super().__init__()
        if len(config.symbols) < 2:
            raise ValueError("CTCRecognizerConfig.symbols must hold the phoneme table")
        self.config = config
        self.feature_dim = config.dim
        self.sample_rate = config.sample_rate
        self.fbank = LogMelFbank(config.sample_rate, config.n_mels)
        self.subsample = ConvSubsampling(config.n_mels, config.dim, config.subsampling)
        self.encoder = Conformer(
            config.dim, config.num_layers, config.num_heads, config.ffn_dim, config.conv_kernel, config.dropout
        )
        self.head = nn.Linear(config.dim, len(config.symbols))

    def _spec_augment(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Zero random frequency bands and time spans of `[B, F, n_mels]` (vectorised over the batch)."""
        cfg = self.config
        batch, frames, bins = feats.shape
        keep = torch.ones_like(feats, dtype=torch.bool)
        bin_idx = torch.arange(bins, device=feats.device)
        frame_idx = torch.arange(frames, device=feats.device)
        for _ in range(cfg.freq_masks):
            width = torch.randint(0, cfg.freq_mask_width + 1, (batch, 1), device=feats.device)
            start = (torch.rand(batch, 1, device=feats.device) * (bins - width)).long()
            keep &= ~((bin_idx >= start) & (bin_idx < start + width))[:, None, :]
        for _ in range(cfg.time_masks):
            width = torch.randint(0, cfg.time_mask_width + 1, (batch, 1), device=feats.device)
            start = (torch.rand(batch, 1, device=feats.device) * (lengths[:, None] - width).clamp(min=0)).long()
            keep &= ~((frame_idx >= start) & (frame_idx < start + width))[:, :, None]
        return feats * keep

    def encode(self, wav: torch.Tensor, wav_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`[B, S]` 16 kHz waveforms -> (last hidden layer `[B, T', dim]`, `[B]` lengths) at `config.frame_rate`."""
        if wav_lengths is None:
            wav_lengths = torch.full((wav.shape[0],), wav.shape[-1], dtype=torch.long, device=wav.device)
        cfg = self.config
        if self.training and cfg.speed_perturb > 0:
            factor = 1.0 + cfg.speed_perturb * (2 * float(torch.rand(())) - 1)
            wav, wav_lengths = speed_perturb(wav, wav_lengths, factor, cfg.sample_rate)
        feats, lengths = self.fbank(wav, wav_lengths)
        if self.training and cfg.vtlp > 0:
            alpha = 1.0 + cfg.vtlp * (2 * torch.rand(feats.shape[0], device=feats.device) - 1)
            feats = warp_mel(feats, alpha)
        if self.training:
            feats = self._spec_augment(feats, lengths)
        x, lengths = self.subsample(feats, lengths)
        return self.encoder(x, lengths), lengths

    def forward(self, wav: torch.Tensor, wav_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (CTC log-probabilities `[B, T', V]`, hidden `[B, T', dim]`, lengths `[B]`)."""
        hidden, lengths = self.encode(wav, wav_lengths)
        return F.log_softmax(self.head(hidden).float(), dim=-1), hidden, lengths

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """CTC loss of a batch with `wav [B, S]`, `wav_lengths [B]`, `targets [B, L]` (0-padded), `target_lengths [B]`."""
        log_probs, _, lengths = self(batch["wav"], batch["wav_lengths"])
        loss = F.ctc_loss(
            log_probs.transpose(0, 1), batch["targets"], lengths, batch["target_lengths"],
            blank=self.config.blank_id, reduction="mean", zero_infinity=True,
        )
        return {"loss": loss, "ctc": loss.detach()}

    def greedy_ids(self, logits: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Greedy CTC over `[B, T, V]` scores with `[B]` valid frames: argmax, repeats collapsed, blanks removed."""
        best = logits.argmax(dim=-1)  # [B, T]
        previous = F.pad(best, (1, 0), value=-1)[:, :-1]
        keep = (best != self.config.blank_id) & (best != previous) & length_mask(lengths, best.shape[1])
        return [row[mask].tolist() for row, mask in zip(best, keep)]

    @torch.no_grad()
    def transcribe_ids(self, wav: torch.Tensor, wav_lengths: torch.Tensor | None = None) -> list[list[int]]:
        """Greedy CTC decoding: argmax per frame, repeats collapsed, blanks removed; one id list per item."""
        log_probs, _, lengths = self(wav, wav_lengths)
        return self.greedy_ids(log_probs, lengths)

    def feature_logits(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's phone scores for 12.5 Hz features (what `extract` gives, or a codec's estimate of it),
        each frame repeated to this recogniser's frame rate.

        Args:
            features: `[B, T, dim]` at 12.5 Hz; lengths: `[B]` valid frames (default: all).
        Returns:
            (logits `[B, T * r, V]` float, valid frames `[B]`), r = frame_rate / 12.5.
        """
        repeat = max(1, round(self.config.frame_rate / 12.5))
        if lengths is None:
            lengths = torch.full((features.shape[0],), features.shape[1], device=features.device)
        x = features.to(self.head.weight.dtype).repeat_interleave(repeat, dim=1)
        return self.head(x).float(), lengths * repeat

    @torch.no_grad()
    def read_features(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> list[list[int]]:
        """Greedy CTC reading (as in `transcribe_ids`) of `feature_logits`: one phone id list per item."""
        return self.greedy_ids(*self.feature_logits(features, lengths))

    @torch.no_grad()
    def transcribe(self, wav: torch.Tensor, wav_lengths: torch.Tensor | None = None) -> list[list[str]]:
        """Greedy CTC transcription into phoneme symbols, one list per item."""
        return [[self.config.symbols[i] for i in ids] for ids in self.transcribe_ids(wav, wav_lengths)]

    @torch.no_grad()
    def extract(self, wav: torch.Tensor, wav_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden layer pooled to 12.5 Hz: `[B, T, dim]` with `T = ceil(samples / 1280)`, and `[B]` lengths."""
        return self.extract_with_hidden(wav, wav_lengths)[:2]

    @torch.no_grad()
    def extract_with_hidden(self, wav: torch.Tensor, wav_lengths: torch.Tensor | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`extract`'s (features `[B, T, dim]`, lengths `[B]`) and the unpooled last hidden layer at the
        recogniser's own rate (`[B, T', dim]`, lengths `[B]`)."""
        if wav_lengths is None:
            wav_lengths = torch.full((wav.shape[0],), wav.shape[-1], dtype=torch.long, device=wav.device)
        hidden, lengths = self.encode(wav, wav_lengths)
        num_out = num_base_frames(wav_lengths)
        return pool_frames(hidden, lengths, self.config.frame_rate, num_out), num_out, hidden, lengths
