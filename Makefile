# camhub developer entry points. `make demo` and `make test` work on a fresh Debian machine:
# they create .venv, install the project, and (as root) install the Debian packages the tests need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Debian packages: ffmpeg (ffprobe/ffmpeg as independent clients), age (stock decrypt of deliveries),
# chromium (real-browser tests of the owner UI), faketime (libfaketime: the daemon's clock jumps in
# tests/faults/test_clock_jumps.py).
SYSTEM_PACKAGES := ffmpeg age chromium faketime

.PHONY: all venv sysdeps demo test lint format bench soak fuzz mutate mutate-report clean

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

# Full run (<= 10 min on 2 cores): refreshes bench/results/latest.json and latest.md (committed).
bench: venv sysdeps
	$(BIN)/python -m bench

# Every scenario with tiny sizes (what tests/test_bench_smoke.py runs); writes to a temp dir.
bench-smoke: venv sysdeps
	$(BIN)/python -m bench --smoke

# Coverage-guided fuzzing of the network parsers with atheris (fuzz/harness.py); not in CI.
# Each target runs FUZZ_SECONDS; a crash stops with the input saved as fuzz/crash-*.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := structured_fields httpsig request_body jws decision_payload annexb doorbell
fuzz: venv
	$(BIN)/pip install --quiet -e '.[fuzz]'
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/.corpus/$$t; \
		echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
		$(BIN)/python fuzz/harness.py $$t fuzz/.corpus/$$t fuzz/seeds/$$t \
			-max_total_time=$(FUZZ_SECONDS) -artifact_prefix=fuzz/ -print_final_stats=1 || exit 1; \
	done

# Mutation testing of the consent core with mutmut (docs/MUTATION.md); not in CI. The files mutated and
# the tests run are [tool.mutmut] in pyproject.toml. mutmut keeps its results in mutants/ and re-tests
# only what changed; MUTATE_FRESH=1 starts from scratch (after a merge, to re-score everything).
# The run is bounded by MUTATE_TIMEOUT; then docs/MUTATION.md is rewritten from the results.
MUTATE_JOBS ?= 2
MUTATE_TIMEOUT ?= 3h
mutate: venv
	$(BIN)/pip install --quiet -e '.[mutation]'
	@if [ -n "$(MUTATE_FRESH)" ]; then rm -rf mutants; fi
	@start=$$(date +%s); \
	timeout $(MUTATE_TIMEOUT) $(BIN)/mutmut run --max-children $(MUTATE_JOBS); rc=$$?; \
	echo $$(( $$(date +%s) - start )) > mutants/run-seconds; \
	if [ $$rc -ne 0 ]; then echo "mutmut run exited with $$rc"; exit $$rc; fi
	$(MAKE) mutate-report

# Rewrite the generated part of docs/MUTATION.md from mutants/ (no test run).
mutate-report: venv
	$(BIN)/python -m mutation.report --out docs/MUTATION.md

# 30 minutes: 4 simulated cameras, events, an agency polling, retention cycling; prints RSS/fds/threads/tasks
# and fails if they grow or the log has errors (bench/soak.py). Not in CI (tests/faults/test_soak.py runs 60 s).
soak: venv sysdeps
	$(BIN)/python -m bench.soak --seconds 1800 --interval 30

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
