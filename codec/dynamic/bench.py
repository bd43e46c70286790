"""Benchmark of the dynamic-rate algorithms (no CLI here; `flexitts` wires it).

`run_dynamic_benchmark(out_dir, features)` measures:
(a) vectorised `merge` against `merge_loop_reference` (one Python iteration per segment) on 10^6 frames of
    512-d float32 features, segment lengths drawn from {1, 2, 3} (mean 2 = 6.25 Hz from 12.5 Hz);
(b) pruned against plain ScheDFR DP: wall time and DP states at T = 600 (plus the paper's T=1000, G=500, L=4
    example and a long T = 3000 sequence);
(c) with held-out features: average frame rate against tau, and for each target rate (8.3, 6.25 Hz) the taus the
    threshold scheduler needs (per utterance, and one global tau for the corpus) and what the threshold and dp
    schedulers achieve, with their merge distortion (`segment_cost` per frame).
It writes `dynamic.json` and `dynamic.md` into `out_dir` atomically and returns the JSON dict.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .cost import segment_cost
from .dp import dp_segments, dp_state_count
from .merge import merge, unmerge
from .target_rate import num_segments_for_rate, threshold_for_rate
from .threshold import _starts_from_joins, adjacent_cosine, threshold_segments

__all__ = ["run_dynamic_benchmark", "merge_loop_reference", "DEFAULT_TAUS"]

DEFAULT_TAUS = (1.0, 0.99, 0.98, 0.97, 0.95, 0.93, 0.91, 0.9, 0.88, 0.86, 0.85, 0.8, 0.75, 0.7)
REQUIRED_MERGE_SPEEDUP = 50.0
# (T, G, max_len): 48 s at 6.25 and 8.3 Hz, the paper's appendix-C example, and 4 min at 6.25 Hz.
DEFAULT_DP_CONFIGS = ((600, 300, 8), (600, 400, 8), (1000, 500, 4), (3000, 1500, 8))
Progress = Callable[[str], None] | None


def merge_loop_reference(x: Tensor, lengths: Tensor, out: Tensor | None = None) -> Tensor:
    """Reference merge with a Python loop over segments: `out[g] = x[start:start + l].mean(0)`.

    Args:
        x: `[T, D]`; lengths: `[G]` summing to T; out: optional preallocated `[G, D]` float.
    Returns:
        `[G, D]` segment means (same values as `merge`).
    """
    lens = [int(v) for v in lengths.tolist()]
    if out is None:
        out = torch.empty((len(lens),) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    start = 0
    for g, l in enumerate(lens):
        out[g] = x[start:start + l].mean(0)
        start += l
    return out


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (None: leave it)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _timed(fn: Callable[[], Any], device: torch.device | None = None) -> tuple[float, Any]:
    """Wall time of `fn()`; on CUDA the queue is drained before and after so kernels are counted."""
    sync = device is not None and device.type == "cuda"
    if sync:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    res = fn()
    if sync:
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, res


def _say(progress: Progress, msg: str) -> None:
    if progress is not None:
        progress(msg)


def _random_lengths(total: int, gen: torch.Generator, low: int = 1, high: int = 3) -> Tensor:
    """Segment lengths uniform in [low, high] summing exactly to `total`."""
    lens = torch.randint(low, high + 1, (total // low + 1,), generator=gen)
    ends = lens.cumsum(0)
    keep = lens[ends <= total]
    rest = total - int(keep.sum())
    return torch.cat([keep, torch.tensor([rest])]) if rest else keep


def _bench_merge(frames: int, dim: int, repeats: int, seed: int, progress: Progress,
                 device: torch.device | str = "cpu") -> dict[str, Any]:
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(frames, dim, generator=gen).to(dev)
    lens = _random_lengths(frames, gen).to(dev)
    G = int(lens.numel())
    _say(progress, f"merge: {frames} frames x {dim}, {G} segments on {dev}")
    merge(x, lens)  # warm-up (CUDA context, allocator)
    fresh = [_timed(lambda: merge(x, lens), dev)[0] for _ in range(repeats)]
    buf = torch.empty(G, dim, device=dev)
    merge(x, lens, out=buf)  # touch the pages once, as a caching allocator would have
    reused = [_timed(lambda: merge(x, lens, out=buf), dev)[0] for _ in range(repeats)]
    y = buf
    un = [_timed(lambda: unmerge(y, lens), dev)[0] for _ in range(repeats)]
    # Any merge must read every input element once: a full reduction over x (one streaming pass on every thread)
    # is the floor for this host, and loop time / floor the largest speed-up any implementation could show here.
    # Not `x.sum(0)`: its column-wise kernel runs at about a third of the bandwidth and understated the floor.
    floor = [_timed(lambda: x.sum(), dev)[0] for _ in range(repeats)]
    # ...and must write every output element once: a fill of the output buffer. Read + write is the floor for any
    # merge that streams through memory (the two passes can share the bus, so their sum is an optimistic floor).
    write = [_timed(lambda: buf.fill_(0.0), dev)[0] for _ in range(repeats)]
    merge(x, lens, out=buf)  # the means back into `y` (= buf), which the loop reference is checked against
    _say(progress, "merge: python loop reference")
    ref_buf = torch.zeros(G, dim, device=dev)
    t_loop, ref = _timed(lambda: merge_loop_reference(x, lens, out=ref_buf), dev)
    max_err = float((ref - y).abs().max())
    t_fresh, t_reused = statistics.median(fresh), statistics.median(reused)
    return {
        "frames": frames, "dim": dim, "segments": G, "mean_segment_len": frames / G, "dtype": "float32",
        "repeats": repeats,
        "loop_reference_s": t_loop,
        "vectorised_fresh_output_s": t_fresh,
        "vectorised_reused_output_s": t_reused,
        "unmerge_s": statistics.median(un),
        "speedup_fresh_output": t_loop / t_fresh,
        "speedup_reused_output": t_loop / t_reused,
        "device": str(dev),
        "read_floor_s": statistics.median(floor),
        "max_speedup_at_read_floor": t_loop / statistics.median(floor),
        "write_floor_s": statistics.median(write),
        "max_speedup_at_read_write_floor": t_loop / (statistics.median(floor) + statistics.median(write)),
        "required_speedup": REQUIRED_MERGE_SPEEDUP,
        "speedup_ok_reused_output": t_loop / t_reused >= REQUIRED_MERGE_SPEEDUP,
        "speedup_ok_fresh_output": t_loop / t_fresh >= REQUIRED_MERGE_SPEEDUP,
        "max_abs_diff_vs_loop": max_err,
    }


def _smooth_features(T: int, D: int, gen: torch.Generator) -> Tensor:
    """A random walk plus noise: neighbouring frames are similar, as in real encoder features."""
    return torch.randn(T, D, generator=gen).cumsum(0) * 0.1 + torch.randn(T, D, generator=gen)


def _bench_dp(configs: Sequence[tuple[int, int, int]], dim: int, repeats: int, seed: int,
              progress: Progress) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(seed + 1)
    rows = []
    for T, G, L in configs:
        _say(progress, f"dp: T={T} G={G} max_len={L}")
        x = _smooth_features(T, dim, gen)
        res: dict[bool, tuple[Tensor, Any]] = {}
        times: dict[bool, float] = {}
        for pruned in (True, False):
            dp_segments(x, G, max_len=L, pruned=pruned)  # warm-up
            ts = []
            for _ in range(repeats):
                t, out = _timed(lambda: dp_segments(x, G, max_len=L, pruned=pruned, return_stats=True))
                ts.append(t)
            res[pruned], times[pruned] = out, statistics.median(ts)
        (lp, sp), (lf, sf) = res[True], res[False]
        rows.append({
            "T": T, "G": G, "max_len": L, "dim": dim,
            "states_plain": sf.states, "states_pruned": sp.states,
            "transitions_plain": sf.transitions, "transitions_pruned": sp.transitions,
            "state_reduction_pct": 100.0 * (1 - sp.states / sf.states),
            "time_plain_s": times[False], "time_pruned_s": times[True],
            "time_reduction_pct": 100.0 * (1 - times[True] / times[False]),
            "same_segmentation": bool(torch.equal(lp, lf)),
            "cost": float(sp.cost),
            "counts_match_formula": sp.states == dp_state_count(T, G, L, True)
            and sf.states == dp_state_count(T, G, L, False),
        })
    return rows


def _as_feature_list(features: Sequence[Tensor] | Mapping[str, Tensor] | None) -> list[Tensor]:
    if features is None:
        return []
    items = list(features.values()) if isinstance(features, Mapping) else list(features)
    out = []
    for f in items:
        f = torch.as_tensor(f)
        if f.dim() != 2:
            raise ValueError(f"each feature sequence must be [T, D], got shape {tuple(f.shape)}")
        if f.shape[0] > 0:
            out.append(f.float())
    return out


def _batches(feats: list[Tensor], batch_size: int) -> list[tuple[Tensor, Tensor]]:
    """Padded batches `([B, Tmax, D], lengths [B])`, length-sorted to limit padding."""
    order = sorted(range(len(feats)), key=lambda i: feats[i].shape[0])
    out = []
    for s in range(0, len(order), batch_size):
        chunk = [feats[i] for i in order[s:s + batch_size]]
        lens = torch.tensor([c.shape[0] for c in chunk])
        out.append((torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True), lens))
    return out


def _rate_summary(seg_lengths: list[Tensor], frame_counts: list[Tensor], base_rate: float) -> dict[str, float]:
    G = torch.cat([(s > 0).sum(1) for s in seg_lengths]).double()
    T = torch.cat(frame_counts).double()
    per_utt = G * base_rate / T
    return {"corpus_rate_hz": float(G.sum() * base_rate / T.sum()), "mean_utt_rate_hz": float(per_utt.mean()),
            "tokens": int(G.sum())}


def _corpus_threshold(cos: list[tuple[Tensor, Tensor]], total_frames: int, target: float, max_len: int,
                      base_rate: float) -> tuple[float, float]:
    """One tau for the whole corpus whose corpus-level rate is closest to `target` (bisection on tau)."""

    def rate(tau: float) -> float:
        g = sum(int(_starts_from_joins(s > tau, v, max_len).sum()) for s, v in cos)
        return g * base_rate / total_frames

    lo, hi = -1.0 - 1e-6, 1.0
    if rate(hi) <= target:
        return hi, rate(hi)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rate(mid) < target else (lo, mid)
    r_lo, r_hi = rate(lo), rate(hi)
    return (lo, r_lo) if abs(r_lo - target) < abs(r_hi - target) else (hi, r_hi)


def _bench_features(feats: list[Tensor], taus: Sequence[float], targets: Sequence[float], max_len: int,
                    base_rate: float, batch_size: int, progress: Progress) -> dict[str, Any]:
    batches = _batches(feats, batch_size)
    lens = [l for _, l in batches]
    total_frames = int(sum(int(l.sum()) for l in lens))
    out: dict[str, Any] = {"utterances": len(feats), "frames": total_frames,
                           "hours": total_frames / base_rate / 3600, "dim": int(feats[0].shape[1]),
                           "max_len": max_len, "base_rate_hz": base_rate}
    _say(progress, f"features: {len(feats)} utterances, {total_frames} frames")
    table = []
    for tau in taus:
        segs = [threshold_segments(x, tau, max_len=max_len, lengths=l) for x, l in batches]
        table.append({"tau": tau, **_rate_summary(segs, lens, base_rate)})
    out["tau_vs_rate"] = table

    cos = []
    for x, l in batches:
        T = x.shape[1]
        v = torch.arange(T).unsqueeze(0) < l.unsqueeze(1)
        cos.append((adjacent_cosine(x) if T > 1 else torch.zeros(x.shape[0], 0, dtype=torch.float64), v))

    def distortion(segs: list[Tensor]) -> float:
        return float(sum(float(segment_cost(x, s).sum()) for (x, _), s in zip(batches, segs)) / total_frames)

    targets_out = []
    for hz in targets:
        _say(progress, f"features: target {hz} Hz")
        taus_u = [threshold_for_rate(x, hz, max_len=max_len, base_rate=base_rate, lengths=l) for x, l in batches]
        seg_t = [threshold_segments(x, t, max_len=max_len, lengths=l) for (x, l), t in zip(batches, taus_u)]
        all_taus = torch.cat(taus_u)
        g_tau, g_rate = _corpus_threshold(cos, total_frames, hz, max_len, base_rate)
        seg_dp = [dp_segments(x, num_segments_for_rate(l, hz, max_len, base_rate), max_len=max_len, lengths=l)
                  for x, l in batches]
        q = torch.quantile(all_taus, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
        targets_out.append({
            "target_hz": hz,
            "threshold": {
                "tau_mean": float(all_taus.mean()), "tau_p10": q[0], "tau_median": q[1], "tau_p90": q[2],
                **_rate_summary(seg_t, lens, base_rate), "distortion_per_frame": distortion(seg_t),
            },
            "threshold_global": {"tau": g_tau, "corpus_rate_hz": g_rate},
            "dp": {**_rate_summary(seg_dp, lens, base_rate), "distortion_per_frame": distortion(seg_dp)},
        })
    out["targets"] = targets_out
    return out


def _markdown(res: dict[str, Any]) -> str:
    m = res["merge"]
    lines = ["# Dynamic-rate algorithms benchmark", "",
             f"Host: {res['host']['cpu_threads']} torch threads ({res['host']['dp_threads']} for the DP) on "
             f"{res['host']['cpu_count']} CPUs "
             f"(1-min load average at start: {res['host']['load_avg_1min']}), torch {res['host']['torch']}, "
             f"huge pages for large CPU tensors {'on' if res['host'].get('thp_mem_alloc') else 'off'} "
             "(`THP_MEM_ALLOC_ENABLE=1`: fewer page faults for a fresh output, fewer TLB misses). "
             "Timings are wall-clock medians and depend on machine load.", "",
             "## Merge: vectorised vs Python loop", "",
             f"{m['frames']:,} frames x {m['dim']} ({m['dtype']}), {m['segments']:,} segments "
             f"(mean length {m['mean_segment_len']:.2f}).", "",
             "| variant | time (s) | speed-up vs loop |", "|---|---:|---:|",
             f"| Python loop (`merge_loop_reference`) | {m['loop_reference_s']:.3f} | 1.0x |",
             f"| `merge`, fresh output | {m['vectorised_fresh_output_s']:.3f} | {m['speedup_fresh_output']:.1f}x |",
             f"| `merge`, reused output buffer | {m['vectorised_reused_output_s']:.3f} | "
             f"{m['speedup_reused_output']:.1f}x |",
             f"| `unmerge` | {m['unmerge_s']:.3f} | |",
             f"| read floor: `x.sum()` (one pass over the input) | {m['read_floor_s']:.3f} | "
             f"{m['max_speedup_at_read_floor']:.1f}x |",
             f"| read + write floor: the read floor plus `out.fill_(0)` (one pass over the output) | "
             f"{m['read_floor_s'] + m['write_floor_s']:.3f} | {m['max_speedup_at_read_write_floor']:.1f}x |", "",
             f"Device: {m['device']}. The floors bound every implementation in this run (they vary between runs on a "
             "shared machine): a merge must read "
             f"all {m['frames'] * m['dim'] * 4 / 2**30:.1f} GiB of input and write all "
             f"{m['segments'] * m['dim'] * 4 / 2**30:.1f} GiB of output once, so no merge could beat the loop by more "
             f"than about {m['max_speedup_at_read_write_floor']:.0f}x in this run.", "",
             f"Required >= {m['required_speedup']:.0f}x: reused buffer "
             f"{'PASS' if m['speedup_ok_reused_output'] else 'FAIL'}, fresh output "
             f"{'PASS' if m['speedup_ok_fresh_output'] else 'FAIL'}. "
             f"Max |diff| vs loop: {m['max_abs_diff_vs_loop']:.2e}.",
             "", "## ScheDFR DP: pruned (appendix C) vs plain", "",
             "| T | G | max_len | states plain | states pruned | reduction | time plain (ms) | time pruned (ms) "
             "| time reduction | same result |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in res["dp"]:
        lines.append(f"| {r['T']} | {r['G']} | {r['max_len']} | {r['transitions_plain']:,} | "
                     f"{r['transitions_pruned']:,} | {r['state_reduction_pct']:.1f}% | {1e3 * r['time_plain_s']:.1f} | "
                     f"{1e3 * r['time_pruned_s']:.1f} | {r['time_reduction_pct']:.1f}% | {r['same_segmentation']} |")
    lines += ["", "States are (t, g, l) transitions, the unit of the paper's 2000k -> 672k example.", ""]
    f = res.get("features")
    if f:
        lines += ["## Frame rate on held-out features", "",
                  f"{f['utterances']} utterances, {f['frames']:,} frames ({f['hours']:.2f} h), dim {f['dim']}, "
                  f"max_len {f['max_len']}.", "", "| tau | corpus rate (Hz) | mean utterance rate (Hz) |",
                  "|---:|---:|---:|"]
        for r in f["tau_vs_rate"]:
            lines.append(f"| {r['tau']:.2f} | {r['corpus_rate_hz']:.2f} | {r['mean_utt_rate_hz']:.2f} |")
        lines += ["", "| target (Hz) | scheduler | tau | corpus rate (Hz) | mean utterance rate (Hz) | "
                  "distortion / frame |", "|---:|---|---|---:|---:|---:|"]
        for t in f["targets"]:
            th, gl, dp = t["threshold"], t["threshold_global"], t["dp"]
            lines.append(f"| {t['target_hz']} | threshold (per utterance) | median {th['tau_median']:.3f} "
                         f"(p10 {th['tau_p10']:.3f}, p90 {th['tau_p90']:.3f}) | {th['corpus_rate_hz']:.2f} | "
                         f"{th['mean_utt_rate_hz']:.2f} | {th['distortion_per_frame']:.4g} |")
            lines.append(f"| {t['target_hz']} | threshold (one global tau) | {gl['tau']:.3f} | "
                         f"{gl['corpus_rate_hz']:.2f} | | |")
            lines.append(f"| {t['target_hz']} | dp | - | {dp['corpus_rate_hz']:.2f} | {dp['mean_utt_rate_hz']:.2f} "
                         f"| {dp['distortion_per_frame']:.4g} |")
    else:
        lines += ["(No held-out features given: frame-rate table skipped.)"]
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_dynamic_benchmark(out_dir: str | os.PathLike, features: Sequence[Tensor] | Mapping[str, Tensor] | None = None,
                          *, features_by_utt: Mapping[str, Tensor] | None = None, merge_frames: int = 1_000_000,
                          merge_dim: int = 512, merge_repeats: int = 5,
                          dp_configs: Sequence[tuple[int, int, int]] = DEFAULT_DP_CONFIGS,
                          dp_dim: int = 512, dp_repeats: int = 3, max_len: int = 8,
                          taus: Sequence[float] = DEFAULT_TAUS, target_rates: Sequence[float] = (8.3, 6.25),
                          base_rate: float = 12.5, batch_size: int = 32, seed: int = 0,
                          num_threads: int | None = None, dp_threads: int | None = 1,
                          merge_device: torch.device | str = "cpu", progress: Progress = None) -> dict[str, Any]:
    """Run the benchmark and write `dynamic.json` / `dynamic.md` into `out_dir`.

    Args:
        out_dir: output folder (created).
        features: held-out `[T, D]` feature sequences at `base_rate` (list, or mapping utt id -> tensor);
            `features_by_utt` is an alias. Without them section (c) is skipped.
        merge_frames, merge_dim, merge_repeats: size of the merge benchmark (a).
        dp_configs: `(T, G, max_len)` triples for the DP benchmark (b); dp_dim: feature size there.
        max_len, taus, target_rates, base_rate, batch_size: section (c).
        merge_device: where section (a) runs ("cuda" times the GPU kernels, synchronising around each call).
        num_threads: torch intra-op threads for the run (restored afterwards); default: leave as is.
        dp_threads: threads while timing the DP (default 1): the DP is a chain of G small steps, where
            intra-op threads only add synchronisation (and, on a loaded machine, spin-wait) noise.
        progress: optional callback receiving one-line status messages.
    Returns:
        The dict written to `dynamic.json`.
    """
    if features is not None and features_by_utt is not None:
        raise ValueError("give features or features_by_utt, not both")
    feats = _as_feature_list(features if features is not None else features_by_utt)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with _threads(num_threads):
        res: dict[str, Any] = {
            "host": {"cpu_threads": torch.get_num_threads(), "dp_threads": dp_threads or torch.get_num_threads(),
                     "cpu_count": os.cpu_count(),
                     "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                     "torch": torch.__version__, "machine": platform.machine(),
                     # torch's CPU allocator backs allocations of 2 MB and more with huge pages only when this is set
                     "thp_mem_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE", "0") == "1",
                     "python": platform.python_version()},
            "merge": _bench_merge(merge_frames, merge_dim, merge_repeats, seed, progress, merge_device),
        }
        with _threads(dp_threads):
            res["dp"] = _bench_dp(dp_configs, dp_dim, dp_repeats, seed, progress)
        res["features"] = (_bench_features(feats, taus, target_rates, max_len, base_rate, batch_size, progress)
                           if feats else None)
    res["wall_s"] = time.perf_counter() - t0
    _write_atomic(out / "dynamic.json", json.dumps(res, indent=2) + "\n")
    _write_atomic(out / "dynamic.md", _markdown(res))
    return res
