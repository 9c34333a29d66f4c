# Set-up and the two jobs. `make run` installs everything and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned: a local CPU wheel of 2.13.0 is used where the machine has one, and an unpinned
# resolve would pull the CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install install-test dataset browser run test clean

install: $(VENV)/.installed dataset

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e .
	touch $@

install-test: $(VENV)/.installed-test dataset browser

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Debian's dataset-fashion-mnist where the data is not found yet and apt and root are at hand;
# elsewhere fashionclf downloads the files on first use.
dataset: $(VENV)/.installed
	@if ! $(PY) -c "import sys; from fashionclf.data import find_data_dir; sys.exit(find_data_dir() is None)" \
	    && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	fi

# Debian's Chromium for the browser test (Playwright drives it; no browser download). Where apt or root is
# missing, that one test is skipped with its reason.
browser:
	@if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

run: install
	$(VENV)/bin/fashionclf run

# The tests whose right answer depends on the CPU (int8, bench, inference, bf16) run again as an AVX2-only CPU
# (no VNNI, no bf16, no AMX) sees them, where this one has more; on an AVX2-only CPU the first pass is that already.
AVX2_ONLY := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
CPU_DEPENDENT_TESTS := tests/test_runtime.py tests/test_quantize.py tests/test_bench.py tests/test_inference.py \
	tests/test_backends.py

test: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -n auto --dist loadfile
	@if $(PY) -c "import sys; from fashionclf.runtime import cpu; c = cpu(); \
	    sys.exit(c.capability == 'AVX2' and not (c.vnni or c.bf16 or c.amx))"; then \
	  echo "The CPU-dependent tests again, as on an AVX2-only CPU ($(AVX2_ONLY)):"; \
	  $(AVX2_ONLY) $(PY) -m pytest -q -n auto --dist loadfile $(CPU_DEPENDENT_TESTS); \
	else echo "This CPU is AVX2-only: the CPU-dependent tests ran as on one."; fi

clean:
	rm -rf $(VENV) runs
