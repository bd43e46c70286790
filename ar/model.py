"""`ARModel`: a causal Llama over `[SOS, RATE, phonemes..., TASK, s_1 ... s_G, EOS]` that predicts each next
semantic code (or EOS) and each token's duration class.

Alignment (1-based speech index j, d_j in 1..max_duration, class d_j - 1):

    position:  SOS  RATE  p_1 .. p_P  TASK   s_1            s_2            ...  s_G
    input:     sos  rate  phonemes    task   e(s_1)+D(start) e(s_2)+D(d_1)  ...  e(s_G)+D(d_{G-1})
    code head:                        s_1    s_2            s_3            ...  EOS
    dur head:                                d_1            d_2            ...  d_G

So the state at s_j's position, whose input carries d_{j-1}, predicts d_j and s_{j+1}. Generation samples
s_j from the previous state, feeds `e(s_j) + D(d_{j-1})`, then samples d_j and s_{j+1} from the new state.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ar.config import ARConfig
from ar.embeddings import CodeEmbedding, CodeHead, RateEmbedding, init_weights
from ar.pointer import PhonePointerEmbedding
from codec.common.pretrained import PretrainedMixin

IGNORE = -100
SOS_SLOT, TASK_SLOT = 0, 1  # rows of `special_embedding`


@functools.cache
def _cache_keyword(backbone_class: type) -> str:
    """The name under which the backbone's `forward` takes its KV cache: `cache` in newer transformers,
    `past_key_values` before (deprecated since, and to be removed in 5.40)."""
    return "cache" if "cache" in inspect.signature(backbone_class.forward).parameters else "past_key_values"


def _length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """`[B]` lengths -> `[B, size]` bool, True inside each item."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def _gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`x [B, L, H]`, `index [B, K]` -> `[B, K, H]` (index clamped into range)."""
    index = index.clamp(0, x.shape[1] - 1)
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


