"""Run configuration files (YAML or JSON) with three sections: `model`, `training`, `data`.

    model:     fields of the model's config dataclass (sizes)
    training:  fields of `TrainingConfig` (steps, batch budget, learning rate, checkpoints, ...)
    data:      where the data is (manifests, token caches) and how it is cut
    out_dir:   where checkpoints and the final model go

Unknown keys are errors: a typo must not silently train the wrong model.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codec.common.pretrained import config_from_dict
from flexitts.errors import ConfigError
from flexitts.training.loop import TrainingConfig

SECTIONS = {"model", "training", "data", "out_dir"}


@dataclass
class RunConfig:
    """A parsed run configuration; `model` stays a dict until the model's config class is known."""

    model: dict[str, Any] = field(default_factory=dict)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: dict[str, Any] = field(default_factory=dict)
    out_dir: str = "runs/model"
    source: Path | None = None

    def check_data_keys(self, allowed: set[str], model: str) -> None:
        """`ConfigError` naming any key of the data section that `model`'s training does not know."""
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise ConfigError(f"unknown data key(s) {unknown} for {model}; allowed: {sorted(allowed)}")

    def train_manifest(self, data: str | None) -> Path:
        """The training manifest: `data` (from --data) or the config's `data.train`; it must exist."""
        path = Path(data) if data else self.resolve(self.data.get("train", ""))
        if not data and not self.data.get("train") or not path.is_file():
            raise ConfigError(f"training manifest '{path}' not found: pass --data or set data.train in the config")
        return path

    def model_config(self, config_class: type) -> Any:
        """The model section as `config_class`, starting from its `preset` (`demo` by default, or `paper`);
        a nested `mel` mapping is merged onto the preset's."""
        section = dict(self.model)
        preset = section.pop("preset", "demo")
        if preset not in ("demo", "paper"):
            raise ConfigError(f"model.preset must be demo or paper, not '{preset}'")
        base = dataclasses.asdict(getattr(config_class, preset)())
        if isinstance(section.get("mel"), dict):
            section["mel"] = {**base["mel"], **section["mel"]}
        return config_from_dict(config_class, {**base, **section}, "model section")

    def resolve(self, value: str | os.PathLike) -> Path:
        """A path from the config, relative to the config file's folder (or as given when absolute)."""
        path = Path(value)
        return path if path.is_absolute() or self.source is None else (self.source.parent / path)


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read a YAML/JSON run configuration; `ConfigError` with one line on any problem."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file '{file}' does not exist: see configs/ for examples")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as error:  # yaml raises many parser error types
        raise ConfigError(f"cannot parse '{file}': {' '.join(str(error).split())[:200]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"'{file}' must hold a mapping with sections {sorted(SECTIONS)}")
    unknown = sorted(set(data) - SECTIONS)
    if unknown:
        raise ConfigError(f"'{file}': unknown section(s) {unknown}; allowed: {sorted(SECTIONS)}")
    for name in ("model", "training", "data"):
        if not isinstance(data.get(name) or {}, dict):
            raise ConfigError(f"'{file}': section '{name}' must be a mapping")
    return RunConfig(
        model=dict(data.get("model") or {}),
        training=config_from_dict(TrainingConfig, dict(data.get("training") or {}), f"{file} [training]"),
        data=dict(data.get("data") or {}),
        out_dir=str(data.get("out_dir", "runs/model")),
        source=file,
    )
