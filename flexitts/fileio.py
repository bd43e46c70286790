"""Atomic file writing (implemented in `codec.common.fileio`, shared with the model packages)."""
from codec.common.fileio import atomic_path, cache_dir, write_json_atomic, write_jsonl_atomic, write_text_atomic

__all__ = ["atomic_path", "cache_dir", "write_json_atomic", "write_jsonl_atomic", "write_text_atomic"]
