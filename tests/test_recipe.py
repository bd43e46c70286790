"""The shipped run configs and the demo recipe that chains them must agree: every config parses into its model's
config, each stage's runs write where the next run starts from, and token-reading stages read the recipe's cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
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
    assert len({folder for _, folder, _ in runs}) == len(runs), "each run writes a folder of its own"
    previous = None
    for config_name, folder, init in runs:
        run = load_run_config(recipe.ROOT / "configs" / f"{config_name}.yaml")
        if sum(name == config_name for name, _, _ in runs) == 1:  # a config serving one run names its folder
            assert run.resolve(run.out_dir).resolve() == (recipe.ROOT / folder).resolve(), config_name
        assert init == previous, f"{config_name} starts from the previous run of its stage"
        previous = folder


def test_runs_sharing_a_config_train_into_their_own_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flexitts.training.codec as codec_training
    from flexitts.training.loop import TrainResult

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "shared.yaml").write_text("out_dir: ../runs/first\nmodel: {}\ntraining: {max_steps: 3}\n")
    calls = []

    def fake_train(run, data, out, init, resume, progress):
        calls.append((out, init, resume))
        return TrainResult(step=3, model_dir=Path(out) / "model"), {}

    monkeypatch.setattr(recipe, "ROOT", tmp_path)
    monkeypatch.setattr(codec_training, "train_codec", fake_train)
    monkeypatch.setitem(recipe.RUNS, "codec", [("shared", "runs/first", None), ("shared", "runs/second", "runs/first")])
    detail = recipe._train("codec", tmp_path / "bundle", lambda line: None)
    assert calls == [(str(tmp_path / "runs/first"), None, False),
                     (str(tmp_path / "runs/second"), str(tmp_path / "runs/first/model"), False)]
    assert detail == "shared: step 3; shared: step 3"


@pytest.mark.parametrize("config_name", ["ar_demo", "ar_demo_subphone", "ar_demo_pointer", "nar_demo", "nar_demo_prior",
                                         "nar_demo_phone", "nar_demo_subphone", "nar_demo_phones",
                                         "nar_demo_robust", "nar_demo_arsamples"])
def test_token_stages_read_the_recipe_token_cache(config_name: str) -> None:
    run = load_run_config(recipe.ROOT / "configs" / f"{config_name}.yaml")
    assert run.resolve(run.data["train"]).resolve() == (recipe.ROOT / recipe.TOKENS).resolve()


def test_the_nar_stage_draws_the_ar_samples_its_run_asks_for_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flexitts.data.token_cache import TokenCache
    from flexitts.training.ar_samples import SAMPLES_FILE, read_ar_samples, sample_ar_codes
    from tests.test_ar_samples import table_model
    from tests.test_ar_training import write_cache

    monkeypatch.setattr(recipe, "AR_SAMPLE_SETTINGS", ("r6.25",))  # the tiny cache's merged setting
    cache = write_cache(tmp_path / "tokens", 6, seed=5)
    table_model(seed=2).save_pretrained(tmp_path / "bundle" / "ar")
    config = tmp_path / "nar.yaml"
    config.write_text(f"out_dir: out\nmodel: {{}}\ntraining: {{max_steps: 1}}\ndata: {{train: {cache}}}\n")
    recipe._ar_samples(load_run_config(config), tmp_path / "bundle", print)
    assert not (cache / SAMPLES_FILE).exists()  # the run does not ask for them
    config.write_text(config.read_text().replace(f"{cache}}}", f"{cache}, ar_samples: cache}}"))
    recipe._ar_samples(load_run_config(config), tmp_path / "bundle", print)
    written = read_ar_samples(cache)
    expected = sample_ar_codes(TokenCache(cache), ARModel.from_pretrained(tmp_path / "bundle" / "ar").float(), ["r6.25"])
    assert set(written) == set(expected) and all(np.array_equal(written[k], expected[k]) for k in expected)
    stamp = (cache / SAMPLES_FILE).stat().st_mtime_ns
    recipe._ar_samples(load_run_config(config), tmp_path / "bundle", print)
    assert (cache / SAMPLES_FILE).stat().st_mtime_ns == stamp  # drawn once
