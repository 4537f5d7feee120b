# Targets read like the README: `make test` runs everything CI runs.
CARGO ?= cargo
CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR

.PHONY: help build test lint fmt sim

help:
	@echo "make test   - format check, clippy, and every unit and integration test (what CI runs)"
	@echo "make sim    - run the NERM simulator with its demo tenant on http://127.0.0.1:4010/api (token: sim-token)"
	@echo "make build  - build the workspace"
	@echo "make fmt    - format the code"

build:
	$(CARGO) build --workspace --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

test: lint
	$(CARGO) test --workspace --locked

fmt:
	$(CARGO) fmt --all

sim:
	$(CARGO) run --locked -p nerm-sim -- --port 4010 --token sim-token
