"""Default AR sampling settings of the pipeline, shared by `TTS`, `flexitts synthesize` and the web demo
(a torch-free module, so the CLI can show them without importing the models)."""

# Token rate when neither a merging threshold nor a frame rate is asked for, for every voice: the reference is
# scheduled to it by per-utterance bisection and the AR's durations aim at it through `match_rate`. A fixed
# threshold gives a voice-dependent rate instead: the demo codec's default tau 0.48 averages 8.3 Hz over the test
# split but merges the mb-us1 voice only to 10.8 Hz. 8.1 rather than FlexiCodec's 8.3: greedy durations (below)
# fall a little short of the tilt's mean, and the speech comes at about 8.4-8.5 tokens/s (asked 8.3: 8.68).
DEFAULT_FRAME_RATE = 8.1
# Code sampling keeps the 5 likeliest codes: on 10 test sentences (mb-us1 reference, demo bundle) the output's
# phone error rate was 0.89 at top-k 25, 0.87 at 10, 0.80 at 5 and 0.81 at 2, and 0.84 greedy (k=1), with the
# same speaker similarity; the small AR's tail codes carry little content.
DEFAULT_TOP_K = 5
# Durations are the argmax of the rate-tilted distribution (greedy). Without the tilt greedy would be wrong: a
# small model's duration head puts most mass on 1 frame (74% of the tokens at the demo threshold), so every token
# would be 80 ms long. With the log tilt, on 20 test sentences (demo bundle, seeds 0 / 100): mb-us1 WER 0.433 /
# 0.364 against 0.610 / 0.584 sampled from all 8 classes with the linear tilt (1.72x / 1.45x the voice spoken
# directly, was 2.43x / 2.33x); held-out mb-us3 0.333 / 0.290 against 0.489 / 0.515. Similarity unchanged.
DEFAULT_DURATION_TOP_K = 1
# Length window relative to the reference's pace (frames per phoneme symbol); see `ar.generate`'s docstring.
DEFAULT_PACE = (0.8, 1.25)
# Tilt each duration distribution so its mean is 12.5 / rate frames: the speech comes at the asked token rate
# even when the duration head under-predicts long merges (see `ar.generate`'s `match_rate`). "log" tilts by log k,
# a power law, which lifts the 8-frame maximum less than the exponential tilt (1.5% of the tokens instead of 3.7%;
# the codec's own tokens at this rate: 0.3%) and was slightly better alone (about -0.03 WER in 4 of 4 paired runs).
DEFAULT_MATCH_RATE = "log"
# AR samples drawn per text chunk; the one whose codes best explain the text's phones is rendered
# (`flexitts.pipeline.rerank`). 1: no reranking. On 20 test sentences (mb-us1 reference) 8 candidates took an
# earlier bundle's output phone error rate from 0.857 to 0.789 and WER from 0.983 to 0.926. With the current bundle
# 6 and 8 candidates are within noise of each other (PER 0.698 / 0.701, WER 0.909 / 0.861), and 6 keep the whole
# pipeline's real-time factor on our 2-core CPU under 0.5 (0.48; 8 give 0.51).
DEFAULT_CANDIDATES = 6
# Classifier-free guidance weight on the text for the AR's codes (`ar.generate`'s `text_cfg`); 0: off. With the
# demo AR, weight 1 lowered the phone error rate alone (0.861 -> 0.812 on 20 sentences) but not on top of 8
# candidates (0.773 -> 0.784), and WER moved within noise either way: off by default.
DEFAULT_TEXT_CFG = 0.0
# Phone-guided decoding weight (`ar.generate`'s `phone_guide_weight`) for a phone-pointer AR: each code's
# log-probability gains weight * log(its own reading's mass on the phones around the pointer). 0: off. On 20 test
# sentences (mb-us1 reference, pointer AR after 700 steps) weight 1 took WER from 0.935 (off, step 500) to 0.844 and
# PER from 0.698 to 0.644; weight 3 gave 0.835 / 0.641, within noise of 1.
DEFAULT_PHONE_GUIDE = 1.0
# Phone guidance weight of a phone-conditioned NAR (`Voicebox.sample`'s `phone_cfg`): the velocity moves by
# weight * (v(codes, phones) - v(codes)), towards the text's phones where the AR's codes disagree. 0: off.
# On 20 test sentences (mb-us1 reference, phone NAR after 3000 steps): WER 0.662 (off), 0.623 (1), 0.606 (3); with
# the code-noise NAR (configs/nar_demo_robust.yaml, 2000 steps): 0.602 (3), 0.675 (6). It costs one more NAR pass
# a step. configs/nar_demo_arsamples.yaml's NAR, trained on the AR's own mistakes, follows the phones
# without it: means of two seeds, mb-us1 WER 0.597, PER 0.351, similarity 0.824 at weight 0 (0.569 / 0.344 / 0.820
# at 3); held-out mb-us3 0.502 / 0.318 / 0.770 (0.541 / 0.310 / 0.771 at 3). Off by default, which saves the pass.
DEFAULT_PHONE_CFG = 0.0
# Phone guidance runs on the NAR steps that start before this flow time (0..1; 1: every step): the content is
# settled early in the flow, and each guided step costs one more pass. With configs/nar_demo_robust.yaml's NAR
# (weight 3, 20 test sentences, mb-us1): until 1.0 gave WER 0.684, similarity 0.804, PER 0.391; 0.5 gave
# 0.580 / 0.825 / 0.393; 0.25 (the first 4 of 15 steps) 0.554 / 0.830 / 0.398, and the pipeline's RTF falls from
# 0.59 back under 0.5.
DEFAULT_PHONE_CFG_UNTIL = 0.25
# Classifier-free guidance of the NAR (cfg) runs on the steps that start before this flow time (0..1; 1: every
# step; a guidance interval as in Kynkaanniemi et al. 2024); the later steps run the conditional pass alone, which
# halves their cost. On 20 test sentences (demo bundle, greedy log-tilted durations; seeds 0 / 100) WER / PER:
# until 1.0: mb-us1 0.433 / 0.364, PER 0.311 / 0.330; held-out mb-us3 0.333 / 0.290, PER 0.299 / 0.299.
# until 0.6: 0.420 / 0.368, 0.311 / 0.343; 0.312 / 0.368, 0.320 / 0.326.
# until 0.5 (8 of 15 steps guided): 0.398 / 0.364, 0.318 / 0.346; 0.299 / 0.368, 0.326 / 0.324.
# until 0.3: 0.416 / 0.411, 0.334 / 0.377; 0.372 / 0.455, 0.346 / 0.356 (content suffers).
# Similarity is unchanged throughout; 0.5 cuts the NAR's passes by 7 of 30, about 15% of the pipeline's time.
DEFAULT_CFG_UNTIL = 0.5
# Tilt the phone pointer's advances to the reference's phones per frame (`ar.generate`'s `match_pace`). Off, the
# demo AR moves about one phone per token whatever the asked rate, so match_rate's longer durations slow the speech
# down: 1.26x the reference voice's own duration at 8.1 Hz, 1.53x at 6.25 Hz (12 test sentences, mb-us1). On, the
# speech keeps the voice's pace (1.01x at both rates, 8.5 / 6.6 tokens/s) but each token must say more, and WER rises
# (20 sentences, seeds 0 / 100: mb-us1 0.576 / 0.602 against 0.398 / 0.364; held-out mb-us3 0.455 / 0.485 against
# 0.299 / 0.368); reports/tts_pace.md. Off by default until an AR packs phones better.
DEFAULT_MATCH_PACE = False
