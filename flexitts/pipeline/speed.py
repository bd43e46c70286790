"""Speaking-rate control: stretch token durations (12.5 Hz frames) by 1 / speed."""
from __future__ import annotations

import torch


def scale_durations(durations: torch.Tensor, speed: float) -> torch.Tensor:
    """`[G]` or `[B, G]` positive durations (0 on padding) -> durations of about `d / speed`, each >= 1.

    Rounds the running total rather than each token, so the total length is `round(sum / speed)` (up to the
    1-frame minimum per token) and rounding errors never accumulate.
    """
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    if speed == 1.0:
        return durations
    valid = durations > 0
    ends = torch.round(durations.cumsum(dim=-1).double() / speed).long()
    starts = torch.nn.functional.pad(ends, (1, 0))[..., :-1]
    scaled = (ends - starts).clamp(min=1)
    return torch.where(valid, scaled, torch.zeros_like(scaled))
