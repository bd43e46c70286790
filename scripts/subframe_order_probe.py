"""Probe (issue 6): does pooling the recogniser's 25 Hz features to 12.5 Hz cap what the semantic codes can say?

The codec's semantic stream starts from the recogniser's last hidden layer averaged over each 80 ms frame (two
25 Hz frames). An average is symmetric, so the order of the two sub-frames' phones is gone before any
quantiser sees it. This trains the codec's own semantic path at 12.5 Hz (ConvNeXt encoder, FSQ [8]*5,
ConvNeXt decoder, sub-frame reader, the recogniser's frozen head; no merging) with only the sub-frame
distillation loss, from two inputs:

- `pooled`: the 12.5 Hz average (what the codec is given now);
- `stacked`: the two 25 Hz frames side by side (288-d), which keeps their order;

each with and without the FSQ, and scores greedy phone readings against the recogniser's own reading of the test
split's mbrola utterances (the codec evaluation's "code PER"). The shipped codec's reading of its tau=1 codes is
scored on the same utterances for comparison.

    PYTHONPATH=. python scripts/subframe_order_probe.py extract runs/order_probe [more|big]
    PYTHONPATH=. python scripts/subframe_order_probe.py train runs/order_probe pooled fsq 12 [more|big]
        [--width 128 --layers 2 --noise P --cosine --tag NAME]   (KIND QUANT MINUTES; the options: reports/semantic_code_probe.md)
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codec import FlexiCodec
from codec.decoder import ConvNeXtStack
from codec.framing import length_mask
from codec.quantizers import FSQ
from codec.subframe import SubframePhoneReader
from flexitts.audio import load_audio
from flexitts.data.manifest import read_manifest
from flexitts.evaluation.phones import phone_error_rate

CORPUS = Path("corpus/demo")
TRAIN_HOURS = 2.0


@torch.no_grad()
def extract(out: str, extra: str = "") -> None:
    """Recogniser hidden layers (25 Hz) and greedy readings for ~2 h of training and the mb- test utterances;
    `extra="more"`: ~2 h of the other voices instead (`corpus/extra`, `corpus/accented`: 39 speakers) as `more.pt`;
    `extra="big"`: the demo voices' 9 h training split of `corpus/big` (more sentences) as `big.pt`."""
    torch.set_num_threads(2)
    codec = FlexiCodec.from_pretrained(None).float().eval()
    asr = codec.asr_extractor.float().eval()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in ([extra] if extra else ["train", "test"]):
        hours = TRAIN_HOURS
        if split == "more":
            rows = [(r, root) for root in (Path("corpus/extra"), Path("corpus/accented"))
                    for r in read_manifest(root / "train.jsonl")]
            rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
        elif split == "big":
            rows, hours = [(r, Path("corpus/big")) for r in read_manifest(Path("corpus/big/train.jsonl"))], 9.5
        else:
            rows = [(r, CORPUS) for r in read_manifest(CORPUS / f"{split}.jsonl")]
        if split == "test":
            rows = [(r, root) for r, root in rows if r.speaker.startswith("mb-")]
        items, seconds = [], 0.0
        for r, root in rows:
            wav, _ = load_audio(r.resolve(root), target_rate=16000)
            pooled, num_out, hidden, lengths = asr.extract_with_hidden(wav[None])
            t = int(num_out[0])
            h = hidden[0, : int(lengths[0])]
            h = F.pad(h, (0, 0, 0, max(0, 2 * t - h.shape[0])))[: 2 * t]  # exactly 2 sub-frames a frame
            ref = asr.greedy_ids(asr.head(h)[None].float(), torch.tensor([2 * t]))[0]
            item = {"hidden": h.half(), "pooled": pooled[0, :t].half(), "ref": ref, "speaker": r.speaker}
            if split == "test":
                tok = codec.encode(wav, merging_threshold=1.0, num_quantizers=1)
                item["codec_read"] = codec.read_code_phones(tok.semantic_codes[0], tok.token_lengths[0])
            items.append(item)
            seconds += wav.shape[-1] / 16000
            if split != "test" and seconds > hours * 3600:
                break
        torch.save(items, out_dir / f"{split}.pt")
        print(f"{split}: {len(items)} utterances, {seconds / 3600:.2f} h", flush=True)


