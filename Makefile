# Every target bootstraps its own virtual environment from pyproject.toml, so a fresh
# machine with only Python 3.11+ and make can run any of them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup system-deps run test check docs bench fuzz soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Non-Python needs of the tests (libseccomp for the sandbox wall), installed when missing.
system-deps:
	bash tools/system-deps

run: $(STAMP)
	$(BIN)/knot serve --project .

test: $(STAMP) system-deps
	$(BIN)/python -m pytest

check: $(STAMP)
	$(BIN)/ruff check runtime tests benchmarks tools
	$(BIN)/ruff format --check runtime tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_layers.py

# The documentation site (mkdocs.yml, docs/) into site/; warnings are errors. `make test` builds
# it too (tests/test_docs_site.py), so CI checks it.
# (NO_MKDOCS_2_WARNING: mkdocs-material's banner about its successor, printed on every build.)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Mixed load on one knot serve for MINUTES (default 10), sampling its memory and descriptors;
# prints the samples and a verdict (flat or growing). Not part of `make test`.
MINUTES ?= 10
soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --minutes $(MINUTES)

# The fuzz suites with 40 times the examples `make test` gives them (several minutes).
fuzz: $(STAMP)
	KNOT_FUZZ=deep $(BIN)/python -m pytest tests/test_fuzz_http.py tests/test_fuzz_inputs.py \
		tests/test_fuzz_templates.py \
		tests/test_fuzz_cli.py -p no:cacheprovider

clean:
	rm -rf $(VENV) .knot .mypy_cache .pytest_cache .ruff_cache site
