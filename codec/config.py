"""`FlexiCodecConfig`: every size and training knob of the codec, saved as `config.json` beside the weights.

Two presets: `FlexiCodecConfig.demo()` (a few million parameters, trainable on a CPU) and
`FlexiCodecConfig.paper()` (FlexiCodec's published sizes: 24 x 4096 acoustic codebooks, a 32-layer 512-d
transformer at 12.5 Hz, 6-layer query-token aggregators; constructible, not meant for a CPU).

Lists, not tuples, so that a JSON round trip gives back an equal config (and the same fingerprint).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from codec.common.errors import ConfigError
from codec.framing import HOP_SAMPLES, SAMPLE_RATE
from codec.gan import WaveformGANConfig

AGGREGATORS = ("transformer", "mean")
TRAIN_SEGMENTATIONS = ("threshold", "melt", "dp")
_LATER_FIELDS = ("phone_subframes", "subframe_hidden", "lambda_subphone")  # see `fingerprint`


@dataclass
class FlexiCodecConfig(WaveformGANConfig):
    """Sizes and training settings of `FlexiCodec` (defaults: the demo preset)."""

    # --- semantic stream: a frozen ASR feature extractor (see `codec.asr.load_asr_features`) ---
    asr: str = "ctc"  # spec of the extractor; "ctc" = the bundled CTC phone recogniser
    asr_dim: int = 144  # its feature size D
    # --- frame scheduling ---
    max_len: int = 8  # longest merged token, in 12.5 Hz frames (duration classes 1..max_len)
    default_threshold: float = 0.91  # tau used when encode() gets neither a threshold nor a frame rate
    # --- acoustic CNN encoder (DAC-style), 16 kHz -> 12.5 Hz ---
    encoder_channels: int = 8  # channels of the first conv; doubled by every strided block
    encoder_max_channels: int = 256  # cap on the doubling
    encoder_strides: list[int] = field(default_factory=lambda: [4, 4, 5, 8, 2])
    encoder_dilations: list[int] = field(default_factory=lambda: [1, 3, 9])  # residual units per block
    latent_dim: int = 128  # acoustic latent (and decoded-semantic) size
    # --- segment aggregation (FlexiCodec's query-token transformer, or a plain mean) ---
    aggregator: str = "transformer"
    aggregator_dim: int = 96
    aggregator_layers: int = 1
    aggregator_heads: int = 4
    aggregator_ffn: int = 256
    aggregator_window: int = 16  # attention span in interleaved positions; 0 = each segment attends to itself only
    # --- semantic quantiser: ConvNeXt blocks -> FSQ -> ConvNeXt blocks ---
    semantic_dim: int = 128
    semantic_layers: int = 2
    semantic_ffn: int = 384
    fsq_levels: list[int] = field(default_factory=lambda: [8, 8, 8, 8, 8])
    # --- acoustic residual VQ (factorised, L2-normalised lookup) ---
    num_codebooks: int = 7  # acoustic codebooks; num_quantizers counts the FSQ too, so up to num_codebooks + 1
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: float = 0.5  # share of training items that keep a random 1..N acoustic codebooks
    bypass_prob: float = 0.125  # share of training items decoded from the semantic stream alone
    # --- decoder: transformer at 12.5 Hz, then a Vocos backbone + ISTFT head ---
    decoder_dim: int = 128
    decoder_layers: int = 2
    decoder_heads: int = 4
    decoder_ffn: int = 384
    decoder_window: int = 16  # attention span in 12.5 Hz frames either side; 0 = full attention
    vocos_dim: int = 192
    vocos_ffn: int = 576
    vocos_layers: int = 6
    istft_hop: int = 320  # STFT hop of the head (50 Hz); must divide 1280
    istft_n_fft: int = 1280
    # --- training ---
    train_segmentation: str = "threshold"  # threshold (tau ~ U(tau_range)) | melt (random) | dp (Cool)
    tau_range: list[float] = field(default_factory=lambda: [0.8, 1.0])
    dp_rate_range: list[float] = field(default_factory=lambda: [6.25, 12.5])  # Hz, for train_segmentation="dp"
    melt_steps: int = 2000  # steps over which the share of long segments grows to melt_long_share
    melt_long_share: float = 0.6  # target share of frames inside segments longer than 1
    melt_unmerged_prob: float = 0.5  # utterances left unmerged during Melt
    cool_unmerged_prob: float = 0.3  # utterances left unmerged during Cool (dp)
    freeze_encoder: bool = False  # Cool stage: the acoustic encoder is not trained
    mel_windows: list[int] = field(default_factory=lambda: [256, 512, 1024, 2048])
    mel_bins: list[int] = field(default_factory=lambda: [20, 40, 80, 160])
    lambda_mel: float = 15.0
    lambda_commit: float = 0.25
    lambda_codebook: float = 1.0
    lambda_align: float = 15.0
    # Phone distillation (CTC recogniser only): the recogniser's own phone head, frozen, reads the aligned
    # semantic embedding, and its phone distribution is pulled (KL) towards the one it gives the merged features.
    # The feature MSE weighs every direction of the feature space alike; this weighs the phonetic ones.
    lambda_phone: float = 0.0
    # Sub-frame phone reading (codec/subframe.py): `phone_subframes` vectors per 12.5 Hz frame, read by the same
    # frozen head and pulled (KL, weight `lambda_subphone`) towards the recogniser's own frame posteriors, so a
    # token spells out every phone of its span. 0 = no reader; 2 matches the bundled 25 Hz recogniser.
    phone_subframes: int = 0
    subframe_hidden: int = 256
    lambda_subphone: float = 0.0
    # GAN settings (use_gan, off by default here, ...): `codec.gan.WaveformGANConfig`.

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("encoder_strides", "encoder_dilations", "fsq_levels", "tau_range", "dp_rate_range",
                     "mel_windows", "mel_bins"):
            setattr(self, name, list(getattr(self, name)))
        if math.prod(self.encoder_strides) != HOP_SAMPLES:
            raise ConfigError(f"encoder_strides must multiply to {HOP_SAMPLES} (80 ms at 16 kHz), got {self.encoder_strides}")
        if HOP_SAMPLES % self.istft_hop or self.istft_n_fft < self.istft_hop or (self.istft_n_fft - self.istft_hop) % 2:
            raise ConfigError(f"istft_hop must divide {HOP_SAMPLES} and istft_n_fft - istft_hop must be even and >= 0")
        if self.aggregator not in AGGREGATORS:
            raise ConfigError(f"aggregator must be one of {AGGREGATORS}, not '{self.aggregator}'")
        if self.train_segmentation not in TRAIN_SEGMENTATIONS:
            raise ConfigError(f"train_segmentation must be one of {TRAIN_SEGMENTATIONS}, not '{self.train_segmentation}'")
        if not self.fsq_levels or min(self.fsq_levels) < 2:
            raise ConfigError(f"fsq_levels must be integers >= 2, got {self.fsq_levels}")
        if self.phone_subframes < 0 or (self.lambda_subphone > 0 and not self.phone_subframes):
            raise ConfigError("lambda_subphone needs phone_subframes >= 1 (2 for the bundled 25 Hz recogniser)")
        if self.max_len < 1 or self.num_codebooks < 0 or self.codebook_size < 2:
            raise ConfigError("max_len >= 1, num_codebooks >= 0 and codebook_size >= 2 are required")
        if len(self.mel_windows) != len(self.mel_bins) or not self.mel_windows:
            raise ConfigError("mel_windows and mel_bins must be non-empty and of equal length")
        if len(self.tau_range) != 2 or len(self.dp_rate_range) != 2:
            raise ConfigError("tau_range and dp_rate_range are [low, high] pairs")
        for dim, heads, what in ((self.aggregator_dim, self.aggregator_heads, "aggregator"),
                                 (self.decoder_dim, self.decoder_heads, "decoder")):
            if dim % heads or (dim // heads) % 2:
                raise ConfigError(f"{what}_dim must split into {what}_heads heads of even size")

    # --- derived sizes ---
    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def semantic_codebook_size(self) -> int:
        """Number of FSQ codes: the product of the levels (32768 for [8, 8, 8, 8, 8])."""
        return math.prod(self.fsq_levels)

    @property
    def max_quantizers(self) -> int:
        """Largest `num_quantizers`: the FSQ plus every acoustic codebook."""
        return 1 + self.num_codebooks

    # --- presets ---
    @classmethod
    def demo(cls, **overrides: Any) -> "FlexiCodecConfig":
        """The demo bundle's size: a few million parameters, trainable on a CPU."""
        return cls(**overrides)

    @classmethod
    def paper(cls, **overrides: Any) -> "FlexiCodecConfig":
        """FlexiCodec's published sizes (official `model_config.yaml`): SenseVoice-Small features (512-d),
        DAC encoder (d_model 32, strides 4,4,5,8,2, latent 512), 6-layer 512-d query-token aggregators,
        768-d ConvNeXt x4 around FSQ [8]*5, 24 x 4096 codebooks, a 32-layer 512-d transformer with a 16-frame
        window. The official waveform decoder is a DAC transposed CNN (dim 1536); ours is a Vocos backbone of
        comparable size."""
        values: dict[str, Any] = dict(
            asr="whisper", asr_dim=512, encoder_channels=32, encoder_max_channels=1024, latent_dim=512,
            aggregator_dim=512, aggregator_layers=6, aggregator_heads=8, aggregator_ffn=2048, aggregator_window=16,
            semantic_dim=768, semantic_layers=4, semantic_ffn=2048,
            num_codebooks=24, codebook_size=4096, quantizer_dropout=1.0,
            decoder_dim=512, decoder_layers=32, decoder_heads=8, decoder_ffn=2048, decoder_window=16,
            vocos_dim=768, vocos_ffn=2304, vocos_layers=12,
            mel_windows=[32, 64, 128, 256, 512, 1024, 2048], mel_bins=[5, 10, 20, 40, 80, 160, 320],
            use_gan=True, disc_period_channels=[32, 128, 512, 1024, 1024], disc_resolution_channels=32,
        )
        values.update(overrides)
        return cls(**values)

    # --- serialisation ---
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def fingerprint(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON: token files record it so that tokens are
        only decoded by a codec with the same layout. Fields added after the first token files were written
        count only when they differ from their defaults, so older codecs keep their fingerprints."""
        data = self.to_dict()
        defaults = type(self)()
        for name in _LATER_FIELDS:
            if data[name] == getattr(defaults, name):
                del data[name]
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
