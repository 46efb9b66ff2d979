# cdsflow — one task runner. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PROTO_OUT := libs/contracts/src
PROTO_FILES := $(shell find proto -name '*.proto')
PYTEST := $(UV) run --frozen pytest
# the read-only conformance pack; tests/conformance skip without it (fail in CI)
CONFORMANCE_DIR := $(or $(CDSFLOW_CONFORMANCE_DIR),../shared/conformance)

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: uv
uv: ## install uv when missing (pip --user; then run as `python3 -m uv`)
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --user 'uv>=0.9'

.PHONY: install
install: uv ## create .venv from uv.lock (the workspace, dev tools included)
	$(UV) sync --frozen

.PHONY: demo
demo: install ## start everything on loopback, play the clinical story, print cards and the trace
	$(UV) run --frozen cdsflow demo

.PHONY: up
up: install ## start broker, Triton, the services and the embedded EHR until Ctrl-C
	$(UV) run --frozen cdsflow up --with-ehr --endpoints-file .endpoints.json

.PHONY: proto
proto: install ## regenerate the Python code for proto/ (pinned protoc from uv.lock)
	$(UV) run --frozen python -m grpc_tools.protoc -Iproto --python_out=$(PROTO_OUT) \
		--mypy_out=$(PROTO_OUT) $(PROTO_FILES)

.PHONY: lint
lint: install ## ruff format check, ruff, strict mypy
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen ruff check .
	$(UV) run --frozen mypy libs services training tests bench

.PHONY: test-unit
test-unit: install ## unit tests (no network)
	$(PYTEST) tests/unit

.PHONY: test-integration
test-integration: install ## integration tests on the real broker, Triton and EHR
	$(PYTEST) tests/integration

.PHONY: test-e2e
test-e2e: install ## the whole pipeline, traces included
	$(PYTEST) tests/e2e

.PHONY: test-conformance
test-conformance: install ## the examples of the conformance pack (needs CDSFLOW_CONFORMANCE_DIR or ../shared)
	@$(MAKE) --no-print-directory conformance-pack-note
	$(PYTEST) tests/conformance

.PHONY: test-deployment
test-deployment: install ## the chart, docker-compose.yml and Dockerfiles, checked statically (no cluster, no Docker)
	$(PYTEST) tests/deployment

# `make test` runs `make lint` beside the tests (mypy takes a core that the tests leave idle
# while they wait on the real parts); its output follows the tests', and either failing fails.
# The tests run in TEST_WORKERS pytest-xdist workers, each test module whole in one worker
# (`--dist loadfile`, so a module's own parts start once) and each worker with its own
# session parts (broker, Triton, EHR); most of a test's time is waiting on those parts, so
# more workers than cores still shortens the run. The longest modules are listed first so
# that none of them starts last. TEST_WORKERS=0 runs them in this one process.
TEST_WORKERS ?= 3
.PHONY: test
test: install ## lint and every test tier, side by side (the CI command)
	@$(MAKE) --no-print-directory conformance-pack-note
	@lint_log=$$(mktemp); \
	$(MAKE) --no-print-directory lint >"$$lint_log" 2>&1 & lint_pid=$$!; \
	CDSFLOW_FAULT_EVENTS=$${CDSFLOW_FAULT_EVENTS:-20} CDSFLOW_FAULT_RESULTS_DIR=$$(mktemp -d) \
		$(PYTEST) -n $(TEST_WORKERS) --dist loadfile --durations=25 \
		tests/faults tests/e2e tests/integration tests/conformance tests/deployment tests/unit; tests_rc=$$?; \
	wait $$lint_pid; lint_rc=$$?; \
	echo "--- make lint (ran beside the tests): exit $$lint_rc"; cat "$$lint_log"; rm -f "$$lint_log"; \
	[ $$lint_rc -eq 0 ] && [ $$tests_rc -eq 0 ]

.PHONY: charts
charts: install ## copy adapters/ into charts/cdsflow, lint it and render it for review into .charts/ (defaults and each ci values file)
	$(UV) run --frozen python scripts/render_chart.py

.PHONY: conformance-pack-note
conformance-pack-note:
	@[ -d "$(CONFORMANCE_DIR)" ] || echo "conformance pack not found at $(CONFORMANCE_DIR): tests/conformance are skipped (set CDSFLOW_CONFORMANCE_DIR; CDSFLOW_REQUIRE_CONFORMANCE=1 makes this an error)"

# the fault matrix writes one JSON per case under .faults/ (gitignored); the report turns the
# run's results into docs/reliability.md's "Fault matrix" and "Load held" tables
.PHONY: faults
faults: install ## hostile-input properties at 10,000 requests per endpoint, then the fault matrix at 10,000 changes per fault, and docs/reliability.md's tables (long)
	CDSFLOW_PROPERTY_EXAMPLES=$${CDSFLOW_PROPERTY_EXAMPLES:-10000} $(PYTEST) --timeout=3600 \
		tests/integration/test_hostile_inputs.py -k "every_"
	rm -rf .faults
	CDSFLOW_FAULT_EVENTS=$${CDSFLOW_FAULT_EVENTS:-10000} $(PYTEST) tests/faults
	$(UV) run --frozen python scripts/reliability_report.py --results .faults --doc docs/reliability.md

.PHONY: model
model: install ## retrain the reference model (models/deterioration_risk, datasets/) and rebuild models/medication_safety
	$(UV) run --frozen python -m cdsflow.training train \
		--model-dir models/deterioration_risk --dataset-dir datasets/deterioration_risk
	$(UV) run --frozen python -m cdsflow.training medication-safety --model-dir models/medication_safety

.PHONY: evaluate
evaluate: install ## evaluate every shipped adapter on its labelled dataset, on the embedded Triton (exit 1 when a gate is not met)
	$(UV) run --frozen cdsflow evaluate adapters/deterioration-risk.yaml \
		--report bench/deterioration-risk-evaluation.html --json bench/deterioration-risk-evaluation.json

.PHONY: bench
bench: install ## end-to-end throughput and latency beside the chained bare ceiling (bench/report.md), the listener, the reasoner, the CDS Hooks answers and the hook token claims each beside a bare baseline, written to bench/results.json
	$(UV) run --frozen python -m bench.pipeline --output bench/results.json
	$(UV) run --frozen python -m bench.reasoner --output bench/results.json
	$(UV) run --frozen python -m bench.listener --output bench/results.json
	$(UV) run --frozen python -m bench.cds_hooks --output bench/results.json
	$(UV) run --frozen python -m bench.hook_token_claims --output bench/results.json
	$(UV) run --frozen python -m bench.report

.PHONY: bench-ceiling
bench-ceiling: install ## the pipeline beside its chained bare ceiling only (bench/results.json: pipeline, ceiling, ratios), and bench/report.md
	$(UV) run --frozen python -m bench.pipeline --output bench/results.json
	$(UV) run --frozen python -m bench.report

.PHONY: bench-card-state
bench-card-state: install ## writeback card state: memory per patient, start-up read-back time (bench/card_state.json)
	$(UV) run --frozen python -m bench.card_state --output bench/card_state.json

.PHONY: bench-writeback
bench-writeback: install ## write-backs per second into SEKMET, one patient at a time beside 16 patient lanes, directly and behind a 100 ms EHR (bench/writeback_lanes.json)
	$(UV) run --frozen python -m bench.writeback_lanes --output bench/writeback_lanes.json

.PHONY: clean
clean: ## remove caches (not .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .endpoints.json
