"""`flexitts eval ...`: measure models on a manifest (ASR phone error rate, TTS, codec reconstruction)."""
from __future__ import annotations

import argparse
import json
from typing import Any, Iterable

from flexitts.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate models on a manifest")
    targets = parser.add_subparsers(dest="target", metavar="TARGET")
    targets.required = True
    asr = targets.add_parser("asr", help="phone error rate of the CTC recogniser, overall and per speaker")
    asr.add_argument("--manifest", required=True, action="append", help="manifest(s) to score (repeatable)")
    asr.add_argument("--checkpoint", default=None, help="recogniser folder or URI (default: the bundled demo)")
    asr.add_argument("--limit", type=int, default=None, help="score only the first N utterances of each manifest")
    asr.add_argument("--json", default=None, help="also write the figures to this JSON file")
    asr.set_defaults(func=run_asr)
    ar = targets.add_parser("ar", help="AR model on a token cache: teacher-forced accuracies, generated vs true token counts")
    ar.add_argument("--tokens", required=True, help="token cache folder (`flexitts data tokens`), e.g. of the test split")
    ar.add_argument("--checkpoint", default=None, help="AR model folder or URI (default: the bundled demo)")
    ar.add_argument("--settings", default=None, help="comma-separated cache settings (default: all)")
    ar.add_argument("--generate", type=int, default=20, help="items to generate per setting for the length check")
    ar.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ar.set_defaults(func=run_ar)
    tts = targets.add_parser("tts", help="synthesise a manifest's sentences; WER, speaker similarity, RTF, tokens/s")
    tts.add_argument("--manifest", required=True, help="sentences (and original recordings) to evaluate on")
    tts.add_argument("--ref-strategy", choices=["same-speaker", "fixed"], default="same-speaker",
                     help="reference per sentence: another utterance of its speaker, or --ref for all")
    tts.add_argument("--ref", default=None, help="reference recording for --ref-strategy fixed")
    tts.add_argument("--ref-text", default=None, help="its transcript")
    tts.add_argument("--no-ref-text", action="store_true", help="let the recogniser transcribe the references")
    tts.add_argument("--speaker-prefix", default=None, help="only speakers whose name starts with this (e.g. mb-us1)")
    tts.add_argument("--limit", type=int, default=20, help="sentences to evaluate")
    tts.add_argument("--offset", type=int, default=0,
                     help="skip the first N sentences (after --speaker-prefix): a further set, e.g. --offset 20 --limit 40")
    tts.add_argument("--checkpoint", default=None, help="bundle folder or URI (default: the demo bundle)")
    rate = tts.add_mutually_exclusive_group()
    rate.add_argument("--threshold", type=float, default=None, help="merging threshold")
    rate.add_argument("--frame-rate", type=float, default=None, help="target tokens per second")
    tts.add_argument("--steps", type=int, default=15, help="NAR steps")
    tts.add_argument("--cfg", type=float, default=2.0, help="guidance weight")
    tts.add_argument("--seed", type=int, default=0, help="seed of the first sentence (then +1 each)")
    tts.add_argument("--temperature", type=float, default=None, help="AR code sampling temperature (default: the pipeline's)")
    tts.add_argument("--top-k", type=int, default=None, help="AR code sampling top-k (default: the pipeline's)")
    tts.add_argument("--candidates", type=int, default=None, help="AR samples per chunk, best content rendered (default: the pipeline's)")
    tts.add_argument("--text-cfg", type=float, default=None, help="AR text guidance weight (default: the pipeline's)")
    tts.add_argument("--phone-guide", type=float, default=None, help="phone-guided decoding weight (default: the pipeline's)")
    tts.add_argument("--phone-cfg", type=float, default=None, help="NAR phone guidance weight (default: the pipeline's)")
    tts.add_argument("--phone-cfg-until", type=float, default=None,
                     help="phone guidance on the NAR steps before this flow time, 0..1 (default: the pipeline's)")
    tts.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="any other `TTS.synthesize` option, e.g. speed=1.1, duration_temperature=0.7 or pace=[0.9,1.1] "
                          "(VALUE read as JSON, else as text; repeatable)")
    tts.add_argument("--direct-voice", default=None,
                     help="also score the sentences spoken directly by this corpus voice (e.g. mb-us1, the reference's "
                          "voice): the baseline WER of 'that voice directly'")
    tts.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    tts.add_argument("--recognizer", default=None, help="pocketsphinx (default) or whisper:PATH (an openai-whisper .pt)")
    tts.set_defaults(func=run_tts)
    codec = targets.add_parser("codec", help="codec reconstruction: WER beside ground truth, STOI, PESQ, MCD, "
                                             "speaker similarity, frame rate and bitrate")
    codec.add_argument("--manifest", required=True, help="utterances (audio + transcript) to encode and decode")
    rate = codec.add_mutually_exclusive_group()
    rate.add_argument("--threshold", type=float, default=None, help="merging threshold tau")
    rate.add_argument("--frame-rate", type=float, default=None, help="target average tokens per second")
    codec.add_argument("--scheduler", choices=("threshold", "dp", "entropy"), default="threshold",
                       help="segment scheduler (default: threshold)")
    codec.add_argument("--num-quantizers", type=int, default=None, help="codes per token (default: all)")
    codec.add_argument("--limit", type=int, default=None, help="evaluate only the first N utterances")
    codec.add_argument("--speaker-prefix", default=None, help="only speakers whose name starts with this (e.g. mb-)")
    codec.add_argument("--checkpoint", default=None, help="codec folder or URI (default: the bundled demo codec)")
    codec.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    codec.add_argument("--table", choices=("results",), default=None,
                       help="results: the results page instead of one setting (threshold rule at 12.5 / 8.3 / "
                            "6.25 Hz, dp and entropy at 8.3 Hz), each row with the command that reproduces it")
    codec.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    codec.add_argument("--recognizer", default=None, help="pocketsphinx (default) or whisper:PATH (an openai-whisper .pt)")
    codec.set_defaults(func=run_codec)


