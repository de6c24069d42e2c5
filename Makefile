# Two commands: `make lab` and `make test`. Everything else is set-up they share.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch first, pinned: here that pin is a local CPU wheel, while a bare `torch` pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: lab test test-loaded install clean site site-full test-site

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (diffusion-edu)"
	touch $(STAMP)

install: $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# Unit tests and every notebook (nbval), two workers; --dist loadfile keeps a notebook's cells together.
# One thread per worker (and per notebook kernel): two workers × torch's default 2 threads on 2 cores
# oversubscribe the CPU and run ~10× slower.
test: $(STAMP)
	DIFFUSION_EDU_FAST=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile --durations=15 $(PYTEST_ARGS)

# The tests with time limits (the grader's, the browser's) beside two busy loops, one per core: what a
# shared CI machine does to them. They must pass here too; no limit in them is a guess at this machine's speed.
test-loaded: $(STAMP)
	@hogs=""; for i in 1 2; do sh -c 'while :; do :; done' & hogs="$$hogs $$!"; done; \
	trap 'kill $$hogs 2>/dev/null' EXIT INT TERM; \
	echo "test-loaded: two busy loops beside the tests (pids$$hogs)"; \
	DIFFUSION_EDU_FAST=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile --durations=5 \
		tests/test_grade.py tests/test_browser.py $(PYTEST_ARGS)

# The course as a website (README, "The course as a website"): Sphinx + myst-nb + sphinx-book-theme, tools from
# the `site` extra. Every notebook is executed (fast mode here, full settings in `make site-full`, the release
# build) and its outputs cached per mode in build/site-cache/, so an unchanged notebook is not run again.
# Strict: a warning (a broken reference, a missing figure) or a notebook that raises fails the build, and
# site/check_links.py then checks every internal link and anchor of the built HTML (no network).
SITE_STAMP := $(VENV)/.site-installed
SITE_DIR   ?= build/site
SPHINXOPTS ?=
SPHINX      = OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m sphinx -b html -W --keep-going -n -c site $(SPHINXOPTS)

$(SITE_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,site]"
	touch $(SITE_STAMP)

site: $(SITE_STAMP)
	DIFFUSION_EDU_FAST=1 $(SPHINX) -d build/site-doctrees/fast . build/site
	$(PY) site/check_links.py build/site

site-full: $(SITE_STAMP)
	DIFFUSION_EDU_FAST=0 $(SPHINX) -d build/site-doctrees/full . build/site-full
	$(PY) site/check_links.py build/site-full

# The site in a real browser (tests/test_site.py): needs a built site; fails, not skips, when it is missing.
test-site: $(SITE_STAMP)
	DIFFUSION_EDU_REQUIRE_SITE=1 DIFFUSION_EDU_SITE_DIR=$(SITE_DIR) $(PY) -m pytest \
		tests/test_site.py tests/test_site_build.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
