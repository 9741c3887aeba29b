# kfloop: every target runs from the repo root. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENVS    ?= .venvs
SERVING  := $(VENVS)/serving/bin
PIPELINE := $(VENVS)/pipeline/bin
TOOLS    := $(VENVS)/tools/bin
UV       := $(TOOLS)/uv
UV_VERSION := 0.13.9
# uv and uvx (used by `kfloop data fetch`) from the tools venv come first.
export PATH := $(CURDIR)/$(TOOLS):$(PATH)
# Debian packages of the real servers the tests and the local stack start (never left running).
APT_PACKAGES := prometheus prometheus-alertmanager redis-server postgresql wrk chromium buildah mmdebstrap
# chromium: the test that opens the demo report headless (and takes the README's screenshot).
# buildah, mmdebstrap: `make images` where no docker or podman service runs and no registry answers.
DATA_DIR ?= data

.PHONY: help setup uv apt envs data test test-serving test-demo test-pipeline lint format generate schema-proposal bench demo images test-images clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: apt envs data ## install everything: Debian servers, both Python environments from uv.lock, the data

uv: $(UV) ## install uv (pinned) into .venvs/tools

$(UV):
	python3 -m venv $(VENVS)/tools
	$(TOOLS)/pip install --quiet "uv==$(UV_VERSION)"

apt: ## install the Debian servers the project uses, when missing
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing:$$missing"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  for s in redis-server postgresql prometheus prometheus-alertmanager; do $$sudo service $$s stop >/dev/null 2>&1 || true; done; \
	fi

envs: uv ## build .venvs/serving and .venvs/pipeline from the lock
	UV_PROJECT_ENVIRONMENT=$(VENVS)/serving $(UV) sync --frozen --group serving --quiet
	UV_PROJECT_ENVIRONMENT=$(VENVS)/pipeline $(UV) sync --frozen --group pipeline --quiet

data: ## fetch and verify the Open Bandit Dataset sample
	$(SERVING)/kfloop data fetch --data-dir $(DATA_DIR)

# `make test` runs the two suites side by side (they share no ports or files; each line says which suite it is from),
# then the demo alone: it times a shift's detection and recovery, and two suites beside it on 2 cores slowed all three.
labelled = $(if $(PARALLEL),2>&1 | sed -u 's/^/$(1) | /')

test: setup ## run every test, each in the environment it belongs to: the two suites side by side (each line labelled), then the demo
	$(MAKE) --no-print-directory -j2 test-serving test-pipeline PARALLEL=1
	$(MAKE) --no-print-directory test-demo
	@echo "test: every suite passed"

test-serving: ## tests of kfloop/ and the serving side, in the serving environment
	set -o pipefail; $(SERVING)/pytest -m "not pipeline and not demo" tests $(call labelled,serving )

test-demo: ## the demo end to end (`kfloop demo --fast`, its report opened in Chromium), in the serving environment
	set -o pipefail; $(SERVING)/pytest -m demo tests $(call labelled,demo    )

test-pipeline: ## tests of kfloop/ and the pipeline side, in the pipeline environment
	set -o pipefail; $(PIPELINE)/pytest -m "not serving" tests $(call labelled,pipeline)

lint: ## ruff check and format check, and the import contracts (lint-imports)
	$(SERVING)/ruff check .
	$(SERVING)/ruff format --check .
	$(SERVING)/lint-imports

format: ## apply ruff's fixes and formatting
	$(SERVING)/ruff check --fix .
	$(SERVING)/ruff format .

generate: ## regenerate committed files (event JSON Schema, ...)
	$(SERVING)/kfloop generate

images: uv ## build the serving and pipeline images (docker, podman or buildah; names and tags from manifests/base) and print their sizes
	$(SERVING)/kfloop images build

test-images: images ## smoke-run the images: kfloop --help, the model servers, the TFX libraries (builds them first if stale)
	$(SERVING)/kfloop images test

schema-proposal: ## propose a TFDV schema update from current data (for review; the committed schema is the contract)
	$(PIPELINE)/kfloop pipeline propose-schema

bench: ## print speed numbers (collector throughput and latency, ...)
	@for b in tests/bench/bench_*.py; do echo "== $$b"; $(SERVING)/python $$b || exit 1; done

demo: setup ## the whole loop on one machine (shift, retraining, promotion, a bad version rolled back) and its report
	$(SERVING)/kfloop demo $(DEMO_ARGS)

clean: ## remove local state (event log, models) but keep the environments and data
	rm -rf .kfloop
