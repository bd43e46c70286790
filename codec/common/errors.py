"""Exceptions raised on bad input. Every message is one line naming the problem and what to do.

They live in `codec.common` because the model packages raise them too and never import `flexitts`;
`flexitts.errors` re-exports them under the public name.
"""
from __future__ import annotations


class FlexiTTSError(Exception):
    """Base class of every error FlexiTTS raises for bad input or an unusable environment."""

    def __init__(self, message: str):
        # One line, always: the CLI prints it as-is and the web demo shows it in the page.
        super().__init__(" ".join(str(message).split()))


class AudioError(FlexiTTSError):
    """Audio that is missing, unreadable, empty, non-finite, silent, too short or too long."""


class TextError(FlexiTTSError):
    """Text that is empty or has nothing speakable."""


class CheckpointError(FlexiTTSError):
    """A checkpoint that cannot be found, fetched or loaded."""


class ConfigError(FlexiTTSError):
    """A configuration that is missing, malformed or inconsistent."""


class DataError(FlexiTTSError):
    """A manifest or data set that is missing, malformed or points to missing files."""


class DependencyError(FlexiTTSError):
    """A system program or optional package that is required but not installed."""
