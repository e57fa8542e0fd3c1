# Serverless DICOMweb: every command a user or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY312      := $(shell scripts/find-python.sh 3.12)
VENV       := .venv
PY         := $(VENV)/bin/python
MS_VENV    := .local/venvs/ministack
SAM_VENV   := .local/venvs/sam
SAM        := $(SAM_VENV)/bin/sam
export SAM_CLI_TELEMETRY := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv tools run walkthrough dev ohif e2e test unit integration bench bench-qido soak repair lint validate build deploy clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.stamp: pyproject.toml
	@test -x $(PY) || $(PY312) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

$(MS_VENV)/.stamp: scripts/requirements/ministack.txt
	@test -x $(MS_VENV)/bin/python || $(PY312) -m venv $(MS_VENV)
	$(MS_VENV)/bin/python -m pip install -q -r scripts/requirements/ministack.txt
	@touch $@

$(SAM_VENV)/.stamp: scripts/requirements/sam.txt
	@test -x $(SAM_VENV)/bin/python || $(PY312) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q -r scripts/requirements/sam.txt
	@touch $@

$(VENV)/.e2e-stamp: pyproject.toml $(VENV)/.stamp
	$(PY) -m pip install -q -e ".[e2e]"
	@touch $@

venv: $(VENV)/.stamp ## create the development virtual environment (.venv)

tools: $(VENV)/.stamp $(MS_VENV)/.stamp $(SAM_VENV)/.stamp ## install the local cloud (ministack) and aws-sam-cli

run: tools ## start the local cloud, deploy template.yaml into it and print the DICOMweb URL (Ctrl-C stops)
	$(PY) scripts/localcloud.py run

walkthrough: venv ## replay both seed documents against the stack `make run` started (run it in another terminal)
	$(PY) scripts/walkthrough.py

dev: venv ## serve every route under uvicorn on 127.0.0.1:8000 with in-memory storage
	$(PY) -m dicomweb_server.web.dev --host 127.0.0.1 --port 8000

ohif: venv ## serve the OHIF viewer (from npm) on 127.0.0.1:3000 against the stack `make run` started
	$(PY) scripts/ohif.py serve --same-origin

e2e: tools $(VENV)/.e2e-stamp ## OHIF in Chromium against a fresh local stack: CT, US, RLE and SEG, same- and cross-origin
	@command -v chromium >/dev/null || { echo "installing Debian's chromium"; apt-get install -y -q chromium >/dev/null; }
	$(PY) -m pytest tests/e2e -v

test: tools ## run the whole suite: unit tests, then integration tests against the deployed local stack
	$(PY) -m pytest tests/unit tests/integration

unit: venv ## run the unit tests only (in-process, moto)
	$(PY) -m pytest tests/unit

integration: tools ## run the integration tests only
	$(PY) -m pytest tests/integration

bench: venv ## run the benchmarks and print the numbers recorded in the README
	$(PY) benchmarks/run.py

bench-qido: venv ## QIDO at 1,000 / 10,000 / 100,000 studies: items read and requests per query (add ENDPOINT=.local/endpoint.json for API latency)
	$(PY) benchmarks/qido_scale.py $(if $(ENDPOINT),--endpoint $(ENDPOINT))

soak: tools ## N clients mixing STOW, QIDO and WADO against a fresh local stack for T minutes, then exact counts, RSS, p50/p99 (CLIENTS=8 MINUTES=5, or ENDPOINT=.local/endpoint.json)
	$(PY) benchmarks/soak.py $(if $(CLIENTS),--clients $(CLIENTS)) $(if $(MINUTES),--minutes $(MINUTES)) $(if $(ENDPOINT),--endpoint $(ENDPOINT))

repair: venv ## reconcile the running local stack's index with its bucket (index what it lacks, report the rest)
	$(VENV)/bin/dicomweb repair

lint: venv ## ruff, mypy, cfn-lint and sam validate --lint
	$(VENV)/bin/ruff check layers functions tests scripts benchmarks
	$(VENV)/bin/ruff format --check layers functions tests scripts benchmarks
	$(VENV)/bin/mypy layers/dicomweb/dicomweb_server
	$(VENV)/bin/cfn-lint template.yaml
	$(MAKE) validate

validate: tools ## sam validate --lint
	$(SAM) validate --lint

build: tools ## sam build (no container)
	PATH="$(dir $(PY312)):$$PATH" $(SAM) build

deploy: build ## sam deploy --guided to your AWS account
	$(SAM) deploy --guided --capabilities CAPABILITY_IAM

clean: ## remove build output (keeps .local state)
	rm -rf .aws-sam build *.egg-info
