"""Autoregressive generation of semantic codes and durations, single items or padded batches, with or
without the KV cache.

Length limits are proportional to the number of NEW phonemes (the prompt's are not counted):
`min_len_ratio` and `max_len_ratio` are tokens per phoneme symbol (stress marks and word boundaries count as
symbols). On the demo corpus speech runs at 17 symbols a second (5th-95th percentile 13.8-21, extremes
10.9-23.2), so 12.5 Hz tokens come at 0.54-1.15 per symbol, 6.25 Hz ones at 0.27-0.58 and 3 Hz ones at
0.13-0.28. The defaults, 0.15 and 2.0, leave room on both sides at every rate from about 3.5 to 12.5 Hz;
pass lower ratios for slower token rates. EOS is masked until `min` tokens exist; generation always stops at `max`.

`pace=(lo, hi)` adds bounds in time taken from the prompt's speaking pace (12.5 Hz frames per phoneme symbol of
its transcript): EOS is masked until the new speech covers `lo` times the frames the prompt's pace predicts for
the new phonemes, and generation stops once it covers `hi` times them. This is the prompt-ratio length rule of
non-autoregressive systems (F5-TTS, E2) applied as a guard rail: inside the window the model still decides
where to stop, but a model whose EOS comes early (or never) cannot speak at twice or half the prompt's pace.
With a phone-pointer model the upper bound waits until every phone of the text has started (EOS is refused
before that too), so a slow pointer makes longer speech instead of dropping the end of the text.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch

from ar import pointer
from ar.config import BASE_FRAME_RATE
from ar.sampling import sample_from_logits, tilt_to_mean
from codec.common.errors import ConfigError, TextError

if TYPE_CHECKING:
    from ar.model import ARModel

DEFAULT_MIN_LEN_RATIO = 0.15
DEFAULT_MAX_LEN_RATIO = 2.0
RATE_FEEDBACK = 0.5  # share of the frame deficit that match_rate corrects at each token


@dataclass
class ARGeneration:
    """Generated speech (the new part only, never the prompt), as a padded batch.

    `codes [B, G]` long (0 on padding), `durations [B, G]` long in 1..max_duration (0 on padding),
    `lengths [B]` tokens per item, `ended_by_eos [B]` bool (False: stopped by the maximum length); with the phone
    pointer also `progress [B, G]`: phones of the new text started by the end of each token (0 on padding).
    """

    codes: torch.Tensor
    durations: torch.Tensor
    lengths: torch.Tensor
    ended_by_eos: torch.Tensor
    progress: torch.Tensor | None = None

    def item(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes `[G_i]`, durations `[G_i]`) of one item, without padding."""
        n = int(self.lengths[index])
        return self.codes[index, :n], self.durations[index, :n]

    def unbatch(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [self.item(i) for i in range(self.codes.shape[0])]


# -- input normalisation -------------------------------------------------------------------------------------
def _is_one_sequence(x: Any) -> bool:
    """A 1-D tensor/array or a flat list of ints: one item."""
    if isinstance(x, torch.Tensor) or hasattr(x, "ndim"):
        return x.ndim == 1
    return isinstance(x, (list, tuple)) and all(isinstance(v, int) or getattr(v, "ndim", None) == 0 for v in x)


def _as_rows(x: Any, what: str, strip_zeros: bool) -> list[torch.Tensor | None]:
    """One sequence -> [it]; a list of sequences (None allowed) -> the list; a 2-D tensor -> its rows
    (zeros removed when 0 can only be padding, as for phonemes and durations)."""
    if isinstance(x, torch.Tensor) and x.dim() == 2:
        return [row[row != 0] if strip_zeros else row for row in x.long().cpu()]
    if _is_one_sequence(x):
        return [torch.as_tensor(x, dtype=torch.long).reshape(-1).cpu()]
    if isinstance(x, (list, tuple)):
        return [None if r is None else torch.as_tensor(r, dtype=torch.long).reshape(-1).cpu() for r in x]
    raise ConfigError(f"{what} must be a 1-D sequence of ids, a list of them or a 2-D padded tensor")


def _broadcast(rows: list[torch.Tensor | None] | None, batch: int, what: str) -> list[torch.Tensor]:
    """Per-item rows; a single row serves every item (one reference voice for many texts)."""
    empty = torch.zeros(0, dtype=torch.long)
    if rows is None:
        return [empty] * batch
    if len(rows) == 1 and batch > 1:
        rows = rows * batch
    if len(rows) != batch:
        raise ConfigError(f"{what} has {len(rows)} items for {batch} texts")
    return [empty if r is None else r for r in rows]


def _batch_inputs(
    phonemes: Any, prompt_codes: Any, prompt_durations: Any, prompt_phonemes: Any
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Per-item new phonemes, prompt phonemes, prompt codes and prompt durations (empty when absent)."""
    texts = _as_rows(phonemes, "phonemes", strip_zeros=True)
    batch = len(texts)
    if batch == 0:
        raise TextError("nothing to generate: the list of phoneme sequences is empty")
    ref_ph = _broadcast(None if prompt_phonemes is None else _as_rows(prompt_phonemes, "prompt_phonemes", True), batch, "prompt_phonemes")
    ref_dur = _broadcast(None if prompt_durations is None else _as_rows(prompt_durations, "prompt_durations", True), batch, "prompt_durations")
    if (prompt_codes is None) != (prompt_durations is None):
        raise ConfigError("give prompt_codes and prompt_durations together (one duration per code), or neither")
    code_rows = None if prompt_codes is None else _as_rows(prompt_codes, "prompt_codes", strip_zeros=False)
    if isinstance(prompt_codes, torch.Tensor) and prompt_codes.dim() == 2:
        # Code 0 is a real code, so a padded code matrix takes its lengths from the durations (0 on padding).
        code_rows = [c[: len(d)] for c, d in zip(code_rows, ref_dur)]
    ref_codes = _broadcast(code_rows, batch, "prompt_codes")
    for i in range(batch):
        if texts[i] is None or texts[i].numel() == 0:
            raise TextError(f"text {i} has no phonemes: nothing to say")
        if ref_codes[i].numel() != ref_dur[i].numel():
            raise ConfigError(f"prompt {i}: {ref_codes[i].numel()} codes but {ref_dur[i].numel()} durations; give one duration per code")
    return texts, ref_ph, ref_codes, ref_dur  # type: ignore[return-value]


def _per_item_floats(x: Any, batch: int, what: str) -> list[float | None]:
    if x is None:
        return [None] * batch
    if isinstance(x, torch.Tensor):
        x = x.reshape(-1).tolist()
    if isinstance(x, (int, float)):
        return [float(x)] * batch
    values = [None if v is None else float(v) for v in x]
    if len(values) == 1:
        values = values * batch
    if len(values) != batch:
        raise ConfigError(f"{what} has {len(values)} values for {batch} texts")
    return values


def _pad(rows: Sequence[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([r.numel() for r in rows], dtype=torch.long)
    out = torch.zeros(len(rows), max(1, int(lengths.max())), dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : row.numel()] = row
    return out.to(device), lengths.to(device)


def _generators(seed: Any, batch: int, device: torch.device) -> list[torch.Generator]:
    """One generator per item. An int seed seeds every item alike, so an item's tokens do not depend on
    what else is in the batch; a list gives each item its own; None draws seeds from torch's global RNG."""
    if seed is None:
        seeds = torch.randint(0, 2**62, (batch,)).tolist()
    elif isinstance(seed, int):
        seeds = [seed] * batch
    else:
        seeds = [int(s) for s in seed]
        if len(seeds) != batch:
            raise ConfigError(f"seed has {len(seeds)} values for {batch} texts")
    return [torch.Generator(device=device).manual_seed(s) for s in seeds]


def _check_settings(temperature: float, top_k: int, top_p: float, duration_top_k: int, duration_temperature: float,
                    min_len_ratio: float, max_len_ratio: float, pace: tuple[float, float] | None = None,
                    match_rate: bool | str = False) -> None:
    if temperature < 0 or duration_temperature < 0:
        raise ConfigError("temperature and duration_temperature must be >= 0 (0 is greedy)")
    if top_k < 0 or duration_top_k < 0:
        raise ConfigError("top_k and duration_top_k must be >= 0 (0 keeps every class)")
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], not {top_p}")
    if min_len_ratio < 0 or max_len_ratio <= 0 or min_len_ratio > max_len_ratio:
        raise ConfigError(f"need 0 <= min_len_ratio <= max_len_ratio and max_len_ratio > 0, got {min_len_ratio} and {max_len_ratio}")
    if pace is not None and (len(pace) != 2 or not 0 <= pace[0] <= pace[1] or not pace[1] > 0):
        raise ConfigError(f"pace must be (lo, hi) with 0 <= lo <= hi and hi > 0, got {pace}")
    if match_rate not in (False, True, "linear", "log"):
        raise ConfigError(f"match_rate must be true, false, 'linear' or 'log', not {match_rate!r}")


def paced_length(new_phonemes: int, prompt_phonemes: int, prompt_length: float) -> float:
    """How long `new_phonemes` symbols last at the prompt's pace (`prompt_length`, in frames or seconds, for its
    `prompt_phonemes` symbols), in the same unit; 0 without a paced prompt."""
    if prompt_phonemes < 1 or prompt_length <= 0:
        return 0.0
    return new_phonemes * prompt_length / prompt_phonemes


def paced_frame_bounds(new_phonemes: int, prompt_phonemes: int, prompt_frames: int,
                       pace: tuple[float, float]) -> tuple[int, int | None]:
    """(min, max) 12.5 Hz frames for `new_phonemes` symbols at the prompt's pace (`prompt_frames` frames for its
    `prompt_phonemes` symbols), scaled by `pace = (lo, hi)`; `(0, None)` (no bounds) without a paced prompt."""
    if prompt_phonemes < 1 or prompt_frames < 1:
        return 0, None
    expected = paced_length(new_phonemes, prompt_phonemes, prompt_frames)
    return int(math.floor(expected * pace[0])), max(1, int(math.ceil(expected * pace[1])))


# -- the loop ------------------------------------------------------------------------------------------------
@torch.no_grad()
def generate(
    model: "ARModel",
    phonemes: Any,
    prompt_codes: Any = None,
    prompt_durations: Any = None,
    prompt_phonemes: Any = None,
    rate: Any = None,
    temperature: float = 1.0,
    top_k: int = 25,
    top_p: float = 1.0,
    duration_top_k: int = 1,
    duration_temperature: float = 1.0,
    min_len_ratio: float = DEFAULT_MIN_LEN_RATIO,
    max_len_ratio: float = DEFAULT_MAX_LEN_RATIO,
    seed: int | Sequence[int] | None = None,
    use_cache: bool = True,
    max_new_tokens: int | None = None,
    pace: tuple[float, float] | None = None,
    match_rate: bool | str = False,
    text_cfg: float = 0.0,
    prompt_onsets: Any = None,
    match_pace: bool = False,
    phone_guide: torch.Tensor | None = None,
    phone_guide_weight: float = 1.0,
) -> ARGeneration:
    """Continue `[SOS, RATE, prompt_phonemes <sep> phonemes, TASK, prompt codes]` with new codes and durations.

    Args:
        phonemes: new text's phoneme ids: a 1-D sequence (one item), a list of them (a batch), or a 2-D
            0-padded tensor.
        prompt_codes, prompt_durations: the reference's codes and durations (1..max_duration), same shapes as
            `phonemes` (a 2-D code tensor takes its lengths from the durations); None: no prompt.
        prompt_phonemes: the reference transcript's phoneme ids (prepended to the text); None: none.
        rate: target tokens per second, a float or one per item; None: the prompt's own rate
            (`G * 12.5 / sum(durations)`), or 12.5 Hz without a prompt.
        temperature, top_k, top_p: code sampling (temperature 0 or top_k 1 is greedy; EOS is a class too).
        duration_top_k, duration_temperature: duration sampling (1: greedy, the default).
        min_len_ratio, max_len_ratio: tokens per new phoneme (see the module docstring).
        seed: int (every item alike), list of ints (one per item) or None (from torch's global RNG).
        use_cache: reuse keys/values (`transformers.DynamicCache`); False re-runs the whole sequence per token
            and gives the same tokens (for checking).
        max_new_tokens: an absolute cap on top of `max_len_ratio`.
        pace: `(lo, hi)`, e.g. `(0.8, 1.25)`: also bound the new speech's length in frames by the prompt's speaking
            pace (see the module docstring); items without a prompt transcript are not paced. None: off.
        match_rate: tilt each duration distribution (exponentially, the least change in KL) so that its mean is
            `12.5 / rate` frames plus half the frames the speech so far is short of that pace: the speech then
            comes at the asked token rate (within about a token) even when the duration head under-predicts long
            merges. A duration temperature is applied before the tilt; greedy durations take the tilted argmax.
            True or "linear": the tilt is exponential in the duration (`p'(k) ∝ p(k) exp(lam k)`), which lifts the
            longest class most; "log": exponential in its logarithm (`p'(k) ∝ p(k) k^lam`), gentler on the longest
            tokens (at 8.3 Hz with the demo AR, 1.5% of tokens at the 8-frame maximum instead of 3.7%; the
            codec's own tokens have 0.3%). False: off.
        text_cfg: classifier-free guidance on the text, weight w: code log-probabilities become
            `log p(s | text) + w (log p(s | text) - log p(s | no text))`, the second term from a copy of each item
            whose prefix has no phonemes (run in the same batch, fed the same tokens). 0: off.
        prompt_onsets: for a phone-pointer model (`ARConfig.phone_pointer`), the base-frame onsets of the prompt
            transcript's phones (`flexitts.data.phone_alignment.phone_onsets`), one sequence per item (or one for
            all); None: spread evenly over the prompt. The new text is then spoken phone by phone: each token
            moves the pointer by its sampled advance, and EOS waits until every phone has started.
        phone_guide: phone-guided decoding for a phone-pointer model: `[P, V]`, column c the distribution over the
            phoneme table of what code c says (`FlexiCodec.code_phone_table`). While phones remain, each code's
            log-probability gains `phone_guide_weight * log(mass on the phones at pointer - 1, pointer, pointer + 1
            + 1e-4)`: codes that cannot be the phone due (or the one being spoken) are pushed down, a shallow
            fusion of the AR with the codec's own reading of its codes. None: off.
        match_pace: for a phone-pointer model with a prompt transcript: tilt each advance distribution
            (exponentially in the advance, `match_rate`'s linear tilt) so that its mean is the prompt's phones per
            frame times the token's duration, plus half the phones the speech so far is behind that pace.
            Without it, a token rate below the AR's own (`match_rate` stretching durations) slows the speech
            down instead of packing more phones into each token. False: the advance head's distribution as it is.
    Returns:
        `ARGeneration` (codes `[B, G]`, durations `[B, G]`, lengths `[B]`, ended_by_eos `[B]`); one text is a
        batch of one.
    """
    cfg = model.config
    _check_settings(temperature, top_k, top_p, duration_top_k, duration_temperature, min_len_ratio, max_len_ratio, pace,
                    match_rate)
    texts, ref_ph, ref_codes, ref_durs = _batch_inputs(phonemes, prompt_codes, prompt_durations, prompt_phonemes)
    batch = len(texts)
    device = next(model.parameters()).device
    vocab = len(cfg.symbols)
    for i in range(batch):
        ids = torch.cat([ref_ph[i], texts[i]])
        if int(ids.min()) < 1 or int(ids.max()) >= vocab:
            raise TextError(f"text {i} has phoneme ids outside 1..{vocab - 1} (this model's phoneme table)")
        if ref_codes[i].numel() and (int(ref_codes[i].min()) < 0 or int(ref_codes[i].max()) >= cfg.codebook_size):
            raise ConfigError(f"prompt {i} has codes outside 0..{cfg.codebook_size - 1}")
        if ref_durs[i].numel() and (int(ref_durs[i].min()) < 1 or int(ref_durs[i].max()) > cfg.max_duration):
            raise ConfigError(f"prompt {i} has durations outside 1..{cfg.max_duration}")

    # Rates: given, else the prompt's own, else the base rate.
    rates = []
    for i, given in enumerate(_per_item_floats(rate, batch, "rate")):
        if given is None:
            frames = int(ref_durs[i].sum())
            given = ref_codes[i].numel() * BASE_FRAME_RATE / frames if frames else BASE_FRAME_RATE
        if not math.isfinite(given) or given <= 0:
            raise ConfigError(f"rate must be a positive number of tokens per second, not {given}")
        rates.append(given)

    new_counts = torch.tensor([t.numel() for t in texts])
    min_len = (new_counts * min_len_ratio).floor().long().clamp(min=1)
    max_len = torch.maximum((new_counts * max_len_ratio).ceil().long(), min_len)
    if max_new_tokens is not None:
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
        max_len = max_len.clamp(max=max_new_tokens)
        min_len = torch.minimum(min_len, max_len)
    min_len, max_len = min_len.to(device), max_len.to(device)
    bounds = [paced_frame_bounds(t.numel(), r.numel(), int(d.sum()), pace) if pace is not None else (0, None)
              for t, r, d in zip(texts, ref_ph, ref_durs)]
    min_frames = torch.tensor([lo for lo, _ in bounds], dtype=torch.long, device=device)
    max_frames = torch.tensor([hi if hi is not None else 2**62 for _, hi in bounds], dtype=torch.long, device=device)
    longest = int(max_len.max())
    prefix_longest = max(int(r.numel() + t.numel() + c.numel()) for r, t, c in zip(ref_ph, texts, ref_codes)) + 4
    if prefix_longest + longest > cfg.max_positions:
        raise ConfigError(
            f"prompt plus text ({prefix_longest} positions) and up to {longest} new tokens exceed the model's "
            f"{cfg.max_positions} positions: shorten the text or the reference"
        )

    if text_cfg < 0:
        raise ConfigError(f"text_cfg must be >= 0, not {text_cfg}")
    phones = _pointer_inputs(model, texts, ref_ph, ref_durs, prompt_onsets) if cfg.phone_pointer else None
    if match_pace and phones is None:
        raise ConfigError("match_pace needs a phone-pointer AR model (ARConfig.phone_pointer)")
    if phone_guide is not None:
        if phones is None:
            raise ConfigError("phone_guide needs a phone-pointer AR model (ARConfig.phone_pointer)")
        if tuple(phone_guide.shape) != (len(cfg.symbols), cfg.codebook_size):
            raise ConfigError(f"phone_guide must be [{len(cfg.symbols)}, {cfg.codebook_size}] (phones x codes), "
                              f"not {list(phone_guide.shape)}: build it with the bundle's codec (code_phone_table)")
        phone_guide = phone_guide.to(device=device, dtype=torch.float32) if phone_guide_weight else None
    generators = _generators(seed, batch, device)
    if text_cfg > 0:  # the text-free copies: same prompt codes, rate and limits, no phonemes
        empty = torch.zeros(0, dtype=torch.long)
        texts, ref_ph = texts + [empty] * batch, ref_ph + [empty] * batch
        ref_codes, ref_durs, rates = ref_codes * 2, ref_durs * 2, rates * 2
        min_len, max_len, min_frames, max_frames = (torch.cat([x, x]) for x in (min_len, max_len, min_frames, max_frames))
        if phones is not None:  # no text, no phones: the copies' pointer input is zero
            spoken, progress = phones
            phones = (spoken + [empty] * batch, progress * 2)
    was_training = model.training
    model.eval()
    try:
        out = _loop(
            model, texts, ref_ph, ref_codes, ref_durs, rates, min_len, max_len, min_frames, max_frames,
            match_rate, generators,
            temperature, top_k, top_p, duration_top_k, duration_temperature, use_cache, device, text_cfg, phones,
            (phone_guide, phone_guide_weight) if phone_guide is not None else None, match_pace,
        )
    finally:
        model.train(was_training)
    if text_cfg > 0:
        size = max(1, int(out.lengths[:batch].max()))
        out = ARGeneration(out.codes[:batch, :size], out.durations[:batch, :size], out.lengths[:batch], out.ended_by_eos[:batch],
                           None if out.progress is None else out.progress[:batch, :size])
    return out


def _pointer_inputs(model: "ARModel", texts: list[torch.Tensor], ref_ph: list[torch.Tensor], ref_durs: list[torch.Tensor],
                    prompt_onsets: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per item: the phone ids of the joined text (`[Ns]`) and the prompt tokens' progress (`[Gp]`, the last one
    reaching every prompt phone, so the new speech starts at the new text's first phone)."""
    cfg = model.config
    batch = len(texts)
    if prompt_onsets is None:
        onset_rows: list[Any] = [None] * batch
    elif getattr(prompt_onsets, "ndim", None) == 1 or (
            isinstance(prompt_onsets, (list, tuple)) and all(isinstance(v, numbers.Real) for v in prompt_onsets)):
        onset_rows = [prompt_onsets] * batch
    else:
        onset_rows = list(prompt_onsets)
        if len(onset_rows) == 1:
            onset_rows = onset_rows * batch
        if len(onset_rows) != batch:
            raise ConfigError(f"prompt_onsets has {len(onset_rows)} items for {batch} texts")
    spoken, progress = [], []
    for text, ref, durs, onsets in zip(texts, ref_ph, ref_durs, onset_rows):
        joined = model.join_text(ref.tolist(), text.tolist())
        ids = torch.tensor(pointer.spoken_phones(joined, cfg), dtype=torch.long)
        ref_count = len(pointer.spoken_positions(ref.tolist(), cfg.symbols, cfg.pointer_skip))
        if ids.numel() == ref_count:
            raise TextError("the text has no phones to speak (only stress marks, pauses or punctuation)")
        frames = int(durs.sum())
        onsets = pointer.even_onsets(ref_count, frames) if onsets is None else torch.as_tensor(onsets, dtype=torch.float64).reshape(-1)
        if onsets.numel() != ref_count:
            raise ConfigError(f"prompt_onsets has {onsets.numel()} onsets for the prompt transcript's {ref_count} phones")
        reached = pointer.token_progress(durs, onsets).clamp(max=ref_count)
        if reached.numel():
            reached[-1] = ref_count
        spoken.append(ids)
        progress.append(reached)
    return spoken, progress


def _loop(
    model: "ARModel",
    texts: list[torch.Tensor],
    ref_ph: list[torch.Tensor],
    ref_codes: list[torch.Tensor],
    ref_durs: list[torch.Tensor],
    rates: list[float],
    min_len: torch.Tensor,
    max_len: torch.Tensor,
    min_frames: torch.Tensor,
    max_frames: torch.Tensor,
    match_rate: bool | str,
    generators: list[torch.Generator],
    temperature: float,
    top_k: int,
    top_p: float,
    duration_top_k: int,
    duration_temperature: float,
    use_cache: bool,
    device: torch.device,
    text_cfg: float = 0.0,
    phones: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None,
    guide: tuple[torch.Tensor, float] | None = None,
    match_pace: bool = False,
) -> ARGeneration:
    """The step loop. Every step n: sample d_{n} of the token fed last (n > 0), stop items at their maximum
    (tokens, or frames covered), sample the next code (EOS masked below the minimum tokens or frames), stop items
    at EOS, feed the new token.

    With `text_cfg` > 0 the batch's second half holds the text-free copies of the first half's items: they get the
    first half's (guided) draws, so both halves always hold the same tokens and durations.

    With `phones` (each item's text phones and its prompt's progress, `_pointer_inputs`) the phone pointer runs
    too: after d_n, the advance a_n is drawn (at most the phones left), and the next code is read with the pointer
    at the phone now due; EOS is masked until every phone has started."""
    from transformers import DynamicCache

    cfg = model.config
    batch = len(texts)
    param_dtype = next(model.parameters()).dtype
    joined = [torch.tensor(model.join_text(r.tolist(), t.tolist()), dtype=torch.long) for r, t in zip(ref_ph, texts)]
    phonemes, phoneme_lengths = _pad(joined, device)
    codes, code_lengths = _pad(ref_codes, device)
    durations, _ = _pad(ref_durs, device)
    rate = torch.tensor(rates, dtype=param_dtype, device=device)
    duration_values = torch.arange(1, cfg.max_duration + 1, device=device)  # class k is a duration of k + 1
    mean_duration = BASE_FRAME_RATE / torch.tensor(rates, dtype=torch.float64, device=device)  # match_rate's target
    tilt_feature = duration_values.double().log() if match_rate == "log" else None  # None: the duration itself

    # Prefill: the right-padded prefix; new positions go after the longest prefix and skip the padding through
    # the key mask, while each item's position ids continue from its own length.
    pointer_args: tuple[torch.Tensor, ...] = ()
    if phones is not None:
        spoken, spoken_lengths = _pad(phones[0], device)
        prompt_progress, _ = _pad(phones[1], device)
        pointer_args = (spoken, spoken_lengths, prompt_progress[:, : codes.shape[1]])
        # The phone due when the new speech starts: every prompt phone has started (0 without a prompt).
        reached = prompt_progress.gather(1, (code_lengths - 1).clamp(min=0)[:, None]).squeeze(1) * (code_lengths > 0)
        start_reached = reached.clone()  # the new text's first phone
        advance_values = torch.arange(cfg.max_advance + 1, device=device)
        # match_pace's target: the prompt's phones per 12.5 Hz frame (items without a prompt are not paced).
        prompt_frames = durations.sum(dim=1)
        phone_pace = start_reached.double() / prompt_frames.clamp(min=1)
        paced = (start_reached > 0) & (prompt_frames > 0)
    embeds, mask, positions = model.embed_sequence(phonemes, phoneme_lengths, codes, durations, code_lengths, rate, *pointer_args)
    prefix_lengths = mask.sum(dim=1)
    cache = DynamicCache(config=model.backbone.config) if use_cache else None
    hidden = model.run_backbone(embeds, mask, positions, cache)
    state = hidden[torch.arange(batch, device=device), prefix_lengths - 1]  # [B, H]
    # The duration of the last prompt token is known: it is the first new token's "previous duration".
    last_prompt = durations.gather(1, (code_lengths - 1).clamp(min=0)[:, None]).squeeze(1) - 1
    previous_duration = torch.where(code_lengths > 0, last_prompt, torch.full_like(last_prompt, cfg.duration_start))

    longest = int(max_len.max())
    out_codes = torch.zeros(batch, longest, dtype=torch.long, device=device)
    out_durs = torch.zeros(batch, longest, dtype=torch.long, device=device)
    out_progress = torch.zeros(batch, longest, dtype=torch.long, device=device)
    active = torch.ones(batch, dtype=torch.bool, device=device)
    ended_by_eos = torch.zeros(batch, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, dtype=torch.long, device=device)
    all_embeds, all_mask, all_positions = embeds, mask, positions  # the no-cache path re-reads everything
    guided, half = text_cfg > 0, batch // 2
    step = 0
    while True:
        # Two uniforms per item and step (duration, code), drawn whether used or not: each item's stream
        # advances the same way in any batch.
        # The phone pointer draws a third (advance) the same way.
        draws = 2 if phones is None else 3
        uniforms = torch.stack([torch.rand(draws, generator=g, device=device, dtype=torch.float64) for g in generators])
        if guided:
            uniforms = torch.cat([uniforms, uniforms])
        if step > 0:
            dur_logits = model.duration_head(state).to(_sampling_dtype(state))
            if guided:  # durations follow the text-conditioned rows
                dur_logits = torch.cat([dur_logits[:half], dur_logits[:half]])
            draw_temperature = duration_temperature
            if match_rate:
                if duration_temperature > 0:  # temper before tilting: the distribution drawn from has the aimed mean
                    dur_logits, draw_temperature = dur_logits / duration_temperature, 1.0
                # Aim each draw at the mean plus a share of the frames still owed, so the realised rate
                # tracks the target over the utterance instead of drifting like a random walk.
                owed = mean_duration * (step - 1) - out_durs[:, : step - 1].sum(dim=1)
                dur_logits = tilt_to_mean(dur_logits, duration_values, mean_duration + RATE_FEEDBACK * owed,
                                          feature=tilt_feature)
            chosen = sample_from_logits(dur_logits, uniforms[:, 0], draw_temperature, duration_top_k)
            out_durs[:, step - 1] = torch.where(active, chosen + 1, out_durs[:, step - 1])
            previous_duration = chosen
            if phones is not None:
                rows = half if guided else batch  # the text-free copies follow the first half's pointer
                adv_logits = model.advance_head(state[:rows]).to(_sampling_dtype(state))
                too_far = advance_values[None, :] > (spoken_lengths - reached)[:rows, None]  # never past the last phone
                adv_logits = adv_logits.masked_fill(too_far, float("-inf"))
                if match_pace:
                    # Aim at the phones this token's frames take at the prompt's pace, plus a share of the
                    # phones the speech is behind (or minus those it is ahead).
                    duration = out_durs[:rows, step - 1]
                    behind = phone_pace[:rows] * (out_durs[:rows, :step].sum(dim=1) - duration) - (reached - start_reached)[:rows]
                    aim = phone_pace[:rows] * duration + RATE_FEEDBACK * behind
                    tilted = tilt_to_mean(adv_logits, advance_values, aim)
                    adv_logits = torch.where(paced[:rows, None], tilted, adv_logits)
                advance = sample_from_logits(adv_logits, uniforms[:rows, 2])
                if guided:
                    advance = torch.cat([advance, advance])
                reached = reached + torch.where(active, advance, torch.zeros_like(advance))
                out_progress[:, step - 1] = torch.where(active, reached - start_reached, out_progress[:, step - 1])
        covered = out_durs.sum(dim=1)  # frames of the new speech so far
        within_pace = covered < max_frames
        if phones is not None:
            unfinished = reached < spoken_lengths
            if guided:  # the text-free copies follow the first half's pointer
                unfinished = torch.cat([unfinished[:half], unfinished[:half]])
            # The pace's upper bound waits for the last phone to start: cutting there would drop the end of the
            # text. The token limit (max_len_ratio) still holds.
            within_pace = within_pace | unfinished
        active = active & (step < max_len) & within_pace
        if not bool(active.any()):
            break
        code_state = state
        if phones is not None:  # the next code starts at the phone now due
            code_state = state + model.pointer_code(model.phoneme_embedding, spoken, spoken_lengths, reached[:, None])[:, 0]
        logits = model.code_head(code_state).to(_sampling_dtype(state))
        if guided:
            logits = _text_guided(logits, half, text_cfg, cfg.eos_id)
        if guide is not None:
            rows = half if guided else batch  # the text-free copies take the first half's guidance
            bonus = _phone_guidance(guide[0], spoken[:rows], spoken_lengths[:rows], reached[:rows]) * guide[1]
            if guided:
                bonus = torch.cat([bonus, bonus])
            logits[:, : cfg.codebook_size] += bonus.to(logits.dtype)
        # EOS is not a choice before the minimum length.
        too_short = (step < min_len) | (covered < min_frames)
        if phones is not None:
            too_short = too_short | unfinished
        logits[:, cfg.eos_id] = torch.where(too_short, float("-inf"), logits[:, cfg.eos_id])
        token = sample_from_logits(logits, uniforms[:, 1], temperature, top_k, top_p)
        is_eos = active & (token == cfg.eos_id)
        ended_by_eos |= is_eos
        active = active & ~is_eos
        if not bool(active.any()):
            break
        token = torch.where(active, token, torch.zeros_like(token))  # finished rows feed a harmless code
        out_codes[:, step] = token
        lengths += active.long()
        step += 1
        # Feed e(s_n) + D(d_{n-1}) at each item's next position.
        new_embed = (model.code_embedding(token) + model.duration_embedding(previous_duration))[:, None, :]
        if phones is not None:  # its input is told the phone due when it starts
            new_embed = new_embed + model.pointer_input(model.phoneme_embedding, spoken, spoken_lengths, reached[:, None])
        new_position = (prefix_lengths + step - 1)[:, None]
        all_mask = torch.cat([all_mask, torch.ones(batch, 1, dtype=torch.bool, device=device)], dim=1)
        if cache is not None:
            state = model.run_backbone(new_embed, all_mask, new_position, cache)[:, -1]
        else:
            all_embeds = torch.cat([all_embeds, new_embed], dim=1)
            all_positions = torch.cat([all_positions, new_position], dim=1)
            state = model.run_backbone(all_embeds, all_mask, all_positions)[:, -1]
    size = max(1, int(lengths.max()))
    return ARGeneration(
        codes=out_codes[:, :size].clone(), durations=out_durs[:, :size].clone(), lengths=lengths, ended_by_eos=ended_by_eos,
        progress=out_progress[:, :size].clone() if phones is not None else None,
    )


def _phone_guidance(table: torch.Tensor, spoken: torch.Tensor, lengths: torch.Tensor, reached: torch.Tensor) -> torch.Tensor:
    """`log(mass + 1e-4)` `[B, V]` of each code on the phones at `reached - 1, reached, reached + 1` (`table [P, V]`,
    `spoken [B, Ns]`, `lengths [B]`, `reached [B]`); 0 for items whose phones have all started (trailing silence
    and the end are the model's call)."""
    index = reached[:, None] + torch.arange(-1, 2, device=reached.device)  # [B, 3]
    inside = (index >= 0) & (index < lengths[:, None])
    ids = spoken.gather(1, index.clamp(0, spoken.shape[1] - 1))
    mass = (table[ids] * inside[..., None]).sum(dim=1)  # [B, V]
    bonus = torch.log(mass + 1e-4)
    return torch.where((reached < lengths)[:, None], bonus, torch.zeros_like(bonus))


def _text_guided(logits: torch.Tensor, half: int, weight: float, eos_id: int) -> torch.Tensor:
    """Classifier-free guidance on the text: `logits [2H, V + 1]` (rows `:H` with the text, `H:` without) ->
    `[2H, V + 1]`, both halves `lc + w (lc - lu)` over the codes in log-probabilities; EOS keeps the
    text-conditioned log-probability (when to stop is the text's business, not the guidance's)."""
    lc = torch.log_softmax(logits[:half], dim=-1)
    lu = torch.log_softmax(logits[half:], dim=-1)
    guided = lc + weight * (lc - lu)
    guided[:, eos_id] = lc[:, eos_id]
    guided = torch.nan_to_num(guided, nan=float("-inf"))  # -inf - -inf on masked classes
    return torch.cat([guided, guided])


def _sampling_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 at least (half-precision logits are too coarse to sample from), float64 kept."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32
