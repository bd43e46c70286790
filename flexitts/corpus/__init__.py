"""The offline synthetic training corpus: real English sentences spoken by espeak-ng and mbrola voices.

`synthesize_corpus` is the entry point (`flexitts corpus synth`); `load_sentences` gives the text pool.
Importing this package does no work and loads neither torch nor the sentence sources.
"""
from flexitts.corpus.build import CorpusSummary, SplitSummary, synthesize_corpus
from flexitts.corpus.sentences import load_sentences

__all__ = ["CorpusSummary", "SplitSummary", "load_sentences", "synthesize_corpus"]
