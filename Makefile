# motion4d set-up: `make demo` and `make test` each work on a fresh Debian machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
EXTRAS ?= all,dev
SYSTEM_PACKAGES := libusb-1.0-0 libgl1 libgomp1 g++
PYTEST_ARGS ?=
STAMP := $(VENV)/.motion4d-installed

.PHONY: demo test test-slow test-all bench check-cuda install system-deps clean

demo: install
	$(PY) -m motion4d demo --out outputs/demo

test: install
	$(PY) -m pytest -m "not slow and not cuda" $(PYTEST_ARGS) tests

test-slow: install
	$(PY) -m pytest -m "slow and not cuda" $(PYTEST_ARGS) tests

test-all: install
	$(PY) -m pytest $(PYTEST_ARGS) tests

bench: install
	$(PY) bench/ops.py
	$(PY) bench/training_free.py

# Compile-check every CUDA kernel with nvcc (no GPU needed); see bench/gpu_check.sh for running them.
check-cuda:
	bash motion/ops/csrc/nvcc_check.sh

install: $(STAMP)

$(STAMP): setup.py
	$(MAKE) system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

# open3d's shared library needs libusb, libGL and libgomp from Debian; g++ builds the C++ ops on first use.
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

clean:
	rm -rf $(VENV) outputs build *.egg-info
