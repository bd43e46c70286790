"""Bitrate of dynamic-rate tokens: content bits plus duration bits per token, times tokens per second.

Per token: `log2(semantic_codebook_size)` (15 bits for FSQ [8]*5) + `(Q - 1) * log2(codebook_size)` (12 bits
per 4096-entry acoustic codebook) + `log2(max_len)` duration bits (3 bits for lengths 1..8; FlexiCodec's
"3 extra bits per frame"). FlexiCodec's table: 8 quantizers at 8.3 Hz -> 102 bits x 8.3 = 847 bps ("0.85 kbps").
"""
from __future__ import annotations

import math


def bits_per_token(num_quantizers: int, codebook_size: int = 4096, semantic_codebook_size: int = 32768,
                   max_len: int = 8, include_duration: bool = True) -> float:
    """Content bits (+ duration bits) of one merged token."""
    if num_quantizers < 1:
        raise ValueError(f"num_quantizers must be >= 1, got {num_quantizers}")
    content = math.log2(semantic_codebook_size) + (num_quantizers - 1) * math.log2(codebook_size)
    return content + (math.log2(max_len) if include_duration and max_len > 1 else 0.0)


def bitrate(num_quantizers: int, frame_rate: float, codebook_size: int = 4096, semantic_codebook_size: int = 32768,
            max_len: int = 8, include_duration: bool = True) -> float:
    """Bits per second at an average `frame_rate` (tokens per second).

    Example: `bitrate(8, 8.3)` = (15 + 7 * 12 + 3) * 8.3 = 846.6.
    """
    if frame_rate < 0:
        raise ValueError(f"frame_rate must be >= 0, got {frame_rate}")
    return bits_per_token(num_quantizers, codebook_size, semantic_codebook_size, max_len, include_duration) * frame_rate
