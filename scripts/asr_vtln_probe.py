"""Probe: test-time vocal tract length normalisation of the bundled recogniser (reports/asr_speakers.md).

Usage: PYTHONPATH=. python scripts/asr_vtln_probe.py SPEAKER_PREFIX
Greedy-CTC phone error rate on corpus/demo/test.jsonl's speakers with that prefix at each mel warp factor, and
with the factor chosen per utterance / per speaker by the highest mean max log-probability.
"""
import sys, torch, jiwer, torch.nn.functional as F
sys.path.insert(0, '.')
torch.set_num_threads(2)
from codec.asr import CTCPhoneRecognizer
from codec.asr.augment import warp_mel
from flexitts.text import PhonemeTable
from flexitts.training.asr_data import ASRDataset, collate_asr
m = CTCPhoneRecognizer.from_pretrained(None).float().eval()
table = PhonemeTable(m.config.symbols)
ds = ASRDataset('corpus/demo/test.jsonl', table, max_seconds=60.0)
idx = [i for i in range(len(ds)) if ds[i].speaker.startswith(sys.argv[1])]
alphas = [0.9, 0.94, 0.97, 0.99, 1.0, 1.01, 1.02, 1.03, 1.04, 1.05, 1.06, 1.08, 1.1]
res = {a: [] for a in alphas}
with torch.no_grad():
    for i in idx:
        b = collate_asr([ds[i]])
        feats, L = m.fbank(b['wav'], b['wav_lengths'])
        for a in alphas:
            f = warp_mel(feats, torch.tensor([a])) if a != 1.0 else feats
            x, l = m.subsample(f, L)
            lp = F.log_softmax(m.head(m.encoder(x, l)).float(), -1)
            ids = m.greedy_ids(lp, l)[0]
            conf = lp[0, :int(l[0])].max(-1).values.mean().item()
            res[a].append((conf, ' '.join(map(str, ids)), ' '.join(map(str, ds[i].targets))))
refs = [r[2] for r in res[1.0]]
for a in alphas:
    print(a, 'PER %.3f' % jiwer.wer(refs, [r[1] for r in res[a]]), 'conf %.3f' % (sum(r[0] for r in res[a]) / len(idx)))
pick = [max(alphas, key=lambda a: res[a][k][0]) for k in range(len(idx))]
print('per-utterance by confidence: PER %.3f' % jiwer.wer(refs, [res[pick[k]][k][1] for k in range(len(idx))]), pick)
from collections import defaultdict
spk = [ds[i].speaker for i in idx]
groups = defaultdict(list)
for k, s in enumerate(spk): groups[s].append(k)
hyp = [None] * len(idx); chosen = {}
for s, ks in groups.items():
    a = max(alphas, key=lambda a: sum(res[a][k][0] for k in ks))
    chosen[s] = a
    for k in ks: hyp[k] = res[a][k][1]
print('per-speaker by confidence: PER %.3f' % jiwer.wer(refs, hyp), chosen)
for s, ks in groups.items():
    print(s, 'alpha 1: %.3f' % jiwer.wer([refs[k] for k in ks], [res[1.0][k][1] for k in ks]), 'chosen: %.3f' % jiwer.wer([refs[k] for k in ks], [hyp[k] for k in ks]))
