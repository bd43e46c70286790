"""The Gradio web demo (apps/demo.py) served on a free loopback port with a bundle of tiny random models.

Through the API (`gradio_client`): one synthesis returns valid, non-silent audio and the boundary picture; 8
concurrent requests all complete (median and worst latency are printed and saved, not asserted); a corrupt upload
and an empty text each fail with a one-line message and the app keeps serving. In a real browser (Debian's Chromium
driven by Playwright): upload a reference, type a text, press the button, see the audio and the boundary picture,
save a screenshot (to $FLEXITTS_ARTIFACTS, default test-artifacts/), then see a one-line error for an empty text.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

pytestmark = [
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed"),
    # Gradio's queue statistics use pandas options that pandas 3 deprecates: not ours to fix.
    pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*"),
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The tiny random TTS bundle shared by the pipeline tests (tests/tiny_bundle.py)."""
    import torch

    from tests.tiny_bundle import build_tiny_bundle

    torch.set_num_threads(1)
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle"))


REF_TEXT = "Chapter one, the beginning."
CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent


def artifacts_dir() -> Path:
    path = Path(os.environ.get("FLEXITTS_ARTIFACTS") or ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    import torch

    from apps.demo import build_app, launch
    from flexitts import TTS

    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        # A private upload cache: Gradio names uploads by their content in one shared folder and deletes the
        # ones an app received when it shuts down, so a second test process (or app) would lose our reference.
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        tts = TTS.from_pretrained(bundle, device="cpu")
        demo = build_app(tts=tts, concurrency=2, max_upload_mb=2)
        port = free_port()
        launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield f"http://127.0.0.1:{port}/"
        finally:
            demo.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def synthesize(client, ref, text="Hello there, this is the web demo.", **options):
    from gradio_client import handle_file

    options = {"ref_text": REF_TEXT, "steps": 2, "seed": 0, **options}
    return client.predict(ref_audio=handle_file(str(ref)), text=text, api_name="/synthesize", **options)


def check_result(result) -> float:
    """A valid synthesis: a 16 kHz wav with sound in it, a PNG picture, a positive token rate. Returns seconds."""
    from PIL import Image

    audio_path, image_path, rate, details = result
    audio, sample_rate = sf.read(audio_path, dtype="float32")
    assert sample_rate == 16000 and audio.ndim == 1 and len(audio) >= 1280
    assert np.isfinite(audio).all() and np.abs(audio).max() > 1e-3
    with Image.open(image_path) as picture:
        assert picture.width >= 400 and picture.height >= 200
    assert 0 < rate <= 12.5
    assert "tokens/s" in details and "total" in details and "x what the reference's pace gives" in details
    return len(audio) / sample_rate


def test_rate_mapping_examples_and_boundaries():
    from apps.demo import example_rows, rate_options
    from apps.plots import token_spans
    from flexitts.errors import ConfigError

    assert rate_options(12.5) == {"merging_threshold": 1.0}
    assert rate_options(8.3) == {"frame_rate": 8.3}
    with pytest.raises(ConfigError):
        rate_options(20.0)
    rows, labels = example_rows()
    assert rows and len(rows) == len(labels) and all(Path(r[0]).is_file() and r[1] and r[2] for r in rows)
    # Two chunks of 3 and 2 tokens (rendered at speed 1): 1280 samples per 12.5 Hz frame, a 640-sample cross-fade.
    spans, starts = token_spans([np.array([1, 3, 2]), np.array([2, 2])], [6 * 1280, 4 * 1280], 16000,
                                crossfade_seconds=0.04)
    assert [s.duration for s in spans] == [1, 3, 2, 2, 2]
    assert spans[1].start == pytest.approx(0.08) and spans[1].end == pytest.approx(0.32)
    assert starts == [pytest.approx((6 * 1280 - 640) / 16000)] and spans[3].start == pytest.approx(starts[0])
    # Out-of-range AR options are refused before any model runs (the page's sliders also bound them).
    from apps.demo import DemoSynthesizer

    demo = DemoSynthesizer(tts=None)
    for bad in ({"candidates": 0}, {"candidates": 99}, {"text_cfg": -1.0}, {"phone_cfg": 11.0}):
        with pytest.raises(ConfigError, match="candidates|guidance"):
            demo("ref.wav", None, "Hello.", **bad)


def test_api_synthesizes(client, real_speech_16k, tmp_path):
    started = time.perf_counter()
    seconds = check_result(synthesize(client, real_speech_16k, frame_rate_hz=12.5))
    print(f"\none API synthesis: {time.perf_counter() - started:.2f} s for {seconds:.2f} s of audio")
    # A .txt upload stands in for an empty text box; other rates go to the codec as a target rate.
    from gradio_client import handle_file

    text_file = tmp_path / "speak.txt"
    text_file.write_text("Spoken from a text file.", encoding="utf-8")
    check_result(synthesize(client, real_speech_16k, text="", text_file=handle_file(str(text_file)), frame_rate_hz=6.25))
    # AR candidates, text guidance and phone guidance reach the pipeline from the page.
    check_result(synthesize(client, real_speech_16k, candidates=2, text_cfg=0.5, phone_cfg=1.0))


def test_eight_concurrent_requests(client, real_speech_16k):
    def one(k: int) -> float:
        started = time.perf_counter()
        check_result(synthesize(client, real_speech_16k, text=f"Request number {k} asks for a short sentence.", seed=k))
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        latencies = list(pool.map(one, range(8)))
    wall = time.perf_counter() - started
    report = {"requests": 8, "concurrency_limit": 2, "median_s": round(statistics.median(latencies), 3),
              "worst_s": round(max(latencies), 3), "wall_s": round(wall, 3), "latencies_s": [round(x, 3) for x in latencies]}
    (artifacts_dir() / "app_latency.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"\n8 concurrent requests: median {report['median_s']:.2f} s, worst {report['worst_s']:.2f} s, "
          f"all done in {wall:.2f} s")
    assert len(latencies) == 8


def test_bad_input_gives_one_line_and_app_keeps_serving(client, real_speech_16k, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio at all")
    cases = {"corrupt upload": (corrupt, "Hello.", "corrupt.wav"), "empty text": (real_speech_16k, "   ", "empty")}
    for name, (ref, text, expected) in cases.items():
        with pytest.raises(AppError) as caught:
            synthesize(client, ref, text=text)
        message = str(caught.value)
        assert "\n" not in message.strip() and expected in message and "Traceback" not in message, (name, message)
        assert "/tmp/" not in message  # the upload's file name, not the server's cache path
    with pytest.raises(AppError, match="reference"):
        client.predict(ref_audio=None, text="Hello.", api_name="/synthesize")
    with pytest.raises(AppError, match="maximum value 8"):  # the slider's range, enforced by Gradio
        synthesize(client, real_speech_16k, candidates=20)
    big = tmp_path / "big.wav"  # over the app's 2 MB upload limit
    sf.write(big, np.zeros(16000 * 70, np.float32) + 0.1, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="maximum file size"):
        client.predict(ref_audio=handle_file(str(big)), text="Hello.", api_name="/synthesize")
    check_result(synthesize(client, real_speech_16k))  # still serving


def test_cli_app_options_and_one_line_errors(bundle, server, monkeypatch, capsys, tmp_path):
    import apps.demo
    from flexitts.cli.main import main

    launched = {}

    def fake_launch(demo, **kwargs):
        launched.update(kwargs, demo=demo)
        demo.local_url = f"http://{kwargs['host']}:{kwargs['port']}/"
        monkeypatch.setattr(demo, "block_thread", lambda: None)

    with monkeypatch.context() as patch:
        patch.setattr(apps.demo, "launch", fake_launch)
        assert main(["app", "--checkpoint", str(bundle), "--device", "cpu", "--port", "7999", "--concurrency", "3",
                     "--max-upload-mb", "5"]) == 0
    demo = launched["demo"]
    assert launched["host"] == "127.0.0.1" and launched["port"] == 7999 and not launched["share"]
    assert demo.flexitts_max_file_size == "5mb" and demo.flexitts_concurrency == 3
    assert "serving on http://127.0.0.1:7999/" in capsys.readouterr().out

    busy = int(server.rstrip("/").rsplit(":", 1)[1])
    cases = [
        (["--checkpoint", str(tmp_path / "no-bundle")], "does not exist"),
        (["--checkpoint", str(bundle), "--device", "cpu", "--port", str(busy)], "in use"),
        (["--port", "70000"], "--port"),
        (["--concurrency", "0"], "--concurrency"),
    ]
    for args, expected in cases:
        assert main(["app", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("flexitts: error:") and expected in err, err


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: `make setup` installs Debian's chromium")
def test_browser_upload_type_click_see_audio_and_boundaries(server, real_speech_16k, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

    reference = tmp_path / "reference.wav"  # a plain wav, the common case in a browser
    speech, rate = sf.read(real_speech_16k, dtype="float32")
    sf.write(reference, speech, rate)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio at all")
    shot = artifacts_dir() / "app.png"

    def error_message(page) -> str:
        """The error toast's message (its title and close button left out)."""
        toast = page.locator(".toast-body").first
        toast.wait_for(state="visible", timeout=30_000)
        lines = [line.strip() for line in toast.inner_text().splitlines() if line.strip() not in ("", "Error", "×")]
        assert len(lines) == 1 and "Traceback" not in lines[0], lines
        return lines[0]

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            # A corrupt upload: a one-line error in the page.
            page.goto(server)
            page.locator("#ref-audio input[type=file]").set_input_files(str(corrupt))
            page.locator("#text textarea").fill("Hello from a real browser.")
            page.locator("#synthesize").click()
            assert "corrupt.wav" in error_message(page)

            # A good reference, a typed text, the button: audio and the boundary picture appear.
            page.goto(server)
            page.locator("#ref-audio input[type=file]").set_input_files(str(reference))
            page.locator("#ref-audio [data-testid^=waveform]").first.wait_for(timeout=20_000)
            page.locator("#ref-text textarea").fill(REF_TEXT)
            page.locator("#text textarea").fill("Hello from a real browser.")
            page.locator("#synthesize").click()
            page.locator("#boundary-plot img").wait_for(state="visible", timeout=60_000)
            audio = page.locator("#output-audio a[download]")
            audio.wait_for(state="attached", timeout=30_000)
            assert audio.get_attribute("href").endswith(".wav")
            assert page.locator("#boundary-plot img").evaluate("img => img.naturalWidth") >= 400
            assert "tokens/s" in page.locator("#details").inner_text(timeout=10_000)
            page.screenshot(path=str(shot), full_page=True)

            # An empty text: a one-line error; the page stays usable.
            page.locator("#text textarea").fill("")
            page.locator("#synthesize").click()
            assert "empty" in error_message(page)
            page.wait_for_timeout(800)  # let the toast finish fading in
            page.screenshot(path=str(artifacts_dir() / "app_error.png"))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"\nscreenshot: {shot}")
