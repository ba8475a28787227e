# Developer entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

CARGO ?= cargo
# Build output lives outside the checkout so fresh CI clones on the same machine reuse it.
CARGO_TARGET_DIR ?= $(HOME)/.cache/orders-cqrs/target
export CARGO_TARGET_DIR
# `make run`, `make demo`, `make replay` and `make bench` run optimised builds
# ([profile.release] in Cargo.toml); tests and `make bench-quick` use debug builds.
BIN_DIR := $(CARGO_TARGET_DIR)/release

# Local infrastructure (infra/up.sh). Override on the command line or in the environment.
# Two Postgres clusters (infra/postgres.sh): the durable one (PGPORT) for run, demo,
# replay and bench; the DEV/TEST ONLY one, durability off (PGPORT_TEST), for test and fuzz-api.
# Roles: orders (the app: DATABASE_URL), orders_owner (migrations), orders_query (SELECT-only).
PGPORT ?= 5432
PGPORT_TEST ?= 5433
PG_CLUSTER ?= durable
DATABASE_URL ?= postgres://orders:orders@127.0.0.1:$(PGPORT)/orders
OWNER_DATABASE_URL ?= postgres://orders_owner:orders_owner@127.0.0.1:$(PGPORT)/orders
QUERY_DATABASE_URL ?= postgres://orders_query:orders_query@127.0.0.1:$(PGPORT)/orders
TEST_DATABASE_URL ?= postgres://orders:orders@127.0.0.1:$(PGPORT_TEST)/orders
TEST_OWNER_DATABASE_URL ?= postgres://orders_owner:orders_owner@127.0.0.1:$(PGPORT_TEST)/orders
TEST_QUERY_DATABASE_URL ?= postgres://orders_query:orders_query@127.0.0.1:$(PGPORT_TEST)/orders
KAFKA_BROKERS ?= 127.0.0.1:9092
PG_PORTS = PGPORT='$(PGPORT)' PGPORT_TEST='$(PGPORT_TEST)'
RUST_LOG ?= info
# The web console's re-drive token (`make run CONSOLE_ADMIN_TOKEN=...`); empty: re-drive disabled.
CONSOLE_ADMIN_TOKEN ?=
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
PROCS ?= command-api outbox-relay projector query-api payment-gateway saga-worker console

.PHONY: help infra-up infra-up-test infra-down infra-clean infra-status check-durable migrate chromium build release test lint fuzz-api compose-check run chaos demo bench bench-quick replay

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  make %-13s %s\n", $$1, $$2 }'

infra-up: ## start local Postgres 15 (durable cluster; PG_CLUSTER=test|all) + Kafka 4.1 (idempotent)
	$(PG_PORTS) PG_CLUSTER='$(PG_CLUSTER)' bash infra/up.sh

infra-up-test: ## start the DEV/TEST ONLY Postgres cluster (durability off) + Kafka
	$(PG_PORTS) PG_CLUSTER=test bash infra/up.sh

infra-down: ## stop them, both Postgres clusters (data kept)
	$(PG_PORTS) bash infra/down.sh

infra-clean: ## stop them and delete .data/ (both clusters)
	$(PG_PORTS) bash infra/postgres.sh clean all
	bash infra/kafka.sh clean

infra-status: ## show state of local infrastructure (and each cluster's durability)
	-$(PG_PORTS) bash infra/postgres.sh status all
	-bash infra/kafka.sh status

check-durable: infra-up ## fail unless the durable cluster has fsync, full_page_writes, synchronous_commit on and syncfs recovery
	PGPORT='$(PGPORT)' bash infra/check-durable.sh '$(DATABASE_URL)'

migrate: ## apply the migrations to the durable cluster as the owner role (OWNER_DATABASE_URL)
	$(CARGO) build --release -p migrate
	OWNER_DATABASE_URL='$(OWNER_DATABASE_URL)' $(BIN_DIR)/migrate

chromium: ## install headless Chromium + chromedriver for the console's browser test (apt-get, idempotent)
	bash infra/chromium.sh

build: ## build all binaries (debug)
	$(CARGO) build --workspace --bins

release: ## build all binaries optimised (what run, demo, replay and bench use)
	$(CARGO) build --release --workspace --bins

test: infra-up-test chromium ## run the workspace tests against the test cluster and Kafka
	bash infra/test-supervisor.sh
	$(PG_PORTS) bash infra/postgres.sh prune test
	DATABASE_URL='$(TEST_DATABASE_URL)' OWNER_DATABASE_URL='$(TEST_OWNER_DATABASE_URL)' \
		QUERY_DATABASE_URL='$(TEST_QUERY_DATABASE_URL)' KAFKA_BROKERS='$(KAFKA_BROKERS)' \
		$(CARGO) test --workspace --no-fail-fast $(CARGO_TEST_FLAGS) -- $(TEST_ARGS)

lint: ## rustfmt check + clippy (warnings are errors)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

