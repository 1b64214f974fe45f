# ticketflow — `make help` lists the targets.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TF := $(VENV)/bin/ticketflow
DEMO_STATE ?= .state/demo
DEMO_N ?= 200
TORCH ?= cpu
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv with everything (idempotent)

$(VENV)/.installed: pyproject.toml
	@command -v uv >/dev/null || $(PYTHON) -m pip install --quiet uv
	UV="$$(command -v uv || echo "$(PYTHON) -m uv")"
	[ -x $(PY) ] || $$UV venv --quiet --python $(PYTHON) $(VENV)
	# torch first, so the resolver never swaps it. PyPI's Linux torch bundles CUDA (about 3 GB
	# of nvidia/* wheels); the worker never imports torch, training runs on the CPU here.
	if ls /opt/wheels/torch-*.whl >/dev/null 2>&1; then
	  echo "make install: torch from the local CPU wheel in /opt/wheels"
	  $$UV pip install --quiet --python $(PY) --find-links /opt/wheels torch
	elif [ "$(TORCH)" != "cuda" ] && curl -sf -m 10 -o /dev/null $(TORCH_CPU_INDEX)/torch/; then
	  echo "make install: torch's CPU wheel from $(TORCH_CPU_INDEX) (about 200 MB; TORCH=cuda for PyPI's CUDA build)"
	  $$UV pip install --quiet --python $(PY) --index-url $(TORCH_CPU_INDEX) torch
	else
	  echo "make install: torch from PyPI, the CUDA build (about 3 GB more$(if $(filter cuda,$(TORCH)),,: $(TORCH_CPU_INDEX) is not reachable))"
	  $$UV pip install --quiet --python $(PY) torch
	fi
	echo "make install: ticketflow with the [dev] extra (training, tests, lint tools)"
	# --compile-bytecode (all of site-packages) and compileall (the editable src/): with no .pyc
	# Python compiles every module at every start, and where PYTHONDONTWRITEBYTECODE is set
	# (as in the image) it never keeps them, which slows every process's start (docs/speed.md,
	# "Memory and cold start"). pip, which builds the image, compiles by default.
	$$UV pip install --quiet --python $(PY) --compile-bytecode -e ".[dev]"
	$(PY) -m compileall -q src
	touch $@

lint: install lint-deploy ## ruff, mypy and the layer contract (import-linter), then lint-deploy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: prereqs install lint-deploy ## check chromium + chromedriver, install, lint the deploy files, run the whole suite (unit + integration on a real Kafka broker)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	TICKETFLOW_REQUIRE_INTEGRATION=1 $(PY) -m pytest -m "unit or integration or slow" -p no:cacheprovider --durations=25

prereqs: ## chromium + chromedriver (browser tests) and prometheus (monitoring tests): installed as root with apt-get, else a one-line stop
	@.ci/prereqs

lint-deploy: ## hadolint, kustomize + kubeconform (KEDA schema), actionlint; tools cached in ~/.cache/ticketflow/tools
	.ci/lint-deploy

unit: install ## only the fast unit tests
	$(PY) -m pytest -m unit -q

demo: install ## broker, training on sample data, worker, tickets in, labels out
	export STATE_DIR=$(DEMO_STATE) CHROMA_PATH=$(DEMO_STATE)/chroma MODEL_REGISTRY_DIR=$(DEMO_STATE)/registry
	rm -rf $(DEMO_STATE) && mkdir -p $(DEMO_STATE)
	cleanup() { [ -n "$${WORKER:-}" ] && kill $$WORKER 2>/dev/null && wait $$WORKER 2>/dev/null; $(TF) broker down >/dev/null || true; }
	trap cleanup EXIT
	$(TF) broker up
	$(TF) topics create
	$(TF) sample --n 2000 --out $(DEMO_STATE)/train.jsonl
	# Generated queues are easy (about 91% right overall), so the 0.90 review cut would route
	# every ticket; 0.95 shows routed and held tickets side by side.
	REVIEW_PRECISION_BY_TARGET='{"queue": 0.95}' $(TF) train --data $(DEMO_STATE)/train.jsonl --target queue --target priority
	$(TF) worker > $(DEMO_STATE)/worker.log 2>&1 & WORKER=$$!
	PORT=$$(grep -E '^METRICS_PORT=' .env | cut -d= -f2); PORT=$${METRICS_PORT:-$${PORT:-6066}}
	for i in $$(seq 1 180); do curl -sf localhost:$$PORT/readyz >/dev/null && break; kill -0 $$WORKER || { tail -30 $(DEMO_STATE)/worker.log; exit 1; }; sleep 1; done
	$(TF) produce --sample $(DEMO_N) --seed 7
	$(TF) consume --max $(DEMO_N) --timeout 120 > $(DEMO_STATE)/labeled.jsonl
	echo "--- first labelled tickets ($(DEMO_STATE)/labeled.jsonl):"
	head -3 $(DEMO_STATE)/labeled.jsonl
	echo "--- $$(wc -l < $(DEMO_STATE)/labeled.jsonl) of $(DEMO_N) tickets labelled, $$($(PY) -c 'import json, sys; print(sum(json.loads(x)["needs_review"] for x in open(sys.argv[1])))' $(DEMO_STATE)/labeled.jsonl) held for review; metrics at http://localhost:$$PORT/metrics"
	curl -s localhost:$$PORT/metrics | grep -E '^ticketflow_(tickets_labeled_total|tickets_consumed_total|model_info)'
	[ "$$(wc -l < $(DEMO_STATE)/labeled.jsonl)" -ge $(DEMO_N) ]

bench: install ## throughput: bare encoder vs the full pipeline through Kafka
	$(PY) -m bench.pipeline

bench-speed: install ## backends, cascade and the Kafka pipeline on bueck-v3 (needs ../shared/datasets)
	$(PY) -m bench.speed
	$(PY) -m bench.threads

eval: install ## compare candidate models on ../shared/datasets (docs/model-quality.md)
	$(TF) experiments --out reports/experiments

notebooks: install ## run notebooks/*.ipynb headless into reports/notebooks/ (sample data; TICKETFLOW_NOTEBOOK_DATA=FILE)
	$(PY) notebooks/run.py --out reports/notebooks

schemas: install ## regenerate schemas/json from the pydantic models
	$(PY) -m ticketflow.schemas.export

clean: ## remove local state (broker data, vector store, demo outputs)
	rm -rf .state reports

.PHONY: help install lint lint-deploy prereqs test unit demo bench bench-speed eval notebooks schemas clean
