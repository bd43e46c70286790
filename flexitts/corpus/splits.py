"""Seeded partition of sentences into train/valid/test and the utterance plan of each split.

- A sentence's split depends only on the seed and the sentence (a hash), so the partition does not move when
  the corpus grows, and a test sentence can never be spoken in train or valid.
- Each split is an endless, deterministic stream of utterances: item `i` is the `i`-th sentence of the split's
  seeded shuffle (cycling if the stream outgrows it) spoken by a speaker drawn round-robin over a fresh seeded
  permutation of the split's speakers every round, so speakers stay balanced. A corpus of any size is a prefix
  of every stream: a larger `--hours` extends a smaller corpus instead of replacing it.
- train and valid use the training speakers; test uses every speaker, held-out ones included.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Sequence

from flexitts.corpus.voices import Speaker

SPLITS = ("train", "valid", "test")
DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.90, "valid": 0.05, "test": 0.05}


def _unit_hash(*parts: object) -> float:
    """A uniform number in [0, 1) from the parts; stable across processes and Python versions (unlike hash())."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def sentence_split(sentence: str, seed: int, fractions: dict[str, float] = DEFAULT_FRACTIONS) -> str:
    """The split a sentence belongs to under `seed` (a hash of seed and sentence against cumulative fractions)."""
    u = _unit_hash("split", seed, sentence)
    edge = 0.0
    for name in SPLITS:
        edge += fractions[name]
        if u < edge:
            return name
    return SPLITS[-1]


def partition_sentences(
    sentences: Sequence[str], seed: int, fractions: dict[str, float] = DEFAULT_FRACTIONS
) -> dict[str, list[str]]:
    """Sentences of each split (as `sentence_split` says), each list in a seeded random order.

    The sentences must be unique (as `load_sentences` gives them), so no text can fall in two splits.
    """
    # Inlined `sentence_split` over integer thresholds: this runs on ~180k sentences per corpus run.
    edges, total = [], 0.0
    for name in SPLITS:
        total += fractions[name]
        edges.append((min(int(total * 2**64), 2**64), name))
    edges[-1] = (2**64, SPLITS[-1])
    prefix = f"split\x1f{seed}\x1f"
    blake2b = hashlib.blake2b
    parts: dict[str, list[str]] = {name: [] for name in SPLITS}
    for sentence in sentences:
        value = int.from_bytes(blake2b((prefix + sentence).encode("utf-8"), digest_size=8).digest(), "big")
        for edge, name in edges:
            if value < edge:
                parts[name].append(sentence)
                break
    for name, items in parts.items():
        random.Random(f"{seed}:order:{name}").shuffle(items)
    return parts


# Natural sentences first: fortunes read like speech, WordNet's examples less so, its definitions are mostly
# noun phrases ("Of or relating to the night."). Weighting them this way keeps every source in the corpus while
# offline recognisers (pocketsphinx's language model) can still check that the audio says the text.
SOURCE_WEIGHTS: dict[str, float] = {"fortune": 0.7, "wordnet-example": 0.2, "wordnet-gloss": 0.1}


def interleave_by_source(sentences: Sequence[str], sources: dict[str, str], weights: dict[str, float] = SOURCE_WEIGHTS) -> list[str]:
    """Reorder `sentences` so that every prefix mixes the sources in proportion to `weights`.

    Each source keeps its own (already shuffled) order; a smooth weighted round-robin picks the next source,
    and a source that runs out simply drops from the rotation. Sentences of unknown source count as the
    lowest-weighted source.
    """
    fallback = min(weights, key=weights.__getitem__)
    queues: dict[str, list[str]] = {name: [] for name in weights}
    for sentence in sentences:
        queues[sources.get(sentence, fallback) if sources.get(sentence) in weights else fallback].append(sentence)
    positions = {name: 0 for name in weights}
    credit = {name: 0.0 for name in weights}
    order: list[str] = []
    while len(order) < len(sentences):
        live = [name for name in weights if positions[name] < len(queues[name])]
        total = sum(weights[name] for name in live)
        for name in live:
            credit[name] += weights[name]
        pick = max(live, key=lambda name: credit[name])
        credit[pick] -= total
        order.append(queues[pick][positions[pick]])
        positions[pick] += 1
    return order


@dataclass(frozen=True)
class PlannedUtterance:
    """One utterance to make: a sentence, a speaker, where it goes and how long it should be."""

    split: str
    index: int
    text: str
    speaker: Speaker
    estimate: float  # expected seconds

    @property
    def id(self) -> str:
        return f"{self.split}-{self.index:06d}"

    @property
    def audio(self) -> str:
        """Path of the wav relative to the corpus folder."""
        return f"wavs/{self.speaker.id}/{self.id}.wav"


class UtteranceStream:
    """The deterministic sequence of utterances of one split (see the module docstring)."""

    def __init__(
        self,
        split: str,
        sentences: Sequence[str],
        speakers: Sequence[Speaker],
        seed: int,
        seconds_per_char: dict[str, float],
        overhead: float,
    ):
        if not sentences:
            raise ValueError(f"the {split} split has no sentences")
        if not speakers:
            raise ValueError(f"the {split} split has no speakers")
        self.split = split
        self.sentences = list(sentences)
        self.speakers = list(speakers)
        self.seed = seed
        self.seconds_per_char = seconds_per_char
        self.overhead = overhead
        self._rounds: dict[int, list[Speaker]] = {}

    def _speaker(self, index: int) -> Speaker:
        count = len(self.speakers)
        round_number, position = divmod(index, count)
        if round_number not in self._rounds:
            order = list(self.speakers)
            random.Random(f"{self.seed}:speakers:{self.split}:{round_number}").shuffle(order)
            self._rounds[round_number] = order
        return self._rounds[round_number][position]

    def estimate(self, text: str, speaker: Speaker) -> float:
        """Expected seconds of `text` spoken by `speaker`, from its calibrated rate."""
        return self.overhead + self.seconds_per_char[speaker.id] * len(text)

    def __getitem__(self, index: int) -> PlannedUtterance:
        text = self.sentences[index % len(self.sentences)]
        speaker = self._speaker(index)
        return PlannedUtterance(self.split, index, text, speaker, self.estimate(text, speaker))