run: infra-up release ## run all services, restarted when they die (RELAYS=2 PROJECTORS=2 SAGA_WORKERS=2 COMMAND_APIS=2 QUERY_APIS=2; Ctrl-C stops all)
	OWNER_DATABASE_URL='$(OWNER_DATABASE_URL)' $(BIN_DIR)/migrate
	PROCS='$(PROCS)' BIN_DIR='$(BIN_DIR)' DATABASE_URL='$(DATABASE_URL)' \
		QUERY_DATABASE_URL='$(QUERY_DATABASE_URL)' KAFKA_BROKERS='$(KAFKA_BROKERS)' RUST_LOG='$(RUST_LOG)' \
		SAGA_PAYMENT_DEADLINE_MS='$(SAGA_PAYMENT_DEADLINE_MS)' PAYMENT_GATEWAY_SLOW_RESPONSE_MS='$(PAYMENT_GATEWAY_SLOW_RESPONSE_MS)' \
		CONSOLE_ADMIN_TOKEN='$(CONSOLE_ADMIN_TOKEN)' bash infra/run-all.sh

replay: release ## rebuild every read model from the event log (REPLAY_ARGS='--projection orders')
	DATABASE_URL='$(DATABASE_URL)' $(BIN_DIR)/projector replay $(REPLAY_ARGS)

# The suite starts every component it measures itself, in one process, on fresh
# databases and topic prefixes: only Postgres and Kafka must be up. Results go
# to bench-results/ (JSON + SVG chart). BENCH_ARGS='--stages replay --log-events 200000'
# The components it runs log nothing unless BENCH_RUST_LOG is set (e.g. BENCH_RUST_LOG=warn).
BENCH_RUST_LOG ?=
BENCH_ENV = env $(if $(BENCH_RUST_LOG),RUST_LOG='$(BENCH_RUST_LOG)',-u RUST_LOG) \
	DATABASE_URL='$(DATABASE_URL)' OWNER_DATABASE_URL='$(OWNER_DATABASE_URL)' QUERY_DATABASE_URL='$(QUERY_DATABASE_URL)' KAFKA_BROKERS='$(KAFKA_BROKERS)'

bench: infra-up ## run the benchmark suite on a release build (several minutes; BENCH_ARGS='--stages a,b')
	$(CARGO) build --release -p bench
	$(BENCH_ENV) $(CARGO_TARGET_DIR)/release/bench $(BENCH_ARGS)

fuzz-api: infra-up-test ## schemathesis against both APIs' /openapi.json: no 5xx, errors are problem+json (FUZZ_MAX_EXAMPLES=50)
	$(CARGO) build -p command-api -p query-api -p migrate --bins
	DATABASE_URL='$(TEST_DATABASE_URL)' OWNER_DATABASE_URL='$(TEST_OWNER_DATABASE_URL)' bash infra/fuzz-api.sh

compose-check: ## validate Dockerfile + compose.yaml (with a compose implementation if there is one; always a structural check)
	bash infra/compose-check.sh

bench-quick: infra-up ## every stage of the suite at small sizes, debug build (CI; asserts nothing about speed)
	$(CARGO) build -p bench
	$(BENCH_ENV) $(CARGO_TARGET_DIR)/debug/bench --quick $(BENCH_ARGS)

# `make chaos`: the system under the supervisor with 2 instances of every worker and of the
# command API, a workload, seeded faults, a drain and the auditor (exit 1 on any violation).
# CHAOS_SECONDS (180), CHAOS_SEED (random, printed), CHAOS_FAULTS (all kinds), CHAOS_BUILD
# (release; CI uses the debug build its tests already made). Output: .data/chaos/<seed>-<pid>/.
CHAOS_BUILD ?= release
chaos: infra-up ## fault-injection run + end-to-end audit (CHAOS_SECONDS=180 CHAOS_SEED=n)
	$(CARGO) build $(if $(filter release,$(CHAOS_BUILD)),--release,) --workspace --bins
	DATABASE_URL='$(DATABASE_URL)' OWNER_DATABASE_URL='$(OWNER_DATABASE_URL)' QUERY_DATABASE_URL='$(QUERY_DATABASE_URL)' \
		KAFKA_BROKERS='$(KAFKA_BROKERS)' $(CARGO_TARGET_DIR)/$(CHAOS_BUILD)/chaos --bin-dir $(CARGO_TARGET_DIR)/$(CHAOS_BUILD)

demo: infra-up release ## place an order down each saga path and print the timelines (starts the system if needed)
	OWNER_DATABASE_URL='$(OWNER_DATABASE_URL)' $(BIN_DIR)/migrate
	PROCS='$(PROCS)' BIN_DIR='$(BIN_DIR)' DATABASE_URL='$(DATABASE_URL)' \
		QUERY_DATABASE_URL='$(QUERY_DATABASE_URL)' KAFKA_BROKERS='$(KAFKA_BROKERS)' \
		SAGA_PAYMENT_DEADLINE_MS='$(SAGA_PAYMENT_DEADLINE_MS)' PAYMENT_GATEWAY_SLOW_RESPONSE_MS='$(PAYMENT_GATEWAY_SLOW_RESPONSE_MS)' \
		bash infra/demo.sh
