"""`FlexiCodec`: the dynamic-rate speech codec (FlexiCodec, Li et al. 2025) at FlexiTTS scale.

Encode (16 kHz):
    wav ─ frozen ASR extractor ─> semantic features [B, T, D_asr] at 12.5 Hz ─┐
    wav ─ acoustic CNN (stride 1280) ─> acoustic latents [B, T, D] ──────────┤
    scheduler (threshold / dp / entropy) on the semantic features ─> segment lengths [B, G]
    aggregate both streams per segment (query-token transformer or mean)
    semantic: ConvNeXt ─> FSQ [8]*5 (code 1) ─> ConvNeXt ─> decoded semantic [B, G, D]
    acoustic residual (acoustic - decoded semantic) ─> residual VQ (codes 2..Q)
Decode:
    decoded semantic + RVQ sum ─> unmerge by token lengths to 12.5 Hz ─> transformer ─> Vocos backbone + ISTFT

The ASR extractor is not part of this module's weights: the config names it (`config.asr`, a spec for
`codec.asr.load_asr_features`, loaded on first use) or an instance is attached with `set_asr_extractor`.
It stays frozen and in eval mode. The discriminator (GAN training) is also kept outside the weights.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from codec.aggregator import SegmentAggregator
from codec.bitrates import bitrate as _bitrate
from codec.common.errors import ConfigError
from codec.common.pretrained import PretrainedMixin, demo_bundle_dir
from codec.config import FlexiCodecConfig
from codec.decoder import ConvNeXtStack, WaveDecoder
from codec.dynamic import (dp_segments, entropy_ratios_for_rate, entropy_segments, merge, num_segments_for_rate,
                           segments_for_rate, threshold_segments, unmerge)
from codec.encoder import AcousticEncoder
from codec.framing import BASE_FRAME_RATE, SAMPLE_RATE, length_mask
from codec.inputs import prepare_waveforms
from codec.gan import WaveformGANMixin
from codec.losses import MultiScaleMelLoss
from codec.melt import melt_long_share, random_segments
from codec.quantizers import FSQ, ResidualVQ
from codec.subframe import SubframePhoneReader
from codec.tokens import CodecTokens
from codec.transformer import Transformer

SCHEDULERS = ("threshold", "dp", "entropy")
DEFAULT_ENTROPY_RATIOS = (0.4, 0.3, 0.3)  # TFC's training mix: 8.125 Hz nominal


@dataclass
class QuantizedTokens:
    """Everything the quantisation stage produces for a batch of segments (`[B, G, ...]`)."""

    semantic_codes: torch.Tensor  # [B, G]
    acoustic_codes: torch.Tensor  # [B, N, G] (N may be 0)
    decoded_semantic: torch.Tensor  # [B, G, latent]
    latent: torch.Tensor  # [B, G, latent]: decoded semantic + RVQ output
    commitment: torch.Tensor  # scalar
    codebook: torch.Tensor  # scalar


def _mask_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `[B, G, D]` over the True positions of a `[B, G]` mask."""
    w = mask[..., None].to(values.dtype)
    return (values * w).sum() / (w.sum() * values.shape[-1]).clamp(min=1.0)


