# searchrec front door. Every target sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PIPELINE ?= demo
START ?=
END ?=

.PHONY: setup test lint demo demo-data compile images run submit bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the CPU build (never let a dependency pull a CUDA build into the dev venv)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[all,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not benchmark"

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

demo-data: setup
	$(PY) -m searchrec.cli demo-data

demo: setup
	$(PY) -m searchrec.cli demo

compile: setup
	SEARCHREC_IMAGE_TAG=$${SEARCHREC_IMAGE_TAG:-$$(git rev-parse --short HEAD 2>/dev/null || echo dev)} $(PY) -m searchrec.cli compile --out compiled

bench: setup
	$(PY) -m pytest -m benchmark -s tests/benchmarks

images: setup
	$(PY) -m searchrec.cli images --push

run submit: setup
	$(PY) -m searchrec.cli submit --pipeline $(PIPELINE) --start-date $(START) --end-date $(END)

clean:
	rm -rf local_outputs compiled runs
