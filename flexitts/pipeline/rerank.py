"""Content reranking of AR samples: of several candidate token sequences for one text, keep the one whose
semantic codes best explain the text's phones.

The score is the CTC negative log-likelihood of the text's phones under the phone posteriors that the bundled
recogniser's CTC head reads from the codes (the codec's `align_proj` of their decoded embedding, unmerged to
12.5 Hz and repeated to the recogniser's frame rate), per phone. The codec was trained to make exactly these
posteriors match the speech's (its phone-distillation loss), so the score rates a candidate's content without
running the NAR or the vocoder: a few milliseconds per candidate against seconds of rendering.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from codec.framing import length_mask


class ContentScorer:
    """Per-phone CTC loss of target phone ids given semantic codes with durations (lower = closer content).

    Args:
        codec: a `FlexiCodec` (for `semantic_features` and `align_proj`).
        recognizer: the `CTCPhoneRecognizer` whose head the codec's phone distillation used.
    """

    def __init__(self, codec: Any, recognizer: Any):
        self.codec, self.recognizer = codec, recognizer
        self.repeat = max(1, round(recognizer.config.frame_rate / 12.5))

    @torch.no_grad()
    def score(self, codes: Sequence[torch.Tensor], durations: Sequence[torch.Tensor],
              phones: Sequence[Sequence[int]]) -> torch.Tensor:
        """`[N]` scores for N candidates: codes `[G_n]`, durations `[G_n]` (12.5 Hz frames each) and the phone
        ids `[L_n]` they should say (the recogniser's table, no blank). A candidate too short for its phones
        under CTC scores +inf."""
        device = self.codec.device
        code_batch = pad_sequence([c.long() for c in codes], batch_first=True).to(device)
        dur_batch = pad_sequence([d.long() for d in durations], batch_first=True).to(device)
        features = self.codec.semantic_features(code_batch, dur_batch)  # [N, T, latent]
        frames = dur_batch.sum(1)
        head = self.recognizer.head
        aligned = self.codec.align_proj(features.to(self.codec.align_proj.weight.dtype))
        logits = head(aligned.to(head.weight.dtype)).float()
        logits = logits.repeat_interleave(self.repeat, dim=1)  # [N, T * repeat, P]
        log_probs = F.log_softmax(logits, dim=-1) * length_mask(frames * self.repeat, logits.shape[1])[..., None]
        targets = [torch.as_tensor(list(p), dtype=torch.long) for p in phones]
        target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
        flat = torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long)
        loss = F.ctc_loss(log_probs.transpose(0, 1), flat, (frames * self.repeat).cpu(), target_lengths,
                          blank=0, reduction="none", zero_infinity=False)
        return loss.cpu() / target_lengths.clamp(min=1).float()
