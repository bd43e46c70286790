"""`flexitts bench COMPONENT`: speed and behaviour benchmarks that write markdown + JSON reports."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks with markdown + JSON reports")
    components = parser.add_subparsers(dest="component", metavar="COMPONENT")
    components.required = True
    dynamic = components.add_parser("dynamic", help="merge speed, pruned vs plain DP, threshold vs frame rate")
    dynamic.add_argument("--out", default="reports", help="folder for dynamic.md / dynamic.json (default: reports)")
    dynamic.add_argument("--manifest", default=None, help="held-out manifest whose ASR features give the tau / frame-rate table")
    dynamic.add_argument("--asr", default=None, help="ASR features: bundled CTC recogniser (default), a checkpoint, or whisper:PATH")
    dynamic.add_argument("--limit", type=int, default=None, help="use only the first N utterances of the manifest")
    dynamic.add_argument("--merge-frames", type=int, default=1_000_000, help="frames in the merge benchmark (default 10^6)")
    dynamic.add_argument("--device", default="cpu", help="device for the merge timing (cpu, cuda; default cpu)")
    dynamic.set_defaults(func=run_dynamic)
    codec = components.add_parser("codec", help="codec encode/decode real-time factor, memory, quality per rate and Q")
    codec.add_argument("--checkpoint", default=None, metavar="PATH_OR_URI",
                       help="codec folder, hf:// or https:// URI (default: the bundled demo codec)")
    codec.add_argument("--manifest", default=None,
                       help="utterances to use (default: corpus/demo/test.jsonl, mbrola voices, first 30)")
    codec.add_argument("--limit", type=int, default=None,
                       help="use only the first N utterances (default: all; 30 for the demo split)")
    codec.add_argument("--speaker-prefix", default=None,
                       help="keep only speakers whose name starts with this "
                            "(default: 'mb-' for the demo split, none otherwise)")
    codec.add_argument("--out", default="reports/codec_bench",
                       help="report path without extension: writes OUT.json and OUT.md (default: reports/codec_bench)")
    codec.add_argument("--scheduler", choices=("threshold", "dp", "entropy"), default="threshold",
                       help="segment scheduler used to reach each frame rate (default: threshold)")
    codec.add_argument("--frame-rates", type=float, nargs="+", default=None, metavar="HZ",
                       help="target average frame rates (default: 12.5 8.3 6.25)")
    codec.add_argument("--quantizers", type=int, nargs="+", default=None, metavar="Q",
                       help="numbers of quantizers to decode with (default: 1 2 4 8, capped at the codec's maximum)")
    codec.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every CPU available)")
    codec.add_argument("--no-wer", action="store_true", help="skip pocketsphinx WER (much faster)")
    codec.add_argument("--wer-grid", choices=("cross", "full"), default="cross",
                       help="cells scored with pocketsphinx: cross = every rate at the largest Q and every Q at the "
                            "highest rate (default), full = every cell (about twice as long)")
    codec.add_argument("--no-pesq", action="store_true", help="skip PESQ")
    codec.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    codec.set_defaults(func=run_codec)
    from flexitts.benchmarks import all as bench_all
    from flexitts.benchmarks import nar as bench_nar
    from flexitts.benchmarks import pipeline as bench_pipeline
    from flexitts.cli import bench_ar

    bench_ar.add_parser(components)
    bench_nar.add_parser(components)
    bench_pipeline.add_parser(components)
    bench_all.add_parser(components)


def run_dynamic(args: argparse.Namespace) -> int:
    from codec.dynamic.bench import run_dynamic_benchmark

    features = None
    if args.manifest:
        from codec.asr import load_asr_features
        from flexitts.data.features import manifest_features

        features = manifest_features(args.manifest, load_asr_features(args.asr), limit=args.limit)
    result = run_dynamic_benchmark(args.out, features, merge_frames=args.merge_frames,
                                   merge_device=args.device)
    merge = result.get("merge", {})
    print(
        f"wrote {args.out}/dynamic.md and dynamic.json; merge speed-up over the loop: "
        f"{merge['speedup_fresh_output']:.1f}x (fresh output), {merge['speedup_reused_output']:.1f}x (reused output)"
    )
    return 0


def run_codec(args: argparse.Namespace) -> int:
    import sys

    from flexitts.benchmarks.codec import (DEFAULT_FRAME_RATES, DEFAULT_QUANTIZERS, DEMO_LIMIT, DEMO_SPEAKER_PREFIX,
                                           default_manifest, load_utterances, report_paths, run_codec_benchmark)
    from flexitts.cli.codec import load_codec
    from flexitts.errors import ConfigError

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if args.frame_rates is not None and any(not r > 0 for r in args.frame_rates):
        raise ConfigError(f"--frame-rates must be positive, got {args.frame_rates}")
    if args.manifest is None:
        manifest, limit = default_manifest(), args.limit or DEMO_LIMIT
        prefix = DEMO_SPEAKER_PREFIX if args.speaker_prefix is None else args.speaker_prefix
    else:
        manifest, limit, prefix = args.manifest, args.limit, args.speaker_prefix
    codec = load_codec(args.checkpoint, args.device)
    utterances = load_utterances(manifest, limit=limit, speaker_prefix=prefix or None, sample_rate=codec.sample_rate)
    info = {"checkpoint": args.checkpoint or "bundled demo codec", "manifest": str(manifest),
            "speaker_prefix": prefix or None, "limit": limit}
    result = run_codec_benchmark(
        codec, utterances, args.out, frame_rates=args.frame_rates or DEFAULT_FRAME_RATES,
        quantizers=args.quantizers or DEFAULT_QUANTIZERS, scheduler=args.scheduler, wer=not args.no_wer,
        wer_grid=args.wer_grid, pesq=not args.no_pesq, threads=args.threads, info=info,
        progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True),
    )
    json_path, md_path = report_paths(args.out)
    top_rate, top_q = max(result["settings"]["frame_rates"]), result["settings"]["quantizers"][-1]
    speed = next(row for row in result["speed"] if row["target_hz"] == top_rate)
    cell = next(q for q in result["quality"] if q["target_hz"] == top_rate and q["num_quantizers"] == top_q)
    print(f"wrote {json_path} and {md_path}: {len(utterances)} utterances; at {top_rate:g} Hz encode RTF "
          f"{speed['encode_rtf']:.3f}, decode RTF {speed['decode_rtf']:.3f}, STOI {cell['stoi']:.3f} "
          f"with {top_q} quantizers ({result['host']['torch_threads']} torch threads)")
    return 0
