# Quickstart:  make book   (build and execute the book on the embedded model)
#              make test   (run the test suite)
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# Touché23 beside the checkout (this project's machines); elsewhere pass a path or download.
TOUCHE_DIR := $(abspath ../shared/data/touche23)
ifneq ($(wildcard $(TOUCHE_DIR)/arguments-training.tsv),)
export CONVA_NB_TOUCHE ?= $(TOUCHE_DIR)
endif

.PHONY: install book demo test bench clean

$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

book: demo

demo: $(STAMP)
	$(BIN)/python -m conva_nb.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf _build $(VENV)
