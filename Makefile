# Two commands a new user needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wsss-installed
# torch is installed first and held by a constraint so no later step can swap in a newer (CUDA) build.
CONSTRAINTS := $(VENV)/constraints.txt

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	echo "torch==2.13.0" > $(CONSTRAINTS)
	$(PY) -m pip install -q "torch==2.13.0"
	PIP_CONSTRAINT=$(CONSTRAINTS) $(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/wsss run --config configs/demo.yaml --run-dir runs/demo

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf runs/demo .pytest_cache
