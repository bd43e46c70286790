"""Where each spoken phone of a transcript starts in its audio, and how far through the transcript each speech
token has got: the data behind the AR's phone pointer (`ARConfig.phone_pointer`, as in VALL-E R).

Onsets come from CTC forced alignment of the transcript's phones (`phones_only`: no stress marks, word
boundaries or punctuation) against the bundled phone recogniser's posteriors, and are kept in 12.5 Hz base
frames (floats), so they serve any merging of the same audio. A token covering base frames `[b, e)` has
*progress* `A = #{phones with onset < e}`: the phones started by its end. The AR reads `A` of the previous token
(the next phone due) and predicts each token's advance `A_j - A_{j-1}`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ar import pointer
from ar.config import BASE_FRAME_RATE


def pointer_skip_symbols(symbols: Sequence[str]) -> list[str]:
    """The symbols of a phoneme table that are not phones (what `ARConfig.pointer_skip` holds)."""
    from flexitts.text import phones_only

    phones = set(phones_only(list(symbols)))
    return [s for s in symbols if s not in phones]


def spoken_positions(phoneme_ids: Sequence[int], symbols: Sequence[str]) -> np.ndarray:
    """Indices `[Ns]` of the entries of `phoneme_ids` that are phones (what the CTC recogniser emits)."""
    return np.asarray(pointer.spoken_positions(phoneme_ids, list(symbols), pointer_skip_symbols(symbols)), dtype=np.int64)


def ctc_onsets(log_probs: torch.Tensor, targets: Sequence[int], blank: int = 0) -> np.ndarray:
    """First frame of each target in the best CTC alignment: `log_probs [T, V]`, `targets [N]` -> `[N]` floats.

    When no alignment exists (fewer frames than the targets need), onsets are spread evenly over the frames.
    """
    import torchaudio.functional as AF

    frames, count = log_probs.shape[0], len(targets)
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    ids = torch.as_tensor(list(targets), dtype=torch.int32)
    repeats = int((ids[1:] == ids[:-1]).sum()) if count > 1 else 0
    if frames < count + repeats:
        return (np.arange(count, dtype=np.float32) * frames / count).astype(np.float32)
    labels, _ = AF.forced_align(log_probs[None].float().cpu(), ids[None], blank=blank)
    labels = labels[0].numpy()
    previous = np.concatenate([[blank], labels[:-1]])
    # A target starts where a non-blank frame follows a blank or a different label (CTC puts a blank between
    # equal neighbours, so repeated phones still start separately).
    starts = np.flatnonzero((labels != blank) & ((previous == blank) | (previous != labels)))
    if len(starts) != count:  # cannot happen for a valid alignment; keep the data usable regardless
        return (np.arange(count, dtype=np.float32) * frames / count).astype(np.float32)
    return starts.astype(np.float32)


def greedy_onsets(log_probs: torch.Tensor, blank: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Phones and their onsets (frames) read by greedy CTC, for audio without a transcript (a prompt cut from a
    longer utterance): `log_probs [T, V]` -> (`ids [N]`, `onsets [N]`), each emitted phone starting at its first
    frame."""
    best = log_probs.argmax(dim=-1).cpu().numpy()
    previous = np.concatenate([[blank], best[:-1]])
    starts = np.flatnonzero((best != blank) & (best != previous))
    return best[starts].astype(np.int64), starts.astype(np.float32)


