# One command for the main job, one for the tests. Each builds .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test chromium hosts-tools bench bench-remote clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)  ## run the tour notebook headless on a real kernel; writes notebooks/tour.executed.ipynb
	$(PY) notebooks/run.py notebooks/tour.ipynb notebooks/tour.executed.ipynb

test: $(STAMP) chromium hosts-tools  ## the whole suite
	$(PY) -m ruff check src tests notebooks benchmarks
	$(PY) -m pytest -p no:cacheprovider tests

chromium:  ## Debian's Chromium for the browser test (never a browser download of Playwright's own)
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	      || echo "Chromium could not be installed: the browser test will be skipped"; \
	  else echo "Chromium is not installed and cannot be installed here: the browser test will be skipped"; fi; }

hosts-tools:  ## Debian's sshd and nft for the remote-worker tests (skipped, saying why, without them)
	@{ command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]; } && { command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ]; } || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server nftables >/dev/null; } \
	      || echo "openssh-server/nftables could not be installed: the SSH and firewall tests will be skipped"; \
	  else echo "sshd/nft are not installed and cannot be installed here: the SSH and firewall tests will be skipped"; fi; }

bench: $(STAMP)  ## by hand: every benchmark, against Dask and ipyparallel where they compare
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/core.py
	$(PY) benchmarks/transfer.py
	$(PY) benchmarks/timeline.py
	$(PY) benchmarks/pipeline.py
	$(PY) benchmarks/map.py

bench-remote: $(STAMP)  ## by hand, as root: 2 workers in 2 network namespaces, TLS and plain TCP against raw streams and Dask
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/remote.py

clean:
	rm -rf $(VENV) notebooks/*.executed.ipynb test-artifacts
