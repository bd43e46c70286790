"""Voices and speakers of the synthetic corpus.

A *voice* is what `espeak-ng -v` takes: one of the four English mbrola diphone voices (`mb-us1` female, `mb-us2`,
`mb-us3`, `mb-en1` male; 16 kHz), an accented one (English on another language's diphones, `mb-de1-en`) or an
espeak-ng formant voice (`en-us`, `en-gb`, ...; 22050 Hz) optionally with
a variant (`en-us+f3`). A *speaker* is a voice at one pitch (`-p`) and rate (`-s`): every voice gives the plain
speaker plus `PITCH_RATE_VARIANTS`, so eight voices make 24 speakers. Speaker ids are stable and path-safe:
`mb-us1`, `mb-us1-p70s140`, `en-us-f3`, `en-us-f3-p35s170`.
"""
from __future__ import annotations

import fnmatch
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from flexitts.errors import DependencyError, FlexiTTSError

DEFAULT_PITCH = 50  # espeak-ng's default pitch
DEFAULT_RATE = 155  # espeak-ng's 175 words/min is hurried; slower speech is clearer
# espeak-ng -a (0..200, default 100). Below the default because mbrola voices at 100 clip on some sentences.
AMPLITUDE = 70

# (pitch 0..99, rate in words per minute): a higher, slower and a lower, faster version of every voice.
PITCH_RATE_VARIANTS: tuple[tuple[int, int], ...] = ((70, 140), (35, 170))

# mbrola English voices: name -> gender. espeak-ng outputs them at the diphone database's 16 kHz.
MBROLA_VOICES: dict[str, str] = {"mb-us1": "female", "mb-us2": "male", "mb-us3": "male", "mb-en1": "male"}
# espeak-ng's English spoken through other languages' mbrola databases (`mb-de1-en`: British English pronunciations
# mapped onto a German speaker's diphones): accented, but 16 more diphone speakers for a speaker-robust recogniser.
# Each needs its Debian package (`mbrola-de1`, ...); espeak-ng writes them at 16 or 22.05 kHz.
MBROLA_ACCENTED_VOICES: dict[str, str] = {
    "mb-af1-en": "male", "mb-de1-en": "female", "mb-de2-en": "male", "mb-de3-en": "female", "mb-de4-en": "male",
    "mb-de5-en": "female", "mb-de6-en": "male", "mb-fr1-en": "male", "mb-fr4-en": "female", "mb-gr2-en": "male",
    "mb-hu1-en": "female", "mb-nl2-en": "male", "mb-pl1-en": "female", "mb-ro1-en": "male", "mb-sw1-en": "male",
    "mb-sw2-en": "female",
}
MBROLA_DIRS = (Path("/usr/share/mbrola"), Path("/usr/lib/x86_64-linux-gnu/mbrola"), Path("/usr/local/share/mbrola"))
# espeak-ng English formant voices (22050 Hz); each may take a variant, e.g. `en-us+f3`.
ESPEAK_VOICES: tuple[str, ...] = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp")
ESPEAK_VARIANTS: dict[str, str] = {
    **{f"f{i}": "female" for i in range(1, 6)},
    **{f"m{i}": "male" for i in range(1, 9)},
}

DEFAULT_VOICES: tuple[str, ...] = ("mb-us1", "mb-us2", "mb-us3", "mb-en1", "en-us", "en-gb", "en-us+f3", "en-gb+m3")
# One whole mbrola voice and one espeak voice variant are never trained on (patterns match speaker ids).
DEFAULT_HELDOUT: tuple[str, ...] = ("mb-us3*", "en-gb-m3*")


@dataclass(frozen=True)
class Voice:
    """One `espeak-ng -v` voice."""

    name: str  # as espeak-ng takes it: "mb-us1", "en-us+f3"
    gender: str  # "female" | "male"
    engine: str  # "mbrola" | "espeak"

    @property
    def id(self) -> str:
        """Path-safe form of the name: `en-us+f3` -> `en-us-f3`."""
        return self.name.replace("+", "-")

    @property
    def language(self) -> str:
        """The espeak-ng language whose pronunciations this voice speaks (for phoneme targets)."""
        if self.engine == "mbrola":  # the accented voices speak espeak-ng's "en", which is British
            return "en-gb" if self.name == "mb-en1" or self.name in MBROLA_ACCENTED_VOICES else "en-us"
        return "en-gb" if self.name.startswith("en-gb") else "en-us"

    @property
    def database(self) -> str:
        """The mbrola diphone database an mbrola voice speaks with (`mb-us1` -> `us1`, `mb-de1-en` -> `de1`)."""
        return self.name[len("mb-") :].removesuffix("-en")


@dataclass(frozen=True)
class Speaker:
    """A voice at one pitch and speaking rate; one speaker of the corpus."""

    id: str
    voice: Voice
    pitch: int = DEFAULT_PITCH
    rate: int = DEFAULT_RATE

    def espeak_args(self) -> list[str]:
        """The espeak-ng options that make this speaker (text and output options are added by the caller)."""
        return ["-v", self.voice.name, "-p", str(self.pitch), "-s", str(self.rate), "-a", str(AMPLITUDE)]

    def to_json(self, heldout: bool) -> dict:
        """The speaker's entry in corpus.json."""
        return {
            "id": self.id,
            "voice": self.voice.name,
            "engine": self.voice.engine,
            "gender": self.voice.gender,
            "language": self.voice.language,
            "pitch": self.pitch,
            "rate": self.rate,
            "heldout": heldout,
        }


