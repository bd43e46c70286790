"""FlexiTTS: text-to-speech on dynamic-rate speech tokens.

Nothing heavy happens at import time; submodules load when first used.
"""
from __future__ import annotations

from flexitts.errors import FlexiTTSError

__version__ = "0.1.0"

__all__ = ["FlexiTTSError", "__version__"]
