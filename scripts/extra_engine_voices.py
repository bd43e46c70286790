"""Probe: English training speech from four other offline synthesisers, for a speaker-robust recogniser.

reports/asr_speakers.md (session 14). 23 speakers from 12 voices of flite (kal16, awb, rms, slt), RHVoice (bdl, clb,
alan, slt), SVOX pico (en-US, en-GB) and festival (ked, rab diphones), each plain and slower (some also at another
pitch), speaking sentences of corpus/demo/train.jsonl (never a test sentence). Phoneme targets are espeak-ng's for
the text, in the voice's accent (`language`), as for the corpus's own voices.

Needs: apt-get install flite rhvoice rhvoice-english libttspico-utils festival festvox-kdlpc16k festvox-rablpc16k
Usage: PYTHONPATH=. python scripts/extra_engine_voices.py corpus/extra 150   (sentences per speaker; resumable)
Writes OUT/wavs/SPEAKER/train-NNNNN.wav (16 kHz, trimmed) and OUT/train.jsonl.
"""
import json, os, subprocess, sys, tempfile, random, wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np
from flexitts.corpus.synth import to_16k, trim_silence
from flexitts.audio import audio_duration, save_audio

def read_wav(p):
    with wave.open(str(p)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype='<i2'), w.getframerate()

def flite(voice, stretch=1.0, f0=None):
    def run(text, out):
        args = ['flite', '-voice', voice, '--setf', f'duration_stretch={stretch}']
        if f0: args += ['--setf', f'int_f0_target_mean={f0}']
        subprocess.run(args + ['-t', text, '-o', out], check=True, capture_output=True, timeout=60)
    return run
def rhv(voice, rate=100, pitch=100):
    def run(text, out):
        subprocess.run(['RHVoice-test', '-p', voice, '-r', str(rate), '-t', str(pitch), '-o', out], input=text.encode(), check=True, capture_output=True, timeout=60)
    return run
def pico(lang, speed=100, pitch=100):
    def run(text, out):
        t = text.replace('&', 'and').replace('<', ' ').replace('>', ' ')
        if speed != 100 or pitch != 100:
            t = f'<speed level="{speed}"><pitch level="{pitch}">{t}</pitch></speed>'
        subprocess.run(['pico2wave', '-l', lang, '-w', out, t], check=True, capture_output=True, timeout=60)
    return run
def fest(voice, stretch=1.0):
    def run(text, out):
        with tempfile.NamedTemporaryFile('w', suffix='.txt', delete=False) as f:
            f.write(text); name = f.name
        try:
            subprocess.run(['text2wave', '-eval', f"(voice_{voice})", '-eval', f"(Parameter.set 'Duration_Stretch {stretch})", name, '-o', out], check=True, capture_output=True, timeout=60)
        finally: os.unlink(name)
    return run

SPEAKERS = {  # id: (runner, language)
    'fl-kal16': (flite('kal16'), 'en-us'), 'fl-kal16-slow': (flite('kal16', 1.2, 130), 'en-us'),
    'fl-awb': (flite('awb'), 'en-gb'), 'fl-awb-slow': (flite('awb', 1.2), 'en-gb'),
    'fl-rms': (flite('rms'), 'en-us'), 'fl-rms-slow': (flite('rms', 1.2, 90), 'en-us'),
    'fl-slt': (flite('slt'), 'en-us'), 'fl-slt-slow': (flite('slt', 1.2, 200), 'en-us'),
    'rh-bdl': (rhv('bdl'), 'en-us'), 'rh-bdl-slow': (rhv('bdl', 80, 90), 'en-us'),
    'rh-clb': (rhv('clb'), 'en-us'), 'rh-clb-slow': (rhv('clb', 80, 110), 'en-us'),
    'rh-alan': (rhv('alan'), 'en-gb'), 'rh-alan-slow': (rhv('alan', 80, 90), 'en-gb'),
    'rh-slt': (rhv('slt'), 'en-us'),
    'pi-us': (pico('en-US'), 'en-us'), 'pi-us-slow': (pico('en-US', 80, 80), 'en-us'),
    'pi-gb': (pico('en-GB'), 'en-gb'), 'pi-gb-slow': (pico('en-GB', 80, 120), 'en-gb'),
    'fe-kd': (fest('ked_diphone'), 'en-us'), 'fe-kd-slow': (fest('ked_diphone', 1.2), 'en-us'),
    'fe-rab': (fest('rab_diphone'), 'en-gb'), 'fe-rab-slow': (fest('rab_diphone', 1.2), 'en-gb'),
}

def main(out, per_speaker):
    out = Path(out); (out / 'wavs').mkdir(parents=True, exist_ok=True)
    texts = sorted({json.loads(l)['text'] for l in open('corpus/demo/train.jsonl')})
    rng = random.Random(0)
    jobs = []
    for spk in SPEAKERS:
        for i, t in enumerate(rng.sample(texts, per_speaker)):
            jobs.append((spk, i, t))
    def make(job):
        spk, i, t = job
        run, lang = SPEAKERS[spk]
        path = out / 'wavs' / spk / f'train-{i:05d}.wav'
        if path.exists():
            dur = audio_duration(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = str(path) + '.tmp.wav'
            try:
                run(t, tmp); s, r = read_wav(tmp)
            except Exception as e:
                print('fail', spk, i, e, file=sys.stderr); return None
            finally:
                if os.path.exists(tmp): os.unlink(tmp)
            wav = trim_silence(to_16k(s, r))
            if wav.size < 1600 or np.abs(wav).max() < 1e-4: return None
            peak = np.abs(wav).max()
            if peak > 0.99: wav = wav * (0.95 / peak)
            save_audio(path, wav, 16000); dur = wav.size / 16000
        return {'audio': f'wavs/{spk}/train-{i:05d}.wav', 'text': t, 'speaker': spk, 'duration': round(dur, 3), 'language': lang, 'split': 'train', 'id': f'{spk}-{i:05d}'}
    rows = []
    with ThreadPoolExecutor(3) as ex:
        for n, r in enumerate(ex.map(make, jobs)):
            if r: rows.append(r)
            if n % 500 == 0: print(n, len(jobs), flush=True)
    with open(out / 'train.jsonl.tmp', 'w') as f:
        for r in rows: f.write(json.dumps(r) + '\n')
    os.replace(out / 'train.jsonl.tmp', out / 'train.jsonl')
    print('hours', sum(r['duration'] for r in rows) / 3600)

if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]))
