"""`flexitts train MODEL --config CFG ...` (also `accelerate launch -m flexitts.train MODEL ...`)."""
from __future__ import annotations

import argparse

# model name -> "module:function" taking (run, data, out_dir, init, resume, progress)
TRAINERS = {
    "asr": "flexitts.training.asr:train_asr",
    "codec": "flexitts.training.codec:train_codec",
    "ar": "flexitts.training.ar:train_ar",
    "nar": "flexitts.training.nar:train_nar",
    "vocoder": "flexitts.training.vocoder:train_vocoder",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train or fine-tune a model (plain CPU or under `accelerate launch`)")
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=sorted(TRAINERS), help="which model to train")
    parser.add_argument("--config", required=True, help="run configuration (YAML/JSON with model/training/data sections)")
    parser.add_argument("--data", default=None, help="training manifest or data folder (overrides the config)")
    parser.add_argument("--out", default=None, help="output folder (overrides out_dir in the config)")
    parser.add_argument("--init", default=None, help="checkpoint to fine-tune from (folder, hf:// or https://)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from the newest checkpoint in the output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import importlib

    from flexitts.training.config import load_run_config

    module_name, function_name = TRAINERS[args.model].split(":")
    train = getattr(importlib.import_module(module_name), function_name)
    run_config = load_run_config(args.config)
    result, metrics = train(run_config, args.data, args.out, args.init, args.resume, not args.no_progress)
    note = " (stopped by its time budget; --resume continues)" if result.stopped_by_budget else ""
    shown = ", ".join(f"{k} {v:.4f}" for k, v in {**result.last_losses, **metrics}.items())
    print(f"{args.model}: step {result.step}{note}; {shown}; model in {result.model_dir}")
    return 0
