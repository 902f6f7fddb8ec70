# camhub developer entry points. `make demo` and `make test` work on a fresh Debian machine:
# they create .venv, install the project, and (as root) install the Debian packages the tests need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Debian packages: ffmpeg (ffprobe/ffmpeg as independent clients), age (stock decrypt of deliveries),
# chromium (real-browser tests of the owner UI), faketime (libfaketime: the daemon's clock jumps in
# tests/faults/test_clock_jumps.py), iproute2 (`ip netns`: tests/security/test_owner_lan.py gives the hub
# a network namespace of its own where an "internet" client can be played on loopback), nats-server
# (the JetStream engine under camhub-relay, tests/relay/), coturn (TURN for live view through the relay),
# systemd (only its systemd-analyze: tests/packaging/ verifies the installed unit offline; nothing
# needs systemd running), and GStreamer with its Python bindings (Debian's python3-gst-1.0, run with
# /usr/bin/python3): the rtsp-server cameras and the webrtcbin WHIP client of tests/interop/, camera
# stacks nobody here wrote; mosquitto (the MQTT broker tests/notify/ start on 127.0.0.1 with a
# password file, as Home Assistant users run it). The daemon's own run-time packages are packaging/install.sh's RUNTIME_PACKAGES.
SYSTEM_PACKAGES := ffmpeg age chromium faketime iproute2 nats-server coturn systemd \
	gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 gir1.2-gst-plugins-bad-1.0 python3-gst-1.0 python3-gi \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
	gstreamer1.0-nice mosquitto

# Test-only JavaScript for the browser tests (axe-core, injected into pages to check accessibility),
# pinned by tests/web/package-lock.json and installed with npm ci; the hub never serves it.
WEBDEPS := tests/web/node_modules/.installed-stamp

.PHONY: all venv sysdeps webdeps demo test lint format bench soak fuzz mutate mutate-report clean install uninstall rollback

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

$(WEBDEPS): tests/web/package.json tests/web/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing (Node.js 18+): the browser tests need it to install axe-core"; exit 1; }
	cd tests/web && npm ci --no-audit --no-fund --loglevel=error
	touch $(WEBDEPS)

webdeps: $(WEBDEPS)

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

# Installing on a box (README "Installing on a box"): `sudo make install` on Debian 12 / Raspberry Pi OS
# installs or upgrades the service; DESTDIR=DIR lays the same files out under DIR and touches nothing
# else. BIND (the LAN address to serve), HUB_NAME (default: the host name), UNITDIR (default
# /usr/local/lib/systemd/system), PURGE=1 (uninstall: also config, data and keys), RESTORE_DB=1
# (rollback: also the database copy from before the upgrade). packaging/install.sh does the work.
INSTALL_ENV = DESTDIR="$(DESTDIR)" BIND="$(BIND)" HUB_NAME="$(HUB_NAME)" UNITDIR="$(UNITDIR)" \
	PURGE="$(PURGE)" RESTORE_DB="$(RESTORE_DB)"

install:
	@$(INSTALL_ENV) bash packaging/install.sh install

uninstall:
	@$(INSTALL_ENV) bash packaging/install.sh uninstall

rollback:
	@$(INSTALL_ENV) bash packaging/install.sh rollback

test: venv sysdeps webdeps
	$(BIN)/pytest -q -p no:cacheprovider

lint: venv
	$(BIN)/ruff check hub camhub_protocol relay firmware_sim tests bench mutation
	$(BIN)/ruff format --check hub camhub_protocol relay firmware_sim tests bench mutation
	$(BIN)/shellcheck packaging/install.sh

format: venv
	$(BIN)/ruff format hub camhub_protocol relay firmware_sim tests bench mutation
	$(BIN)/ruff check --fix hub camhub_protocol relay firmware_sim tests bench mutation

# Full run (<= 10 min on 2 cores): refreshes bench/results/latest.json and latest.md (committed).
bench: venv sysdeps
	$(BIN)/python -m bench

# Every scenario with tiny sizes (what tests/test_bench_smoke.py runs); writes to a temp dir.
bench-smoke: venv sysdeps
	$(BIN)/python -m bench --smoke

# Coverage-guided fuzzing of the network parsers with atheris (fuzz/harness.py); not in CI.
# Each target runs FUZZ_SECONDS; a crash stops with the input saved as fuzz/crash-*.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := structured_fields httpsig request_body jws decision_payload annexb doorbell rtp_stream sdp
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
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache tests/web/node_modules
