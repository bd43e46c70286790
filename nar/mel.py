"""Log-mel features shared by the NAR model (its target) and the vocoder (its input).

Frame grid: `frames_per_base` (4) mel frames per 12.5 Hz base frame, for any waveform length: a waveform of `S`
samples gives exactly `F = 4 * ceil(S / (4 * hop))` frames (`4 * ceil(S / 1280)` at the demo's 16 kHz / hop
320), so mel frames line up with the codec's token durations (`sum(durations) * 4 == F`). How: the waveform is
zero-padded to a multiple of `4 * hop`, a centred STFT gives one frame more than that, and the last is dropped.
Frame `k` is centred on sample `k * hop`, as in Vocos' "center" features.

Values: log(max(mel magnitude, log_floor)), then `(x - mean) / std` with fixed constants from the config, so that
a model sees roughly N(0, 1) inputs. `mean = 0, std = 1, log_floor = 1e-7, mel_scale = "htk", norm = None` is
exactly the feature of the public Vocos mel checkpoints (`vocos.feature_extractors.MelSpectrogramFeatures`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from codec.common.errors import ConfigError

PAD_MODES = ("constant", "reflect")


@dataclass
class MelConfig:
    """Mel analysis settings (defaults: the demo's 16 kHz, 50 Hz, 80 bins)."""

    sample_rate: int = 16000
    hop_length: int = 320  # 50 frames per second at 16 kHz
    n_fft: int = 1280
    win_length: int = 1280
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = 8000.0  # None: sample_rate / 2
    power: float = 1.0  # 1: magnitude (as Vocos), 2: power
    mel_scale: str = "htk"  # "htk" | "slaney" (torchaudio's names)
    norm: str | None = None  # filterbank area normalisation: None | "slaney"
    log_floor: float = 1e-5
    # Fixed normalisation: measured once on 200 demo-corpus utterances (log mel mean -0.79, std 3.07 over all
    # bins and frames), so that the NAR sees values of about N(0, 1).
    mean: float = -0.8
    std: float = 3.1
    # Padding of the centred STFT at both ends. "constant" (zeros) makes an item's frames independent of the
    # padding of a batch (reflection at the end of a padded item would mirror other padding); "reflect" is Vocos'.
    pad_mode: str = "constant"
    frames_per_base: int = 4  # mel frames per 12.5 Hz base frame

    def __post_init__(self) -> None:
        if self.mel_scale not in ("htk", "slaney"):
            raise ConfigError(f"mel_scale must be 'htk' or 'slaney', not '{self.mel_scale}'")
        if self.norm not in (None, "slaney"):
            raise ConfigError(f"mel norm must be null or 'slaney', not '{self.norm}'")
        if self.pad_mode not in PAD_MODES:
            raise ConfigError(f"pad_mode must be one of {PAD_MODES}, not '{self.pad_mode}'")
        if self.hop_length < 1 or self.win_length > self.n_fft or self.n_mels < 1 or self.std <= 0:
            raise ConfigError("mel config needs hop_length >= 1, win_length <= n_fft, n_mels >= 1 and std > 0")

    @property
    def frame_rate(self) -> float:
        """Mel frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def base_samples(self) -> int:
        """Samples per base frame (1280 at 16 kHz / hop 320)."""
        return self.hop_length * self.frames_per_base

    def num_frames(self, num_samples: int | torch.Tensor) -> int | torch.Tensor:
        """Mel frames of a waveform of `num_samples` samples: `frames_per_base * ceil(S / base_samples)`."""
        if isinstance(num_samples, torch.Tensor):
            return torch.div(num_samples + self.base_samples - 1, self.base_samples, rounding_mode="floor") * self.frames_per_base
        return -(-int(num_samples) // self.base_samples) * self.frames_per_base

    @classmethod
    def demo(cls, **overrides: Any) -> "MelConfig":
        """16 kHz, hop 320 (50 Hz), n_fft 1280, 80 bins up to 8 kHz."""
        return cls(**overrides)

    @classmethod
    def paper(cls, **overrides: Any) -> "MelConfig":
        """FlexiCodec's NAR / Vocos setting: 24 kHz, hop 480 (50 Hz), n_fft 1920, 128 bins."""
        values: dict[str, Any] = dict(sample_rate=24000, hop_length=480, n_fft=1920, win_length=1920, n_mels=128,
                                      f_max=None)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_any(cls, value: "MelConfig | dict[str, Any]") -> "MelConfig":
        """A `MelConfig` from itself or its dict (as stored inside a model's config.json)."""
        if isinstance(value, MelConfig):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"mel config must be a mapping, got {type(value).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(f"unknown mel config field(s) {unknown}")
        return cls(**value)


class MelSpectrogram(nn.Module):
    """`wav [B, S]` (+ `lengths [B]`) -> normalised log mel `[B, F, n_mels]` and mel lengths `[B]`.

    `F = config.num_frames(S)`; item `b` has `config.num_frames(lengths[b])` valid frames, computed as if it were
    alone (its samples past `lengths[b]` are zeroed first). Filterbank and window are non-persistent buffers:
    they never enter a checkpoint.
    """

    def __init__(self, config: MelConfig):
        super().__init__()
        import torchaudio

        self.config = config
        c = config
        f_max = float(c.f_max) if c.f_max is not None else c.sample_rate / 2
        with torch.device("cpu"):  # real values even when built under a meta/default device
            fb = torchaudio.functional.melscale_fbanks(c.n_fft // 2 + 1, float(c.f_min), f_max, c.n_mels, c.sample_rate,
                                                       norm=c.norm, mel_scale=c.mel_scale)
            window = torch.hann_window(c.win_length)
        self.register_buffer("fb", fb, persistent=False)  # [n_fft/2+1, n_mels]
        self.register_buffer("window", window, persistent=False)

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Un-normalised log mel of `[B, S]` with `S` a multiple of `base_samples`: `[B, S / hop, n_mels]`."""
        c = self.config
        spec = torch.stft(wav.float(), n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
                          window=self.window.float(), center=True, pad_mode=c.pad_mode, return_complex=True)
        mag = spec.abs()
        if c.power != 1.0:
            mag = mag.pow(c.power)
        mel = mag.transpose(1, 2)[:, :-1] @ self.fb.float()  # the centred STFT's extra last frame is dropped
        return torch.log(mel.clamp(min=c.log_floor))

    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        return (log_mel - self.config.mean) / self.config.std

    def denormalize(self, mel: torch.Tensor) -> torch.Tensor:
        return mel * self.config.std + self.config.mean

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`[B, S]` (or `[S]`) waveform at `config.sample_rate` -> (`[B, F, n_mels]`, `[B]` frame counts).

        Frames past an item's length are zero.
        """
        if wav.dim() == 1:
            wav = wav[None]
        if wav.dim() != 2:
            raise ConfigError(f"MelSpectrogram expects a [B, S] waveform, got shape {tuple(wav.shape)}")
        batch, steps = wav.shape
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.long, device=wav.device)
        lengths = lengths.to(wav.device).long()
        frames = self.config.num_frames(lengths)
        total = int(self.config.num_frames(steps))
        padded = total * self.config.hop_length
        keep = (torch.arange(steps, device=wav.device)[None, :] < lengths[:, None]).to(wav.dtype)
        x = torch.nn.functional.pad(wav * keep, (0, padded - steps))
        with torch.autocast(device_type=wav.device.type, enabled=False):  # log of half-precision sums: too coarse
            mel = self.normalize(self.log_mel(x.float()))
        valid = torch.arange(total, device=wav.device)[None, :] < frames[:, None]
        return mel * valid[..., None].to(mel.dtype), frames
