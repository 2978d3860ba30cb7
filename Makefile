# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the browser tests drive Debian's chromium (tests/browser/conftest.py); NO_BROWSER=1 skips them
CHROMIUM ?= /usr/bin/chromium
APT_GET ?= apt-get

.PHONY: demo test lint venv browser-ready

$(BIN)/gateway: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(BIN)/gateway

venv: $(BIN)/gateway

demo: venv
	$(BIN)/gateway demo

# chromium present, or installed here when we can (root with apt, as .ci/run), or one line saying how
browser-ready:
	@if [ -n "$(NO_BROWSER)" ] || [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v $(APT_GET) >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests ($(APT_GET) install chromium)"; \
	    $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq chromium >/dev/null; \
	else \
	    echo "make test: the browser tests need Debian's chromium: run 'sudo apt-get install -y chromium', or 'make test NO_BROWSER=1' to skip them" >&2; \
	    exit 1; \
	fi

# the last line printed says how many tests were skipped and why (tests/skip_summary.py)
test: venv browser-ready
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -p tests.skip_summary

lint: venv
	$(BIN)/ruff check .