class ARModel(nn.Module, PretrainedMixin):
    """Token+duration language model (`LlamaModel` backbone on `inputs_embeds`, our embeddings and heads)."""

    config_class = ARConfig
    bundle_name = "ar"

    def __init__(self, config: ARConfig):
        super().__init__()
        from transformers import LlamaConfig, LlamaModel

        self.config = config
        hidden = config.hidden_size
        self.phoneme_embedding = nn.Embedding(len(config.symbols), hidden, padding_idx=0)
        self.special_embedding = nn.Embedding(2, hidden)  # SOS, TASK
        self.code_embedding = CodeEmbedding(config)
        self.duration_embedding = nn.Embedding(config.max_duration + 1, hidden)  # classes + "start"
        self.rate_embedding = RateEmbedding(config)
        self.input_dropout = nn.Dropout(config.dropout)
        init_weights(self)
        llama = LlamaConfig(
            vocab_size=1,  # unused: the backbone only sees inputs_embeds
            hidden_size=hidden,
            intermediate_size=config.ffn_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_kv_heads or config.num_heads,
            max_position_embeddings=config.max_positions,
            rope_parameters={"rope_type": "default", "rope_theta": float(config.rope_theta)},
            attention_dropout=config.dropout,
            attn_implementation="sdpa",
            pad_token_id=None, bos_token_id=None, eos_token_id=None,
        )
        self.backbone = LlamaModel(llama)
        # We always feed inputs_embeds: drop the token table, whose unused parameters would stall DDP.
        self.backbone.embed_tokens = None
        self.code_head = CodeHead(config)
        self.duration_head = nn.Linear(hidden, config.max_duration)
        init_weights(self.code_head)
        init_weights(self.duration_head)
        if config.phone_pointer:
            self.pointer_input = PhonePointerEmbedding(config)
            self.pointer_code = PhonePointerEmbedding(config)
            self.advance_head = nn.Linear(hidden, config.max_advance + 1)
            init_weights(self.advance_head)

    # -- inputs ------------------------------------------------------------------------------------------
    def embed_sequence(
        self,
        phonemes: torch.Tensor,
        phoneme_lengths: torch.Tensor,
        codes: torch.Tensor,
        durations: torch.Tensor,
        code_lengths: torch.Tensor,
        rate: torch.Tensor,
        spoken: torch.Tensor | None = None,
        spoken_lengths: torch.Tensor | None = None,
        progress: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded input embeddings of `[SOS, RATE, phonemes, TASK, codes]` (no EOS: it is never an input).

        Args: `phonemes [B, P]`, `phoneme_lengths [B]`, `codes [B, G]`, `durations [B, G]` (1..max_duration,
        anything on padding), `code_lengths [B]` (may be 0), `rate [B]` in tokens per second; with the phone
        pointer also `spoken [B, Ns]` (the text's phone ids), `spoken_lengths [B]` and `progress [B, G]`
        (phones started by the end of each token; see `ar/pointer.py`).
        Returns `embeds [B, L, H]`, `mask [B, L]` (bool, True on real positions) and `positions [B, L]`,
        with `L = 3 + max(P_b + G_b)`.
        """
        cfg = self.config
        batch, device = phonemes.shape[0], phonemes.device
        if codes.shape[1] == 0:  # gather needs one column to read from, even if nothing is real
            codes = codes.new_zeros(batch, 1)
            durations = durations.new_ones(batch, 1)
        lengths = 3 + phoneme_lengths + code_lengths
        size = int(lengths.max())
        t = torch.arange(size, device=device)[None, :]  # [1, L]
        ph_index = (t - 2).expand(batch, -1)
        is_phone = (ph_index >= 0) & (ph_index < phoneme_lengths[:, None])
        sp_index = t - (3 + phoneme_lengths)[:, None]  # [B, L]
        is_speech = (sp_index >= 0) & (sp_index < code_lengths[:, None])
        is_task = sp_index == -1

        # Shift durations right by one: the input at speech j carries d_{j-1}; the first carries "start".
        classes = (durations - 1).clamp(0, cfg.max_duration - 1)
        previous = torch.cat([torch.full_like(classes[:, :1], cfg.duration_start), classes[:, :-1]], dim=1)
        ph_ids = phonemes.gather(1, ph_index.clamp(0, phonemes.shape[1] - 1))
        sp_clamped = sp_index.clamp(0, codes.shape[1] - 1)
        speech = self.code_embedding(codes.gather(1, sp_clamped)) + self.duration_embedding(previous.gather(1, sp_clamped))
        if cfg.phone_pointer:
            # The input at token j is told A_{j-1}: the phone due when it starts.
            before = F.pad(progress, (1, 0))[:, : progress.shape[1]] if progress.shape[1] else progress.new_zeros(batch, 1)
            speech = speech + self.pointer_input(self.phoneme_embedding, spoken, spoken_lengths, before.gather(1, sp_clamped))
        embeds = (
            self.phoneme_embedding(ph_ids) * is_phone[..., None]
            + speech * is_speech[..., None]
            + self.special_embedding.weight[SOS_SLOT] * (t == 0)[..., None]
            + self.special_embedding.weight[TASK_SLOT] * is_task[..., None]
            + self.rate_embedding(rate)[:, None, :] * (t == 1)[..., None]
        )
        mask = t < lengths[:, None]
        return embeds, mask, t.expand(batch, -1)

    def run_backbone(
        self,
        embeds: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: Any | None = None,
    ) -> torch.Tensor:
        """Llama over `embeds [B, L, H]` with key mask `mask [B, L_past + L]` and `positions [B, L]`; `[B, L, H]`.

        With `cache` (a `transformers.DynamicCache`) the new positions attend to the cached ones and are appended.
        """
        out = self.backbone(
            inputs_embeds=self.input_dropout(embeds),
            attention_mask=mask.long(),
            position_ids=positions,
            use_cache=cache is not None,
            **{_cache_keyword(type(self.backbone)): cache},
        )
        return out.last_hidden_state

    # -- losses ------------------------------------------------------------------------------------------
    def teacher_forced_outputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Teacher-forced logits and targets of the valid positions only (flattened across the batch).

        Returns `code_logits [N, V + 1]`, `code_targets [N]`, `code_item [N]` (batch row of each),
        `dur_logits [M, D]`, `dur_targets [M]`, `dur_item [M]`, and with the phone pointer `adv_logits [M, A + 1]`
        and `adv_targets [M]` (phones each token starts, capped at `max_advance`).
        """
        cfg = self.config
        phonemes, phoneme_lengths = batch["phonemes"], batch["phoneme_lengths"]
        codes, durations, code_lengths = batch["codes"], batch["durations"], batch["code_lengths"]
        pointer = (batch["spoken"], batch["spoken_lengths"], batch["progress"]) if cfg.phone_pointer else (None, None, None)
        embeds, mask, positions = self.embed_sequence(phonemes, phoneme_lengths, codes, durations, code_lengths, batch["rate"],
                                                      *pointer)
        hidden = self.run_backbone(embeds, mask, positions)
        batch_size, max_codes = codes.shape
        rows = torch.arange(batch_size, device=codes.device)[:, None]

        # Code targets: the TASK state predicts s_1, the state at s_j predicts s_{j+1}, the last one EOS.
        k = torch.arange(max_codes + 1, device=codes.device)[None, :]
        code_valid = k <= code_lengths[:, None]  # [B, G + 1]
        padded = F.pad(codes, (0, 1))
        code_targets = torch.where(k == code_lengths[:, None], torch.full_like(padded, cfg.eos_id), padded)
        code_states = _gather_rows(hidden, 2 + phoneme_lengths[:, None] + k)
        # Duration targets: the state at s_j (input carries d_{j-1}) predicts d_j.
        j = k[:, :max_codes]
        dur_valid = _length_mask(code_lengths, max_codes)
        dur_states = _gather_rows(hidden, 3 + phoneme_lengths[:, None] + j)[dur_valid]
        extra = {}
        if cfg.phone_pointer:
            spoken, spoken_lengths, progress = pointer
            progress = progress * dur_valid  # A_j on real tokens, 0 on padding
            reached = F.pad(progress, (1, 0))  # [B, G + 1]: A_0 = 0, then A_j; the state predicting s_{k+1} knows A_k
            code_states = code_states + self.pointer_code(self.phoneme_embedding, spoken, spoken_lengths, reached)
            advance = (progress - reached[:, :max_codes]).clamp(0, cfg.max_advance)
            extra = {"adv_logits": self.advance_head(dur_states), "adv_targets": advance[dur_valid]}
        code_states = code_states[code_valid]
        return {**extra,
            "code_logits": self.code_head(code_states),
            "code_targets": code_targets[code_valid],
            "code_item": rows.expand(-1, max_codes + 1)[code_valid],
            "dur_logits": self.duration_head(dur_states),
            "dur_targets": (durations - 1)[dur_valid],
            "dur_item": rows.expand(-1, max_codes)[dur_valid],
        }

    def _duration_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-token (focal) cross-entropy `[M]`: `-(1 - p)^gamma log p`; gamma 0 is plain cross-entropy."""
        log_p = F.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None]).squeeze(1)
        gamma = self.config.duration_focal_gamma
        return -log_p if gamma == 0 else -((1 - log_p.exp()) ** gamma) * log_p

    def item_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-item mean losses and accuracies, each `[B]` (what a batch of one would give for that item)."""
        out = self.teacher_forced_outputs(batch)
        batch_size = batch["codes"].shape[0]
        code_tok = F.cross_entropy(out["code_logits"].float(), out["code_targets"], reduction="none")
        dur_tok = self._duration_loss(out["dur_logits"], out["dur_targets"])
        code_hit = (out["code_logits"].argmax(-1) == out["code_targets"]).float()
        dur_hit = (out["dur_logits"].argmax(-1) == out["dur_targets"]).float()

        def per_item(values: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
            total = values.new_zeros(batch_size).index_add_(0, item, values)
            count = values.new_zeros(batch_size).index_add_(0, item, torch.ones_like(values))
            return total / count.clamp(min=1)

        return {
            "code_loss": per_item(code_tok, out["code_item"]),
            "dur_loss": per_item(dur_tok, out["dur_item"]),
            "code_acc": per_item(code_hit, out["code_item"]),
            "dur_acc": per_item(dur_hit, out["dur_item"]),
        }

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Token-averaged losses of a batch and teacher-forced top-1 accuracies.

        Batch: `phonemes [B, P]` long (0-padded), `phoneme_lengths [B]`, `codes [B, G]` long, `durations [B, G]`
        long (1..max_duration, 0 on padding), `code_lengths [B]`, `rate [B]` float (tokens per second).
        In training mode, `text_drop_prob` of the items lose their text (phoneme length 0).
        With the phone pointer also `spoken [B, Ns]`, `spoken_lengths [B]` and `progress [B, G]` (see `ar/pointer.py`).
        Returns `loss` (weighted sum, with gradient), `code_loss`, `dur_loss`, `code_acc`, `dur_acc` (detached),
        and with the phone pointer `adv_loss`, `adv_acc`.
        """
        cfg = self.config
        if self.training and cfg.text_drop_prob > 0:
            lengths = batch["phoneme_lengths"]
            dropped = torch.rand(lengths.shape, device=lengths.device) < cfg.text_drop_prob
            batch = {**batch, "phoneme_lengths": torch.where(dropped, torch.zeros_like(lengths), lengths)}
            if cfg.phone_pointer:  # no text, no phones to point at
                batch["spoken_lengths"] = torch.where(dropped, torch.zeros_like(lengths), batch["spoken_lengths"])
        out = self.teacher_forced_outputs(batch)
        code_loss = F.cross_entropy(out["code_logits"].float(), out["code_targets"], label_smoothing=cfg.label_smoothing)
        dur_loss = self._duration_loss(out["dur_logits"], out["dur_targets"]).mean()
        loss = cfg.code_loss_weight * code_loss + cfg.duration_loss_weight * dur_loss
        result = {}
        with torch.no_grad():
            result["code_acc"] = (out["code_logits"].argmax(-1) == out["code_targets"]).float().mean()
            result["dur_acc"] = (out["dur_logits"].argmax(-1) == out["dur_targets"]).float().mean()
        if cfg.phone_pointer:
            adv_loss = F.cross_entropy(out["adv_logits"].float(), out["adv_targets"])
            loss = loss + cfg.advance_loss_weight * adv_loss
            result["adv_loss"] = adv_loss.detach()
            result["adv_acc"] = (out["adv_logits"].argmax(-1) == out["adv_targets"]).float().mean()
        return {"loss": loss, "code_loss": code_loss.detach(), "dur_loss": dur_loss.detach(), **result}

    @torch.no_grad()
    def teacher_forced_metrics(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sums for evaluation over many batches: `code_correct`, `code_total` (EOS included), `dur_correct`,
        `dur_total`, `code_nll` and `dur_nll` (summed negative log-likelihoods), all 0-d tensors."""
        out = self.teacher_forced_outputs(batch)
        code_nll = F.cross_entropy(out["code_logits"].float(), out["code_targets"], reduction="sum")
        dur_nll = F.cross_entropy(out["dur_logits"].float(), out["dur_targets"], reduction="sum")
        extra = {}
        if "adv_logits" in out:
            extra = {"adv_correct": (out["adv_logits"].argmax(-1) == out["adv_targets"]).sum(),
                     "adv_total": torch.tensor(out["adv_targets"].numel())}
        return {**extra,
            "code_correct": (out["code_logits"].argmax(-1) == out["code_targets"]).sum(),
            "code_total": torch.tensor(out["code_targets"].numel()),
            "dur_correct": (out["dur_logits"].argmax(-1) == out["dur_targets"]).sum(),
            "dur_total": torch.tensor(out["dur_targets"].numel()),
            "code_nll": code_nll,
            "dur_nll": dur_nll,
        }

    # -- text ------------------------------------------------------------------------------------------------
    @property
    def separator_id(self) -> int | None:
        """Id of `<sep>` in the phoneme table (between a reference transcript and the new text), if any."""
        symbols = self.config.symbols
        return symbols.index("<sep>") if "<sep>" in symbols else None

    def join_text(self, prompt_phonemes: Sequence[int], phonemes: Sequence[int]) -> list[int]:
        """The text of a prompted sequence: reference phonemes, `<sep>`, new phonemes (training and generation
        both build it here, so they agree). Without reference phonemes, the new phonemes alone."""
        prompt, text = [int(p) for p in prompt_phonemes], [int(p) for p in phonemes]
        if not prompt:
            return text
        sep = self.separator_id
        return prompt + ([sep] if sep is not None else []) + text

    # -- inference ---------------------------------------------------------------------------------------
    def generate(self, phonemes: Any, prompt_codes: Any = None, prompt_durations: Any = None,
                 prompt_phonemes: Any = None, **options: Any) -> "ARGeneration":  # noqa: F821 (ar.generate imports this module)
        """Sample new codes and durations (the new speech only); `options` (rate, temperature, top_k, pace, ...)
        are `ar.generate.generate`'s keyword arguments."""
        from ar.generate import generate

        return generate(self, phonemes, prompt_codes, prompt_durations, prompt_phonemes, **options)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def collate_examples(
    phonemes: Sequence[Sequence[int]],
    codes: Sequence[Sequence[int]],
    durations: Sequence[Sequence[int]],
    rates: Sequence[float],
    spoken: Sequence[Sequence[int]] | None = None,
    progress: Sequence[Sequence[int]] | None = None,
) -> dict[str, torch.Tensor]:
    """Pad python/numpy sequences into a training batch (see `ARModel.training_step` for the keys); `spoken` and
    `progress` (one row per item) are the phone pointer's."""
    def pad(rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        out = torch.zeros(len(rows), max(1, int(lengths.max())), dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        return out, lengths

    ph, ph_len = pad(phonemes)
    cd, cd_len = pad(codes)
    du, _ = pad(durations)
    batch = {
        "phonemes": ph, "phoneme_lengths": ph_len, "codes": cd, "durations": du, "code_lengths": cd_len,
        "rate": torch.tensor([float(r) for r in rates], dtype=torch.float32),
    }
    if spoken is not None and progress is not None:
        batch["spoken"], batch["spoken_lengths"] = pad(spoken)
        batch["progress"] = pad(progress)[0]
    return batch
