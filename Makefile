# camhub developer entry points. `make demo` and `make test` work on a fresh Debian machine:
# they create .venv, install the project, and (as root) install the Debian packages the tests need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Debian packages: ffmpeg (ffprobe/ffmpeg as independent clients), age (stock decrypt of deliveries),
# chromium (real-browser tests of the owner UI).
SYSTEM_PACKAGES := ffmpeg age chromium

.PHONY: all venv sysdeps demo test lint format bench soak clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

sysdeps:
	@missing=""; \
	for pkg in $(SYSTEM_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "missing Debian packages:$$missing (install them, or run make as root)"; exit 1; \
		fi; \
	fi

demo: venv
	$(BIN)/camhub demo

test: venv sysdeps
	$(BIN)/pytest -q -p no:cacheprovider

lint: venv
	$(BIN)/ruff check hub firmware_sim tests bench
	$(BIN)/ruff format --check hub firmware_sim tests bench

format: venv
	$(BIN)/ruff format hub firmware_sim tests bench
	$(BIN)/ruff check --fix hub firmware_sim tests bench

bench: venv sysdeps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