def run_asr(args: argparse.Namespace) -> int:
    from codec.asr import CTCPhoneRecognizer
    from flexitts.fileio import write_json_atomic
    from flexitts.text import PhonemeTable
    from flexitts.training.asr import phone_error_rate
    from flexitts.training.asr_data import ASRDataset

    model = CTCPhoneRecognizer.from_pretrained(args.checkpoint)
    table = PhonemeTable(model.config.symbols)
    report = {}
    for manifest in args.manifest:
        dataset = ASRDataset(manifest, table, max_seconds=60.0, limit=args.limit)
        overall, per_speaker = phone_error_rate(model, dataset)
        report[manifest] = {"per": overall, "utterances": len(dataset), "per_speaker": per_speaker}
        print(f"{manifest}: PER {overall:.4f} over {len(dataset)} utterances")
        for speaker, value in per_speaker.items():
            print(f"  {speaker:24s} {value:.4f}")
    if args.json:
        write_json_atomic(args.json, report)
    return 0


def parse_options(pairs: list[str], known: Iterable[str]) -> dict[str, Any]:
    """`["key=value", ...]` -> {key: value}, each value read as JSON (numbers, lists, true/null) or kept as text;
    every key must be in `known`."""
    known = set(known)
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"--option '{pair}' is not KEY=VALUE: write e.g. --option duration_temperature=0.7")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"--option {unknown[0]} is not a synthesis option: choose among {', '.join(sorted(known))}")
    return options


