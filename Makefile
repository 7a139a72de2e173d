# The two commands of the README. Both do all the set-up on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fastso3-installed

.PHONY: demo test setup

demo: $(STAMP)
	$(VENV)/bin/fastso3 demo

# Two pytest-xdist workers (one torch thread each, tests/conftest.py), whole files per worker: e3nn's own suite
# (tests/test_e3nn_suite.py, several minutes in one subprocess) runs beside the rest.
test: $(STAMP)
	$(PY) -m pytest -q -x -n 2 --dist loadfile --durations=15

setup: $(STAMP)

$(VENV)/bin/python:
	python3 -m venv $(VENV)

# torch first, from the pinned CPU build, so no extra can pull another torch build. mace-torch (the peer of
# fastso3.compat.from_mace) pins e3nn 0.4.4 but runs on 0.6.0: it goes in without its deps (the "mace" extra).
$(STAMP): $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,bench,mace]" "torch==2.13.0"
	$(PY) -m pip install -q --no-deps mace-torch==0.3.16
	touch $(STAMP)
