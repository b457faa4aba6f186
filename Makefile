# The commands of the README's quick start. Each creates the environment first.
VENV ?= .venv

.PHONY: setup setup-test compare test test-fast lint

# Python packages only (torch's CPU build by default: scripts/setup.sh says how to get CUDA's).
setup:
	VENV=$(VENV) scripts/setup.sh

# The tests also need Graphviz and Chromium (the report tests render HTML and diagrams).
setup-test:
	VENV=$(VENV) scripts/setup.sh --system-tools

# The main job: torch and keras against the float64 reference, plus both ONNX exports.
compare: setup
	$(VENV)/bin/alexbench compare --backends torch,keras

# The whole test suite (pytest's exit code 5, "no tests ran", fails like any other).
test: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

# The inner loop: everything but the tests marked slow (full-size AlexNet runs).
test-fast: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -m "not slow"

lint:
	$(VENV)/bin/ruff check .
