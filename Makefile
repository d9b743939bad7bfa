# One command for the main job, one for the tests. Each builds .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)  ## run the tour notebook headless on a real kernel; writes notebooks/tour.executed.ipynb
	$(PY) notebooks/run.py notebooks/tour.ipynb notebooks/tour.executed.ipynb

test: $(STAMP)  ## the whole suite
	$(PY) -m ruff check src tests notebooks benchmarks
	$(PY) -m pytest -p no:cacheprovider tests

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/core.py
	$(PY) benchmarks/transfer.py

clean:
	rm -rf $(VENV) notebooks/*.executed.ipynb test-artifacts
