# Targets read like the README: `make test` runs everything CI runs.
CARGO ?= cargo
CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR

.PHONY: help demo report-screenshot bench build test lint template-checks unit-and-integration local-invoke fmt sim

help:
	@echo "make demo             - the main job locally: moto + NERM simulator + the real Lambda handlers, two drops of an HR export"
	@echo "make report-screenshot - after make demo: renders the demo's report.html in headless Chromium to docs/report-screenshot.png"
	@echo "make bench            - the benchmark suite: prints a table and rewrites the results in BENCHMARKS.md"
	@echo "make test             - everything CI runs: format check, clippy, template checks, all tests"
	@echo "make lint             - rustfmt check and clippy with warnings as errors"
	@echo "make template-checks  - sam validate --lint, cfn-lint and checkov on template.yaml (pinned, own venvs)"
	@echo "make local-invoke     - the shipped events (infra/events/) through the real function binaries and a local Runtime API (no Docker)"
	@echo "make sim              - the NERM simulator with its demo tenant on http://127.0.0.1:4010/api (token sim-token; PAT sim-client/sim-secret at /oauth/token)"
	@echo "make build            - build the workspace"
	@echo "make fmt              - format the code"

# Needs only the Rust toolchain, Python 3 and pip: with-moto.sh installs moto (pinned) and
# stops it afterwards; the simulator and the handlers run inside the demo process.
demo:
	@echo "== building the demo (a cold build compiles the AWS SDK: several minutes on 2 cores)"
	$(CARGO) build --locked -p lambda-tests --bin local-demo
	infra/local/with-moto.sh $(CARGO) run --locked -q -p lambda-tests --bin local-demo

report-screenshot:
	infra/local/report-screenshot.sh

bench:
	infra/bench.sh

build:
	$(CARGO) build --workspace --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

template-checks:
	infra/template-checks.sh

# Unit, integration and Lambda handler tests; the handler tests need moto_server, which
# with-moto.sh installs (pinned), starts on a free loopback port and stops afterwards.
unit-and-integration:
	infra/local/with-moto.sh $(CARGO) test --workspace --locked

test: lint template-checks unit-and-integration

# `sam local invoke` without Docker: both function binaries under a local Lambda Runtime API,
# infra/env.json pointed at moto and the simulator, every shipped event (tests/lambdas/tests/binaries.rs).
local-invoke:
	$(CARGO) build --locked -p csv-ingest -p nerm-provisioner
	infra/local/with-moto.sh $(CARGO) test --locked -p lambda-tests --test binaries

fmt:
	$(CARGO) fmt --all

sim:
	$(CARGO) run --locked -p nerm-sim -- --port 4010 --token sim-token --client-id sim-client --client-secret sim-secret
