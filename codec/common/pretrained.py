"""`save_pretrained` / `from_pretrained` shared by every model: a folder with `config.json` (the config
dataclass) and `model.safetensors` (the weights). No pickle anywhere."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from codec.common.checkpoints import load_safetensors, resolve_checkpoint, save_safetensors
from codec.common.errors import CheckpointError, ConfigError
from codec.common.fileio import write_json_atomic
from codec.common.weight_int8 import quantize_state

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

M = TypeVar("M", bound="PretrainedMixin")


def demo_bundle_dir() -> Path:
    """The demo bundle shipped inside the `flexitts` distribution (`flexitts/assets/demo`).

    Found through the import system without importing `flexitts` (the model packages never import it).
    """
    spec = importlib.util.find_spec("flexitts")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("the flexitts package (which holds the demo bundle) is not installed: pass a checkpoint path")
    return Path(list(spec.submodule_search_locations)[0]) / "assets" / "demo"


def config_from_dict(config_class: type, data: dict[str, Any], where: str) -> Any:
    """Build a config dataclass from JSON data; unknown or missing fields are a one-line `ConfigError`."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"{where}: unknown {config_class.__name__} field(s) {unknown}: the checkpoint is from another model or version")
    try:
        return config_class(**data)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: invalid {config_class.__name__} ({' '.join(str(error).split())})") from None


class PretrainedMixin:
    """Mixed into an `nn.Module` whose constructor takes one config dataclass stored as `self.config`."""

    config_class: ClassVar[type]
    #: sub-folder of the demo bundle holding this model's default weights
    bundle_name: ClassVar[str]
    config: Any

    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None, int8: bool = False) -> Path:
        """Write `config.json` and `model.safetensors` into `directory`: floating tensors cast to `dtype` when
        given; with `int8`, the large matrices stored as int8 with a scale per row (`codec.common.weight_int8`,
        half the bytes of float16; `from_pretrained` restores floats)."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()  # type: ignore[attr-defined]
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        metadata = {"format": "pt", "model": type(self).__name__}
        if int8:
            state = quantize_state(state)
            metadata["int8_weights"] = "per-row absmax"
        save_safetensors(state, folder / WEIGHTS_NAME, metadata=metadata)
        write_json_atomic(folder / CONFIG_NAME, dataclasses.asdict(self.config))
        return folder

    @classmethod
    def from_pretrained(cls: type[M], path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> M:
        """Load from a folder, a URI (hf://, https://) of one, or the bundled demo model when `path` is None."""
        folder = demo_bundle_dir() / cls.bundle_name if path is None else resolve_checkpoint(path, what=f"{cls.__name__} checkpoint")
        if folder.is_file():
            folder = folder.parent
        config_file = folder / CONFIG_NAME
        if not config_file.is_file():
            hint = " (the demo bundle is missing: reinstall flexitts or run its recipe)" if path is None else ""
            raise CheckpointError(f"'{folder}' has no {CONFIG_NAME}: give a folder written by save_pretrained{hint}")
        try:
            data = json.loads(config_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ConfigError(f"{config_file} is not valid JSON ({error.msg} at line {error.lineno})") from None
        config = config_from_dict(cls.config_class, data, str(config_file))
        # Random initialisation is overwritten below; it must not move the global RNG (a model loaded lazily
        # mid-training would otherwise change every later random draw and break exact resume).
        with torch.random.fork_rng(devices=[]):
            model = cls(config)  # type: ignore[call-arg]
        state = load_safetensors(folder / WEIGHTS_NAME)
        own = model.state_dict()  # type: ignore[attr-defined]
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise CheckpointError(
                f"{folder / WEIGHTS_NAME} does not match {cls.__name__}: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        state = {k: v.to(own[k].dtype) for k, v in state.items()}
        model.load_state_dict(state)  # type: ignore[attr-defined]
        return model.to(device).eval()  # type: ignore[attr-defined,return-value]


def init_state_for(model: Any, state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """A checkpoint's weights as the full state of `model` for fine-tuning: every checkpoint tensor must exist
    in `model` with the same shape; modules the checkpoint lacks (a head the new config adds) keep `model`'s
    fresh initialisation."""
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    reshaped = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if unexpected or reshaped:
        raise CheckpointError(f"{where} does not fit this model: unexpected {unexpected[:3]}, other shapes {reshaped[:3]};"
                              " keep the checkpoint's sizes in the config")
    return {**own, **{k: v.to(own[k].dtype) for k, v in state.items()}}
