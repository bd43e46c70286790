"""`ARConfig`: the sizes and loss settings of the token+duration language model."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from codec.common.errors import ConfigError

#: 12.5 Hz base frames: the codec's unmerged rate, and the rate of a token of duration 1.
BASE_FRAME_RATE = 12.5


@dataclass
class ARConfig:
    """Everything needed to rebuild an `ARModel`; saved as `config.json` beside the weights.

    `symbols` is the phoneme table (index 0 is `<pad>`), stored here so a checkpoint carries its own table.
    """

    symbols: list[str] = field(default_factory=list)
    # Speech tokens: semantic FSQ codes; the code head has one more class, EOS (= codebook_size).
    codebook_size: int = 32768
    # "table": one learned vector per code (the paper's choice, 8M parameters at 256-d).
    # "fsq": a code's vector is the sum of one learned vector per FSQ digit (levels `fsq_levels`), then an MLP:
    # a few thousand parameters, so the demo bundle stays small, and codes sharing digits share structure.
    code_embedding: str = "table"
    fsq_levels: list[int] = field(default_factory=lambda: [8, 8, 8, 8, 8])
    # 0: a full `hidden -> codebook_size + 1` head; r > 0: a rank-r bottleneck (hidden -> r -> classes),
    # which cuts the head's parameters by hidden / r at little cost in accuracy.
    head_rank: int = 0
    # "softmax": one logit per code (through `head_rank`). "fsq": one logit per FSQ digit value, a code's logit
    # being the sum of its digits' (a product of per-digit distributions): sum(levels) + 1 outputs instead of
    # prod(levels) + 1, so with little data the model learns each digit rather than each of 32768 codes.
    code_head: str = "softmax"
    # Duration classes: a token covering d base frames (1..max_duration) has class d - 1.
    max_duration: int = 8
    # Backbone (a `transformers.LlamaModel` fed `inputs_embeds`).
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None  # grouped-query attention; None = num_heads
    ffn_size: int = 1024
    max_positions: int = 2048  # longest sequence [SOS, RATE, phonemes, TASK, tokens]
    rope_theta: float = 10000.0
    dropout: float = 0.1  # attention dropout and dropout on the input embeddings
    # Rate embedding: an MLP of log(rate / 12.5 Hz), added at the RATE position; continuous so any threshold
    # or target rate conditions the model.
    rate_hidden: int = 64
    # Losses: code+EOS cross-entropy, duration (focal) cross-entropy; gamma 0 is plain cross-entropy.
    duration_focal_gamma: float = 0.0
    code_loss_weight: float = 1.0
    duration_loss_weight: float = 1.0
    label_smoothing: float = 0.0
    # Share of training items whose text (reference and new phonemes) is left out, so that the same model also
    # predicts codes without text: the "unconditional" half of classifier-free guidance on the text
    # (`generate(text_cfg=...)`, as in Koel-TTS).
    text_drop_prob: float = 0.0
    # Phone pointer (`ar/pointer.py`, as in VALL-E R): each token is told which phone of the text is due and
    # predicts how many phones it starts (0..max_advance); generation then walks the text monotonically and stops
    # once every phone has started. Needs a token cache with phone onsets (`flexitts data align`).
    phone_pointer: bool = False
    max_advance: int = 8
    advance_loss_weight: float = 1.0
    pointer_rank: int = 32  # width of the pointer's phone-window bottleneck
    # Symbols of the table that are not phones (stress, word boundaries, punctuation, specials): the pointer
    # skips them. Filled from the text frontend when a phone-pointer model is built for training.
    pointer_skip: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.symbols = list(self.symbols)
        self.fsq_levels = [int(level) for level in self.fsq_levels]
        if len(self.symbols) < 2 or self.symbols[0] != "<pad>":
            raise ConfigError("ARConfig.symbols must hold the phoneme table, with '<pad>' at index 0")
        if self.code_embedding not in ("table", "fsq"):
            raise ConfigError(f"ARConfig.code_embedding must be 'table' or 'fsq', not '{self.code_embedding}'")
        if self.code_head not in ("softmax", "fsq"):
            raise ConfigError(f"ARConfig.code_head must be 'softmax' or 'fsq', not '{self.code_head}'")
        if "fsq" in (self.code_embedding, self.code_head) and math.prod(self.fsq_levels) != self.codebook_size:
            raise ConfigError(
                f"ARConfig: fsq_levels {self.fsq_levels} give {math.prod(self.fsq_levels)} codes, not codebook_size {self.codebook_size}"
            )
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ConfigError("ARConfig: hidden_size must split into num_heads heads of an even size")
        if self.num_kv_heads is not None and self.num_heads % self.num_kv_heads:
            raise ConfigError("ARConfig: num_heads must be a multiple of num_kv_heads")
        if self.codebook_size < 1 or self.max_duration < 1 or self.num_layers < 1 or self.head_rank < 0:
            raise ConfigError("ARConfig: codebook_size, max_duration and num_layers must be positive, head_rank >= 0")
        self.pointer_skip = list(self.pointer_skip)
        if self.phone_pointer and not self.pointer_skip:
            raise ConfigError("ARConfig.phone_pointer needs pointer_skip: the table's symbols that are not phones")
        if self.max_advance < 1 or self.pointer_rank < 1:
            raise ConfigError(f"ARConfig.max_advance and pointer_rank must be at least 1, not {self.max_advance}, {self.pointer_rank}")
        if not 0.0 <= self.text_drop_prob < 1.0:
            raise ConfigError(f"ARConfig.text_drop_prob must be in [0, 1), not {self.text_drop_prob}")

    @property
    def eos_id(self) -> int:
        """The code head's EOS class."""
        return self.codebook_size

    @property
    def duration_start(self) -> int:
        """Duration-embedding index of "no previous token" (the input at the first speech position)."""
        return self.max_duration

    @classmethod
    def demo(cls, symbols: Sequence[str], **overrides) -> "ARConfig":
        """Small: about 4M parameters, trains on a CPU in tens of minutes (the demo bundle)."""
        sizes = dict(
            hidden_size=192, num_layers=4, num_heads=4, ffn_size=576, code_embedding="fsq", code_head="fsq",
            max_positions=1024, dropout=0.1,
        )
        return cls(symbols=list(symbols), **{**sizes, **overrides})

    @classmethod
    def paper(cls, symbols: Sequence[str], **overrides) -> "ARConfig":
        """GPU scale: a 1024-wide, 16-layer Llama (about 340M parameters with the full code tables)."""
        sizes = dict(
            hidden_size=1024, num_layers=16, num_heads=16, ffn_size=4096, code_embedding="table", head_rank=0,
            max_positions=4096, dropout=0.1,
        )
        return cls(symbols=list(symbols), **{**sizes, **overrides})