class FlexiCodec(WaveformGANMixin, nn.Module, PretrainedMixin):
    """Dynamic-rate dual-stream codec: `encode(wav) -> CodecTokens`, `decode(tokens) -> wav`."""

    config_class = FlexiCodecConfig
    bundle_name = "codec"

    def __init__(self, config: FlexiCodecConfig, asr_extractor: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.sample_rate = SAMPLE_RATE
        c = config
        self.encoder = AcousticEncoder(c.encoder_channels, c.encoder_max_channels, c.encoder_strides,
                                       c.encoder_dilations, c.latent_dim)
        agg = dict(mode=c.aggregator, model_dim=c.aggregator_dim, layers=c.aggregator_layers,
                   heads=c.aggregator_heads, ffn=c.aggregator_ffn, window=c.aggregator_window)
        self.semantic_aggregator = SegmentAggregator(c.asr_dim, **agg)
        self.acoustic_aggregator = SegmentAggregator(c.latent_dim, **agg)
        self.semantic_encoder = ConvNeXtStack(c.asr_dim, c.semantic_dim, c.semantic_layers, c.semantic_ffn)
        self.fsq = FSQ(c.semantic_dim, c.fsq_levels)
        self.semantic_decoder = ConvNeXtStack(c.semantic_dim, c.semantic_dim, c.semantic_layers, c.semantic_ffn,
                                              out_dim=c.latent_dim)
        # The decoded semantic embedding starts at zero, so that at initialisation the acoustic residual is the
        # acoustic latent itself (not swamped by a random semantic projection) and both streams reach the decoder.
        nn.init.zeros_(self.semantic_decoder.proj_out.weight)
        nn.init.zeros_(self.semantic_decoder.proj_out.bias)
        self.rvq = ResidualVQ(c.latent_dim, c.num_codebooks, c.codebook_size, c.codebook_dim)
        self.decoder_transformer = Transformer(c.latent_dim, c.decoder_dim, c.decoder_layers, c.decoder_heads,
                                               c.decoder_ffn, out_dim=c.latent_dim, window=c.decoder_window)
        self.wave_decoder = WaveDecoder(c.latent_dim, c.vocos_dim, c.vocos_ffn, c.vocos_layers, c.istft_hop, c.istft_n_fft)
        # Feature alignment: the decoded semantic embedding, projected, should predict the segment-mean ASR features.
        self.align_proj = nn.Linear(c.latent_dim, c.asr_dim)
        self.subframe_reader = (SubframePhoneReader(c.latent_dim, c.asr_dim, c.subframe_hidden, c.max_len, c.phone_subframes)
                                if c.phone_subframes else None)
        self.mel_loss = MultiScaleMelLoss(SAMPLE_RATE, c.mel_windows, c.mel_bins)  # no weights, no checkpoint entries
        # Kept out of the module tree (and so out of state_dict): not this model's weights.
        self.__dict__["_asr"] = None
        self._init_gan()
        self.__dict__["_checkpoint_dir"] = None
        self._train_calls = 0
        if asr_extractor is not None:
            self.set_asr_extractor(asr_extractor)

    # ------------------------------------------------------------------ plumbing
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # `.to()` / `.half()` also move the discriminator (WaveformGANMixin._apply). The ASR extractor only follows
    # the device (in `asr_extractor`): it stays in float32, as FlexiCodec keeps its ASR out of half precision.
    def set_asr_extractor(self, extractor: nn.Module) -> None:
        """Attach a frozen `ASRFeatureExtractor` (its `feature_dim` must equal `config.asr_dim`)."""
        dim = getattr(extractor, "feature_dim", None)
        if dim != self.config.asr_dim:
            raise ConfigError(f"the ASR extractor gives {dim}-d features but the codec expects asr_dim={self.config.asr_dim}")
        extractor.requires_grad_(False)
        extractor.eval()
        self.__dict__["_asr"] = extractor.to(self.device)

    @property
    def asr_extractor(self) -> nn.Module:
        """The semantic feature extractor; loaded from `config.asr` on first use."""
        if self.__dict__["_asr"] is None:
            from codec.asr import load_asr_features

            self.set_asr_extractor(load_asr_features(self._resolve_asr_spec(), device=self.device))  # type: ignore[arg-type]
        extractor = self.__dict__["_asr"]
        first = next(extractor.parameters(), None)
        if first is not None and first.device != self.device:
            extractor.to(self.device)
        return extractor

    def _resolve_asr_spec(self) -> str:
        """`config.asr`, with a relative path taken relative to the checkpoint folder when it exists there."""
        spec = self.config.asr
        folder = self.__dict__.get("_checkpoint_dir")
        prefix, _, rest = spec.partition(":") if spec.startswith(("ctc:", "whisper:")) else ("", "", spec)
        if folder is not None and rest and not os.path.isabs(rest) and "://" not in rest and (Path(folder) / rest).exists():
            rest = str(Path(folder) / rest)
            return f"{prefix}:{rest}" if prefix else rest
        return spec

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                        asr_extractor: nn.Module | None = None) -> "FlexiCodec":  # type: ignore[override]
        """Load a codec folder (path, hf://, https://), or the bundled demo codec when `path` is None.

        `asr_extractor` attaches a feature extractor instead of loading the one `config.asr` names.
        """
        if path is None:
            model = super().from_pretrained(None, device=device)
            folder = demo_bundle_dir() / cls.bundle_name
        else:
            from codec.common.checkpoints import resolve_checkpoint

            folder = resolve_checkpoint(path, what=f"{cls.__name__} checkpoint")
            folder = folder.parent if folder.is_file() else folder
            model = super().from_pretrained(folder, device=device)
        model.__dict__["_checkpoint_dir"] = folder
        if asr_extractor is not None:
            model.set_asr_extractor(asr_extractor)
        return model  # type: ignore[return-value]

    def num_parameters(self) -> int:
        """Parameters saved in the checkpoint (the ASR extractor and discriminator excluded)."""
        return sum(p.numel() for p in self.parameters())

    def bitrate(self, num_quantizers: int, frame_rate: float, include_duration: bool = True) -> float:
        """Bits per second at `frame_rate` tokens per second with this codec's codebook sizes."""
        c = self.config
        return _bitrate(num_quantizers, frame_rate, c.codebook_size, c.semantic_codebook_size, c.max_len, include_duration)

    # ------------------------------------------------------------------ stages
    def analyse(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both streams of a padded 16 kHz batch: (semantic `[B, T, D_asr]`, acoustic `[B, T, latent]`, frames `[B]`)."""
        feats, frames = self.asr_extractor.extract(wav.float(), wav_lengths)
        latents, frames_ac = self.encoder(wav, wav_lengths)
        if feats.shape[1] != latents.shape[1] or not torch.equal(frames.to(frames_ac.device), frames_ac):
            raise ConfigError("the ASR extractor and the acoustic encoder disagree on the 12.5 Hz frame count")
        return feats.to(latents.dtype), latents, frames_ac

    def schedule(self, features: torch.Tensor, frames: torch.Tensor, scheduler: str = "threshold",
                 merging_threshold: float | torch.Tensor | None = None, frame_rate: float | None = None,
                 wav: torch.Tensor | None = None, wav_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Segment lengths `[B, G]` from semantic features `[B, T, D]` (or, for "entropy", the 16 kHz waveform).

        - threshold: `merging_threshold` tau, or a per-utterance tau found by bisection for `frame_rate`;
        - dp: exactly `G = round(seconds * frame_rate)` segments, or, given a threshold, as many segments as the
          threshold rule would make (the DP then places them optimally);
        - entropy: TFC ratios for `frame_rate` (default ratios 0.4 / 0.3 / 0.3); a threshold does not apply.
        With neither a threshold nor a rate, tau = `config.default_threshold`.
        """
        max_len = self.config.max_len
        if merging_threshold is not None and frame_rate is not None:
            raise ConfigError("give merging_threshold or frame_rate, not both")
        if frame_rate is not None and not (float(frame_rate) > 0):
            raise ConfigError(f"frame_rate must be a positive number of tokens per second, got {frame_rate}")
        tau = self.config.default_threshold if merging_threshold is None else merging_threshold
        try:
            if scheduler == "threshold":
                if frame_rate is not None:
                    return segments_for_rate(features, float(frame_rate), "threshold", max_len, lengths=frames)
                return threshold_segments(features, tau, max_len, lengths=frames)
            if scheduler == "dp":
                if frame_rate is not None:
                    counts = num_segments_for_rate(frames, float(frame_rate), max_len)
                else:
                    counts = (threshold_segments(features, tau, max_len, lengths=frames) > 0).sum(dim=1)
                return dp_segments(features, counts, max_len, lengths=frames)
            if scheduler == "entropy":
                if merging_threshold is not None:
                    raise ConfigError("entropy scheduling takes a frame_rate, not a merging_threshold")
                if wav is None or max_len < 4:
                    raise ConfigError("entropy scheduling needs the waveform and max_len >= 4")
                ratios = DEFAULT_ENTROPY_RATIOS if frame_rate is None else entropy_ratios_for_rate(float(frame_rate))
                return entropy_segments(wav, SAMPLE_RATE, ratios, num_frames=frames, lengths=wav_lengths).to(frames.device)
        except ValueError as error:  # the schedulers' own argument checks
            raise ConfigError(" ".join(str(error).split())) from None
        raise ConfigError(f"scheduler must be one of {SCHEDULERS}, not '{scheduler}'")

    def quantize(self, features: torch.Tensor, latents: torch.Tensor, seg: torch.Tensor,
                 num_acoustic: int | torch.Tensor) -> QuantizedTokens:
        """Aggregate both streams per segment and quantise them.

        Args:
            features: `[B, T, D_asr]` semantic features; latents: `[B, T, latent]` acoustic latents.
            seg: `[B, G]` segment lengths; num_acoustic: acoustic codebooks to use (int, or `[B]` per item).
        """
        mask = seg > 0
        semantic = self.semantic_aggregator(features, seg)
        acoustic = self.acoustic_aggregator(latents, seg)
        semantic_q, semantic_codes = self.fsq(self.semantic_encoder(semantic, mask))
        decoded = self.semantic_decoder(semantic_q, mask)
        residual = (acoustic - decoded) * mask[..., None].to(acoustic.dtype)
        acoustic_q, acoustic_codes, commitment, codebook = self.rvq(residual, mask, num_acoustic)
        return QuantizedTokens(
            semantic_codes=torch.where(mask, semantic_codes, torch.zeros_like(semantic_codes)),
            acoustic_codes=acoustic_codes, decoded_semantic=decoded, latent=decoded + acoustic_q,
            commitment=commitment, codebook=codebook,
        )

    def decode_latent(self, latent: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """Merged latents `[B, G, latent]` -> waveform `[B, T * 1280]` (unmerge, transformer, Vocos + ISTFT)."""
        frames = seg.sum(dim=1)
        x = unmerge(latent, seg)  # [B, T, latent]
        x = self.decoder_transformer(x, length_mask(frames, x.shape[1]))
        return self.wave_decoder(x, frames)

    # ------------------------------------------------------------------ public inference API
    def _num_acoustic(self, num_quantizers: int | None) -> int:
        nq = self.config.max_quantizers if num_quantizers is None else num_quantizers
        if isinstance(nq, bool) or not isinstance(nq, int) or not 1 <= nq <= self.config.max_quantizers:
            raise ConfigError(f"num_quantizers must be an integer in 1..{self.config.max_quantizers}, got {num_quantizers!r}")
        return nq - 1

    @torch.no_grad()
    def encode(self, wav: Any, sample_rate: int | None = None, num_quantizers: int | None = None,
               merging_threshold: float | torch.Tensor | None = None, frame_rate: float | None = None,
               scheduler: str = "threshold", wav_lengths: Any = None) -> CodecTokens:
        """Encode audio into dynamic-rate tokens.

        Args:
            wav: `[S]` mono or `[C, S]` / `[S, C]` multi-channel samples (NumPy or torch), or a padded batch
                `[B, S]` together with `wav_lengths`.
            sample_rate: Hz of `wav` (default 16000); other rates are resampled.
            num_quantizers: codes per token, the FSQ included (1..1 + num_codebooks; default all).
            merging_threshold: tau of the threshold rule (1.0: no merging, 12.5 Hz); or
            frame_rate: target average tokens per second instead.
            scheduler: "threshold" | "dp" | "entropy" (see `schedule`).
            wav_lengths: `[B]` valid samples per item of a padded batch.
        Returns:
            `CodecTokens` (`semantic_codes [B, G]`, `acoustic_codes [B, Q-1, G]` or None, `token_lengths [B, G]`,
            `num_tokens [B]`, `num_samples [B]` at 16 kHz).
        """
        return self.encode_settings(wav, [(merging_threshold, frame_rate)], sample_rate, num_quantizers, scheduler,
                                    wav_lengths)[0]

    def encode_settings(self, wav: Any, settings: list[tuple[float | torch.Tensor | None, float | None]],
                        sample_rate: int | None = None, num_quantizers: int | None = None,
                        scheduler: str = "threshold", wav_lengths: Any = None) -> list[CodecTokens]:
        """`encode` under several (merging_threshold, frame_rate) settings, analysing the audio once: one
        `CodecTokens` per setting (what `encode` gives for it)."""
        num_acoustic = self._num_acoustic(num_quantizers)
        if scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler must be one of {SCHEDULERS}, not '{scheduler}'")
        x, lengths = prepare_waveforms(wav, sample_rate, wav_lengths)
        param = next(self.parameters())
        x, lengths = x.to(param.device, param.dtype), lengths.to(param.device)
        features, latents, frames = self.analyse(x, lengths)
        results = []
        for merging_threshold, frame_rate in settings:
            seg = self.schedule(features, frames, scheduler, merging_threshold, frame_rate, wav=x, wav_lengths=lengths)
            q = self.quantize(features, latents, seg, num_acoustic)
            results.append(CodecTokens(
                semantic_codes=q.semantic_codes,
                acoustic_codes=q.acoustic_codes if num_acoustic > 0 else None,
                token_lengths=seg,
                num_tokens=(seg > 0).sum(dim=1),
                num_samples=lengths,
            ))
        return results

    def latent_from_codes(self, tokens: CodecTokens) -> torch.Tensor:
        """Merged decoder input `[B, G, latent]`: decoded semantic embedding + the acoustic codebooks' sum."""
        mask = tokens.token_lengths > 0
        latent = self.semantic_decoder(self.fsq.decode(tokens.semantic_codes), mask)
        if tokens.acoustic_codes is not None:
            latent = latent + self.rvq.decode(tokens.acoustic_codes, mask)
        return latent

    @torch.no_grad()
    def decode(self, tokens: CodecTokens) -> torch.Tensor:
        """Tokens -> waveform `[B, S]` at `sample_rate` (16 kHz), zero past each item's end.

        `S` is the longest item's `num_samples` when the tokens carry it, else its `frames * 1280`.
        """
        c = self.config
        tokens.validate(c.semantic_codebook_size, c.codebook_size, c.max_len, c.max_quantizers)
        tokens = tokens.to(self.device)
        wav = self.decode_latent(self.latent_from_codes(tokens), tokens.token_lengths)
        if tokens.num_samples is not None:
            wav = wav[:, : int(tokens.num_samples.max())]
            wav = wav * length_mask(tokens.num_samples, wav.shape[1]).to(wav.dtype)
        return wav.float()

    @torch.no_grad()
    def semantic_features(self, codes: torch.Tensor, token_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Continuous features of semantic codes: the decoded semantic embedding (what the feature-alignment
        loss ties to the ASR features).

        Args:
            codes: `[B, G]` FSQ codes (or `[G]`).
            token_lengths: optional `[B, G]` (or `[G]`) lengths: the features are then unmerged to 12.5 Hz.
        Returns:
            `[B, G, latent_dim]`, or `[B, T, latent_dim]` with `token_lengths` (no batch axis for `[G]` input).
        """
        single = codes.dim() == 1
        codes = (codes[None] if single else codes).to(self.device).long()
        if int(codes.min()) < 0 or int(codes.max()) >= self.config.semantic_codebook_size:
            raise ConfigError(f"semantic codes must lie in 0..{self.config.semantic_codebook_size - 1}")
        if token_lengths is not None:
            token_lengths = (token_lengths[None] if single else token_lengths).to(self.device).long()
            mask = token_lengths > 0
        else:
            mask = torch.ones_like(codes, dtype=torch.bool)
        out = self.semantic_decoder(self.fsq.decode(codes), mask)
        if token_lengths is not None:
            out = unmerge(out, token_lengths)
        return out[0] if single else out

    # ------------------------------------------------------------------ training
    def phone_distillation(self, aligned: torch.Tensor, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean KL(p(phones | features) || p(phones | aligned)) over valid tokens, both read by the CTC
        recogniser's frozen phone head.

        Args:
            aligned: `[B, G, D_asr]` the aligned semantic embedding (`align_proj` of the decoded FSQ codes).
            features: `[B, G, D_asr]` the segment-mean ASR features (the target, no gradient).
            mask: `[B, G]` valid tokens.
        """
        return self._head_kl(features, aligned, mask)

    def _head_kl(self, target: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over the True positions of `mask [B, N]` of KL(head(target) || head(pred)), both `[B, N, D_asr]`
        read by the recogniser's frozen phone head."""
        weight, bias = (t.to(pred.dtype) for t in self._phone_head(pred.shape[-1]))
        target_lp = F.log_softmax(F.linear(target.to(pred.dtype), weight, bias).float(), dim=-1)
        pred_lp = F.log_softmax(F.linear(pred, weight, bias).float(), dim=-1)
        return _mask_mean((target_lp.exp() * (target_lp - pred_lp)).sum(-1, keepdim=True), mask)

    def _phone_head(self, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The CTC recogniser's phone head (weight, bias), detached: the codec reads codes with it, never trains it."""
        head = getattr(self.asr_extractor, "head", None)
        if not isinstance(head, nn.Linear) or head.in_features != dim:
            raise ConfigError("phone reading needs the bundled CTC phone recogniser as the ASR (asr: ctc)")
        return head.weight.detach(), head.bias.detach()

    def subframe_distillation(self, decoded: torch.Tensor, seg: torch.Tensor, hidden: torch.Tensor,
                              hidden_lengths: torch.Tensor) -> torch.Tensor:
        """Mean KL(p(phones | recogniser frame) || p(phones | sub-frame reading of the codes)) over the
        recogniser's valid frames.

        Args:
            decoded: `[B, G, latent]` decoded semantic tokens; seg: `[B, G]` token lengths.
            hidden: `[B, T', D_asr]` the recogniser's last hidden layer at its own rate (`phone_subframes`
                frames per 12.5 Hz frame); hidden_lengths: `[B]`.
        """
        read, valid = self.subframe_reader(decoded, seg)
        steps = min(read.shape[1], hidden.shape[1])
        valid = valid[:, :steps] & length_mask(hidden_lengths, hidden.shape[1])[:, :steps]
        return self._head_kl(hidden[:, :steps], read[:, :steps], valid)

    @torch.no_grad()
    def code_phone_logits(self, codes: torch.Tensor, token_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The CTC recogniser's phone scores read straight from semantic codes: through the sub-frame reader when
        this codec has one, else `align_proj` of each 12.5 Hz frame repeated to the recogniser's rate.

        Args:
            codes: `[B, G]` FSQ codes; token_lengths: `[B, G]` their lengths in 12.5 Hz frames (0 = padding).
        Returns:
            (logits `[B, T', P]` at the recogniser's frame rate, valid frames `[B]`).
        """
        codes, seg = codes.to(self.device).long(), token_lengths.to(self.device).long()
        decoded = self.semantic_decoder(self.fsq.decode(codes), seg > 0)
        weight, bias = self._phone_head(self.config.asr_dim)
        if self.subframe_reader is not None:
            read, valid = self.subframe_reader(decoded, seg)
            return F.linear(read, weight.to(read.dtype), bias.to(read.dtype)).float(), valid.sum(dim=1)
        return self.asr_extractor.feature_logits(self.align_proj(unmerge(decoded, seg)), seg.sum(dim=1))

    @torch.no_grad()
    def code_phone_table(self, chunk: int = 4096) -> torch.Tensor:
        """What each semantic code says on its own: `[P, V]`, column c the phone distribution (the recogniser's ids;
        the CTC blank gets 0) of code c read as a one-frame token, its most confident sub-frame per phone,
        renormalised. Phone-guided AR decoding uses it (`ar.generate`'s `phone_guide`)."""
        size = self.fsq.codebook_size
        blank = int(getattr(getattr(self.asr_extractor, "config", None), "blank_id", 0))
        columns = []
        for start in range(0, size, chunk):
            codes = torch.arange(start, min(size, start + chunk), device=self.device)[:, None]
            logits, _ = self.code_phone_logits(codes, torch.ones_like(codes))  # [n, T', P]
            logits[..., blank] = float("-inf")
            probs = torch.softmax(logits.float(), dim=-1).amax(dim=1)  # [n, P]
            columns.append(probs / probs.sum(dim=-1, keepdim=True))
        return torch.cat(columns).t().contiguous()

    def read_code_phones(self, codes: torch.Tensor, token_lengths: torch.Tensor) -> list[int]:
        """Greedy CTC reading of `code_phone_logits` for one sequence: codes `[G]`, token_lengths `[G]`."""
        logits, frames = self.code_phone_logits(codes[None], token_lengths[None])
        return self.asr_extractor.greedy_ids(logits, frames)[0]

    def training_segments(self, features: torch.Tensor, frames: torch.Tensor, step: int) -> torch.Tensor:
        """Segment lengths `[B, G]` for one training step, by `config.train_segmentation`:

        - threshold: tau ~ U(tau_range), one per step (FlexiCodec);
        - melt: `random_segments` with a long-segment share ramping up over `melt_steps` (CodecSlime Melt);
        - dp: DP-optimal segmentation at a rate ~ U(dp_rate_range) per item, some items unmerged (Cool).
        """
        c = self.config
        if c.train_segmentation == "threshold":
            lo, hi = c.tau_range
            tau = lo + (hi - lo) * float(torch.rand(()))
            return threshold_segments(features, tau, c.max_len, lengths=frames)
        if c.train_segmentation == "melt":
            share = melt_long_share(step, c.melt_steps, c.melt_long_share)
            return random_segments(frames, share, c.max_len, unmerged_prob=c.melt_unmerged_prob)
        lo, hi = c.dp_rate_range
        rate = lo + (hi - lo) * torch.rand(frames.shape[0], device=frames.device, dtype=torch.float64)
        counts = torch.floor(frames.double() * rate / BASE_FRAME_RATE + 0.5).long()
        counts = torch.minimum(torch.maximum(counts, (frames + c.max_len - 1) // c.max_len), frames)
        unmerged = torch.rand(frames.shape[0], device=frames.device) < c.cool_unmerged_prob
        counts = torch.where(unmerged, frames, counts)
        return dp_segments(features, counts, c.max_len, lengths=frames)

    def _dropout_counts(self, batch: int, device: torch.device) -> torch.Tensor:
        """`[B]` acoustic codebooks per item: all; a random 1..N for a `quantizer_dropout` share; 0 (semantic
        stream only) for a `bypass_prob` share (FlexiCodec's bypass)."""
        n = self.config.num_codebooks
        counts = torch.full((batch,), n, dtype=torch.long, device=device)
        if n == 0:
            return counts
        drop = torch.rand(batch, device=device) < self.config.quantizer_dropout
        counts = torch.where(drop, torch.randint(1, n + 1, (batch,), device=device), counts)
        bypass = torch.rand(batch, device=device) < self.config.bypass_prob
        return torch.where(bypass, torch.zeros_like(counts), counts)

    def training_step(self, batch: dict[str, torch.Tensor], step: int | None = None,
                      return_audio: bool = False) -> dict[str, torch.Tensor]:
        """Generator losses of one batch.

        Args:
            batch: `wav [B, S]` at 16 kHz and `wav_lengths [B]`; optionally precomputed `asr_features [B, T, D]`
                with `asr_lengths [B]`.
            step: training step (drives the Melt ramp and `gan_start_step`); default: `batch["step"]` (the
                Trainer's optimiser step, so schedules survive a resume), else this module's own count of calls.
            return_audio: also return the generated waveform under "audio" (always done while the GAN is on,
                for `discriminator_step`).
        Returns:
            `loss` (weighted total) and its detached parts: `mel`, `commit`, `codebook`, `align`, with GAN
            `adv` and `fm`, and `frame_rate` (average tokens per second of the batch).
        """
        c = self.config
        if step is None:
            step = int(batch.get("step", self._train_calls))  # the Trainer puts its optimiser step in the batch
        self._train_calls += 1
        wav = batch["wav"].to(self.device)
        lengths = batch.get("wav_lengths")
        lengths = torch.full((wav.shape[0],), wav.shape[1], device=wav.device) if lengths is None else lengths.to(wav.device).long()
        wav = wav * length_mask(lengths, wav.shape[1]).to(wav.dtype)
        hidden = hidden_lengths = None
        if "asr_features" in batch:
            if c.lambda_subphone > 0:
                raise ConfigError("lambda_subphone needs the recogniser's frames: train on audio, not on precomputed asr_features")
            features = batch["asr_features"].to(wav.device, wav.dtype)
            frames = batch["asr_lengths"].to(wav.device).long()
        elif c.lambda_subphone > 0:
            features, frames, hidden, hidden_lengths = self.asr_extractor.extract_with_hidden(wav.float(), lengths)
        else:
            features, frames = self.asr_extractor.extract(wav.float(), lengths)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not c.freeze_encoder):
            latents, frames_ac = self.encoder(wav, lengths)
        if not torch.equal(frames, frames_ac):
            raise ConfigError("the semantic features do not cover the audio's 12.5 Hz frames")
        features = features[:, : latents.shape[1]].to(latents.dtype)

        seg = self.training_segments(features, frames, step)
        q = self.quantize(features, latents, seg, self._dropout_counts(wav.shape[0], wav.device))
        y_hat = self.decode_latent(q.latent, seg)
        y_hat = y_hat * length_mask(lengths, y_hat.shape[1]).to(y_hat.dtype)
        target = F.pad(wav, (0, max(0, y_hat.shape[1] - wav.shape[1])))[:, : y_hat.shape[1]]

        mask = seg > 0
        mel = self.mel_loss(y_hat, target, lengths)
        aligned, merged_features = self.align_proj(q.decoded_semantic), merge(features, seg).detach()
        align = _mask_mean(F.mse_loss(aligned, merged_features, reduction="none"), mask)
        loss = c.lambda_mel * mel + c.lambda_commit * q.commitment + c.lambda_codebook * q.codebook + c.lambda_align * align
        out = {"mel": mel.detach(), "commit": q.commitment.detach(), "codebook": q.codebook.detach(),
               "align": align.detach(),
               "frame_rate": (mask.sum() * BASE_FRAME_RATE / frames.sum().clamp(min=1)).detach().float()}
        if c.lambda_phone > 0:
            phone = self.phone_distillation(aligned, merged_features, mask)
            loss = loss + c.lambda_phone * phone
            out["phone"] = phone.detach()
        if c.lambda_subphone > 0:
            subphone = self.subframe_distillation(q.decoded_semantic, seg, hidden, hidden_lengths)
            loss = loss + c.lambda_subphone * subphone
            out["subphone"] = subphone.detach()
        return self.generator_outputs(loss, out, y_hat, target, step, return_audio)
