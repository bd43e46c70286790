"""The shipped run configs and the demo recipe that chains them must agree: every config parses into its model's
config, each stage's runs write where the next run starts from, and token-reading stages read the recipe's cache."""
from __future__ import annotations

from pathlib import Path

import pytest

from ar import ARConfig, ARModel
from codec import FlexiCodecConfig
from codec.asr.ctc_model import CTCRecognizerConfig
from codec.common.pretrained import config_from_dict
from flexitts import recipe
from flexitts.text import PhonemeTable
from flexitts.training.ar import build_ar_model
from flexitts.training.config import load_run_config
from nar import VoiceboxConfig
from nar.vocoder import VocoderConfig

CONFIGS = sorted((recipe.ROOT / "configs").glob("*.yaml"))
CONFIG_CLASSES = {"codec": FlexiCodecConfig, "nar": VoiceboxConfig, "vocoder": VocoderConfig}


def _runs(model: str) -> list[tuple[str, str, str | None]]:
    return recipe.RUNS.get(model, [(f"{model}_demo", recipe.MODELS[model], None)])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_builds_its_model_config(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = load_run_config(path)
    kind = path.stem.split("_")[0]
    if kind == "asr":
        config = config_from_dict(CTCRecognizerConfig, {**run.model, "symbols": list(PhonemeTable.default().symbols)},
                                  "model section")
        assert config.symbols
    elif kind == "ar":
        init = run.model.get("init")
        if init is not None and init != "demo" and not run.resolve(init).exists():
            # A clean clone has no local training runs: stand a demo-sized model in for the start checkpoint,
            # so the section's own fields are still checked against the model config.
            monkeypatch.setattr(ARModel, "from_pretrained",
                                classmethod(lambda cls, path=None: ARModel(ARConfig.demo(list(PhonemeTable.default().symbols)))))
        model, _ = build_ar_model(run, None)
        assert model.config.dropout == run.model.get("dropout", model.config.dropout)
    else:
        config = run.model_config(CONFIG_CLASSES[kind])
        for key, value in run.model.items():
            if key != "preset" and not isinstance(value, dict):
                got = getattr(config, key)
                assert (list(got) if isinstance(got, tuple) else got) == value, key
    assert run.training.max_steps > 0


@pytest.mark.parametrize("model", list(recipe.MODELS))
def test_recipe_runs_chain_into_the_exported_model(model: str) -> None:
    runs = _runs(model)
    assert runs[-1][1] == recipe.MODELS[model], "the bundle exports the stage's last run"
    previous = None
    for config_name, folder, init in runs:
        run = load_run_config(recipe.ROOT / "configs" / f"{config_name}.yaml")
        assert run.resolve(run.out_dir).resolve() == (recipe.ROOT / folder).resolve(), config_name
        assert init == previous, f"{config_name} starts from the previous run of its stage"
        previous = folder


@pytest.mark.parametrize("config_name", ["ar_demo", "ar_demo_subphone", "ar_demo_pointer", "nar_demo", "nar_demo_prior",
                                         "nar_demo_phone", "nar_demo_subphone", "nar_demo_phones",
                                         "nar_demo_robust", "nar_demo_arsamples"])
def test_token_stages_read_the_recipe_token_cache(config_name: str) -> None:
    run = load_run_config(recipe.ROOT / "configs" / f"{config_name}.yaml")
    assert run.resolve(run.data["train"]).resolve() == (recipe.ROOT / recipe.TOKENS).resolve()
