"""`flexitts data ...`: prepare users' data sets."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="prepare data manifests")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    prepare = actions.add_parser("prepare", help="convert an `audio_file|text` metadata.csv into a manifest")
    prepare.add_argument("--csv", required=True, help="metadata CSV (`audio_file|text`, paths relative to it)")
    prepare.add_argument("--out", required=True, help="manifest to write (JSON Lines)")
    prepare.add_argument("--speaker", default=None, help="speaker name for every row (default: the CSV's folder name)")
    prepare.add_argument("--delimiter", default="|", help="column separator (default: |)")
    prepare.set_defaults(func=run_prepare)
    tokens = actions.add_parser("tokens", help="encode a manifest once with the codec into a token cache (AR/NAR training data)")
    tokens.add_argument("--manifest", required=True, help="data manifest (JSON Lines)")
    tokens.add_argument("--out", required=True, help="token cache folder (resumes when it holds a partial build)")
    tokens.add_argument("--thresholds", default="", help="comma-separated merging thresholds, e.g. 0.48,1.0")
    tokens.add_argument("--frame-rates", default="", help="comma-separated target frame rates in Hz, e.g. 8.3,6.25")
    tokens.add_argument("--checkpoint", default=None, help="codec checkpoint (default: the bundled demo codec)")
    tokens.add_argument("--batch-seconds", type=float, default=60.0, help="audio per encoding batch")
    tokens.add_argument("--asr", default=None, help="CTC phone recogniser for the phone onsets (default: the bundled one)")
    tokens.add_argument("--no-align", action="store_true", help="skip the phone onsets (`flexitts data align`) that a "
                        "phone-pointer AR trains on")
    tokens.set_defaults(func=run_tokens)
    align = actions.add_parser("align", help="add phone onsets (CTC forced alignment) to a token cache, for a phone-pointer AR")
    align.add_argument("--cache", required=True, help="token cache folder (resumes when partly aligned)")
    align.add_argument("--asr", default=None, help="CTC phone recogniser checkpoint (default: the bundled one)")
    align.add_argument("--batch-seconds", type=float, default=60.0, help="audio per recogniser batch")
    align.set_defaults(func=run_align)
    samples = actions.add_parser("ar-samples", help="teacher-forced AR samples of a token cache's codes, for NAR "
                                 "training on the AR's own mistakes (data.ar_samples)")
    samples.add_argument("--cache", required=True, help="token cache folder (the file goes into it: ar_samples.npz)")
    samples.add_argument("--checkpoint", default=None, help="AR checkpoint (default: the bundled demo AR)")
    samples.add_argument("--settings", default="", help="comma-separated cache settings (default: all)")
    samples.add_argument("--top-k", type=int, default=5, help="codes kept per draw (default 5, as synthesis)")
    samples.add_argument("--temperature", type=float, default=1.0)
    samples.add_argument("--seed", type=int, default=0)
    samples.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    samples.set_defaults(func=run_ar_samples)


def _progress_bar(desc: str):
    """A tqdm bar and a `progress(done, total)` callback that drives it."""
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, unit="utt", dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, progress


def run_prepare(args: argparse.Namespace) -> int:
    from flexitts.data.prepare import prepare_csv

    utterances = prepare_csv(args.csv, args.out, speaker=args.speaker, delimiter=args.delimiter)
    hours = sum(u.duration or 0.0 for u in utterances) / 3600
    print(f"wrote {args.out}: {len(utterances)} utterances, {hours:.2f} h")
    return 0


def run_tokens(args: argparse.Namespace) -> int:
    from codec import FlexiCodec
    from flexitts.data.token_cache import build_token_cache
    from flexitts.errors import DataError

    def values(text: str, prefix: str) -> list[str]:
        try:
            return [f"{prefix}{float(v):g}" for v in text.split(",") if v.strip()]
        except ValueError:
            raise DataError(f"'{text}' is not a comma-separated list of numbers") from None

    settings = values(args.thresholds, "t") + values(args.frame_rates, "r")
    if not settings:
        settings = ["t0.48"]
    codec = FlexiCodec.from_pretrained(args.checkpoint)
    bar, progress = _progress_bar("tokens")
    cache = build_token_cache(args.manifest, args.out, codec, settings, args.batch_seconds, progress)
    bar.close()
    if not args.no_align:
        cache = _align(args.out, args.asr, args.batch_seconds)
    tokens = {name: sum(row["tokens"][name] for row in cache.rows) for name in cache.settings}
    frames = sum(row["frames"] for row in cache.rows)
    rates = ", ".join(f"{name} {count * 12.5 / max(1, frames):.2f} tokens/s" for name, count in tokens.items())
    print(f"wrote {args.out}: {len(cache)} utterances; {rates}")
    return 0


def _align(cache: str, asr: str | None, batch_seconds: float):
    from codec.asr.ctc_model import CTCPhoneRecognizer
    from flexitts.data.token_cache import align_token_cache

    recognizer = CTCPhoneRecognizer.from_pretrained(asr).eval()
    bar, progress = _progress_bar("align")
    aligned = align_token_cache(cache, recognizer, batch_seconds, progress)
    bar.close()
    return aligned


def run_align(args: argparse.Namespace) -> int:
    cache = _align(args.cache, args.asr, args.batch_seconds)
    phones = sum(len(cache.item(i).phone_onsets) for i in range(len(cache)))
    print(f"aligned {args.cache}: {len(cache)} utterances, {phones} phones")
    return 0


def run_ar_samples(args: argparse.Namespace) -> int:
    import torch

    from ar import ARModel
    from flexitts.errors import ConfigError
    from flexitts.training.ar_samples import make_ar_samples

    if args.top_k < 0 or args.temperature <= 0:
        raise ConfigError("--top-k must be >= 0 and --temperature > 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = ARModel.from_pretrained(args.checkpoint).float()
    settings = [s.strip() for s in args.settings.split(",") if s.strip()] or None
    bar, progress = _progress_bar("ar-samples")
    path, count = make_ar_samples(args.cache, model, args.checkpoint or "demo", settings, args.top_k, args.temperature,
                                  args.seed, progress)
    bar.close()
    print(f"wrote {path}: {count} sequences")
    return 0
