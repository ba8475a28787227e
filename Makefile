# Developer entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

CARGO ?= cargo
# Build output lives outside the checkout so fresh CI clones on the same machine reuse it.
CARGO_TARGET_DIR ?= $(HOME)/.cache/orders-cqrs/target
export CARGO_TARGET_DIR
BIN_DIR := $(CARGO_TARGET_DIR)/debug

# Local infrastructure (infra/up.sh). Override on the command line or in the environment.
DATABASE_URL ?= postgres://orders:orders@127.0.0.1:5432/orders
QUERY_DATABASE_URL ?= postgres://orders_query:orders_query@127.0.0.1:5432/orders
KAFKA_BROKERS ?= 127.0.0.1:9092
RUST_LOG ?= info
# Shorter than the production defaults so `make demo` settles quickly.
SAGA_PAYMENT_DEADLINE_MS ?= 10000
PAYMENT_GATEWAY_SLOW_RESPONSE_MS ?= 4000

# Extra args: `make test TEST_ARGS='--test-threads=4'`, `make test CARGO_TEST_FLAGS='-p eventstore'`.
CARGO_TEST_FLAGS ?=
TEST_ARGS ?=
REPLAY_ARGS ?=
BENCH_ARGS ?=

# Processes started by `make run` (missing binaries are skipped with a warning).
# Extend when new services land, e.g. `PROCS += saga-worker payment-gateway`.
PROCS ?= command-api outbox-relay projector query-api payment-gateway saga-worker

.PHONY: help infra-up infra-down infra-clean infra-status build test lint run demo bench replay

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  make %-13s %s\n", $$1, $$2 }'

infra-up: ## start local Postgres 15 + Kafka 4.1 (idempotent)
	bash infra/up.sh

infra-down: ## stop them (data kept)
	bash infra/down.sh

infra-clean: ## stop them and delete .data/
	bash infra/postgres.sh clean
	bash infra/kafka.sh clean

infra-status: ## show state of local infrastructure
	-bash infra/postgres.sh status
	-bash infra/kafka.sh status

build: ## build all binaries
	$(CARGO) build --workspace --bins

test: infra-up ## run the workspace tests against local infra
	bash infra/postgres.sh prune
	DATABASE_URL='$(DATABASE_URL)' QUERY_DATABASE_URL='$(QUERY_DATABASE_URL)' KAFKA_BROKERS='$(KAFKA_BROKERS)' \
		$(CARGO) test --workspace --no-fail-fast $(CARGO_TEST_FLAGS) -- $(TEST_ARGS)

lint: ## rustfmt check + clippy (warnings are errors)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

run: infra-up build ## run all services in the foreground (Ctrl-C stops all)
	PROCS='$(PROCS)' BIN_DIR='$(BIN_DIR)' DATABASE_URL='$(DATABASE_URL)' \
		QUERY_DATABASE_URL='$(QUERY_DATABASE_URL)' KAFKA_BROKERS='$(KAFKA_BROKERS)' RUST_LOG='$(RUST_LOG)' \
		SAGA_PAYMENT_DEADLINE_MS='$(SAGA_PAYMENT_DEADLINE_MS)' PAYMENT_GATEWAY_SLOW_RESPONSE_MS='$(PAYMENT_GATEWAY_SLOW_RESPONSE_MS)' \
		bash infra/run-all.sh

replay: build ## rebuild every read model from the event log (REPLAY_ARGS='--projection orders')
	DATABASE_URL='$(DATABASE_URL)' $(BIN_DIR)/projector replay $(REPLAY_ARGS)

bench: ## measure a running system (start it with `make run` first; BENCH_ARGS='--orders 5000')
	$(CARGO) build --release -p bench
	$(CARGO_TARGET_DIR)/release/bench $(BENCH_ARGS)

demo: infra-up build ## place an order down each saga path and print the timelines (starts the system if needed)
	PROCS='$(PROCS)' BIN_DIR='$(BIN_DIR)' DATABASE_URL='$(DATABASE_URL)' \
		QUERY_DATABASE_URL='$(QUERY_DATABASE_URL)' KAFKA_BROKERS='$(KAFKA_BROKERS)' \
		SAGA_PAYMENT_DEADLINE_MS='$(SAGA_PAYMENT_DEADLINE_MS)' PAYMENT_GATEWAY_SLOW_RESPONSE_MS='$(PAYMENT_GATEWAY_SLOW_RESPONSE_MS)' \
		bash infra/demo.sh
