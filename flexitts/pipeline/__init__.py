"""Pieces of the TTS pipeline that are not models: joining chunk audio, speed control."""
