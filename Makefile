# Every target bootstraps its own virtual environment from pyproject.toml, so a fresh
# machine with only Python 3.11+ and make can run any of them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup run test check bench fuzz soak clean nats-server

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/knot serve --project .

# The cluster's tests need nats-server (Debian's package; installed here when run as root).
nats-server:
	@command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || \
	{ [ "$$(id -u)" -eq 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; } || \
	{ echo "nats-server is missing: apt-get install nats-server (as root)" >&2; exit 1; }

test: $(STAMP) nats-server
	$(BIN)/python -m pytest

check: $(STAMP)
	$(BIN)/ruff check runtime tests benchmarks
	$(BIN)/ruff format --check runtime tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_layers.py

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
	rm -rf $(VENV) .knot .mypy_cache .pytest_cache .ruff_cache
