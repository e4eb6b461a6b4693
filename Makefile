# `make demo` and `make test` work on a fresh machine: each creates the virtual
# environment on first use, installs selfsup into it, then runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format docs venv browser clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,text,tensorboard,tables,timm,hf,onnx,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/selfsup demo

# the report test opens a page in Debian's chromium: installed here when absent and possible (root, apt-get)
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "make: chromium is not installed (needs root and apt-get); the browser test will be skipped"

# the tests of committed numbers run again where ATen, oneDNN and MKL take another CPU's code paths:
# AVX2 (as on a CPU without AVX-512), and no vectorisation at all (sums in yet another order)
AVX2 := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
SCALAR := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2

test: $(STAMP) browser lint docs
	$(BIN)/python -m pytest
	$(AVX2) $(BIN)/python -m pytest -q -m pinned
	$(SCALAR) $(BIN)/python -m pytest -q -m pinned

# ruff checks the format and the lint rules of pyproject.toml; `make format` rewrites the files
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

# the documentation site (docs/, Sphinx): -W makes every warning an error: a broken link, a
# missing page, a docstring reference to selfsup that does not resolve
docs: $(STAMP)
	rm -rf build/docs docs/reference
	$(BIN)/sphinx-build -q -W --keep-going -b html docs build/docs
	@echo "make: the site is in build/docs/index.html"

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache
