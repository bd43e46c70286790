"""Pickle-free saving of nested training state (optimizer, scheduler, RNG) as safetensors + JSON.

Tensors found anywhere in a nested dict/list go into a safetensors file under their path; everything else
(numbers, strings, lists of hyper-parameters) goes into a JSON skeleton that names those paths.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from flexitts.checkpoints import load_safetensors, save_safetensors
from flexitts.fileio import write_json_atomic

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_INTKEYS = "__intkeys__"


def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj
        return {_TENSOR: path}
    if isinstance(obj, dict):
        # Optimizer states are keyed by int parameter ids; JSON keys are strings, so remember which were ints.
        int_keys = [k for k in obj if isinstance(k, int)]
        out = {str(k): _flatten(v, f"{path}.{k}", tensors) for k, v in obj.items()}
        if int_keys:
            out[_INTKEYS] = [str(k) for k in int_keys]
        return out
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
        return {_TUPLE: items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save training state value of type {type(obj).__name__} at {path}")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if _TUPLE in obj:
            return tuple(_unflatten(v, tensors) for v in obj[_TUPLE])
        int_keys = set(obj.get(_INTKEYS, []))
        return {(int(k) if k in int_keys else k): _unflatten(v, tensors) for k, v in obj.items() if k != _INTKEYS}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_state(state: dict[str, Any], directory: str | os.PathLike, name: str) -> None:
    """Write `state` as `<name>.json` + `<name>.safetensors` in `directory`."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, name, tensors)
    folder = Path(directory)
    save_safetensors(tensors, folder / f"{name}.safetensors")
    write_json_atomic(folder / f"{name}.json", skeleton)


def load_state(directory: str | os.PathLike, name: str) -> dict[str, Any]:
    """Read what `save_state` wrote."""
    folder = Path(directory)
    tensors = load_safetensors(folder / f"{name}.safetensors")
    skeleton = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    return _unflatten(skeleton, tensors)
