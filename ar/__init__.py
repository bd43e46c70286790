"""The autoregressive language model over dynamic-rate semantic tokens and their durations.

    from ar import ARModel, ARConfig
    model = ARModel.from_pretrained()                       # the bundled demo model
    out = model.generate(phoneme_ids, prompt_codes=..., prompt_durations=..., prompt_phonemes=..., seed=0)
    codes, durations = out.item(0)

Importing is cheap: `transformers` loads when a model is built.
"""
from ar.config import BASE_FRAME_RATE, ARConfig
from ar.generate import DEFAULT_MAX_LEN_RATIO, DEFAULT_MIN_LEN_RATIO, ARGeneration, generate
from ar.model import ARModel, collate_examples

__all__ = [
    "ARConfig",
    "ARModel",
    "ARGeneration",
    "generate",
    "collate_examples",
    "BASE_FRAME_RATE",
    "DEFAULT_MIN_LEN_RATIO",
    "DEFAULT_MAX_LEN_RATIO",
]
