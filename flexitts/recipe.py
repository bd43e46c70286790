"""The demo-bundle recipe: every model of `flexitts/assets/demo` rebuilt from scratch on a CPU.

    corpus  flexitts corpus synth --out corpus/demo --hours 3                       (~1 min)
            flexitts corpus synth --out corpus/big --hours 10                       (~8 min, a superset:
            same sentence split and voices; its training part feeds the AR and NAR)
    asr     flexitts train asr --config configs/asr_demo.yaml                       (budget 50 min)
    codec   flexitts train codec --config configs/codec_demo.yaml                   (budget 60 min)
            then flexitts train codec --config configs/codec_demo_phone.yaml --init runs/codec_demo/model
            (phone distillation into the semantic codes, 120 min)
            then flexitts train codec --config configs/codec_demo_subphone.yaml --init runs/codec_phone/model
            (sub-frame phone distillation: the codes spell every phone of their span, 75 min)
            then flexitts train codec --config configs/codec_demo_big.yaml --init runs/codec_subphone/model
            and the same config again with --out runs/codec_big2 --init runs/codec_big/model (the same losses
            on corpus/big's 9 h, so the codes learn phones rather than the demo split's sentences, 2 x 40 min)
    tokens  flexitts data tokens --manifest corpus/big/train.jsonl ... (and corpus/demo/valid.jsonl) (~12 min)
            then flexitts data align --cache runs/tokens_sub (and runs/tokens_sub_valid): phone onsets (~2 min)
    ar      flexitts train ar --config configs/ar_demo.yaml                         (budget 150 min)
            then flexitts train ar --config configs/ar_demo_subphone.yaml (from runs/ar_phone, 80 min)
            then flexitts train ar --config configs/ar_demo_pointer.yaml (from runs/ar_sub: the phone pointer, 90 min)
    nar     flexitts train nar --config configs/nar_demo.yaml                       (budget 40 min)
            then flexitts train nar --config configs/nar_demo_prior.yaml --init runs/nar_demo/model
            (adds the code encoder and its mel prior loss, 100 min)
            then flexitts train nar --config configs/nar_demo_phone.yaml --init runs/nar_prior/model
            and flexitts train nar --config configs/nar_demo_subphone.yaml --init runs/nar_phone/model
            (continue it, 140 + 80 min)
            then flexitts train nar --config configs/nar_demo_phones.yaml --init runs/nar_sub/model
            (adds phone conditioning, 80 min)
            then flexitts train nar --config configs/nar_demo_robust.yaml --init runs/nar_phones/model
            (codes corrupted where phones are given: follow the phones, 80 min)
            then flexitts data ar-samples --cache runs/tokens_sub --settings t0.39,t0.48 (the bundle's AR,
            teacher-forced, ~16 min) and flexitts train nar --config configs/nar_demo_arsamples.yaml
            --init runs/nar_robust/model (the AR's own mistakes in place of codes, 25 min)
    vocoder flexitts train vocoder --config configs/vocoder_demo.yaml               (budget 40 min)
            then flexitts train vocoder --config configs/vocoder_demo_polish.yaml --init runs/vocoder_demo/model
            (mel loss only, 15 min: a short CPU GAN phase leaves the waveform noisier)
            then flexitts train vocoder --config configs/vocoder_demo_refine.yaml --init runs/vocoder_demo_polish/model
            (3000 more mel-loss steps, 20 min)
    export  each run's final model, as float16, into the bundle folder

Each model is exported into the bundle as soon as its stage ends (the codec stage needs the new recogniser,
the token stage the new codec). A stage is skipped when its output exists and resumes from its newest
checkpoint when it was cut off, so running the recipe again continues where it stopped.

The shipped models got there by a longer road (earlier codecs, and AR/NAR runs on their tokens, each continued
on the next codec's tokens); the configs' comments record it. The recipe trains every stage on the final codec.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from flexitts.training.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent  # the source checkout holding configs/
CORPUS = "corpus/demo"  # ASR, codec and vocoder training; validation and test for every stage
BIG_CORPUS = "corpus/big"  # its training part feeds the AR and NAR
BIG_HOURS = 10.0
TOKENS = "runs/tokens_sub"
TOKEN_SETTINGS = ("t0.39", "t0.48", "t1")  # about 6.25, 8.3 and 12.5 tokens/s with the demo recogniser
AR_SAMPLE_SETTINGS = ("t0.39", "t0.48")  # the merged settings around synthesis' 8.3 Hz get the AR's samples
STAGES = ("corpus", "asr", "codec", "tokens", "ar", "nar", "vocoder", "export")
MODELS = {"asr": "runs/asr_demo", "codec": "runs/codec_big2", "ar": "runs/ar_ptr", "nar": "runs/nar_arsamples",
          "vocoder": "runs/vocoder_refine"}
# Bundle models whose large matrices are stored as int8 with a scale per row (`codec.common.weight_int8`): the
# NAR's 15.6 MB become 8.0 MB at the same quality (measured on the session-17 NAR with `flexitts bench nar`, 30
# mbrola test utterances, 15 steps, cfg 2: WER 0.343 against 0.349 in float16, similarity 0.821 / 0.822, STOI 0.748
# and PER 0.187 both).
INT8_MODELS = ("nar",)
# A stage may train in several runs: (config name, run folder, run whose model it starts from). The folder is the
# run's output folder, so one config may serve several runs.
RUNS = {"codec": [("codec_demo", "runs/codec_demo", None), ("codec_demo_phone", "runs/codec_phone", "runs/codec_demo"),
                  ("codec_demo_subphone", "runs/codec_subphone", "runs/codec_phone"),
                  ("codec_demo_big", "runs/codec_big", "runs/codec_subphone"),
                  ("codec_demo_big", "runs/codec_big2", "runs/codec_big")],
        "ar": [("ar_demo", "runs/ar_phone", None), ("ar_demo_subphone", "runs/ar_sub", "runs/ar_phone"),
               ("ar_demo_pointer", "runs/ar_ptr", "runs/ar_sub")],
        "nar": [("nar_demo", "runs/nar_demo", None), ("nar_demo_prior", "runs/nar_prior", "runs/nar_demo"),
                ("nar_demo_phone", "runs/nar_phone", "runs/nar_prior"),
                ("nar_demo_subphone", "runs/nar_sub", "runs/nar_phone"),
                ("nar_demo_phones", "runs/nar_phones", "runs/nar_sub"),
                ("nar_demo_robust", "runs/nar_robust", "runs/nar_phones"),
                ("nar_demo_arsamples", "runs/nar_arsamples", "runs/nar_robust")],
        "vocoder": [("vocoder_demo", "runs/vocoder_demo", None),
                    ("vocoder_demo_polish", "runs/vocoder_demo_polish", "runs/vocoder_demo"),
                    ("vocoder_demo_refine", "runs/vocoder_refine", "runs/vocoder_demo_polish")]}


@dataclass
class RecipeStep:
    name: str
    done: bool
    detail: str


def _ar_samples(run: RunConfig, bundle: Path, log: Callable[[str], None]) -> None:
    """Draw the teacher-forced AR samples a NAR run asks for (`data.ar_samples: cache`) with the bundle's AR (the
    AR stage exported it), unless its token cache has them."""
    from ar import ARModel
    from flexitts.training.ar_samples import SAMPLES_FILE, make_ar_samples

    cache = run.resolve(run.data.get("train", ""))
    if run.data.get("ar_samples") != "cache" or (cache / SAMPLES_FILE).is_file():
        return
    log(f"nar: AR samples of {cache} by {bundle / 'ar'}")
    with torch.no_grad():
        make_ar_samples(cache, ARModel.from_pretrained(bundle / "ar").float(), str(bundle / "ar"), AR_SAMPLE_SETTINGS)


def _train(model: str, bundle: Path, log: Callable[[str], None]) -> str:
    import importlib

    from flexitts.cli.train import TRAINERS
    from flexitts.training.config import load_run_config
    from flexitts.training.loop import FINAL_MODEL, latest_checkpoint

    module, function = TRAINERS[model].split(":")
    train = getattr(importlib.import_module(module), function)
    details = []
    for config, folder, init in RUNS.get(model, [(f"{model}_demo", MODELS[model], None)]):
        run_dir = ROOT / folder
        if (run_dir / FINAL_MODEL / "config.json").is_file() and _finished(run_dir):
            details.append(f"{run_dir / FINAL_MODEL} exists")
            continue
        resume = latest_checkpoint(run_dir) is not None
        log(f"{model}: training into {run_dir}{' (resuming)' if resume else ''}")
        start = str(ROOT / init / FINAL_MODEL) if init and not resume else None
        run = load_run_config(ROOT / "configs" / f"{config}.yaml")
        _ar_samples(run, bundle, log)
        result, _ = train(run, None, str(run_dir), start, resume, True)
        details.append(f"{config}: step {result.step}{' (time budget reached)' if result.stopped_by_budget else ''}")
    return "; ".join(details)


def _finished(run_dir: Path) -> bool:
    """A run whose final model was written after its newest checkpoint is complete."""
    from flexitts.training.loop import FINAL_MODEL, latest_checkpoint

    last = latest_checkpoint(run_dir)
    final = run_dir / FINAL_MODEL / "model.safetensors"
    return last is None or (final.is_file() and final.stat().st_mtime >= (last / "trainer.json").stat().st_mtime)


def export_bundle(bundle: str | os.PathLike, log: Callable[[str], None] = lambda s: None,
                  names: tuple[str, ...] = tuple(MODELS)) -> Path:
    """Copy each run's final model as float16 (large matrices as int8 for `INT8_MODELS`) into `bundle/<name>`
    (the demo bundle's layout)."""
    from ar import ARModel
    from codec import FlexiCodec
    from codec.asr.ctc_model import CTCPhoneRecognizer
    from nar import Voicebox
    from nar.vocoder import Vocoder

    classes = {"asr": CTCPhoneRecognizer, "codec": FlexiCodec, "ar": ARModel, "nar": Voicebox, "vocoder": Vocoder}
    folder = Path(bundle)
    for name in names:
        cls = classes[name]
        source = ROOT / MODELS[name] / "model"
        if not (source / "config.json").is_file():
            log(f"export: {source} missing, {name} left as it is")
            continue
        cls.from_pretrained(source).save_pretrained(folder / name, dtype=torch.float16, int8=name in INT8_MODELS)
        log(f"export: {name} -> {folder / name}")
    return folder


def run_recipe(stages: tuple[str, ...] = STAGES, bundle: str | os.PathLike | None = None, hours: float = 3.0,
               log: Callable[[str], None] = print) -> list[RecipeStep]:
    """Run the chosen stages in order (see the module docstring); returns what each did."""
    from codec.common.pretrained import demo_bundle_dir

    os.chdir(ROOT)
    steps: list[RecipeStep] = []
    for stage in stages:
        if stage == "corpus":
            from flexitts.corpus import synthesize_corpus

            details = []
            for folder, size in ((CORPUS, hours), (BIG_CORPUS, max(hours, BIG_HOURS))):
                if (ROOT / folder / "train.jsonl").is_file():
                    details.append(f"{folder} exists")
                else:
                    synthesize_corpus(ROOT / folder, size)
                    details.append(f"{size} h written to {folder}")
            detail = "; ".join(details)
        elif stage == "tokens":
            from codec.asr.ctc_model import CTCPhoneRecognizer
            from flexitts.data.token_cache import TokenCache, align_token_cache, build_token_cache

            if (ROOT / TOKENS / "index.jsonl").is_file():
                detail = f"{TOKENS} exists"
            else:
                from codec import FlexiCodec

                # The exported (float16-rounded) codec, so the tokens are exactly what synthesis will see.
                codec = FlexiCodec.from_pretrained(Path(bundle or demo_bundle_dir()) / "codec")
                with torch.no_grad():
                    valid = build_token_cache(ROOT / CORPUS / "valid.jsonl", ROOT / f"{TOKENS}_valid", codec, TOKEN_SETTINGS)
                    cache = build_token_cache(ROOT / BIG_CORPUS / "train.jsonl", ROOT / TOKENS, codec, TOKEN_SETTINGS)
                detail = f"{len(cache)} training and {len(valid)} validation utterances"
            # Phone onsets for the phone-pointer AR (`flexitts data align`), by the bundle's recogniser.
            recognizer = None
            for folder in (ROOT / TOKENS, ROOT / f"{TOKENS}_valid"):
                if not TokenCache(folder).aligned:
                    recognizer = recognizer or CTCPhoneRecognizer.from_pretrained(Path(bundle or demo_bundle_dir()) / "asr").eval()
                    align_token_cache(folder, recognizer)
                    detail += f"; {folder.name} aligned"
        elif stage == "export":
            detail = str(export_bundle(bundle or demo_bundle_dir(), log))
        else:
            detail = _train(stage, Path(bundle or demo_bundle_dir()), log)
            export_bundle(bundle or demo_bundle_dir(), log, (stage,))
        steps.append(RecipeStep(stage, True, detail))
        log(f"{stage}: {detail}")
    return steps
