"""Merging (segment means) and unmerging (repeat each merged vector) for dynamic-rate sequences.

Both are vectorised with `repeat_interleave` + `index_add_` / `index_select`: no Python loop over frames or
segments (CodecSlime reports a 276x speed-up over a loop; see `codec.dynamic.bench`). A large CPU merge is cut into
cache-sized runs of segments that the intra-op threads sum concurrently.

Batched layout: features `[B, T, ...]`, segment lengths `[B, G]` zero-padded, each row summing to at most `T`
(frames past a row's sum are padding and are ignored).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

__all__ = ["merge", "unmerge", "segment_ids"]


def _check_lengths(lengths: Tensor) -> Tensor:
    if not isinstance(lengths, Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise TypeError(f"segment lengths must be an integer tensor, got {lengths.dtype}")
    lengths = lengths.long()
    if lengths.numel() and int(lengths.min()) < 0:
        raise ValueError("segment lengths must be >= 0")
    return lengths


def _with_padding_column(lengths: Tensor, T: int) -> Tensor:
    """`[B, G]` -> `[B, G + 1]` whose last column counts each row's padding frames, so every row sums to T.

    Padding frames then belong to a dummy segment per row that is dropped afterwards, which keeps the whole batch
    in one flat `index_add_` / `index_select` call.
    """
    total = lengths.sum(1)
    if lengths.shape[0] and int(total.max()) > T:
        raise ValueError(f"segment lengths sum to {int(total.max())} > {T} frames")
    return torch.cat([lengths, (T - total).unsqueeze(1)], dim=1)


# Below this many input elements a merge runs as one piece: cutting it up would cost more than it saves.
PARALLEL_MIN_ELEMENTS = 1 << 21
# Output elements per piece of a large merge (4 MB of float32): zeroing and dividing a piece then hit the cache.
PIECE_ELEMENTS = 1 << 20


@functools.cache
def _thread_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flexitts-merge")


def _segment_means_(out: Tensor, x: Tensor, ids: Tensor, lengths: Tensor) -> None:
    """`out[g] = mean of x[t] over ids[t] == g` in place: `out [G, ...]`, `x [T, ...]`, sorted `ids [T]`,
    `lengths [G]`.

    On a CPU `index_add_` adds one row at a time on one thread. A large input is therefore cut at segment
    boundaries into pieces of about `PIECE_ELEMENTS` outputs, which the intra-op threads take in turn (torch
    releases the GIL); each piece is zeroed, summed and divided while it sits in the cache. Every row sums in the
    same order, so the result is bitwise that of one call. Inputs that autograd records stay in one piece
    (autograd must not see in-place ops on views of one tensor from several threads).
    """
    G, T = out.shape[0], x.shape[0]
    recording = torch.is_grad_enabled() and x.requires_grad
    if G == 0 or x.device.type != "cpu" or recording or x.numel() < PARALLEL_MIN_ELEMENTS:
        pieces = [(0, G, 0, T)]
    else:
        step = max(1, PIECE_ELEMENTS // max(1, out[0].numel()))
        seg_bounds = list(range(0, G, step)) + [G]
        frame_bounds = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])[seg_bounds].tolist()
        pieces = list(zip(seg_bounds[:-1], seg_bounds[1:], frame_bounds[:-1], frame_bounds[1:]))
    denom = lengths.clamp_min(1).to(out.dtype).reshape((G,) + (1,) * (x.dim() - 1))

    def run(piece: tuple[int, int, int, int]) -> None:
        g0, g1, t0, t1 = piece
        target = out[g0:g1].zero_()
        target.index_add_(0, ids[t0:t1] - g0, x[t0:t1])
        target.div_(denom[g0:g1])

    workers = min(torch.get_num_threads(), len(pieces))
    if workers < 2:
        for piece in pieces:
            run(piece)
    else:
        list(_thread_pool(workers).map(run, pieces))


def segment_ids(lengths: Tensor) -> Tensor:
    """Index of the segment each frame belongs to.

    Args:
        lengths: `[G]` segment lengths.
    Returns:
        `[T]` long with `T = lengths.sum()`, e.g. `[2, 1, 3] -> [0, 0, 1, 2, 2, 2]`.
    """
    lengths = _check_lengths(lengths)
    G = lengths.shape[0]
    return torch.repeat_interleave(torch.arange(G, device=lengths.device), lengths)


def merge(x: Tensor, lengths: Tensor, *, out: Tensor | None = None) -> Tensor:
    """Mean of each segment.

    Args:
        x: `[T, ...]` features of one sequence, or `[B, T, ...]` padded batch.
        lengths: `[G]` segment lengths summing to exactly `T`, or `[B, G]` zero-padded with row sums `<= T`.
        out: optional preallocated output (unbatched only) `[G, ...]`, floating, reused to avoid a fresh
            allocation (the CPU analogue of the CUDA caching allocator); it is overwritten.
    Returns:
        `[G, ...]` or `[B, G, ...]` segment means, zeros where the length is 0 (padding). Integer inputs give
        `torch.get_default_dtype()` means.
    """
    lengths = _check_lengths(lengths).to(x.device)
    dtype = x.dtype if x.dtype.is_floating_point or x.dtype.is_complex else torch.get_default_dtype()
    if lengths.dim() == 1:
        T = x.shape[0]
        total = int(lengths.sum())
        if total != T:
            raise ValueError(f"segment lengths sum to {total}, expected {T} frames")
        G = lengths.shape[0]
        ids = torch.repeat_interleave(torch.arange(G, device=x.device), lengths, output_size=T)
        if out is None:
            out = torch.empty((G,) + tuple(x.shape[1:]), dtype=dtype, device=x.device)
        elif tuple(out.shape) != (G,) + tuple(x.shape[1:]) or not out.dtype.is_floating_point:
            raise ValueError(f"out must be a floating tensor of shape {(G,) + tuple(x.shape[1:])}")
        _segment_means_(out, x.to(out.dtype), ids, lengths)
        return out
    if lengths.dim() != 2 or x.dim() < 2 or x.shape[0] != lengths.shape[0]:
        raise ValueError(f"batched merge needs x [B, T, ...] and lengths [B, G]; got {tuple(x.shape)}, "
                         f"{tuple(lengths.shape)}")
    if out is not None:
        raise ValueError("out= is only supported for unbatched merge")
    B, T = x.shape[:2]
    G = lengths.shape[1]
    flat_len = _with_padding_column(lengths, T).reshape(-1)
    merged = merge(x.reshape((B * T,) + tuple(x.shape[2:])), flat_len)
    return merged.reshape((B, G + 1) + tuple(x.shape[2:]))[:, :G].contiguous()


def unmerge(y: Tensor, lengths: Tensor, total_length: int | None = None) -> Tensor:
    """Repeat each merged vector `l` times (inverse of `merge` for piecewise-constant sequences).

    Args:
        y: `[G, ...]` merged vectors (any dtype: features or integer codes `[G]`), or `[B, G, ...]` batched.
        lengths: `[G]` or `[B, G]` (zero-padded) segment lengths.
        total_length: batched only: pad the time axis to this many frames (default: the largest row sum).
    Returns:
        `[T, ...]` with `T = lengths.sum()`, or `[B, T, ...]` zero-padded past each row's sum.
    """
    lengths = _check_lengths(lengths).to(y.device)
    if lengths.dim() == 1:
        if y.shape[0] != lengths.shape[0]:
            raise ValueError(f"{y.shape[0]} merged vectors for {lengths.shape[0]} lengths")
        return torch.repeat_interleave(y, lengths, dim=0)
    if lengths.dim() != 2 or y.dim() < 2 or tuple(y.shape[:2]) != tuple(lengths.shape):
        raise ValueError(f"batched unmerge needs y [B, G, ...] and lengths [B, G]; got {tuple(y.shape)}, "
                         f"{tuple(lengths.shape)}")
    B, G = lengths.shape
    sums = lengths.sum(1)
    T = int(sums.max()) if B else 0
    if total_length is not None:
        if total_length < T:
            raise ValueError(f"total_length {total_length} < longest row ({T} frames)")
        T = int(total_length)
    flat_len = _with_padding_column(lengths, T).reshape(-1)
    # A zero row per item serves the padding frames.
    y_ext = torch.cat([y, y.new_zeros((B, 1) + tuple(y.shape[2:]))], dim=1)
    y_ext = y_ext.reshape((B * (G + 1),) + tuple(y.shape[2:]))
    ids = torch.repeat_interleave(torch.arange(B * (G + 1), device=y.device), flat_len, output_size=B * T)
    return y_ext.index_select(0, ids).reshape((B, T) + tuple(y.shape[2:]))
