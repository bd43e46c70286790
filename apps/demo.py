"""The FlexiTTS web demo (Gradio): zero-shot TTS with the token boundaries of the dynamic frame rate drawn on the
output's mel spectrogram.

    from apps.demo import build_app, launch
    demo = build_app()                      # loads the bundled demo models once (or pass tts= / checkpoint=)
    launch(demo, port=7860)                 # loopback only; or mount it: gr.mount_gradio_app(fastapi_app, demo, "/tts")

It calls the same `flexitts.TTS.synthesize` as the CLI and the Python API. Bad input (any `FlexiTTSError`, an
unreadable upload, an empty text) reaches the page as a one-line `gr.Error`; the server keeps serving. The API
endpoint is `/synthesize` (see the page's "Use via API" footer, or `gradio_client`).
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np

from flexitts.pipeline.sampling_defaults import (DEFAULT_CANDIDATES, DEFAULT_DURATION_TOP_K, DEFAULT_FRAME_RATE,
                                                 DEFAULT_PHONE_CFG, DEFAULT_TEXT_CFG, DEFAULT_TOP_K)

logger = logging.getLogger("flexitts.app")

BASE_RATE_HZ = 12.5  # no merging: the slider's top end maps to threshold 1.0
MIN_RATE_HZ = 3.5  # below this the demo AR's length limits get tight (see ar.generate)
DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_TEXT_CHARS = 5000
DEFAULT_MAX_QUEUE = 64
MAX_TEXT_FILE_BYTES = 1_000_000
SEED_RANGE = 2**31 - 1
MAX_CANDIDATES = 8  # AR samples per chunk: each costs one more AR row, never more NAR work

EXAMPLE_TEXTS = (
    "Dynamic frame rate tokens let a language model speak with fewer steps per second.",
    "The quick brown fox jumps over the lazy dog, and then it takes a long nap in the sun.",
    "Silence and steady vowels merge into long tokens, while fast consonants keep short ones.",
    "Please call Stella and ask her to bring these things with her from the store.",
)


def voices_dir() -> Path:
    """The bundled example voices (`flexitts/assets/demo/voices`)."""
    import flexitts

    return Path(flexitts.__file__).resolve().parent / "assets" / "demo" / "voices"


def example_rows(directory: Path | None = None) -> tuple[list[list[Any]], list[str]]:
    """`[[reference wav, its transcript, a text to speak], ...]` and their labels, from `voices.json`; empty when the
    voices are missing (a stripped install)."""
    directory = voices_dir() if directory is None else Path(directory)
    try:
        voices = json.loads((directory / "voices.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], []
    rows, labels = [], []
    for k, voice in enumerate(voices):
        audio = directory / str(voice.get("audio", ""))
        if not audio.is_file():
            continue
        rows.append([str(audio), str(voice.get("text", "")), EXAMPLE_TEXTS[k % len(EXAMPLE_TEXTS)]])
        held_out = " (held-out voice)" if voice.get("split") == "test" else ""
        labels.append(f"{voice.get('name', audio.stem)}{held_out}")
    return rows, labels


def rate_options(rate_hz: float | None) -> dict[str, float]:
    """The slider's tokens per second -> `synthesize` keywords: 12.5 Hz is no merging (threshold 1.0), anything
    lower asks the codec for that average rate (`frame_rate=`)."""
    from flexitts.errors import ConfigError

    if rate_hz is None:
        return {}
    rate_hz = float(rate_hz)
    if not np.isfinite(rate_hz) or not 1.0 <= rate_hz <= BASE_RATE_HZ + 1e-6:
        raise ConfigError(f"token rate must be between 1 and 12.5 tokens per second, not {rate_hz:g}")
    if rate_hz >= BASE_RATE_HZ - 1e-6:
        return {"merging_threshold": 1.0}
    return {"frame_rate": rate_hz}


def one_line(error: BaseException | str) -> str:
    """An error message on one line (whitespace collapsed), never empty."""
    text = " ".join(str(error).split())
    return text or (type(error).__name__ if isinstance(error, BaseException) else "error")


def read_text_file(path: str | Path | None) -> str:
    """A .txt upload's content (UTF-8, at most 1 MB)."""
    from flexitts.errors import TextError

    if path is None:
        return ""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_TEXT_FILE_BYTES:
            raise TextError(f"the text file is larger than {MAX_TEXT_FILE_BYTES // 1000} kB: upload a shorter one")
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise TextError("the text file is not UTF-8 text: save it as plain UTF-8 and upload it again") from None
    except OSError as error:
        raise TextError(f"cannot read the text file: {type(error).__name__}") from None


