"""Probe (issue 6): how well can a model with context read phones from the semantic codes alone?

The codec reads each token in isolation (its frozen recogniser head over the decoded code, two sub-frames a
token): code PER 0.40 at 8.3 Hz. This trains a small Conformer over the whole code sequence (codes unmerged to
25 Hz, FSQ-digit and duration embeddings) with CTC on the transcript's phones, and reports its PER on the test
split next to the codec's own reading.

    flexitts data tokens --manifest corpus/demo/train.jsonl --out runs/tok_train --thresholds 0.48,0.39,1.0 --no-align
    (and valid/test into runs/tok_valid, runs/tok_test)
    PYTHONPATH=. python scripts/code_reader_probe.py runs/tok_train runs/tok_valid runs/tok_test runs/code_reader
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codec.asr.conformer import Conformer
from codec.dynamic import unmerge
from flexitts.data.phone_alignment import greedy_onsets, spoken_positions
from flexitts.data.token_cache import TokenCache
from flexitts.evaluation.phones import phone_error_rate
from flexitts.text import PhonemeTable

LEVELS = [8, 8, 8, 8, 8]
SUB = 2  # 25 Hz sub-frames per 12.5 Hz base frame


class CodeReader(nn.Module):
    def __init__(self, vocab: int, dim: int = 192, layers: int = 4, heads: int = 4, ffn: int = 768, kernel: int = 15,
                 dropout: float = 0.1):
        super().__init__()
        self.digits = nn.Embedding(sum(LEVELS), dim)
        self.register_buffer("offsets", torch.tensor(np.cumsum([0] + LEVELS[:-1])), persistent=False)
        self.register_buffer("bases", torch.tensor([int(np.prod(LEVELS[i + 1:])) for i in range(len(LEVELS))]),
                             persistent=False)
        self.duration = nn.Embedding(9, dim)
        self.position = nn.Embedding(8 * SUB, dim)  # sub-frame index inside its token
        self.encoder = Conformer(dim, layers, heads, ffn, kernel, dropout)
        self.head = nn.Linear(dim, vocab)

    def forward(self, codes: torch.Tensor, durations: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """codes, durations `[B, G]` (0-padded), lengths `[B]` tokens -> CTC log-probs `[B, S, V]`, `[B]` sub-frames."""
        digit = (codes[..., None] // self.bases) % torch.tensor(LEVELS, device=codes.device)  # [B, G, 5]
        tok = self.digits(digit + self.offsets).sum(-2) + self.duration(durations.clamp(0, 8))  # [B, G, D]
        span = durations * SUB  # sub-frames a token covers
        total = span.sum(1)
        # each token repeated over its sub-frames, plus the sub-frame's place inside its token
        first = F.pad(span.cumsum(1), (1, 0))[:, :-1]  # [B, G] first sub-frame of each token
        place = torch.arange(int(total.max()), device=codes.device) - unmerge(first, span)  # [B, S]
        x = unmerge(tok, span) + self.position(place.clamp(0, 8 * SUB - 1))
        h = self.encoder(x, total)
        return F.log_softmax(self.head(h).float(), -1), total


def load(cache_path: str, table: PhonemeTable, settings: list[str], prefix: str | None = None):
    cache = TokenCache(cache_path)
    items = []
    symbols = list(table.symbols)
    for i in range(len(cache)):
        it = cache.item(i)
        if prefix and not it.speaker.startswith(prefix):
            continue
        ph = np.asarray(it.phonemes)
        target = ph[spoken_positions(ph, symbols)]
        for s in settings:
            if s in it.codes:
                items.append((it.codes[s], it.durations[s], target, it.speaker, s, it.id))
    return items


def collate(batch):
    g = max(len(b[0]) for b in batch)
    n = max(len(b[2]) for b in batch)
    codes = torch.zeros(len(batch), g, dtype=torch.long)
    durs = torch.zeros(len(batch), g, dtype=torch.long)
    tgt = torch.zeros(len(batch), n, dtype=torch.long)
    for i, b in enumerate(batch):
        codes[i, : len(b[0])] = torch.as_tensor(b[0])
        durs[i, : len(b[1])] = torch.as_tensor(b[1])
        tgt[i, : len(b[2])] = torch.as_tensor(b[2])
    return codes, durs, torch.tensor([len(b[0]) for b in batch]), tgt, torch.tensor([len(b[2]) for b in batch])


@torch.no_grad()
def evaluate(model: CodeReader, items, batch: int = 32) -> tuple[float, dict[str, float]]:
    model.eval()
    refs, hyps, spk = [], [], []
    for k in range(0, len(items), batch):
        chunk = items[k: k + batch]
        codes, durs, lens, _, _ = collate(chunk)
        lp, total = model(codes, durs, lens)
        for i, b in enumerate(chunk):
            refs.append(" ".join(map(str, b[2])))
            hyps.append(" ".join(map(str, greedy_onsets(lp[i, : int(total[i])])[0].tolist())))
            spk.append(b[3])
    model.train()
    per_spk = {}
    for s in sorted({x.split("-p")[0] for x in spk}):
        sel = [j for j, x in enumerate(spk) if x.split("-p")[0] == s]
        per_spk[s] = phone_error_rate([refs[j] for j in sel], [hyps[j] for j in sel])
    return phone_error_rate(refs, hyps), per_spk


def main(train_path: str, valid_path: str, test_path: str, out: str, minutes: float = 30.0, steps: int = 4000) -> None:
    torch.manual_seed(0)
    table = PhonemeTable.default()
    train = load(train_path, table, ["t0.48", "t0.39", "t1"])
    valid = load(valid_path, table, ["t0.48"], "mb-")
    tests = {s: load(test_path, table, [s], "mb-") for s in ("t0.48", "t0.39", "t1")}
    model = CodeReader(len(table.symbols))
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters; {len(train)} training sequences", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 200) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    rng = np.random.default_rng(0)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / "log.jsonl", "a")
    started = time.time()
    order = sorted(range(len(train)), key=lambda i: len(train[i][0]))
    buckets = [order[i: i + 32] for i in range(0, len(order), 32)]
    for step in range(steps):
        codes, durs, lens, tgt, tlen = collate([train[i] for i in buckets[rng.integers(len(buckets))]])
        lp, total = model(codes, durs, lens)
        loss = F.ctc_loss(lp.transpose(0, 1), tgt, total, tlen, blank=0, zero_infinity=True)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            per, per_spk = evaluate(model, valid)
            rec = {"step": step, "loss": float(loss.detach()), "valid_per": per, "minutes": (time.time() - started) / 60}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            torch.save(model.state_dict(), out_dir / "model.pt")
        if time.time() - started > minutes * 60:
            break
    torch.save(model.state_dict(), out_dir / "model.pt")
    result = {s: evaluate(model, items) for s, items in tests.items()}
    print(json.dumps(result, indent=1))
    (out_dir / "test.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:5], *(float(a) for a in sys.argv[5:6]))
