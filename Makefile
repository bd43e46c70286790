# FlexiTTS quick start: `make demo` and `make test` each install everything first (idempotently).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := espeak-ng mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 wordnet-base fortunes
SYSTEM_STAMP := $(VENV)/.system-packages
PYTHON_STAMP := $(VENV)/.python-packages
# resemblyzer's wheel requires the old `typing` backport; install it without dependencies (they are in [eval]).
RESEMBLYZER := resemblyzer==0.1.4
DEMO_OUT ?= demo_out

.PHONY: setup test demo clean

setup: $(SYSTEM_STAMP) $(PYTHON_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(SYSTEM_STAMP): scripts/setup-system.sh scripts/flexitts-nonfree.sources | $(BIN)/python
	bash scripts/setup-system.sh $(APT_PACKAGES)
	touch $@

$(PYTHON_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,eval]'
	$(BIN)/python -m pip install -q --no-deps $(RESEMBLYZER)
	touch $@

test: setup
	$(BIN)/python -m pytest -q

# Until the TTS pipeline lands, the demo speaks a small offline corpus (the models' training data).
demo: setup
	$(BIN)/flexitts corpus synth --out $(DEMO_OUT)/corpus --hours 0.02

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build *.egg-info
