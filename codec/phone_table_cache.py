"""`FlexiCodec.code_phone_table` kept on disk, so that a process pays for it once per codec, not once per run.

Building the table reads all 32768 codes through the semantic decoder (about 1 s on a CPU, a tenth of a short
`flexitts synthesize` call); loading it takes milliseconds. The file is named by a hash of everything the table
depends on: the codec's weights, the recogniser's phone head, the device type and dtype it was computed in, and
`TABLE_VERSION` (raise it when `code_phone_table` changes). A missing, unreadable or malformed file is rebuilt; a
cache folder that cannot be written only costs the rebuild next time.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from codec.common.fileio import atomic_path, cache_dir

__all__ = ["TABLE_VERSION", "cached_code_phone_table", "code_phone_table_key"]

TABLE_VERSION = 1
_SUBDIR = "code_phone_tables"


def _update(digest: Any, name: str, tensor: torch.Tensor) -> None:
    digest.update(name.encode())
    digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
    digest.update(memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))


def code_phone_table_key(codec: Any) -> str:
    """Hex digest naming `codec.code_phone_table()`'s value: codec weights, recogniser head, device, dtype."""
    param = next(codec.parameters())
    digest = hashlib.sha256(f"v{TABLE_VERSION} {param.device.type} {param.dtype}".encode())
    for name, tensor in codec.state_dict().items():
        _update(digest, name, tensor)
    weight, bias = codec._phone_head(codec.config.asr_dim)
    _update(digest, "asr.head.weight", weight)
    _update(digest, "asr.head.bias", bias)
    blank = getattr(getattr(codec.asr_extractor, "config", None), "blank_id", 0)
    digest.update(f"blank {blank}".encode())
    return digest.hexdigest()[:32]


def _load(path: Path, shape: tuple[int, int]) -> torch.Tensor | None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        table = load_file(path).get("table")
    except (OSError, SafetensorError, ValueError):
        return None
    if table is None or tuple(table.shape) != shape or table.dtype != torch.float32:
        return None
    return table


def cached_code_phone_table(codec: Any, directory: str | os.PathLike | None = None) -> torch.Tensor:
    """`codec.code_phone_table()` (`[P, V]` float32 on the codec's device), read from
    `directory` (default `$FLEXITTS_CACHE/code_phone_tables`) when an earlier run saved it, else built and saved.

    The saved table is the float32 one the codec computes, so a cached run gives the same samples as the first.
    """
    from safetensors.torch import save_file

    param = next(codec.parameters())
    shape = (len(codec.asr_extractor.config.symbols), int(codec.fsq.codebook_size))
    path = Path(directory) if directory is not None else cache_dir() / _SUBDIR
    path = path / f"{code_phone_table_key(codec)}.safetensors"
    table = _load(path, shape) if path.is_file() else None
    if table is not None:
        return table.to(param.device)
    with torch.no_grad():
        table = codec.code_phone_table().float()
    try:
        with atomic_path(path) as tmp:
            save_file({"table": table.cpu().contiguous()}, str(tmp))
    except OSError:
        pass  # a read-only or full cache folder: the next run builds the table again
    return table
