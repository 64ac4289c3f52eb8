# The README's two commands live here. Each target installs what it needs into .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.steerkit-installed
OUT ?= outputs

.PHONY: pipeline quickstart test install notebooks clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH (or run: make PY=python3 ...)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch pinned first: its CPU build is local; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

## Main job: the paper's pipeline on the SmolLM2 organism (vectors from the text-only SmolLM2 -> sweep on train ->
## chosen cells confirmed on test -> best-cell table with CIs + heatmaps in $(OUT)/pipeline). ~7 min on a 2-core CPU.
pipeline: $(STAMP)
	STEERKIT_THREADS=$${STEERKIT_THREADS:-2} $(BIN)/steerkit sweep configs/pipeline.yaml --out $(OUT)/pipeline

## The quickstart notebook, headless, on the embedded default (the small organism).
quickstart: $(STAMP)
	mkdir -p $(OUT)/01_quickstart
	STEERKIT_OUT=$(OUT)/01_quickstart $(BIN)/papermill notebooks/01_quickstart.ipynb $(OUT)/01_quickstart/01_quickstart.ipynb --cwd . -k python3

## Every notebook, headless (CI runs these through the test suite as well).
notebooks: $(STAMP)
	for nb in notebooks/*.ipynb; do n=$$(basename $$nb .ipynb); mkdir -p $(OUT)/$$n; \
	  STEERKIT_OUT=$(OUT)/$$n $(BIN)/papermill $$nb $(OUT)/$$n/$$n.ipynb --cwd . -k python3 || exit 1; done

## Test suite (includes executing every notebook under papermill).
test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(OUT) .pytest_cache
