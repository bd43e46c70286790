"""The Voicebox-style flow-matching model from tokens to mel frames, the mel features and the vocoder.

Imports are lazy (no work, no torch import at `import nar`): `from nar import Voicebox` loads on first use.
"""
from __future__ import annotations

from typing import Any

_EXPORTS = {
    "MelConfig": "nar.mel",
    "MelSpectrogram": "nar.mel",
    "VoiceboxConfig": "nar.config",
    "Voicebox": "nar.model",
    "VocoderConfig": "nar.vocoder",
    "Vocoder": "nar.vocoder",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'nar' has no attribute {name!r}")