def run_tts(args: argparse.Namespace) -> int:
    from flexitts.evaluation.tts_eval import evaluate_tts, render_tts_markdown
    from flexitts.fileio import write_json_atomic, write_text_atomic
    from flexitts.tts import TTS, synthesis_options

    options = {"merging_threshold": args.threshold, "frame_rate": args.frame_rate, "steps": args.steps, "cfg": args.cfg}
    options.update({k: v for k, v in (("temperature", args.temperature), ("top_k", args.top_k),
                                      ("candidates", args.candidates), ("text_cfg", args.text_cfg),
                                      ("phone_guide", args.phone_guide), ("phone_cfg", args.phone_cfg),
                                      ("phone_cfg_until", args.phone_cfg_until))
                    if v is not None})
    # The evaluation sets each sentence's seed itself (--seed), and a callback cannot come from the command line.
    options.update(parse_options(args.option, set(synthesis_options()) - {"seed", "progress"}))
    tts = TTS.from_pretrained(args.checkpoint)
    result = evaluate_tts(tts, args.manifest, args.ref_strategy, args.ref, args.ref_text, args.limit,
                          args.speaker_prefix, args.seed, not args.no_ref_text, options, recognizer=args.recognizer,
                          direct_voice=args.direct_voice, offset=args.offset)
    markdown = render_tts_markdown(result)
    print(markdown)
    if args.out:
        write_json_atomic(f"{args.out}.json", result)
        write_text_atomic(f"{args.out}.md", markdown)
    return 0


def run_codec(args: argparse.Namespace) -> int:
    import sys

    from flexitts.benchmarks.codec import load_utterances
    from flexitts.cli.codec import load_codec
    from flexitts.evaluation.codec_eval import (CodecSetting, evaluate_codec, render_codec_markdown,
                                                render_results_page, results_rows, results_settings, write_outputs)

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    setting = CodecSetting(args.scheduler, args.threshold, args.frame_rate, args.num_quantizers).check()
    if args.table == "results" and (args.threshold is not None or args.frame_rate is not None
                                    or args.scheduler != "threshold"):
        raise ConfigError("--table results sets the frame rates and schedulers itself: drop --threshold, "
                          "--frame-rate and --scheduler")
    codec = load_codec(args.checkpoint, args.device)
    setting.check(codec.config.max_quantizers)

    def say(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    if args.table == "results":
        rows = results_rows(codec, args.manifest, results_settings(args.num_quantizers), limit=args.limit,
                            speaker_prefix=args.speaker_prefix, checkpoint=args.checkpoint, progress=say)
        payload, markdown = {"evaluation": "codec", "table": "results", "rows": rows}, render_results_page(rows)
    else:
        utterances = load_utterances(args.manifest, limit=args.limit, speaker_prefix=args.speaker_prefix,
                                     sample_rate=codec.sample_rate)
        payload = evaluate_codec(codec, utterances, setting, manifest=args.manifest, checkpoint=args.checkpoint,
                                 limit=args.limit, speaker_prefix=args.speaker_prefix, progress=say,
                                 recognizer=args.recognizer)
        markdown = render_codec_markdown(payload)
    print(markdown)
    if args.out:
        json_path, md_path = write_outputs(args.out, payload, markdown)
        print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


def run_ar(args: argparse.Namespace) -> int:
    import torch

    from ar import ARModel
    from flexitts.data.token_cache import TokenCache
    from flexitts.errors import DataError
    from flexitts.fileio import write_json_atomic
    from flexitts.pipeline.sampling_defaults import DEFAULT_DURATION_TOP_K, DEFAULT_MATCH_RATE, DEFAULT_PACE
    from flexitts.training.ar import ARTokenDataset, generated_length_ratio, teacher_forced_accuracy

    model = ARModel.from_pretrained(args.checkpoint)
    cache = TokenCache(args.tokens)
    settings = [s.strip() for s in args.settings.split(",")] if args.settings else cache.settings
    missing = sorted(set(settings) - set(cache.settings))
    if missing:
        raise DataError(f"settings {missing} are not in '{args.tokens}' (it has {cache.settings})")
    report = {}
    with torch.no_grad():
        for setting in settings:
            figures = teacher_forced_accuracy(model, ARTokenDataset(cache, model, [setting]))
            figures.update(generated_length_ratio(model, cache, setting, args.generate))
            # The same sentences with the pipeline's defaults: sampled durations inside the reference-pace window.
            paced = generated_length_ratio(model, cache, setting, args.generate, pace=DEFAULT_PACE,
                                           duration_top_k=DEFAULT_DURATION_TOP_K, match_rate=DEFAULT_MATCH_RATE)
            figures.update({f"paced_{k}": v for k, v in paced.items()})
            report[setting] = figures
            print(f"{setting}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
    if args.json:
        write_json_atomic(args.json, report)
    return 0
