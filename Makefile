# pfmigrate: two commands set everything up on a fresh machine.
#   make run    the main job on the embedded default
#   make test   lint, types, and the whole suite (the kernel tier boots User-Mode Linux)
#   make soak   the long runs (convergence under loss, kill -9) at full size
#   make dist   the wheel and sdist in dist/, with the docs, examples, man pages, units, completion

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SYSTEM_PACKAGES := user-mode-linux kmod iproute2 iputils-ping netbase
# (systemd-analyze and groff, which tests/test_packaging.py uses where present, come with
# Debian's systemd and groff-base, installed on any Debian system that boots with systemd.)

.PHONY: run test lint unit kernel soak bench fuzz vectors system-packages dist completion clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pfmigrate needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The kernel tier needs Debian's User-Mode Linux (and setkey's protocol names, netbase's
# /etc/protocols); as root we install what is missing.
system-packages:
	@if [ "$$(id -u)" != 0 ]; then \
	    echo "not root: not installing $(SYSTEM_PACKAGES) (without them the kernel tier skips)"; \
	elif ! command -v apt-get >/dev/null; then \
	    echo "no apt-get: install $(SYSTEM_PACKAGES) by hand for the kernel tier"; \
	else \
	    missing=""; \
	    for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	    if [ -n "$$missing" ]; then \
	        echo "installing$$missing"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    fi; \
	fi

run: $(STAMP)
	$(BIN)/pfmigrate demo

lint: $(STAMP)
	$(BIN)/ruff check --no-cache src tests testbed bench packaging
	$(BIN)/ruff format --no-cache --check src tests testbed bench packaging
	$(BIN)/mypy

test: $(STAMP) system-packages lint
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest -m "not kernel"

kernel: $(STAMP) system-packages
	$(BIN)/pytest -m kernel

soak: $(STAMP)  # the soak-marked tests at full size (the default suite runs a bounded share)
	PFMIGRATE_SOAK=1 $(BIN)/pytest -m soak -s

bench: $(STAMP)  # every benchmark runs; a missed target fails the run at the end
	@missed=""; for b in codec xfrm engine keyd handover; do \
		$(BIN)/python bench/$$b.py || missed="$$missed $$b"; \
	done; if [ -n "$$missed" ]; then echo "targets missed or failed in:$$missed"; exit 1; fi

fuzz: $(STAMP)
	$(BIN)/python tests/fuzz/fuzz_pfkey.py --cases 1000000
	$(BIN)/python tests/fuzz/fuzz_xfrm.py --cases 1000000
	$(BIN)/python tests/fuzz/fuzz_mip6.py --cases 1000000

vectors: $(STAMP) system-packages
	$(BIN)/python -m testbed.capture_vectors

# The wheel carries examples/, docs/ (with the man pages), the systemd units and the bash
# completion under pfmigrate/share/ (packaging/pfmigrate_build.py); `pfmigrate demo --files`
# lists them once installed. Built without isolation from the venv's setuptools and build.
dist: $(STAMP)
	rm -rf dist build
	$(BIN)/python -m build --no-isolation --outdir dist .
	rm -rf build

# The bash completion, generated from the argparse parser; a test fails when it is stale.
completion: $(STAMP)
	$(BIN)/python packaging/completion.py > packaging/completion/pfmigrate.bash

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
