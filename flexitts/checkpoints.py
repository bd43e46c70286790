"""Checkpoint resolution and safetensors loading (implemented in `codec.common.checkpoints`)."""
from codec.common.checkpoints import cache_dir, is_remote, load_safetensors, resolve_checkpoint, save_safetensors

__all__ = ["cache_dir", "is_remote", "load_safetensors", "resolve_checkpoint", "save_safetensors"]
