"""`flexitts codec encode|decode`: audio to dynamic-rate token files (`.npz`) and back."""
from __future__ import annotations

import argparse
from pathlib import Path

SCHEDULERS = ("threshold", "dp", "entropy")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("codec", help="encode audio to dynamic-rate tokens and decode them back")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    encode = actions.add_parser("encode", help="audio file -> token file (.npz)")
    encode.add_argument("input", metavar="IN", help="audio file (wav, flac, ogg; any rate and channel count)")
    encode.add_argument("--out", required=True, help="token file to write (.npz; its folder must exist)")
    rate = encode.add_mutually_exclusive_group()
    rate.add_argument("--threshold", type=float, default=None,
                      help="merging threshold tau (1.0 = no merging, 12.5 Hz; default: the codec's, 0.91 for the demo)")
    rate.add_argument("--frame-rate", type=float, default=None, metavar="HZ",
                      help="target average tokens per second instead of a threshold (e.g. 8.3 or 6.25)")
    encode.add_argument("--scheduler", choices=SCHEDULERS, default="threshold",
                        help="how segments are chosen (default: threshold; entropy takes --frame-rate only)")
    encode.add_argument("--num-quantizers", type=int, default=None, metavar="N",
                        help="codes per token, the semantic FSQ included (1..max; default: all)")
    _common(encode)
    encode.set_defaults(func=run_encode)

    decode = actions.add_parser("decode", help="token file (.npz) -> audio file")
    decode.add_argument("tokens", metavar="TOKENS", help="token file written by `flexitts codec encode`")
    decode.add_argument("--out", required=True, help="audio file to write (.wav, .flac or .ogg; its folder must exist)")
    _common(decode)
    decode.set_defaults(func=run_decode)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None, metavar="PATH_OR_URI",
                        help="codec folder, hf:// or https:// URI (default: the bundled demo codec)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def _check_output(path: str, what: str) -> Path:
    """Refuse an output path whose folder is missing or that names a folder, before any work is done."""
    from flexitts.errors import ConfigError

    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"--out '{out}' is a directory: give a {what} file name")
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write --out '{out}': folder '{out.parent}' does not exist; create it first")
    return out


def _device(name: str):
    import torch

    from flexitts.errors import ConfigError

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown --device '{name}': use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def load_codec(checkpoint: str | None, device: str = "cpu"):
    """The codec named by `--checkpoint` (the bundled demo codec when None), on `device`."""
    from codec import FlexiCodec

    return FlexiCodec.from_pretrained(checkpoint, device=_device(device)).eval()


def run_encode(args: argparse.Namespace) -> int:
    from flexitts.errors import ConfigError

    out = _check_output(args.out, "token (.npz)")
    if args.frame_rate is not None and not args.frame_rate > 0:
        raise ConfigError(f"--frame-rate must be a positive number of tokens per second, got {args.frame_rate:g}")
    if args.scheduler == "entropy" and args.threshold is not None:
        raise ConfigError("--scheduler entropy takes --frame-rate, not --threshold")
    if not Path(args.input).exists():  # before loading the model: a typo should fail fast
        from flexitts.errors import AudioError

        raise AudioError(f"audio file '{args.input}' does not exist: check the path")
    codec = load_codec(args.checkpoint, args.device)
    limit = codec.config.max_quantizers
    if args.num_quantizers is not None and not 1 <= args.num_quantizers <= limit:
        raise ConfigError(f"--num-quantizers must be in 1..{limit} for this codec (1 = semantic codes only), "
                          f"got {args.num_quantizers}")

    from codec.tokens_file import save_tokens
    from flexitts.audio import load_audio

    wav, rate = load_audio(args.input, target_rate=codec.sample_rate)
    tokens = codec.encode(wav, rate, num_quantizers=args.num_quantizers, merging_threshold=args.threshold,
                          frame_rate=args.frame_rate, scheduler=args.scheduler)
    threshold = args.threshold
    if threshold is None and args.frame_rate is None and args.scheduler != "entropy":
        threshold = codec.config.default_threshold
    save_tokens(out, tokens, codec, scheduler=args.scheduler, merging_threshold=threshold,
                frame_rate=args.frame_rate, source=str(args.input))
    seconds = wav.shape[-1] / rate
    count = int(tokens.num_tokens[0])
    average = count / seconds
    nq = tokens.num_quantizers
    total = round(codec.bitrate(nq, average))
    content = round(codec.bitrate(nq, average, include_duration=False))
    print(f"wrote {out}: {count} tokens for {seconds:.2f} s of audio, average {average:.2f} Hz, {nq} quantizer"
          f"{'s' if nq != 1 else ''}, {total} bps ({content} content + {total - content} duration)")
    return 0


def run_decode(args: argparse.Namespace) -> int:
    import soundfile as sf

    from flexitts.errors import AudioError, ConfigError

    out = _check_output(args.out, "audio")
    if out.suffix.lstrip(".").upper() not in sf.available_formats():
        raise AudioError(f"cannot write '{out}': unknown audio extension, use .wav, .flac or .ogg")

    from codec.tokens_file import load_tokens
    from flexitts.audio import save_audio

    load_tokens(args.tokens)  # a missing or corrupt file fails before the model loads
    codec = load_codec(args.checkpoint, args.device)
    record = load_tokens(args.tokens, codec)
    tokens = record.tokens
    if tokens.batch_size != 1:
        raise ConfigError(f"'{args.tokens}' holds {tokens.batch_size} utterances; the CLI decodes one per file "
                          "(use codec.tokens_file.load_tokens and FlexiCodec.decode for batches)")
    wav = codec.decode(tokens)[0].cpu()
    save_audio(out, wav, codec.sample_rate)
    print(f"wrote {out}: {wav.shape[-1] / codec.sample_rate:.2f} s at {codec.sample_rate} Hz from "
          f"{int(tokens.num_tokens[0])} tokens ({tokens.num_quantizers} quantizers)")
    return 0
