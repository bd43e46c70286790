"""Checkpoint resolution and safe weight loading.

One function, `resolve_checkpoint`, turns a local file or folder, `hf://org/repo/file` or an `https://` URL
into a local path through `cached-path`. Weights load from safetensors only: never pickle.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from codec.common.errors import CheckpointError
from codec.common.fileio import cache_dir

REMOTE_SCHEMES = ("hf://", "http://", "https://", "s3://", "gs://")
SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


def is_remote(uri: str | os.PathLike) -> bool:
    """True for URIs that `cached-path` downloads (hf://, http(s)://, s3://, gs://)."""
    return isinstance(uri, str) and uri.startswith(REMOTE_SCHEMES)


def resolve_checkpoint(uri: str | os.PathLike, what: str = "checkpoint") -> Path:
    """Return a local path for `uri` (a local file/folder, hf://org/repo[/file] or an http(s) URL).

    Remote files are downloaded once into `cache_dir()`; archives are not extracted. Raises
    `CheckpointError` naming the URI and how to supply a local copy when it cannot be found or fetched.
    """
    text = os.fspath(uri)
    if not is_remote(text):
        path = Path(text).expanduser()
        if not path.exists():
            raise CheckpointError(f"{what} '{text}' does not exist: give an existing file or folder, hf://org/repo/file or an https:// URL")
        return path
    from cached_path import cached_path

    if text.startswith(("http://", "https://", "hf://")) and not _host_reachable(_endpoint(text)):
        # cached-path would retry with back-off for half a minute; answer at once, from the cache if we can.
        cached = _find_cached(text)
        if cached is not None:
            return Path(cached)
        raise CheckpointError(
            f"could not fetch {what} '{text}': its host is unreachable; if this machine is offline, "
            "download it elsewhere and pass its local path instead"
        )
    try:
        return Path(cached_path(text, cache_dir=cache_dir()))
    except Exception as error:  # cached-path raises many types (HTTP, hub, OS); all mean "not fetched"
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise CheckpointError(
            f"could not fetch {what} '{text}' ({type(error).__name__}: {reason}); if this machine is offline, "
            "download it elsewhere and pass its local path instead"
        ) from None


def _endpoint(uri: str) -> str:
    """The URL whose host serves `uri` (the Hugging Face endpoint for hf://)."""
    if uri.startswith("hf://"):
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return uri


def _find_cached(uri: str) -> Path | None:
    """The newest copy of `uri` already in `cache_dir()`, without touching the network."""
    if not cache_dir().is_dir():
        return None
    if uri.startswith("hf://"):
        from huggingface_hub import try_to_load_from_cache

        parts = uri[len("hf://"):].split("/")
        if len(parts) < 3:  # a whole repository: only a full snapshot would do
            return None
        repo, _, revision = "/".join(parts[:2]).partition("@")
        found = try_to_load_from_cache(repo, "/".join(parts[2:]), cache_dir=cache_dir(), revision=revision or None)
        return Path(found) if isinstance(found, str) else None
    from cached_path import find_latest_cached

    return find_latest_cached(uri, cache_dir())


def _host_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the URL's host and port opens within `timeout` seconds."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def load_safetensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a state dict from a `.safetensors` file; pickle formats are refused (they can run code). Matrices
    stored as int8 with row scales (`codec.common.weight_int8`) come back as float32."""
    file = Path(path)
    if file.suffix in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"'{file}' is a pickle checkpoint, which FlexiTTS does not load (it can run arbitrary code): "
            "convert it to .safetensors with safetensors.torch.save_file"
        )
    if not file.is_file():
        raise CheckpointError(f"weights file '{file}' does not exist: check the checkpoint folder")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from codec.common.weight_int8 import dequantize_state

    try:
        state = load_file(str(file), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot load weights from '{file}': not a valid safetensors file ({' '.join(str(error).split())})") from None
    try:
        return dequantize_state(state)  # int8-stored matrices (`save_pretrained(int8=True)`) back to float
    except ValueError as error:
        raise CheckpointError(f"cannot load weights from '{file}': {error}") from None


def save_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Save a state dict to `path` atomically (contiguous CPU copies, shared storage broken)."""
    from safetensors.torch import save_file

    from codec.common.fileio import atomic_path

    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)
