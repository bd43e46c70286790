"""Dynamic-rate frame scheduling: which 12.5 Hz frames merge into one token, and the merge/unmerge ops.

All schedulers return segment lengths `l[G]` (`sum(l) == T`, `1 <= l <= max_len`), or `[B, Gmax]` zero-padded
for a padded batch `[B, T, D]` with item lengths `[B]`; padding never changes a result.

- `threshold_segments`: FlexiCodec cosine-similarity threshold.
- `dp_segments`: CodecSlime ScheDFR, exactly G segments minimising `segment_cost` (pruned DP).
- `entropy_segments`: TFC waveform-entropy granularity allocation (1/2/4-frame segments on their grid).
- `merge` / `unmerge`: segment means / repeat back, vectorised.
- target rate: `threshold_for_rate`, `num_segments_for_rate`, `segments_for_rate`, `entropy_ratios_for_rate`.
"""

from .cost import segment_cost
from .dp import DPStats, dp_segments, dp_state_count
from .entropy import entropy_segments, temporal_entropy
from .merge import merge, segment_ids, unmerge
from .target_rate import (average_rate, entropy_ratios_for_rate, num_segments_for_rate, segments_for_rate,
                          threshold_for_rate)
from .threshold import adjacent_cosine, threshold_segments

__all__ = [
    "threshold_segments", "adjacent_cosine",
    "dp_segments", "dp_state_count", "DPStats",
    "segment_cost",
    "entropy_segments", "temporal_entropy",
    "merge", "unmerge", "segment_ids",
    "threshold_for_rate", "num_segments_for_rate", "segments_for_rate", "entropy_ratios_for_rate", "average_rate",
]
