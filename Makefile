# Two commands: `make lab` and `make test`. Everything else is set-up they share.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch first, pinned: here that pin is a local CPU wheel, while a bare `torch` pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: lab test install clean

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

clean:
	rm -rf $(VENV) build *.egg-info
