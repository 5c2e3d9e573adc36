# The two commands of the README: `make demo` (the main job) and `make test` (the test suite).
# Both create ./.venv and install the project into it on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,export,peers]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m models demo --out runs/demo

# CI settings (derandomized hypothesis, fixed seeds; tests/seeds.py) unless the caller picks others
test: install
	SINCFB_HYPOTHESIS_PROFILE=$${SINCFB_HYPOTHESIS_PROFILE:-ci} $(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
