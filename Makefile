# Two commands a new user needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wsss-installed
# Exact versions of every package (torch included, so no step can swap in a newer CUDA build):
# CI, the benchmarks and a fresh clone get the versions the numbers were measured with.
CONSTRAINTS := constraints.txt
TORCH := $(shell grep -m1 '^torch==' $(CONSTRAINTS))

.PHONY: demo test venv browser clean lock

venv: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
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
	$(VENV)/bin/ruff check wsss tests benchmarks examples
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

# Re-make constraints.txt: a throw-away venv takes the newest versions pyproject.toml's ranges
# allow (torch as pinned there), and pip freeze records them. Re-run the tests and benchmarks.
lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install -q "$$(grep -o 'torch==[0-9.]*' pyproject.toml)"
	PIP_CONSTRAINT= build/lock-venv/bin/python -m pip install -q ".[test]"
	{ sed -n '/^#/p' $(CONSTRAINTS); build/lock-venv/bin/python -m pip freeze --exclude wsss | \
		sed 's/^torch==\([0-9.]*\)+.*/torch==\1/'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf build/lock-venv