@torch.no_grad()
def phone_onsets(recognizer: torch.nn.Module, wav: torch.Tensor, wav_lengths: torch.Tensor,
                 phone_ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Onsets in 12.5 Hz base frames of each item's phones: `wav [B, S]` 16 kHz, `wav_lengths [B]`, one phone-id
    list per item (recogniser ids, phones only) -> one `[N_b]` float32 array per item."""
    log_probs, _, lengths = recognizer(wav, wav_lengths)
    per_base_frame = float(recognizer.config.frame_rate) / BASE_FRAME_RATE
    return [ctc_onsets(log_probs[b, : int(lengths[b])], ids, recognizer.config.blank_id) / per_base_frame
            for b, ids in enumerate(phone_ids)]


def token_progress(durations: np.ndarray | torch.Tensor, onsets: np.ndarray | torch.Tensor) -> np.ndarray:
    """Phones started by the end of each token (`ar.pointer.token_progress`) as a numpy `[G]` int64 array."""
    return pointer.token_progress(torch.as_tensor(np.asarray(durations)), torch.as_tensor(np.asarray(onsets))).numpy()


def phone_subframes(phone_ids: Sequence[int] | np.ndarray, onsets: np.ndarray | torch.Tensor, frames: int) -> np.ndarray:
    """The phone being spoken at each 25 Hz sub-frame (two per base frame) of `frames` base frames: the last phone
    whose onset (base frames) is at or before the sub-frame's start; 0 before the first. `[2 * frames]` int64, what
    a phone-conditioned NAR reads (`nar/phones.py`)."""
    ids = np.asarray(phone_ids, dtype=np.int64)
    times = np.arange(2 * frames, dtype=np.float64) / 2
    index = np.searchsorted(np.asarray(onsets, dtype=np.float64), times, side="right") - 1
    return np.where(index >= 0, ids[np.clip(index, 0, max(0, len(ids) - 1))] if len(ids) else 0, 0).astype(np.int64)


def greedy_phone_subframes(log_probs: torch.Tensor, blank: int, frame_rate: float, frames: int) -> np.ndarray:
    """`phone_subframes` of what greedy CTC reads in `log_probs [T', V]` (scores at `frame_rate` Hz; each phone
    starting at its first frame) over `frames` base frames: `[2 * frames]` int64."""
    ids, starts = greedy_onsets(log_probs, blank)
    return phone_subframes(ids, starts / (float(frame_rate) / BASE_FRAME_RATE), frames)


@torch.no_grad()
def code_phone_subframes(codec: torch.nn.Module, codes: torch.Tensor, durations: torch.Tensor) -> np.ndarray:
    """The phones a codec's semantic codes say on their own, placed where they start: for a phone-conditioned NAR
    given tokens without a transcript (resynthesis from tokens alone).

    Greedy CTC over `FlexiCodec.code_phone_logits` (the recogniser's head reading the decoded codes), each phone
    starting at its first frame, then `phone_subframes`.

    Args:
        codec: a `FlexiCodec` whose ASR is the bundled CTC recogniser; codes: `[G]` FSQ codes; durations: `[G]`
            their 12.5 Hz frames.
    Returns:
        `[2 * sum(durations)]` int64 phone ids (0 before the first phone).
    """
    logits, frames = codec.code_phone_logits(codes[None], durations[None])
    config = codec.asr_extractor.config
    return greedy_phone_subframes(logits[0, : int(frames[0])], config.blank_id, config.frame_rate, int(durations.sum()))


def onsets_from_progress(durations: np.ndarray | torch.Tensor, progress: np.ndarray | torch.Tensor) -> np.ndarray:
    """Phone onsets (base frames) implied by generated tokens: `durations [G]` and `progress [G]` (phones started by
    each token's end, `ARGeneration.progress`) -> `[progress[-1]]`; the phones a token starts share its frames
    evenly, in order."""
    d = np.asarray(durations, dtype=np.float64)
    reached = np.asarray(progress, dtype=np.int64)
    if len(reached) == 0 or reached[-1] <= 0:
        return np.zeros(0, dtype=np.float32)
    before = np.concatenate([[0], reached[:-1]])
    starts = np.cumsum(d) - d
    phones = np.arange(int(reached[-1]))
    token = np.searchsorted(reached, phones, side="right")  # the token in which each phone starts
    share = (phones - before[token]) / np.maximum(1, reached[token] - before[token])
    return (starts[token] + share * d[token]).astype(np.float32)