def to_pcm16(wav: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16 (Gradio would peak-normalise float audio; int16 keeps the model's level)."""
    return (np.clip(np.nan_to_num(wav), -1.0, 1.0) * 32767.0).round().astype(np.int16)


def timings_markdown(info: Any, rate: float, audio_seconds: float) -> str:
    """The details panel: rate, seed, reference phonemes source and a per-stage timing table."""
    tokens, frames = len(info.codes), int(np.asarray(info.durations).sum())
    lines = [
        f"**{rate:.2f} tokens/s** on average: {tokens} tokens for {frames} frames at 12.5 Hz "
        f"({frames / max(1, tokens):.2f} frames per token), {audio_seconds:.2f} s of audio in "
        f"{len(info.chunks)} chunk{'s' if len(info.chunks) != 1 else ''}; the speech lasts "
        f"{info.pace_ratio:.2f}x what the reference's pace gives for the text.",
        "",
        f"Seed {info.seed} · reference {info.reference_seconds:.2f} s"
        f"{' (clipped)' if info.reference_clipped else ''}, its phonemes from "
        f"{'the reference text' if info.reference_phonemes_from == 'text' else 'the phone recogniser'}.",
        "",
    ]
    stages = [stage for stage in ("reference", "text", "ar", "nar", "vocoder") if stage in info.timings]
    total = info.timings.get("total", 0.0)
    lines.append("| stage | " + " | ".join(stages) + " | **total** |")
    lines.append("|---|" + "---:|" * (len(stages) + 1))
    lines.append("| seconds | " + " | ".join(f"{info.timings[s]:.3f}" for s in stages) + f" | **{total:.3f}** |")
    lines.append("")
    lines.append(f"Real-time factor {total / max(1e-9, audio_seconds):.3f} (seconds of compute per second of speech).")
    return "\n".join(lines)


class DemoSynthesizer:
    """The page's work, without Gradio: options -> (audio, boundary picture, rate, details). Raises
    `FlexiTTSError` on bad input; `build_app` turns those into `gr.Error`."""

    def __init__(self, tts: Any, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS):
        self.tts = tts
        self.max_text_chars = int(max_text_chars)

    def text_to_speak(self, text: str | None, text_file: str | None) -> str:
        from flexitts.errors import TextError

        text = (text or "").strip()
        if not text and text_file:
            text = read_text_file(text_file).strip()
        if not text:
            raise TextError("the text to speak is empty: type some words (or upload a .txt file)")
        if len(text) > self.max_text_chars:
            raise TextError(f"the text has {len(text)} characters; this demo speaks at most {self.max_text_chars}")
        return text

    def __call__(self, ref_audio: str | None, ref_text: str | None, text: str | None, text_file: str | None = None,
                 frame_rate_hz: float | None = DEFAULT_FRAME_RATE, temperature: float = 1.0, top_k: int = DEFAULT_TOP_K,
                 top_p: float = 1.0, duration_top_k: int = DEFAULT_DURATION_TOP_K, steps: int = 15, cfg: float = 2.0, speed: float = 1.0,
                 seed: int | None = 0, candidates: int = DEFAULT_CANDIDATES, text_cfg: float = DEFAULT_TEXT_CFG,
                 phone_cfg: float = DEFAULT_PHONE_CFG,
                 progress: Any = None) -> tuple[tuple[int, np.ndarray], Any, float, str]:
        from flexitts.errors import AudioError, ConfigError

        if not ref_audio:
            raise AudioError("no reference voice: upload a recording or record one with the microphone")
        text = self.text_to_speak(text, text_file)
        try:
            options = dict(
                temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
                duration_top_k=int(duration_top_k), steps=int(steps), cfg=float(cfg), speed=float(speed),
                seed=None if seed is None or seed == "" else int(seed), candidates=int(candidates), text_cfg=float(text_cfg),
                phone_cfg=float(phone_cfg),
            )
        except (TypeError, ValueError) as error:
            raise ConfigError(f"a sampling option is not a number: {one_line(error)}") from None
        if not 0.0 < options["temperature"] <= 10.0:
            raise ConfigError(f"temperature must be in (0, 10], not {options['temperature']:g}")
        if options["top_k"] < 1 or options["duration_top_k"] < 1:
            raise ConfigError("top-k and duration top-k must be at least 1")
        if not 1 <= options["candidates"] <= MAX_CANDIDATES:
            raise ConfigError(f"AR candidates must be between 1 and {MAX_CANDIDATES}, not {options['candidates']}")
        if not 0.0 <= options["text_cfg"] <= 10.0:
            raise ConfigError(f"text guidance must be between 0 and 10, not {options['text_cfg']:g}")
        if not 0.0 <= options["phone_cfg"] <= 10.0:
            raise ConfigError(f"phone guidance must be between 0 and 10, not {options['phone_cfg']:g}")
        if not 0.0 < options["top_p"] <= 1.0:
            raise ConfigError(f"top-p must be in (0, 1], not {options['top_p']:g}")
        if options["steps"] > 200:
            raise ConfigError(f"at most 200 NAR steps, not {options['steps']}")
        if not 0.0 <= options["cfg"] <= 20.0:
            raise ConfigError(f"CFG must be between 0 and 20, not {options['cfg']:g}")
        if options["seed"] is not None and not 0 <= options["seed"] < 2**62:
            raise ConfigError(f"the seed must be a whole number from 0 to 2**62, not {options['seed']}")
        options.update(rate_options(frame_rate_hz))
        callback = None if progress is None else (lambda stage, fraction: progress(fraction, desc=stage))
        wav, sample_rate, info = self.tts.synthesize(text, ref_audio, ref_text=(ref_text or "").strip() or None,
                                                     progress=callback, **options)
        picture = self.boundary_picture(wav, sample_rate, info, options["speed"])
        seconds = len(wav) / sample_rate
        return (sample_rate, to_pcm16(wav)), picture, round(float(info.frame_rate), 3), timings_markdown(
            info, info.frame_rate, seconds)

    def boundary_picture(self, wav: np.ndarray, sample_rate: int, info: Any, speed: float = 1.0):
        """The output's mel spectrogram with the token boundaries, as a PIL image."""
        import io

        import torch
        from PIL import Image

        from apps.plots import boundary_figure, figure_png, plot_title, token_spans
        from flexitts.pipeline.audio_join import DEFAULT_CROSSFADE_SECONDS
        from flexitts.pipeline.speed import scale_durations

        with torch.no_grad():
            mel, _ = self.tts.mel(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None].to(self.tts.device))
        mel = mel[0].float().cpu().numpy()
        durations = [np.asarray(c.durations) for c in info.chunks]
        rendered = [scale_durations(torch.as_tensor(d), speed).numpy() for d in durations]
        spans, chunk_starts = token_spans(durations, [len(c.audio) for c in info.chunks], sample_rate, rendered,
                                          DEFAULT_CROSSFADE_SECONDS)
        frames_per_second = sample_rate / self.tts.mel.config.hop_length
        title = plot_title(len(info.codes), int(np.asarray(info.durations).sum()), len(wav) / sample_rate,
                           float(info.frame_rate), speed)
        fig = boundary_figure(mel, frames_per_second, spans, chunk_starts, title=title)
        return Image.open(io.BytesIO(figure_png(fig))).convert("RGB")


def default_concurrency(tts: Any) -> int:
    """Requests run at once: 1 on a CPU (one synthesis already uses every core), 2 on an accelerator."""
    device = getattr(getattr(tts, "device", None), "type", "cpu")
    return 1 if device == "cpu" else 2


def build_app(tts: Any = None, checkpoint: str | None = None, device: str | None = None,
              max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, concurrency: int | None = None,
              max_queue: int | None = DEFAULT_MAX_QUEUE, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
              examples: bool = True):
    """The demo as a `gr.Blocks` (queued: at most `concurrency` syntheses at once, `max_queue` waiting).

    The models load here, once (`TTS.from_pretrained(checkpoint, device=device)`), unless a loaded `tts` is given.
    `max_upload_mb` is applied by `launch(demo)` (Gradio takes the limit at launch time); when mounting the app
    yourself, pass `max_file_size=demo.flexitts_max_file_size` to `gr.mount_gradio_app`.
    """
    import gradio as gr

    from flexitts.errors import ConfigError, FlexiTTSError

    if tts is None:
        from flexitts.tts import TTS

        tts = TTS.from_pretrained(checkpoint, device=device)
    if max_upload_mb is not None and not max_upload_mb > 0:
        raise ConfigError(f"the upload limit must be a positive number of MB, not {max_upload_mb}")
    concurrency = default_concurrency(tts) if concurrency is None else int(concurrency)
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, not {concurrency}")
    synthesizer = DemoSynthesizer(tts, max_text_chars=max_text_chars)

    def synthesize(ref_audio, ref_text=None, text=None, text_file=None, frame_rate_hz=DEFAULT_FRAME_RATE, temperature=1.0,
                   top_k=DEFAULT_TOP_K, top_p=1.0, duration_top_k=DEFAULT_DURATION_TOP_K, steps=15, cfg=2.0, speed=1.0, seed=0,
                   candidates=DEFAULT_CANDIDATES, text_cfg=DEFAULT_TEXT_CFG, phone_cfg=DEFAULT_PHONE_CFG,
                   progress=gr.Progress()):
        """Speak `text` (or the .txt `text_file`) in the voice of `ref_audio`; returns the audio, the boundary
        picture, the average token rate and a details panel (per-stage timings)."""
        try:
            return synthesizer(ref_audio, ref_text, text, text_file, frame_rate_hz, temperature, top_k, top_p,
                               duration_top_k, steps, cfg, speed, seed, candidates, text_cfg, phone_cfg,
                               progress=progress)
        except FlexiTTSError as error:
            message = one_line(error)
            for path in (ref_audio, text_file):  # Gradio's upload folder means nothing to the user: the file name does
                if path:
                    message = message.replace(str(path), Path(path).name)
            logger.info("bad input: %s", message)
            raise gr.Error(message, print_exception=False) from None
        except gr.Error:
            raise
        except Exception as error:  # a bug, not bad input: one line in the page, the traceback in the server log
            logger.exception("synthesis failed")
            raise gr.Error(f"internal error: {type(error).__name__}: {one_line(error)} (details in the server log)",
                           print_exception=False) from None

    def load_text_file(path):
        try:
            return read_text_file(path)
        except FlexiTTSError as error:
            raise gr.Error(one_line(error), print_exception=False) from None

    with gr.Blocks(title="FlexiTTS", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# FlexiTTS\n"
            "Zero-shot text-to-speech on **dynamic-rate speech tokens**: neighbouring 80 ms frames that sound alike "
            "merge into one token, so the language model takes fewer steps per second of speech. Give a reference "
            "voice and a text; the picture shows where each generated token starts and how many frames it covers."
        )
        with gr.Row():
            with gr.Column(scale=1):
                ref_audio = gr.Audio(label="Reference voice (upload or record, 3-10 s)", sources=["upload", "microphone"],
                                     type="filepath", elem_id="ref-audio")
                ref_text = gr.Textbox(label="Reference transcript (optional; recognised from the audio when empty)",
                                      lines=1, elem_id="ref-text")
                text = gr.Textbox(label="Text to speak", lines=4, max_lines=12, elem_id="text",
                                  placeholder="Type what the voice should say")
                text_file = gr.File(label="...or a .txt file", file_types=[".txt"], type="filepath",
                                    elem_id="text-file")
                with gr.Accordion("Token rate and sampling", open=True):
                    frame_rate_hz = gr.Slider(MIN_RATE_HZ, BASE_RATE_HZ, value=DEFAULT_FRAME_RATE, step=0.05,
                                              label="Token rate (tokens per second; 12.5 = no merging)",
                                              elem_id="frame-rate")
                    with gr.Row():
                        temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
                        top_k = gr.Slider(1, 100, value=DEFAULT_TOP_K, step=1, label="Top-k")
                    with gr.Row():
                        top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p")
                        duration_top_k = gr.Slider(1, 8, value=DEFAULT_DURATION_TOP_K, step=1,
                                                   label="Duration top-k (1 = greedy)")
                    with gr.Row():
                        candidates = gr.Slider(1, MAX_CANDIDATES, value=DEFAULT_CANDIDATES, step=1,
                                               label="AR candidates (best content rendered)")
                        text_cfg = gr.Slider(0.0, 5.0, value=DEFAULT_TEXT_CFG, step=0.1, label="Text guidance (AR)")
                with gr.Accordion("Rendering", open=False):
                    with gr.Row():
                        steps = gr.Slider(1, 64, value=15, step=1, label="NAR steps")
                        cfg = gr.Slider(0.0, 5.0, value=2.0, step=0.1, label="CFG")
                        speed = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="Speed")
                        phone_cfg = gr.Slider(0.0, 10.0, value=DEFAULT_PHONE_CFG, step=0.5, label="Phone guidance (NAR)")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed", scale=3)
                        randomise = gr.Button("Randomise seed", elem_id="randomise-seed", scale=1)
                button = gr.Button("Synthesize", variant="primary", elem_id="synthesize")
            with gr.Column(scale=2):
                output_audio = gr.Audio(label="Speech", type="numpy", format="wav", interactive=False,
                                        elem_id="output-audio")
                rate = gr.Number(label="Average token rate of the output (tokens per second)", precision=2,
                                 interactive=False, elem_id="rate")
                plot = gr.Image(label="Mel spectrogram with token boundaries (lines: token starts; shaded and "
                                      "numbered: merged tokens and their length in 80 ms frames)",
                                type="pil", format="png", interactive=False, elem_id="boundary-plot")
                details = gr.Markdown(elem_id="details")
        if examples:
            rows, labels = example_rows()
            if rows:
                gr.Examples(rows, inputs=[ref_audio, ref_text, text], example_labels=labels, cache_examples=False,
                            label="Bundled voices (pick one, then press Synthesize)")

        randomise.click(lambda: random.randrange(SEED_RANGE), outputs=seed, queue=False, api_visibility="private")
        text_file.upload(load_text_file, inputs=text_file, outputs=text, queue=False, api_visibility="private")
        button.click(
            synthesize,
            inputs=[ref_audio, ref_text, text, text_file, frame_rate_hz, temperature, top_k, top_p, duration_top_k,
                    steps, cfg, speed, seed, candidates, text_cfg, phone_cfg],
            outputs=[output_audio, plot, rate, details],
            api_name="synthesize",
        )
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    demo.flexitts_tts = tts
    demo.flexitts_max_file_size = None if max_upload_mb is None else f"{max_upload_mb:g}mb"
    demo.flexitts_concurrency = concurrency
    return demo


def launch(demo: Any, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
           prevent_thread_lock: bool = False, quiet: bool = False) -> Any:
    """Serve a `build_app()` demo on `host:port` (loopback by default) with its upload limit."""
    return demo.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=prevent_thread_lock, quiet=quiet,
        max_file_size=getattr(demo, "flexitts_max_file_size", None), show_error=False, ssr_mode=False,
        allowed_paths=[str(voices_dir())],
    )


if __name__ == "__main__":  # pragma: no cover - `python -m apps.demo`; `flexitts app` is the documented way
    launch(build_app())
