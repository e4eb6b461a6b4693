# `make demo` and `make test` work on a fresh machine: each creates the virtual
# environment on first use, installs selfsup into it, then runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format venv browser clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,text,tensorboard,tables,timm,hf,onnx]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/selfsup demo

# the report test opens a page in Debian's chromium: installed here when absent and possible (root, apt-get)
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "make: chromium is not installed (needs root and apt-get); the browser test will be skipped"

test: $(STAMP) browser lint
	$(BIN)/python -m pytest

# ruff checks the format and the lint rules of pyproject.toml; `make format` rewrites the files
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache
