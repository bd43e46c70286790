"""`flexitts bench ar`: AR generation speed at several token rates on the same text.

The same sentence is spoken for the same length of time at each rate, so the token count is
`round(seconds * rate)`: generation is forced to exactly that many tokens (EOS masked until then, stop there),
which isolates the cost of a token from what a particular model decides. Fewer tokens per second of speech
must then mean proportionally less AR time; the report shows it (time ratio vs token ratio to 12.5 Hz).

Register in `flexitts/cli/bench.py` with `bench_ar.add_parser(components)`.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

DEFAULT_TEXT = (
    "The quick brown fox jumps over the lazy dog, and then it runs back home through the quiet morning fields "
    "before anyone in the village is awake."
)
DEFAULT_RATES = (12.5, 8.3, 6.25)
SYMBOLS_PER_SECOND = 17.0  # phoneme-table symbols (stress, word boundaries included) a second in the demo corpus


def add_parser(components: argparse._SubParsersAction) -> None:
    parser = components.add_parser("ar", help="AR generation speed (tokens/s, real-time factor) at 12.5, 8.3, 6.25 Hz")
    parser.add_argument("--checkpoint", default=None, metavar="PATH_OR_URI", help="AR model (default: the bundled demo model)")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="sentence to generate")
    parser.add_argument("--rates", type=float, nargs="+", default=list(DEFAULT_RATES), metavar="HZ", help="token rates")
    parser.add_argument("--seconds", type=float, default=None,
                        help=f"speech length to generate (default: phoneme symbols / {SYMBOLS_PER_SECOND:g})")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per rate (the fastest is reported)")
    parser.add_argument("--no-cache", action="store_true", help="recompute the whole sequence every step (no KV cache)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--out", default="reports/ar_bench", help="report path without extension: OUT.json and OUT.md")
    parser.set_defaults(func=run_ar)


def benchmark_ar(
    model: Any,
    phonemes: Sequence[int],
    rates: Sequence[float] = DEFAULT_RATES,
    seconds: float | None = None,
    repeats: int = 3,
    use_cache: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Time `model.generate` at each rate for `seconds` of speech; one row per rate (fastest of `repeats`)."""
    import torch

    seconds = seconds if seconds is not None else len(phonemes) / SYMBOLS_PER_SECOND
    device = next(model.parameters()).device
    model.generate(phonemes, rate=rates[0], seed=seed, max_new_tokens=4, use_cache=use_cache)  # warm-up
    rows = []
    for rate in rates:
        tokens = max(1, round(seconds * rate))
        ratio = tokens / len(phonemes)  # min = max: exactly `tokens` new tokens
        best = float("inf")
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            out = model.generate(phonemes, rate=rate, seed=seed, min_len_ratio=ratio, max_len_ratio=ratio,
                                 max_new_tokens=tokens, use_cache=use_cache)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
        produced = int(out.lengths[0])
        rows.append({
            "rate_hz": rate, "tokens": produced, "speech_seconds": round(seconds, 3), "ar_seconds": round(best, 4),
            "tokens_per_second": round(produced / best, 1), "ms_per_token": round(1000 * best / produced, 2),
            "rtf": round(best / seconds, 4),
        })
    base = rows[0]
    for row in rows:
        row["token_ratio"] = round(row["tokens"] / base["tokens"], 3)
        row["time_ratio"] = round(row["ar_seconds"] / base["ar_seconds"], 3)
    return {"phonemes": len(phonemes), "use_cache": use_cache, "device": str(device),
            "threads": torch.get_num_threads(), "rows": rows}


def write_report(result: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    from flexitts.fileio import write_json_atomic, write_text_atomic

    base = Path(out)
    base.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# AR generation speed", "",
        f"{result['phonemes']} phoneme symbols, device {result['device']}, {result['threads']} threads, "
        f"KV cache {'on' if result['use_cache'] else 'off'}. Same speech length at every rate.", "",
        "| rate (Hz) | tokens | AR time (s) | tokens/s | ms/token | RTF | tokens vs 12.5 Hz | time vs 12.5 Hz |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['rate_hz']:g} | {r['tokens']} | {r['ar_seconds']:.3f} | {r['tokens_per_second']:.1f} | "
                     f"{r['ms_per_token']:.2f} | {r['rtf']:.4f} | {r['token_ratio']:.2f} | {r['time_ratio']:.2f} |")
    json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
    write_json_atomic(json_path, result)
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    return json_path, md_path


def run_ar(args: argparse.Namespace) -> int:
    import torch

    from ar import ARModel
    from flexitts.errors import ConfigError
    from flexitts.text import PhonemeTable, normalize_text, phonemize

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if any(not r > 0 for r in args.rates) or args.repeats < 1 or (args.seconds is not None and args.seconds <= 0):
        raise ConfigError("--rates and --seconds must be positive and --repeats at least 1")
    model = ARModel.from_pretrained(args.checkpoint, device=args.device)
    table = PhonemeTable(model.config.symbols)
    phonemes = table.encode(phonemize(normalize_text(args.text)))
    result = benchmark_ar(model, phonemes, args.rates, args.seconds, args.repeats, not args.no_cache)
    json_path, md_path = write_report(result, args.out)
    shown = "; ".join(f"{r['rate_hz']:g} Hz: {r['tokens']} tokens in {r['ar_seconds']:.3f} s ({r['tokens_per_second']:.0f} tok/s)"
                      for r in result["rows"])
    print(f"wrote {md_path} and {json_path}: {shown}")
    return 0
