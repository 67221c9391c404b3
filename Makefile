# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv relink system test lint audit lock demo demo-replay bench soak screenshots clean

# Real servers the integration tests start on loopback, from Debian's packages.
DEBIAN_PACKAGES := prometheus prometheus-alertmanager rsyslog stunnel4 openssl chromium chromium-driver

venv: $(STAMP)

# Reinstall whenever the lock or the project's metadata changes: every dependency at the
# version and hash requirements.lock pins, then the project itself without resolving anything.
# The lock is complete, so pip installs it without resolving (`--no-deps`): resolving again let an
# unpinned extra (pip-audit's `CacheControl[filecache]`) pull a newer release from PyPI, which
# --require-hashes refuses; `pip check` still proves the set consistent.
# `editable_mode=strict` installs a tree of links, which mypy and every tool can follow (the
# default mode hides the packages behind an import hook).
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip check
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --config-settings editable_mode=strict -e .
	touch $(STAMP)

# After a change to the dependencies in pyproject.toml: pin them again, with hashes.
lock: $(STAMP)
	$(BIN)/pip-compile --quiet --generate-hashes --extra dev --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml

# Known vulnerabilities in the locked dependencies (PyPI's advisory data): fails on any. A
# package the service cannot look up is listed as not audited.
audit: $(STAMP)
	$(BIN)/pip-audit --progress-spinner off --disable-pip -r requirements.lock

# New modules need the link tree refreshed; this is cheap and keeps a working tree honest.
relink: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --config-settings editable_mode=strict -e .

lint: relink
	$(BIN)/ruff check models streams alerts tests bench
	$(BIN)/ruff format --check models streams alerts tests bench
	$(BIN)/mypy -p accessdrift.models -p accessdrift.streams -p accessdrift.alerts

# Installs only what is missing, so a machine that has them needs neither root nor the network.
system:
	@missing=""; for package in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "ok installed" || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages the tests need:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

test: system lint
	$(BIN)/pytest -q -n 2 --dist loadgroup

# The fault tests at full length (minutes of kill -9 loops, 30 s broker loss, larger
# organisations, the disk filling up) and the engine's model at 10,000 examples.
soak: system relink
	ACCESSDRIFT_SOAK=1 $(BIN)/pytest -q -s tests/streams/test_faults.py tests/streams/test_faults_broker.py \
		tests/alerts/test_notify.py \
		tests/streams/test_faults_disk.py tests/streams/test_engine_model.py

# The README's pictures of the status page and the report, taken by their browser tests.
screenshots: system relink
	ACCESSDRIFT_SCREENSHOTS=docs/images $(BIN)/pytest -q \
		tests/streams/test_status_page.py tests/alerts/test_report.py

demo: relink
	$(BIN)/accessdrift demo

demo-replay: relink
	$(BIN)/accessdrift replay --format text --evidence - --until 2026-03-11T00:00:00Z deploy/demo/events.jsonl

# The six benchmarks of issue 8 and the poison benchmark of issue 9 (each checks its findings
# against the truth and writes JSON to bench/out/), the flat-cost profile, then all the ratios
# side by side.
bench: relink
	mkdir -p bench/out
	$(BIN)/python bench/replay_bench.py --json bench/out/replay.json >/dev/null
	$(BIN)/python bench/live_bench.py --json bench/out/live.json >/dev/null
	$(BIN)/python bench/latency_bench.py --json bench/out/latency.json >/dev/null
	$(BIN)/python bench/memory_bench.py --json bench/out/memory.json >/dev/null
	$(BIN)/python bench/recovery_bench.py --json bench/out/recovery.json >/dev/null
	$(BIN)/python bench/poison_bench.py --json bench/out/poison.json >/dev/null
	$(BIN)/python bench/flat_cost_bench.py >/dev/null
	$(BIN)/python bench/summary.py >bench/out/summary.json

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