class SemanticPath(nn.Module):
    """The codec's semantic path at 12.5 Hz without merging: `[B, T, in_dim]` -> reader vectors `[B, 2T, 144]`."""

    def __init__(self, kind: str, quantize: str, width: int = 128, layers: int = 2, noise: float = 0.0):
        super().__init__()
        self.encoder = ConvNeXtStack(288 if kind == "stacked" else 144, width, layers, 3 * width)
        # "fsq": the codec's [8] * 5 levels; "fsqN": [8] * N; "none": no quantiser
        digits = int(quantize[3:] or 5) if quantize.startswith("fsq") else 0
        self.fsq = FSQ(width, [8] * digits) if digits else None
        self.decoder = ConvNeXtStack(width, width, layers, 3 * width)
        self.reader = SubframePhoneReader(width, 144, 256, 8, 2)
        self.noise = noise  # training only: share of items whose rounding is replaced by uniform noise

    def forward(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        mask = length_mask(frames, x.shape[1])
        z = self.encoder(x, mask)
        if self.fsq is not None:
            if self.training and self.noise > 0:
                # Noise substitution (Balle et al.): bounded latent + U(-1/2, 1/2) step instead of rounding for a
                # random share of items, so the gradient sees the quantiser's error without a straight-through hole
                bounded = self.fsq._bound(self.fsq.in_proj(z))
                half = (self.fsq.levels // 2).to(z.dtype)
                noisy = self.fsq.out_proj((bounded + torch.rand_like(bounded) - 0.5) / half)
                rounded, _ = self.fsq(z)
                pick = (torch.rand(z.shape[0], 1, 1) < self.noise).to(z.dtype)
                z = pick * noisy + (1 - pick) * rounded
            else:
                z, _ = self.fsq(z)
        return self.reader(self.decoder(z, mask), mask.long())[0]


def batch_of(items: list[dict], kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs `[B, T, D]`, frames `[B]`, 25 Hz hidden targets `[B, 2T, 144]`)."""
    t = max(it["pooled"].shape[0] for it in items)
    x = torch.zeros(len(items), t, 144 if kind == "pooled" else 288)
    hid = torch.zeros(len(items), 2 * t, 144)
    for i, it in enumerate(items):
        n = it["pooled"].shape[0]
        x[i, :n] = it["pooled"].float() if kind == "pooled" else it["hidden"].float().reshape(n, 288)
        hid[i, : 2 * n] = it["hidden"].float()
    return x, torch.tensor([it["pooled"].shape[0] for it in items]), hid


def train(out: str, kind: str, quant: str, minutes: float, extra: str = "", width: int = 128, layers: int = 2,
          noise: float = 0.0, cosine: bool = False, tag: str = "") -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    out_dir = Path(out)
    train_items, test_items = torch.load(out_dir / "train.pt"), torch.load(out_dir / "test.pt")
    if extra == "more":  # the demo voices' 2 h plus 2 h of 39 other speakers
        train_items = train_items + torch.load(out_dir / "more.pt")
    elif extra == "big":  # the demo voices' 9 h (corpus/big: the same voices, more sentences) in place of 2 h
        train_items = torch.load(out_dir / "big.pt")
    codec = FlexiCodec.from_pretrained(None).float()
    asr = codec.asr_extractor.float().eval()
    head = asr.head  # frozen: the extractor is loaded without gradients
    model = SemanticPath(kind, quant, width, layers, noise)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    steps = 100_000
    rng = np.random.default_rng(0)
    order = sorted(range(len(train_items)), key=lambda i: train_items[i]["pooled"].shape[0])
    buckets = [order[i: i + 16] for i in range(0, len(order), 16)]
    started, step = time.time(), 0
    name = f"{kind}_{quant}" + (f"_{extra}" if extra else "") + tag
    while time.time() - started < minutes * 60 and step < steps:
        x, frames, hid = batch_of([train_items[i] for i in buckets[rng.integers(len(buckets))]], kind)
        lr = 1e-3 * min(1.0, (step + 1) / 200)
        if cosine:  # decay to zero over the wall-clock budget
            lr *= 0.5 * (1 + np.cos(np.pi * min(1.0, (time.time() - started) / (minutes * 60))))
        for g in opt.param_groups:
            g["lr"] = lr
        read = model(x, frames)
        valid = length_mask(2 * frames, read.shape[1])
        kl = codec._head_kl(hid, read, valid)  # the codec's own sub-frame distillation loss
        opt.zero_grad()
        kl.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 500 == 0:
            print(json.dumps({"run": name, "step": step, "kl": round(float(kl.detach()), 4),
                              "minutes": round((time.time() - started) / 60, 1)}), flush=True)
        step += 1
    model.eval()
    refs, hyps, codec_hyps, speakers = [], [], [], []
    with torch.no_grad():
        for k in range(0, len(test_items), 16):
            chunk = test_items[k: k + 16]
            x, frames, _ = batch_of(chunk, kind)
            ids = asr.greedy_ids(head(model(x, frames)).float(), 2 * frames)
            for it, h in zip(chunk, ids):
                refs.append(" ".join(map(str, it["ref"])))
                hyps.append(" ".join(map(str, h)))
                codec_hyps.append(" ".join(map(str, it["codec_read"])))
                speakers.append(it["speaker"].split("-p")[0])
    result = {"run": name, "steps": step, "minutes": round((time.time() - started) / 60, 1),
              "final_kl": float(kl.detach()), "test_per_vs_recogniser": phone_error_rate(refs, hyps),
              "shipped_codec_t1_per_vs_recogniser": phone_error_rate(refs, codec_hyps),
              "test_utterances": len(refs), "per_voice": {}}
    for voice in sorted(set(speakers)):
        pick = [i for i, v in enumerate(speakers) if v == voice]
        result["per_voice"][voice] = {
            "probe": phone_error_rate([refs[i] for i in pick], [hyps[i] for i in pick]),
            "shipped_codec_t1": phone_error_rate([refs[i] for i in pick], [codec_hyps[i] for i in pick])}
    print(json.dumps(result), flush=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    if sys.argv[1] == "extract":
        extract(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")
    else:
        import argparse
        ap = argparse.ArgumentParser()
        ap.add_argument("out"), ap.add_argument("kind"), ap.add_argument("quant")
        ap.add_argument("minutes", type=float)
        ap.add_argument("extra", nargs="?", default="", choices=["", "more", "big"])
        ap.add_argument("--width", type=int, default=128)
        ap.add_argument("--layers", type=int, default=2)
        ap.add_argument("--noise", type=float, default=0.0)
        ap.add_argument("--cosine", action="store_true")
        ap.add_argument("--tag", default="")
        a = ap.parse_args(sys.argv[2:])
        train(a.out, a.kind, a.quant, a.minutes, a.extra, a.width, a.layers, a.noise, a.cosine, a.tag)
