"""`Voicebox`: conditional flow matching from semantic codes (with durations) to log-mel frames at 50 Hz.

Per frame the network sees `Linear([x_t, context mel, context flag]) + code embedding` and predicts the velocity
of the path `x_t = (1 - (1 - sigma) t) z + t x1` (target `x1 - (1 - sigma) z`):

    codes [B, G] ─ unmerge by durations ─> 12.5 Hz ─ x4 ─> 50 Hz code ids [B, F] ─ embedding ─┐
    noisy mel x_t [B, F, M], context mel (clean on the prompt, 0 elsewhere), flag ─ Linear ─────+─> AdaLN
    transformer (bidirectional, padding mask, time t) ─> velocity [B, F, M]

The "unconditional" path, trained on `cond_drop_prob` of the items and used by classifier-free guidance, has
neither codes (their embedding is zero) nor context (context mel and flag zero): Voicebox drops both.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from codec.common.errors import ConfigError
from codec.common.pretrained import PretrainedMixin
from codec.dynamic import unmerge
from codec.framing import length_mask
from nar.config import VoiceboxConfig
from nar.code_prior import CodePrior
from nar.mel import MelSpectrogram
from nar.phones import SUBFRAMES, PhoneEmbedding
from nar.sampling import concat_padded, guided_velocity, item_noise, slice_padded, time_grid
from nar.transformer import AdaLNTransformer, sinusoidal_embedding


class CodeEmbedding(nn.Module):
    """FSQ codes `[...]` -> `[..., dim]`: one table per FSQ digit, summed ("fsq"), or one row a code ("full")."""

    def __init__(self, config: VoiceboxConfig):
        super().__init__()
        self.mode = config.code_embedding
        if self.mode == "full":
            self.table = nn.Embedding(config.codebook_size, config.dim)
            return
        levels = torch.tensor(config.fsq_levels, dtype=torch.long)
        # Same digit order as codec.quantizers.FSQ: code = sum(digit_i * prod(levels[:i])).
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), 0), persistent=False)
        self.register_buffer("offsets", torch.cumsum(torch.cat([levels.new_zeros(1), levels[:-1]]), 0), persistent=False)
        self.table = nn.Embedding(int(levels.sum()), config.dim)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if self.mode == "full":
            return self.table(codes)
        digits = torch.div(codes[..., None], self.basis, rounding_mode="floor") % self.levels
        return self.table(digits + self.offsets).sum(dim=-2)


class Voicebox(nn.Module, PretrainedMixin):
    """Flow-matching mel generator conditioned on semantic codes and a prompt's mel."""

    config_class = VoiceboxConfig
    bundle_name = "nar"

    def __init__(self, config: VoiceboxConfig):
        super().__init__()
        self.config = config
        c = config
        m = c.mel.n_mels
        self.mel = MelSpectrogram(c.mel)  # no weights: turns `wav` batches into training targets
        self.code_embed = CodeEmbedding(c)
        self.code_prior = (CodePrior(c.dim, m, c.mel.frames_per_base, c.code_encoder_layers)
                           if c.code_encoder_layers else None)
        self.phone_embed = PhoneEmbedding(c) if c.num_phones else None
        self.in_proj = nn.Linear(2 * m + 1, c.dim)  # [x_t, context mel, context flag]
        self.time_mlp = nn.Sequential(nn.Linear(c.time_embed_dim, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        self.transformer = AdaLNTransformer(c.dim, c.num_layers, c.num_heads, c.ffn_dim, c.dropout,
                                            c.conv_pos_kernel, c.conv_pos_groups, c.skip_connections)
        self.out_proj = nn.Linear(c.dim, m)
        nn.init.normal_(self.code_embed.table.weight, std=0.02)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ conditioning
    def frame_codes(self, codes: torch.Tensor, durations: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        """Codes `[B, G]` with durations `[B, G]` (12.5 Hz frames, 0 on padding) -> code ids per mel frame
        `[B, F]` (each base frame repeated `frames_per_base` times; `F` = `frames` or the longest item)."""
        base = unmerge(codes.long(), durations.long())  # [B, T12]
        ids = torch.repeat_interleave(base, self.config.mel.frames_per_base, dim=1)
        if frames is not None:
            ids = F.pad(ids, (0, max(0, frames - ids.shape[1])))[:, :frames]
        return ids

    def condition(self, code_ids: torch.Tensor, mask: torch.Tensor,
                  phone_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-frame code condition `[B, F, D]` and, with a code encoder, the prior mel `[B, F, M]` (else None).

        Args:
            code_ids: `[B, F]` code of each frame (constant over each base frame's `frames_per_base` frames).
            mask: `[B, F]` valid frames.
            phone_ids: `[B, 2 * F / frames_per_base]` aligned phones at 25 Hz (0: none), for a model with
                `num_phones`; None: codes alone.
        """
        if self.code_prior is None:
            return self.code_embed(code_ids), None
        fpb, frames = self.config.mel.frames_per_base, code_ids.shape[1]
        base_mask = mask[:, ::fpb]
        embeddings = self.code_embed(code_ids[:, ::fpb])
        if self.phone_embed is not None and phone_ids is not None:
            embeddings = embeddings + self.phone_embed(phone_ids.to(embeddings.device).long(), embeddings.shape[1])
        cond, prior = self.code_prior(embeddings, base_mask)
        return cond[:, :frames], prior[:, :frames]

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, code_ids: torch.Tensor, code_keep: torch.Tensor,
                context: torch.Tensor, context_mask: torch.Tensor, lengths: torch.Tensor,
                return_prior: bool = False, code_cond: torch.Tensor | None = None,
                phone_ids: torch.Tensor | None = None,
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Velocity `[B, F, M]` (and the prior mel `[B, F, M]` or None with `return_prior`).

        Args:
            x_t: `[B, F, M]` noisy mel at time `t [B]`.
            code_ids: `[B, F]` code of each frame; code_keep: `[B]` bool, False = no code condition.
            context: `[B, F, M]` clean prompt mel (ignored where `context_mask [B, F]` is False).
            lengths: `[B]` valid frames.
            code_cond: the `condition(code_ids, mask)` already computed (`[B, F, D]`): it depends on neither
                `x_t` nor `t`, so an ODE solver computes it once (the prior is then not returned).
            phone_ids: `[B, 2F / frames_per_base]` aligned phones (see `condition`), or None.
        """
        mask = length_mask(lengths, x_t.shape[1])
        ctx_mask = context_mask & mask
        ctx = context * ctx_mask[..., None].to(context.dtype)
        h = self.in_proj(torch.cat([x_t, ctx, ctx_mask[..., None].to(x_t.dtype)], dim=-1))
        cond, prior = self.condition(code_ids, mask, phone_ids) if code_cond is None else (code_cond, None)
        h = h + cond * code_keep[:, None, None].to(h.dtype)
        h = h * mask[..., None].to(h.dtype)
        time_emb = self.time_mlp(sinusoidal_embedding(t, self.config.time_embed_dim).to(h.dtype))
        h = self.transformer(h, time_emb, mask)
        velocity = self.out_proj(h) * mask[..., None].to(h.dtype)
        return (velocity, prior) if return_prior else velocity

    # ------------------------------------------------------------------ training
    def _context_spans(self, lengths: torch.Tensor) -> torch.Tensor:
        """`[B, F]` bool: a random contiguous context span per item (share ~ U(prompt_range) of its frames,
        starting at frame 0 for `prompt_at_start_prob` of the items, else anywhere)."""
        c = self.config
        batch, device = lengths.shape[0], lengths.device
        lo, hi = c.prompt_range
        share = lo + (hi - lo) * torch.rand(batch, device=device)
        span = torch.floor(share * lengths.float()).long()
        at_start = torch.rand(batch, device=device) < c.prompt_at_start_prob
        start = torch.floor(torch.rand(batch, device=device) * (lengths - span + 1).float()).long()
        start = torch.where(at_start, torch.zeros_like(start), torch.minimum(start, lengths - span))
        pos = torch.arange(int(lengths.max()), device=device)[None, :]
        return (pos >= start[:, None]) & (pos < (start + span)[:, None])

    def _corrupt_codes(self, codes: torch.Tensor, with_phones: torch.Tensor) -> torch.Tensor:
        """Codes `[B, G]` with random replacements in `code_noise_prob` of the items that have phones
        (`with_phones [B]`): each of their codes is replaced with probability ~ U(0, code_noise_max) per item."""
        c = self.config
        if c.code_noise_prob == 0:
            return codes
        batch_size, device = codes.shape[0], codes.device
        noisy = with_phones & (torch.rand(batch_size, device=device) < c.code_noise_prob)
        share = torch.rand(batch_size, device=device) * c.code_noise_max * noisy
        replace = torch.rand(codes.shape, device=device) < share[:, None]
        return torch.where(replace, torch.randint_like(codes, c.codebook_size), codes)

    def _swap_in_ar_codes(self, codes: torch.Tensor, ar_codes: torch.Tensor | None,
                          with_phones: torch.Tensor) -> torch.Tensor:
        """Codes `[B, G]` with `ar_code_prob` of the items that have phones (`with_phones [B]`) taking their AR
        samples `ar_codes [B, G]` instead (None: unchanged)."""
        if ar_codes is None or self.config.ar_code_prob == 0:
            return codes
        swap = with_phones & (torch.rand(codes.shape[0], device=codes.device) < self.config.ar_code_prob)
        return torch.where(swap[:, None], ar_codes.to(codes.device).long(), codes)

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Flow-matching loss of one batch.

        Args:
            batch: `mel [B, F, M]` (normalised, as `MelSpectrogram` gives) and `mel_lengths [B]` (or `wav [B, S]`
                with `wav_lengths [B]`, turned into mel here), `codes [B, G]`, `durations [B, G]` (12.5 Hz frames
                per code, 0 on padding; `4 * sum == mel_lengths`); optionally `phones [B, 2 * sum(durations)]`
                (aligned phone ids at 25 Hz, for a model with `num_phones`) and `ar_codes [B, G]` (an AR's samples of
                the codes, for `ar_code_prob`). Other keys (e.g. `step`) are ignored.
        Returns:
            `loss` and its detached copy `flow`; `context` (share of valid frames given as context).
        """
        c = self.config
        device = self.device
        if "mel" in batch:
            x1, lengths = batch["mel"].to(device), batch["mel_lengths"].to(device).long()
        else:
            with torch.no_grad():
                x1, lengths = self.mel(batch["wav"].to(device), batch.get("wav_lengths"))
        codes, durations = batch["codes"].to(device).long(), batch["durations"].to(device).long()
        x1 = x1[:, : int(lengths.max())]
        x1 = x1.to(self.in_proj.weight.dtype)
        if not torch.equal(durations.sum(1) * c.mel.frames_per_base, lengths):
            raise ConfigError("durations do not cover the mel frames: need frames_per_base * sum(durations) == mel_lengths")
        batch_size, frames, _ = x1.shape
        mask = length_mask(lengths, frames)
        phones = batch.get("phones") if self.phone_embed is not None else None
        if phones is not None:  # some items train without phones, so codes alone still work
            with_phones = torch.rand(batch_size, device=device) >= c.phone_drop_prob
            phones = phones.to(device).long() * with_phones[:, None]
            codes = self._swap_in_ar_codes(codes, batch.get("ar_codes"), with_phones)
            codes = self._corrupt_codes(codes, with_phones)
        code_ids = self.frame_codes(codes, durations, frames)

        u = torch.rand(batch_size, device=device)
        t = 1 - torch.cos(u * torch.pi / 2)  # cosine-warped uniform
        z = torch.randn_like(x1)
        tt = t[:, None, None].to(x1.dtype)
        x_t = (1 - (1 - c.sigma) * tt) * z + tt * x1
        target = x1 - (1 - c.sigma) * z

        keep = torch.rand(batch_size, device=device) >= c.cond_drop_prob  # False: unconditional item
        ctx_mask = self._context_spans(lengths)[:, :frames] & keep[:, None] & mask
        pred, prior = self(x_t * mask[..., None].to(x1.dtype), t, code_ids, keep, x1, ctx_mask, lengths,
                           return_prior=True, phone_ids=phones)

        loss_mask = (mask & ~ctx_mask)[..., None].to(pred.dtype)
        err = (pred - target).abs() if c.loss == "l1" else (pred - target) ** 2
        flow = (err * loss_mask).sum() / (loss_mask.sum() * pred.shape[-1]).clamp(min=1.0)
        share = ctx_mask.sum().float() / mask.sum().clamp(min=1).float()
        out = {"loss": flow, "flow": flow.detach(), "context": share.detach()}
        if prior is not None and c.prior_loss_weight > 0:
            # Every valid frame of every item (dropping the condition is the transformer's business, not the
            # prior's): the encoder learns the speaker-independent mel of each code.
            valid = mask[..., None].to(prior.dtype)
            prior_l1 = ((prior - x1).abs() * valid).sum() / (valid.sum() * prior.shape[-1]).clamp(min=1.0)
            out["loss"] = flow + c.prior_loss_weight * prior_l1
            out["prior"] = prior_l1.detach()
        return out

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def sample(
        self,
        codes: torch.Tensor,
        durations: torch.Tensor,
        prompt_mel: torch.Tensor | None = None,
        prompt_codes: torch.Tensor | None = None,
        prompt_durations: torch.Tensor | None = None,
        steps: int = 15,
        cfg: float = 2.0,
        rescale_cfg: float = 0.75,
        seed: int | Sequence[int] | None = None,
        sway: float | None = None,
        code_lengths: torch.Tensor | None = None,
        prompt_lengths: torch.Tensor | None = None,
        phones: torch.Tensor | None = None,
        prompt_phones: torch.Tensor | None = None,
        phone_cfg: float = 0.0,
        phone_cfg_until: float = 1.0,
        cfg_until: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate the mel of new speech for `codes`, in the voice of the prompt.

        Args:
            codes: `[B, G]` (or `[G]`) FSQ codes of the speech to generate; durations: `[B, G]` 12.5 Hz frames per
                code (1..8; 0 on padding).
            prompt_mel: `[B, Fp, M]` normalised mel of the reference (as `MelSpectrogram` gives), or None for no
                prompt; prompt_codes / prompt_durations: `[B, Gp]` its codes and durations
                (`frames_per_base * sum(prompt_durations) == prompt_lengths`).
            steps: Euler steps; each evaluates the velocity at the midpoint time of its interval.
            cfg: guidance weight w: `v = v_c + w (v_c - v_u)`; 0 = the conditional path alone (one pass a step).
            rescale_cfg: mix of the std-rescaled guided velocity (`v_r = v * std(v_c) / std(v)`) with `v`.
            seed: int (every item's noise from its own generator seeded with it: an item's result does not depend
                on the rest of the batch), one seed per item, or None (global RNG).
            sway: sway-sampling coefficient for the time grid (F5-TTS; e.g. -1), None for uniform steps.
            code_lengths: `[B]` valid codes per item (default: those with duration > 0).
            prompt_lengths: `[B]` valid prompt mel frames (default: `frames_per_base * sum(prompt_durations)`).
            phones, prompt_phones: for a model with `num_phones`, the aligned phone ids at 25 Hz of the new speech
                (`[B, 2 * sum(durations)]`) and of the prompt (`[B, 2 * sum(prompt_durations)]`); either may be
                None (no phones there).
            phone_cfg: weight of phone guidance, `+ phone_cfg (v_c - v_np)` with `v_np` the velocity from the codes
                without the phones (one more pass a step); it pushes the speech towards the text's phones where the
                codes disagree with them. Needs `phones`.
            phone_cfg_until: phone guidance only on the steps that start before this time (0..1): the content is
                settled early in the flow, so later steps can skip its pass (a guidance interval, as in
                Kynkaanniemi et al. 2024).
            cfg_until: classifier-free guidance (`cfg`) only on the steps that start before this time (0..1), the
                same interval for the unconditional pass: the later steps run the conditional pass alone.
        Returns:
            (`[B, F, M]` mel of the new speech only, zero past each item's end; `[B]` its frame counts).
        """
        c = self.config
        fpb = c.mel.frames_per_base
        device, dtype = self.device, self.in_proj.weight.dtype
        if codes.dim() == 1:  # one unbatched item: add the batch axis to everything given
            codes, durations = codes[None], durations[None]
            prompt_mel = prompt_mel[None] if prompt_mel is not None and prompt_mel.dim() == 2 else prompt_mel
            prompt_codes = prompt_codes[None] if prompt_codes is not None and prompt_codes.dim() == 1 else prompt_codes
            if prompt_durations is not None and prompt_durations.dim() == 1:
                prompt_durations = prompt_durations[None]
        codes, durations = codes.to(device).long(), durations.to(device).long()
        if codes.shape != durations.shape:
            raise ConfigError(f"codes {tuple(codes.shape)} and durations {tuple(durations.shape)} differ in shape")
        if code_lengths is not None:
            durations = durations * length_mask(code_lengths.to(device), durations.shape[1]).long()
        if int(codes.min()) < 0 or int(codes.max()) >= c.codebook_size:
            raise ConfigError(f"codes must lie in 0..{c.codebook_size - 1}")
        if steps < 1:
            raise ConfigError(f"steps must be at least 1, got {steps}")
        batch = codes.shape[0]
        target_len = durations.sum(1) * fpb
        if int(target_len.min()) < 1:
            raise ConfigError("every item needs at least one code with a positive duration")
        target_ids = self.frame_codes(codes, durations)

        if prompt_mel is not None:
            if prompt_codes is None or prompt_durations is None:
                raise ConfigError("a prompt mel needs its prompt_codes and prompt_durations")
            p_codes, p_durs = prompt_codes.to(device).long(), prompt_durations.to(device).long()
            prompt_len = p_durs.sum(1) * fpb
            if prompt_lengths is not None and not torch.equal(prompt_lengths.to(device).long(), prompt_len):
                raise ConfigError("prompt_lengths differ from frames_per_base * sum(prompt_durations): the prompt mel "
                                  "and its codes must cover the same audio")
            if prompt_mel.shape[0] != batch or prompt_mel.shape[1] < int(prompt_len.max()) or prompt_mel.shape[-1] != c.mel.n_mels:
                raise ConfigError(f"prompt_mel must be [B, >= {int(prompt_len.max())}, {c.mel.n_mels}], got {tuple(prompt_mel.shape)}")
            prompt_ids = self.frame_codes(p_codes, p_durs)
            p_mel = prompt_mel.to(device, dtype)
        else:
            prompt_len = torch.zeros(batch, dtype=torch.long, device=device)
            prompt_ids = torch.zeros(batch, 0, dtype=torch.long, device=device)
            p_mel = torch.zeros(batch, 0, c.mel.n_mels, device=device, dtype=dtype)

        code_ids, lengths = concat_padded(prompt_ids, prompt_len, target_ids, target_len)
        frames = code_ids.shape[1]
        mask = length_mask(lengths, frames)
        ctx_mask = length_mask(prompt_len, frames)
        # The prompt comes first in every item, so its mel is the context as it stands (masked to its length).
        context = F.pad(p_mel, (0, 0, 0, max(0, frames - p_mel.shape[1])))[:, :frames]
        context = context * ctx_mask[..., None].to(dtype)

        x = item_noise(lengths, c.mel.n_mels, frames, seed, device, dtype)
        grid = time_grid(steps, sway, device)
        keep = torch.ones(batch, dtype=torch.bool, device=device)
        guided = cfg != 0
        phone_ids = None
        if self.phone_embed is not None and (phones is not None or prompt_phones is not None):
            sub = SUBFRAMES
            target_ph = torch.zeros(batch, sub * int(target_len.max()) // fpb, dtype=torch.long, device=device) if phones is None \
                else phones.to(device).long().reshape(batch, -1)
            prompt_ph = torch.zeros(batch, sub * int(prompt_len.max()) // fpb, dtype=torch.long, device=device) \
                if prompt_phones is None or prompt_mel is None else prompt_phones.to(device).long().reshape(batch, -1)
            if target_ph.shape[1] < sub * int(target_len.max()) // fpb or prompt_ph.shape[1] < sub * int(prompt_len.max()) // fpb:
                raise ConfigError("phones need 2 ids per 12.5 Hz frame: [B, 2 * sum(durations)] (and the same for the prompt)")
            phone_ids, _ = concat_padded(prompt_ph, prompt_len // fpb * sub, target_ph, target_len // fpb * sub)
        if phone_cfg < 0:
            raise ConfigError(f"phone_cfg must be >= 0, not {phone_cfg}")
        cond, _ = self.condition(code_ids, mask, phone_ids)  # the same at every step
        # The passes of a step, batched: conditional; unconditional (no codes, no context) for cfg; codes and
        # context without phones for phone_cfg. Each runs on the steps that start before its interval's end; in
        # order of that end, the passes a step runs are always the first few rows, a slice of the batch.
        passes = {"cond": (float("inf"), cond, keep, ctx_mask)}
        if guided:
            passes["uncond"] = (cfg_until, cond, ~keep, torch.zeros_like(ctx_mask))
        if phone_cfg != 0 and phone_ids is not None:
            passes["no_phones"] = (phone_cfg_until, self.condition(code_ids, mask, None)[0], keep, ctx_mask)
        names = sorted(passes, key=lambda name: -passes[name][0])  # stable: the conditional pass first
        until = [passes[name][0] for name in names]
        cond_all, keep_all, ctx_mask_all = (torch.cat([passes[name][j] for name in names]) for j in (1, 2, 3))
        context_all, code_ids_all, lengths_all = (torch.cat([v] * len(names)) for v in (context, code_ids, lengths))
        for i in range(steps):
            dt = grid[i + 1] - grid[i]
            n = sum(float(grid[i]) < end for end in until)
            rows = slice(0, batch * n)
            t_mid = ((grid[i] + grid[i + 1]) / 2).expand(batch * n)
            out = self(torch.cat([x] * n), t_mid, code_ids_all[rows], keep_all[rows], context_all[rows],
                       ctx_mask_all[rows], lengths_all[rows], code_cond=cond_all[rows]).split(batch)
            v_all = dict(zip(names, out))
            if n == 1:
                v = v_all["cond"]
            else:
                v = guided_velocity(v_all["cond"], v_all.get("uncond"), mask, cfg, rescale_cfg, v_all.get("no_phones"),
                                    phone_cfg)
            x = x + dt.to(dtype) * v
        mel = slice_padded(x, prompt_len, target_len)
        return mel, target_len
