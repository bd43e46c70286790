"""`VoiceboxConfig`: sizes and training knobs of the NAR flow-matching model, saved as `config.json`.

Two presets: `VoiceboxConfig.demo()` (about 5 M parameters, trainable on a CPU) and `VoiceboxConfig.paper()`
(FlexiCodec's NAR scale: 16 layers of 1024 on a 24 kHz, 128-bin mel). The mel settings live inside (`mel`) so
that a checkpoint says which features it produces; the vocoder must use the same ones.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from codec.common.errors import ConfigError
from nar.mel import MelConfig

LOSSES = ("l1", "l2")
CODE_EMBEDDINGS = ("fsq", "full")


@dataclass
class VoiceboxConfig:
    """Sizes and training settings of `Voicebox` (defaults: the demo preset)."""

    mel: MelConfig = field(default_factory=MelConfig)
    # --- condition: semantic FSQ codes ---
    codebook_size: int = 32768
    # "fsq": one small embedding table per FSQ digit (levels [8]*5 -> 40 rows), summed: codes that share digits
    # share parameters, and 32768 x dim rows (8 M at dim 256) stay out of the demo bundle. "full": one row a code.
    code_embedding: str = "fsq"
    fsq_levels: list[int] = field(default_factory=lambda: [8, 8, 8, 8, 8])
    # --- transformer ---
    dim: int = 256
    num_layers: int = 6
    num_heads: int = 4
    ffn_mult: float = 4.0
    dropout: float = 0.0
    conv_pos_kernel: int = 31  # convolutional position embedding on the input (Voicebox); 0: none
    conv_pos_groups: int = 16
    skip_connections: bool = True  # U-Net style skips between symmetric layers (Voicebox)
    time_embed_dim: int = 256  # sinusoidal features of t
    # --- flow matching ---
    sigma: float = 1e-5
    cond_drop_prob: float = 0.2
    loss: str = "l1"
    prompt_range: list[float] = field(default_factory=lambda: [0.0, 0.7])  # share of frames kept as context
    prompt_at_start_prob: float = 0.5  # share of items whose context span starts at frame 0 (as at inference)
    # --- code encoder and mel prior (nar/code_prior.py); 0 layers: codes enter through their embedding alone ---
    code_encoder_layers: int = 0
    prior_loss_weight: float = 0.0  # weight of the L1 loss between the prior mel and the target mel
    # --- phones (nar/phones.py): the text's phones aligned at 25 Hz (two per 12.5 Hz frame) added to the code
    # encoder's input, as Voicebox conditions on aligned phones; 0 phones: off. Needs the code encoder.
    num_phones: int = 0
    phone_rank: int = 32  # width of the phone embedding (the demo bundle counts its bytes)
    phone_drop_prob: float = 0.3  # share of training items without phones, so codes alone still work
    # Share of the items with phones whose codes are corrupted (each code replaced by a random one with a
    # probability drawn from U(0, code_noise_max) per item): an AR's codes are often wrong, and the model should
    # then follow the phones instead of the codes. 0: off.
    code_noise_prob: float = 0.0
    code_noise_max: float = 0.5
    # Share of the items with phones that train on an AR's teacher-forced samples of their codes (batch key
    # `ar_codes`, `flexitts data ar-samples`) instead of the codec's: the mistakes the NAR meets at inference,
    # rather than random ones. 0: off.
    ar_code_prob: float = 0.0

    def __post_init__(self) -> None:
        self.mel = MelConfig.from_any(self.mel)
        self.fsq_levels = [int(x) for x in self.fsq_levels]
        self.prompt_range = [float(x) for x in self.prompt_range]
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, not '{self.loss}'")
        if self.code_embedding not in CODE_EMBEDDINGS:
            raise ConfigError(f"code_embedding must be one of {CODE_EMBEDDINGS}, not '{self.code_embedding}'")
        if self.code_embedding == "fsq" and math.prod(self.fsq_levels) != self.codebook_size:
            raise ConfigError(f"fsq_levels {self.fsq_levels} give {math.prod(self.fsq_levels)} codes, not codebook_size={self.codebook_size}")
        if self.dim % self.num_heads or (self.dim // self.num_heads) % 2:
            raise ConfigError("dim must split into num_heads heads of even size (rotary positions)")
        lo, hi = self.prompt_range if len(self.prompt_range) == 2 else (-1.0, -1.0)
        if not 0.0 <= lo <= hi < 1.0:
            raise ConfigError(f"prompt_range must be [low, high] with 0 <= low <= high < 1, got {self.prompt_range}")
        if self.code_encoder_layers < 0 or self.prior_loss_weight < 0:
            raise ConfigError("code_encoder_layers and prior_loss_weight must be >= 0")
        if self.num_phones and not self.code_encoder_layers:
            raise ConfigError("num_phones (phone conditioning) needs a code encoder: set code_encoder_layers >= 1")
        if self.num_phones < 0 or self.phone_rank < 1 or not 0.0 <= self.phone_drop_prob <= 1.0:
            raise ConfigError("num_phones must be >= 0, phone_rank >= 1 and phone_drop_prob in [0, 1]")
        if not all(0.0 <= p <= 1.0 for p in (self.code_noise_prob, self.code_noise_max, self.ar_code_prob)):
            raise ConfigError("code_noise_prob, code_noise_max and ar_code_prob must lie in [0, 1]")
        if self.prior_loss_weight > 0 and not self.code_encoder_layers:
            raise ConfigError("prior_loss_weight needs a code encoder: set code_encoder_layers >= 1")
        if not 0.0 <= self.cond_drop_prob < 1.0 or self.sigma < 0 or self.num_layers < 1:
            raise ConfigError("cond_drop_prob in [0, 1), sigma >= 0 and num_layers >= 1 are required")
        if self.conv_pos_kernel and (self.conv_pos_kernel % 2 == 0 or self.dim % self.conv_pos_groups):
            raise ConfigError("conv_pos_kernel must be odd and conv_pos_groups must divide dim")

    @property
    def ffn_dim(self) -> int:
        return int(round(self.dim * self.ffn_mult))

    @classmethod
    def demo(cls, **overrides: Any) -> "VoiceboxConfig":
        """The demo bundle's size: 6 layers of 256, 4 heads, 16 kHz / 80-bin mel."""
        return cls(**overrides)

    @classmethod
    def paper(cls, **overrides: Any) -> "VoiceboxConfig":
        """FlexiCodec's NAR scale: 16 layers of 1024 (16 heads), 24 kHz mel with 128 bins, a row per code."""
        values: dict[str, Any] = dict(mel=MelConfig.paper(), dim=1024, num_layers=16, num_heads=16,
                                      code_embedding="full", conv_pos_groups=16, dropout=0.1, time_embed_dim=256)
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
