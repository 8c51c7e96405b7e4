# Two entry points do all the set-up on a fresh machine:
#   make demo   - create .venv, install (with Fashion-MNIST), the zoo, the vanishing gradient, a short run
#   make test   - create .venv, install (with the test extra and Fashion-MNIST), run the tests
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
FASHION_MNIST := /usr/share/datasets/fashion-mnist
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install fashion-mnist docs docs-html typecheck dist-check bench bench-quick gpu-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Debian's dataset-fashion-mnist: the real data set the training tests learn from.
fashion-mnist:
	@[ -d $(FASHION_MNIST) ] || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist; }

# 3-6 minutes on 2 busy CPU cores (README: measured); trains on the real Fashion-MNIST images, installed first.
demo: $(VENV)/.installed fashion-mnist
	$(PY) examples/demo.py

test: $(VENV)/.installed fashion-mnist
	CIFARNETS_REQUIRE_FASHION_MNIST=1 $(PY) -m pytest -q -n 2

docs: $(VENV)/.installed
	$(PY) docs/generate.py

# The documentation site (guides and the API reference from the docstrings) in site/; a warning fails it.
docs-html: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# mypy on the package, configured in pyproject.toml ([tool.mypy]).
typecheck: $(VENV)/.installed
	$(PY) -m mypy

# The sdist and wheel a release would upload, built from scratch and checked as PyPI renders them.
dist-check: $(VENV)/.installed
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*

# Speed targets live here, measured side by side and printed as ratios (docs/performance.md).
bench: $(VENV)/.installed
	$(PY) benchmarks/models.py
	$(PY) benchmarks/train_throughput.py

# Every path of the benchmarks and of the GPU check in a few minutes on the CPU: not a measurement.
bench-quick: $(VENV)/.installed
	PYTHON=$(PY) benchmarks/gpu_check.sh --dry-run gpu_check_out

# On a machine with one CUDA GPU: at most 8 minutes, outputs in $$OUT or gpu_check_out/.
gpu-check: $(VENV)/.installed
	PYTHON=$(PY) benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info gpu_check_out
