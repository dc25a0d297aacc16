# Two commands a new user needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wsss-installed
# torch is installed first and held by a constraint so no later step can swap in a newer (CUDA) build.
CONSTRAINTS := $(VENV)/constraints.txt

.PHONY: demo test venv browser clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	echo "torch==2.13.0" > $(CONSTRAINTS)
	$(PY) -m pip install -q "torch==2.13.0"
	PIP_CONSTRAINT=$(CONSTRAINTS) $(PY) -m pip install -q -e ".[test]"
	# The random walk's C++ distance kernel, compiled once here so no run pays for it
	# (optional: without a C++ compiler wsss uses its torch code).
	$(PY) -m wsss.native
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/wsss run --config configs/demo.yaml --run-dir runs/demo

# The report test opens a run's report.html in headless Chromium (Debian's package); under
# `make test` it must run, not skip (WSSS_REQUIRE_BROWSER=1).
test: $(STAMP) browser
	$(VENV)/bin/ruff check wsss tests benchmarks
	WSSS_REQUIRE_BROWSER=1 $(PY) -m pytest -q tests

browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo -n ); \
		echo "installing chromium for the report test (apt-get)"; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium </dev/null; \
	fi

clean:
	rm -rf runs/demo .pytest_cache