def available_voices_text() -> str:
    """A one-line description of the voices `resolve_voice` accepts (for error messages)."""
    return (
        f"{', '.join(MBROLA_VOICES)} (mbrola), {', '.join(MBROLA_ACCENTED_VOICES)} (accented mbrola), "
        f"{', '.join(ESPEAK_VOICES)} (espeak-ng, optionally with a "
        "variant +f1..+f5 or +m1..+m8, e.g. en-us+f3)"
    )


def resolve_voice(name: str) -> Voice:
    """The `Voice` for a name (`en-us+f3` or its id `en-us-f3`); `FlexiTTSError` listing the choices if unknown."""
    key = name.strip()
    mbrola = {**MBROLA_VOICES, **MBROLA_ACCENTED_VOICES}
    if key in mbrola:
        return Voice(key, mbrola[key], "mbrola")
    match = re.fullmatch(r"(.+?)(?:[+-]([fm]\d))?", key)
    if match and match.group(1) in ESPEAK_VOICES:
        base, variant = match.group(1), match.group(2)
        if variant is None:
            return Voice(base, "male", "espeak")  # espeak-ng's English voices are male without a variant
        if variant in ESPEAK_VARIANTS:
            return Voice(f"{base}+{variant}", ESPEAK_VARIANTS[variant], "espeak")
    raise FlexiTTSError(f"unknown voice '{name}': available voices are {available_voices_text()}")


def speakers_for(voices: Iterable[Voice]) -> list[Speaker]:
    """Every speaker of the given voices: each voice plain, then at each pitch/rate variant."""
    speakers: list[Speaker] = []
    for voice in voices:
        speakers.append(Speaker(voice.id, voice))
        for pitch, rate in PITCH_RATE_VARIANTS:
            speakers.append(Speaker(f"{voice.id}-p{pitch}s{rate}", voice, pitch, rate))
    return speakers


def resolve_voices(names: Sequence[str] | None) -> list[Voice]:
    """Voices from `--voices` (names, or comma-separated lists of names); `DEFAULT_VOICES` when None or empty."""
    flat = [part for name in (names or ()) for part in str(name).split(",") if part.strip()]
    voices: list[Voice] = []
    for name in flat or DEFAULT_VOICES:
        voice = resolve_voice(name)
        if voice not in voices:  # a repeated name adds nothing
            voices.append(voice)
    return voices


def select_heldout(speakers: Sequence[Speaker], patterns: Sequence[str] | None) -> list[str]:
    """Ids of the held-out speakers: those matching `patterns` (fnmatch, e.g. `mb-us3*`).

    `patterns=None` uses `DEFAULT_HELDOUT`; when that matches nothing among these speakers, the last voice is
    held out whole (or, with a single voice, its last speaker). An explicit pattern matching nothing, or a
    selection that leaves no training speaker, raises `FlexiTTSError`.
    """
    ids = [speaker.id for speaker in speakers]
    if patterns is None:
        chosen = [i for i in ids if any(fnmatch.fnmatchcase(i, p) for p in DEFAULT_HELDOUT)]
        if not chosen and len(speakers) > 1:
            last_voice = speakers[-1].voice
            chosen = [s.id for s in speakers if s.voice == last_voice]
            if len(chosen) == len(ids):
                chosen = [ids[-1]]
    else:
        flat = [part.strip() for p in patterns for part in str(p).split(",") if part.strip()]
        for pattern in flat:
            if not any(fnmatch.fnmatchcase(i, pattern) for i in ids):
                raise FlexiTTSError(
                    f"held-out speaker '{pattern}' matches none of this corpus's speakers: "
                    f"choose among {', '.join(ids)}"
                )
        chosen = [i for i in ids if any(fnmatch.fnmatchcase(i, p) for p in flat)]
    if len(chosen) >= len(ids):
        raise FlexiTTSError(
            "every speaker is held out, so none is left to train on: hold out fewer speakers or add voices"
        )
    return chosen


def find_mbrola_database(voice: Voice) -> Path | None:
    """The installed mbrola diphone database of an mbrola voice (`mb-us1` -> .../mbrola/us1/us1), or None."""
    short = voice.database
    for root in MBROLA_DIRS:
        for candidate in (root / short / short, root / short):
            if candidate.is_file():
                return candidate
    return None


def check_dependencies(voices: Sequence[Voice]) -> str:
    """Raise `DependencyError` (pointing at `make setup`) unless espeak-ng and every needed mbrola voice are
    installed; return the espeak-ng executable's path."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise DependencyError("espeak-ng is not installed: run `make setup` (it installs espeak-ng and mbrola voices)")
    mbrola = [voice for voice in voices if voice.engine == "mbrola"]
    if mbrola and shutil.which("mbrola") is None:
        raise DependencyError(
            f"mbrola is not installed but voice {mbrola[0].name} needs it: run `make setup` or choose espeak voices"
        )
    for voice in mbrola:
        if find_mbrola_database(voice) is None:
            raise DependencyError(
                f"the mbrola voice {voice.name} is not installed (Debian package mbrola-{voice.database}): "
                f"run `make {'setup-accented-voices' if voice.name in MBROLA_ACCENTED_VOICES else 'setup'}` "
                "or leave it out of --voices"
            )
    return espeak
