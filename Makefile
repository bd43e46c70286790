# FlexiTTS quick start: `make demo` and `make test` each install everything first (idempotently).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# chromium (+ fonts-liberation, a Recommends that apt's --no-install-recommends skips) drives the web demo's
# browser test through Playwright: no browser download, Debian's /usr/bin/chromium is launched directly.
APT_PACKAGES := espeak-ng mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 wordnet-base fortunes chromium fonts-liberation
# Optional: the 16 other languages' mbrola databases behind the accented corpus voices (`mb-de1-en`, ...; see
# flexitts/corpus/voices.py). Not needed by the demo or the tests.
ACCENTED_VOICE_PACKAGES := $(addprefix mbrola-,af1 de1 de2 de3 de4 de5 de6 fr1 fr4 gr2 hu1 nl2 pl1 ro1 sw1 sw2)
SYSTEM_STAMP := $(VENV)/.system-packages
PYTHON_STAMP := $(VENV)/.python-packages
# resemblyzer's wheel requires the old `typing` backport; install it without dependencies (they are in [eval]).
RESEMBLYZER := resemblyzer==0.1.4
DEMO_OUT ?= demo_out

DEMO_VOICE := flexitts/assets/demo/voices/mb-us1.flac
DEMO_REF_TEXT := The Surgeon General has determined that cigarette smoking is hazardous to your health.
DEMO_TEXT := Dynamic frame rate tokens let a language model speak with fewer steps per second.

.PHONY: setup setup-accented-voices test demo bundle clean

setup: $(SYSTEM_STAMP) $(PYTHON_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(SYSTEM_STAMP): Makefile scripts/setup-system.sh scripts/flexitts-nonfree.sources | $(BIN)/python
	bash scripts/setup-system.sh $(APT_PACKAGES)
	touch $@

setup-accented-voices: $(SYSTEM_STAMP)
	bash scripts/setup-system.sh $(ACCENTED_VOICE_PACKAGES)

$(PYTHON_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,eval]'
	$(BIN)/python -m pip install -q --no-deps $(RESEMBLYZER)
	touch $@

test: setup
	$(BIN)/python -m pytest -q

# Speak a sentence with the bundled demo models in the voice of a bundled example speaker.
demo: setup
	mkdir -p $(DEMO_OUT)
	$(BIN)/flexitts synthesize --ref $(DEMO_VOICE) --ref-text "$(DEMO_REF_TEXT)" --text "$(DEMO_TEXT)" --out $(DEMO_OUT)/demo.wav --seed 0

# Rebuild every model of the demo bundle from scratch on this CPU (resumable: run it again to continue).
bundle: setup
	$(BIN)/flexitts recipe demo

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build *.egg-info
