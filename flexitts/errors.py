"""Public exception types: `FlexiTTSError` and its subclasses (defined in `codec.common.errors`)."""
from codec.common.errors import (
    AudioError,
    CheckpointError,
    ConfigError,
    DataError,
    DependencyError,
    FlexiTTSError,
    TextError,
)

__all__ = ["AudioError", "CheckpointError", "ConfigError", "DataError", "DependencyError", "FlexiTTSError", "TextError"]
