# TopFormer Studio. Fresh machine: `make run` (the app) or `make test` (the tests).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned so that pip takes the local CPU build on the project's machines.
TORCH ?= torch==2.13.0
QT67_VENV ?= .venv-qt67
ARGS ?=

.PHONY: setup setup-runtime run test test-gui-qt67 bench screenshot clean
SOURCE ?= 0
OUT ?= screenshot.png

setup: $(VENV)/.setup-done

# Everything: app, tests, training and export (torch). Re-runs only when pyproject.toml changes.
$(VENV)/.setup-done: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[train,dev,ray]"
	touch $@

# The small run-time install (Raspberry Pi, kiosks): no torch, no test tools.
setup-runtime:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e .

run: setup
	$(BIN)/python main.py $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

# The GUI tests again on PySide6 6.7.3, the newest wheel for Raspberry Pi OS Bookworm.
test-gui-qt67: setup
	test -x $(QT67_VENV)/bin/python || $(PY) -m venv $(QT67_VENV)
	$(QT67_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(QT67_VENV)/bin/python -m pip install -q -e ".[train,dev]" "PySide6-Essentials==6.7.3"
	$(QT67_VENV)/bin/python -c "import PySide6; print('PySide6', PySide6.__version__)"
	$(QT67_VENV)/bin/python -m pytest tests/gui $(ARGS)

bench: setup
	$(BIN)/python main.py bench $(ARGS)

# The real window under Xvfb a few seconds into SOURCE, saved as OUT (needs Debian's xvfb).
screenshot: setup
	command -v xvfb-run >/dev/null || (apt-get update -qq && apt-get install -y -qq xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0)
	QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/python main.py --source "$(SOURCE)" --screenshot "$(OUT)" --screenshot-after 3 $(ARGS)

clean:
	rm -rf $(VENV) $(QT67_VENV) .pytest_cache
