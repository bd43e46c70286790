"""FlexiTTS: text-to-speech on dynamic-rate speech tokens.

Nothing heavy happens at import time; submodules load when first used.
"""
from __future__ import annotations

from flexitts.errors import FlexiTTSError

__version__ = "0.1.0"

__all__ = ["FlexiTTSError", "TTS", "__version__"]


def __getattr__(name: str):
    # `from flexitts import TTS` without importing torch when only the CLI's parser is needed.
    if name == "TTS":
        from flexitts.tts import TTS

        return TTS
    raise AttributeError(f"module 'flexitts' has no attribute {name!r}")
