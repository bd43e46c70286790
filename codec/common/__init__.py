"""Tiny helpers shared by codec, ar and nar (which never import flexitts): errors, atomic files, checkpoints.

`flexitts.errors`, `flexitts.fileio` and `flexitts.checkpoints` re-export these; there is one implementation.
"""
