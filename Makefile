# The two commands of the README. Both do all the set-up on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fastso3-installed

.PHONY: demo test setup

demo: $(STAMP)
	$(VENV)/bin/fastso3 demo

test: $(STAMP)
	$(PY) -m pytest -q -x --durations=15

setup: $(STAMP)

$(VENV)/bin/python:
	python3 -m venv $(VENV)

# torch first, from the pinned CPU build, so no extra can pull another torch build.
$(STAMP): $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,bench]" "torch==2.13.0"
	touch $(STAMP)
