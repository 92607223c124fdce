# The two commands for a fresh machine:
#   make demo   set up, then run lesson 1 (hello_world) for a few seconds with processes to see
#   make test   set up, then run the whole test suite (host tests, then the qemu kernel matrix)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PREBUILT := pyprobe/tools/prebuilt/index.json

.PHONY: setup demo test test-host test-unit test-vm bench clean

setup: $(STAMP) $(PREBUILT)
	@tools/setup-system.sh

$(STAMP): pyproject.toml setup.py pyprobe/backend/_libbpf_build.py
	@tools/setup-system.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,plot,pandas,cli,prometheus,jupyter]' --config-settings editable_mode=compat
	@touch $@

# the tools' BPF objects, so that they start without clang (a wheel builds them in setup.py);
# rebuilt when the translator or a tool changes, as a stale object would just be a cache miss
$(PREBUILT): $(STAMP) $(wildcard pyprobe/dsl/*.py pyprobe/dsl/prelude.h pyprobe/tools/*.py pyprobe/backend/clang.py)
	$(PY) -m pyprobe.prebuilt || echo "tools' objects not prebuilt: tools will compile with clang"
	@mkdir -p $(dir $@) && touch $@

demo: setup
	@echo "== lesson 1: hello_world (Ctrl-C to stop; the demo stops itself after 6 s) =="
	@# the workload forks (the clone syscall) and spawns (clone3) a few processes
	@$(PY) tools/demo_workload.py &
	@timeout -s INT 6 $(PY) lessons/hello_world.py || [ $$? -eq 124 ]

test-unit: setup
	$(PY) -m pytest -q tests/unit tests/compile

# mypy clean on pyprobe/; the host suite with a coverage report; then every translator
# refusal (fail() in pyprobe/dsl) must have been reached by a test (tools/fail_sites.py).
test-host: setup
	$(PY) -m mypy
	$(PY) -m pytest -q tests --cov=pyprobe --cov-report=term:skip-covered
	$(PY) tools/fail_sites.py

test-vm: setup
	tools/vm/run-matrix

test: test-host test-vm

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info pyprobe/backend/_libbpf*.so
