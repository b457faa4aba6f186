# The two commands of the README's quick start. Both create the environment first.
VENV ?= .venv

.PHONY: setup compare test test-fast lint

setup:
	VENV=$(VENV) scripts/setup.sh

# The main job: torch and keras against the float64 reference, plus both ONNX exports.
compare: setup
	$(VENV)/bin/alexbench compare --backends torch,keras

# The whole test suite (pytest's exit code 5, "no tests ran", fails like any other).
test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

# The inner loop: everything but the tests marked slow (full-size AlexNet runs).
test-fast: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -m "not slow"

lint:
	$(VENV)/bin/ruff check .
