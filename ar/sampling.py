"""Sampling from logits with temperature, top-k and top-p, driven by given uniforms (one per item).

Drawing the uniforms outside (from one `torch.Generator` per item) makes the choice a pure function of the
logits and that item's random stream: batching, padding or the KV cache cannot change which token is drawn
unless the logits themselves change.
"""
from __future__ import annotations

import torch


def sample_from_logits(
    logits: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> torch.Tensor:
    """Inverse-CDF sampling: `logits [B, V]`, `uniforms [B]` in [0, 1) -> ids `[B]`.

    `temperature` 0 or `top_k` 1 is greedy (argmax). `top_k` 0 keeps every class; `top_p` < 1 keeps the
    smallest set of most likely classes whose probability reaches `top_p` (always at least one). Classes at
    -inf (masked) are never drawn.
    """
    if temperature == 0 or top_k == 1:
        return logits.argmax(dim=-1)
    scores = logits / temperature
    if top_k and top_k < scores.shape[-1]:
        values, index = scores.topk(top_k, dim=-1)  # sorted, most likely first
    elif top_p < 1.0:
        values, index = scores.sort(dim=-1, descending=True)
    else:
        values, index = scores, None
    probs = torch.softmax(values, dim=-1)
    if top_p < 1.0:
        # Keep a class if the mass before it is below top_p: the first class always stays.
        before = probs.cumsum(dim=-1) - probs
        probs = probs * (before < top_p)
    cdf = probs.cumsum(dim=-1)
    target = (uniforms.to(cdf.dtype) * cdf[:, -1])[:, None]
    # First class whose cumulative mass exceeds the target; zero-probability classes are skipped because
    # their cumulative mass equals the previous one's.
    choice = (cdf <= target).sum(dim=-1).clamp(max=probs.shape[-1] - 1)
    # Rounding can land on a zero-probability tail class: step back to the last class with mass.
    has_mass = probs > 0
    last_with_mass = has_mass.shape[-1] - 1 - has_mass.flip(-1).int().argmax(dim=-1)
    choice = torch.minimum(choice, last_with_mass)
    return choice if index is None else index.gather(1, choice[:, None]).squeeze(1)


def tilt_to_mean(logits: torch.Tensor, values: torch.Tensor, target: torch.Tensor, iterations: int = 40,
                 feature: torch.Tensor | None = None) -> torch.Tensor:
    """Exponentially tilt categorical logits `[B, K]` (`p'(k) ∝ p(k) exp(lam * feature[k])`, `feature` = `values`
    unless given, e.g. their logarithm; it must grow with them) so that the mean of `values [K]` under `p'` is
    `target [B]` (clamped into the values' range); `lam` per row by bisection.

    The closest distribution to `p` (in KL) with that mean: the model's preferences are kept, only shifted.
    """
    values = values.to(logits.dtype)
    feature = values if feature is None else feature.to(logits.dtype)
    target = target.to(logits.dtype).clamp(float(values.min()) + 1e-3, float(values.max()) - 1e-3)
    lo = torch.full_like(target, -20.0)
    hi = torch.full_like(target, 20.0)
    for _ in range(iterations):  # the mean grows monotonically with lam
        lam = (lo + hi) / 2
        mean = (torch.softmax(logits + lam[:, None] * feature, dim=-1) * values).sum(-1)
        above = mean > target
        hi = torch.where(above, lam, hi)
        lo = torch.where(above, lo, lam)
    return logits + ((lo + hi) / 2)[:, None] * feature
