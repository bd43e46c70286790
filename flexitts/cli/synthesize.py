"""`flexitts synthesize`: text + reference voice -> a wav file (the same code path as the API and the app)."""
from __future__ import annotations

import argparse


def _match_rate_name(match_rate: bool | str) -> str:
    """`TTS.synthesize`'s `match_rate` value -> the CLI's choice."""
    return "off" if match_rate is False else "linear" if match_rate is True else str(match_rate)


def register(subparsers: argparse._SubParsersAction) -> None:
    from flexitts.pipeline.sampling_defaults import (DEFAULT_CANDIDATES, DEFAULT_CFG_UNTIL, DEFAULT_DURATION_TOP_K,
                                                     DEFAULT_FRAME_RATE, DEFAULT_MATCH_PACE, DEFAULT_MATCH_RATE, DEFAULT_PACE,
                                                     DEFAULT_PHONE_CFG, DEFAULT_PHONE_CFG_UNTIL, DEFAULT_PHONE_GUIDE,
                                                     DEFAULT_TEXT_CFG, DEFAULT_TOP_K)

    parser = subparsers.add_parser("synthesize", help="speak a text in the voice of a reference recording")
    text = parser.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="text to speak")
    text.add_argument("--text-file", help="UTF-8 text file to speak (long texts are split into chunks)")
    parser.add_argument("--ref", required=True, help="reference recording (any format soundfile reads)")
    parser.add_argument("--ref-text", default=None, help="transcript of the reference (default: recognised from it)")
    parser.add_argument("--out", required=True, help="output audio file (.wav, .flac or .ogg)")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--threshold", type=float, default=None, help="merging threshold tau (1.0: 12.5 tokens/s)")
    rate.add_argument("--frame-rate", type=float, default=None,
                      help=f"target tokens per second instead of a threshold (default: {DEFAULT_FRAME_RATE:g})")
    parser.add_argument("--steps", type=int, default=15, help="NAR flow-matching steps")
    parser.add_argument("--cfg", type=float, default=2.0, help="classifier-free guidance weight (0: off)")
    parser.add_argument("--cfg-until", type=float, default=DEFAULT_CFG_UNTIL,
                        help="guidance on the NAR steps that start before this flow time, 0..1; later steps run the "
                             "conditional pass alone (default %(default)g)")
    parser.add_argument("--rescale-cfg", type=float, default=0.75, help="share of the std-rescaled guided velocity")
    parser.add_argument("--sway", type=float, default=None, help="sway-sampling coefficient of the NAR time grid (e.g. -1)")
    parser.add_argument("--temperature", type=float, default=1.0, help="AR code sampling temperature")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help=f"AR code sampling top-k (default {DEFAULT_TOP_K})")
    parser.add_argument("--top-p", type=float, default=1.0, help="AR code sampling top-p")
    parser.add_argument("--duration-top-k", type=int, default=DEFAULT_DURATION_TOP_K,
                        help=f"duration sampling top-k (default {DEFAULT_DURATION_TOP_K}; 1: greedy, the tilted argmax)")
    parser.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES,
                        help="AR samples per text chunk; the one whose codes best match the text's phones is rendered "
                             f"(default {DEFAULT_CANDIDATES})")
    parser.add_argument("--text-cfg", type=float, default=DEFAULT_TEXT_CFG,
                        help=f"classifier-free guidance on the text for the AR's codes (default {DEFAULT_TEXT_CFG:g}; 0: off)")
    parser.add_argument("--phone-guide", type=float, default=DEFAULT_PHONE_GUIDE,
                        help="phone-guided decoding weight for a phone-pointer AR: codes whose own reading is not the "
                             f"phone due are pushed down (default {DEFAULT_PHONE_GUIDE:g}; 0: off)")
    parser.add_argument("--phone-cfg", type=float, default=DEFAULT_PHONE_CFG,
                        help="phone guidance weight for a phone-conditioned NAR: the speech is pulled towards the "
                             f"text's phones where the codes disagree (default {DEFAULT_PHONE_CFG:g}; 0: off)")
    parser.add_argument("--phone-cfg-until", type=float, default=DEFAULT_PHONE_CFG_UNTIL,
                        help="phone guidance on the NAR steps that start before this flow time, 0..1 "
                             f"(default {DEFAULT_PHONE_CFG_UNTIL:g})")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--pace", type=float, nargs=2, default=DEFAULT_PACE, metavar=("LO", "HI"),
                      help="length window relative to the reference's pace (default: %(default)s)")
    pace.add_argument("--no-pace", action="store_true", help="let the AR's end-of-speech token alone decide the length")
    parser.add_argument("--match-rate", choices=["log", "linear", "off"], default=_match_rate_name(DEFAULT_MATCH_RATE),
                        help="tilt the durations towards the asked token rate, by log k (power law) or k (exponential); "
                             "off: draw them as the model predicts (default: %(default)s)")
    parser.add_argument("--match-pace", action=argparse.BooleanOptionalAction, default=DEFAULT_MATCH_PACE,
                        help="with a phone-pointer AR, tilt the phone advances to the reference's phones per frame, so "
                             "a low token rate packs more phones into each token instead of slowing the speech down "
                             "(natural pace, but higher WER with the demo AR; default: %(default)s)")
    parser.add_argument("--speed", type=float, default=1.0, help="speaking-rate factor (2: twice as fast)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (reproducible output)")
    parser.add_argument("--checkpoint", default=None, help="bundle folder or URI (default: the bundled demo models)")
    parser.add_argument("--ar", default=None, help="AR model folder or URI replacing the bundle's (e.g. a fine-tuned one)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="NAR arithmetic: auto (bfloat16 where the device has it natively), fp32 or bf16")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flexitts.audio import save_audio
    from flexitts.errors import AudioError, TextError

    out = Path(args.out)
    if not out.parent.is_dir():
        raise AudioError(f"output folder '{out.parent}' does not exist: create it or choose another --out")
    if out.suffix.lower() not in (".wav", ".flac", ".ogg"):
        raise AudioError(f"cannot write '{out}': use a .wav, .flac or .ogg file name")
    text = args.text
    if args.text_file is not None:
        try:
            text = Path(args.text_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise TextError(f"cannot read --text-file '{args.text_file}': {error.__class__.__name__}") from None

    from flexitts.tts import TTS

    tts = TTS.from_pretrained(args.checkpoint, device=args.device, precision=args.precision, ar=args.ar)
    wav, rate, info = tts.synthesize(
        text, args.ref, ref_text=args.ref_text, merging_threshold=args.threshold, frame_rate=args.frame_rate,
        steps=args.steps, cfg=args.cfg, cfg_until=args.cfg_until, rescale_cfg=args.rescale_cfg, sway=args.sway, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, duration_top_k=args.duration_top_k, candidates=args.candidates,
        text_cfg=args.text_cfg, phone_guide=args.phone_guide, phone_cfg=args.phone_cfg, phone_cfg_until=args.phone_cfg_until, pace=None if args.no_pace else tuple(args.pace), match_rate=False if args.match_rate == "off" else args.match_rate,
        match_pace=args.match_pace, speed=args.speed, seed=args.seed,
    )
    save_audio(out, wav, rate)
    print(f"wrote {out}: {len(wav) / rate:.2f} s of speech ({info.pace_ratio:.2f}x the reference's pace), "
          f"{info.frame_rate:.2f} tokens/s on average, real-time factor {info.rtf:.2f} (seed {info.seed})")
    return 0
