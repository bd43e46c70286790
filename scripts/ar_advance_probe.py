"""Probe: the demo AR's phone advances under teacher forcing on the test originals (reports/tts_pace.md).

Usage: PYTHONPATH=. python scripts/ar_advance_probe.py [RATE]
The first 20 `mb-` test utterances are tokenised at RATE tokens/s (default 8.1) with their phone onsets; the AR
reads them teacher-forced, and the mean true advance (phones per token) is compared with the advance head's
expected value.
"""
import sys, json, torch
sys.path.insert(0, '.')
torch.set_num_threads(2)
from flexitts import TTS
from ar.model import collate_examples
from ar.pointer import spoken_phones, token_progress
tts = TTS.from_pretrained()
cfg = tts.ar.config
rows = [json.loads(l) for l in open('corpus/demo/test.jsonl')]
rows = [r for r in rows if r['speaker'].startswith('mb-')][:20]
rate = float(sys.argv[1]) if len(sys.argv) > 1 else 8.1
ph, cd, du, sp, pr, rt = [], [], [], [], [], []
for r in rows:
    p = tts.encode_reference('corpus/demo/' + r['audio'], r['text'], None, rate, None, 30)
    spoken = spoken_phones(p.phoneme_ids, cfg)
    prog = token_progress(p.durations, torch.as_tensor(p.onsets)).clamp(max=len(spoken))
    ph.append(p.phoneme_ids); cd.append(p.codes.tolist()); du.append(p.durations.tolist()); sp.append(spoken)
    pr.append(prog.tolist()); rt.append(len(p.codes) * 12.5 / float(p.durations.sum()))
batch = collate_examples(ph, cd, du, rt, sp, pr)
with torch.no_grad():
    out = tts.ar.teacher_forced_outputs(batch)
probs = torch.softmax(out['adv_logits'].float(), -1)
vals = torch.arange(probs.shape[1]).float()
print('rate', rate, 'tokens', len(out['adv_targets']), 'phones', sum(len(s) for s in sp))
print('true advance mean %.3f' % out['adv_targets'].float().mean(), 'hist', torch.bincount(out['adv_targets'], minlength=5)[:5].tolist())
print('teacher-forced expected advance %.3f' % (probs * vals).sum(-1).mean(), 'argmax mean %.3f' % probs.argmax(-1).float().mean())
print('teacher-forced mean probs', [round(x, 3) for x in probs.mean(0)[:5].tolist()])
print('true durations mean %.2f' % torch.cat([torch.tensor(d) for d in du]).float().mean())
