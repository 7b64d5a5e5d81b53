# relay: `make` (or `make help`) lists the targets. CI (.ci/run) calls the
# same targets a person does.
#
# Tests run against a real PostgreSQL: scripts/with-postgres.sh uses
# TEST_DATABASE_URL or DATABASE_URL when it answers and otherwise starts a
# throwaway cluster for the length of the command.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
export PATH := $(PATH):/usr/local/go/bin

GO        ?= go
WITH_PG   := scripts/with-postgres.sh
WITH_CHROMIUM := scripts/with-chromium.sh
WITH_PGBOUNCER := scripts/with-pgbouncer.sh
PKG       ?= ./...
TESTFLAGS ?=
TIMEOUT   ?= 15m
FUZZ      ?= FuzzValidate
FUZZPKG   ?= ./outbox
FUZZTIME  ?= 60s
ARGS      ?=
ROWS      ?= 10000000
# The bench's throwaway cluster holds a 1M-row backlog in memory, as a
# database server sized for it would (PostgreSQL's default is 128MB).
BENCH_SHARED_BUFFERS ?= 1GB

.PHONY: help
help: ## List the targets (the default)
	@echo 'Usage: make TARGET [VAR=value ...]'
	@echo
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{ printf "  %-11s %s\n", $$1, $$2 }'
	@echo
	@echo 'Variables: PKG=$(PKG) TESTFLAGS=$(TESTFLAGS) TIMEOUT=$(TIMEOUT)'
	@echo '           FUZZ=$(FUZZ) FUZZPKG=$(FUZZPKG) FUZZTIME=$(FUZZTIME) ARGS=$(ARGS) ROWS=$(ROWS) (make soak)'
	@echo '           DATABASE_URL / TEST_DATABASE_URL: used when they answer, else a throwaway PostgreSQL'

.PHONY: build
build: ## Build the relay binary into bin/relay
	$(GO) build -o bin/relay ./cmd/relay

.PHONY: test
test: ## Run the tests with -race against real PostgreSQL, PgBouncer and headless Chromium (PKG, TESTFLAGS, TIMEOUT)
	$(WITH_CHROMIUM) $(WITH_PGBOUNCER) $(WITH_PG) $(GO) test -race -count=1 -timeout $(TIMEOUT) $(TESTFLAGS) $(PKG)

.PHONY: test-race
test-race: test ## Same as test: the suite always runs with -race

.PHONY: test-short
test-short: ## Quick loop: tests with -short, no -race, still real PostgreSQL
	$(WITH_PGBOUNCER) $(WITH_PG) $(GO) test -short -count=1 -timeout $(TIMEOUT) $(TESTFLAGS) $(PKG)

PROMTOOL  ?= promtool
RULES     := deploy/prometheus/relay-rules.yml
RULETESTS := deploy/prometheus/relay-rules_test.yml

.PHONY: alerts
alerts: ## Check the Prometheus alert rules and run their unit tests (promtool: apt-get install prometheus)
	@command -v $(PROMTOOL) >/dev/null 2>&1 || { echo "alerts: $(PROMTOOL) not found (apt-get install --no-install-recommends prometheus)"; exit 1; }
	$(PROMTOOL) check rules $(RULES)
	$(PROMTOOL) test rules $(RULETESTS)

.PHONY: lint
lint: ## gofmt (must list nothing), go vet, docker-compose.yml and the alert rules (when docker-compose and promtool are installed)
	@files=$$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -not -path './vendor/*'); \
	 unformatted=$$( [ -z "$$files" ] || gofmt -l $$files ); \
	 if [ -n "$$unformatted" ]; then echo "gofmt -l lists files to format (run gofmt -w):"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	@if [ ! -f docker-compose.yml ]; then \
	   echo "lint: no docker-compose.yml; skipping its check"; \
	 elif ! command -v docker-compose >/dev/null 2>&1; then \
	   echo "lint: docker-compose not installed (apt-get install docker-compose); skipping the docker-compose.yml check"; \
	 else \
	   echo "docker-compose --env-file .env.example -f docker-compose.yml config -q"; \
	   docker-compose --env-file .env.example -f docker-compose.yml config -q; \
	 fi
	@if command -v $(PROMTOOL) >/dev/null 2>&1; then \
	   $(MAKE) --no-print-directory alerts; \
	 else \
	   echo "lint: $(PROMTOOL) not installed (apt-get install --no-install-recommends prometheus); skipping make alerts"; \
	 fi

.PHONY: fuzz
fuzz: ## Fuzz FUZZ (FuzzValidate) in FUZZPKG (./outbox) for FUZZTIME (60s), against real PostgreSQL
	$(WITH_PG) $(GO) test -run='^$$' -fuzz='^$(FUZZ)$$' -fuzztime=$(FUZZTIME) $(FUZZPKG)

.PHONY: bench
bench: ## Run the benchmark program (go run ./internal/bench) against real PostgreSQL
	PG_SHARED_BUFFERS=$(BENCH_SHARED_BUFFERS) $(WITH_PG) $(GO) run ./internal/bench $(ARGS)

.PHONY: bench-live
bench-live: ## Measure the live stream: streams held and heap per stream, commit->client latency, idle reader cost (ARGS)
	$(WITH_PG) $(GO) run ./internal/livebench $(ARGS)

.PHONY: soak
soak: ## A long run (not part of make test): ROWS rows at a steady rate while relay run drains and retention prunes; a table every 30 s, exit 1 on a lost or duplicate row (ROWS, ARGS)
	env -u DATABASE_URL -u TEST_DATABASE_URL $(WITH_PG) $(GO) run ./internal/soak -rows $(ROWS) $(ARGS)

.PHONY: demo
demo: ## Run the demo (relay demo) against real PostgreSQL
	$(WITH_PG) $(GO) run ./cmd/relay demo $(ARGS)

.PHONY: db
db: ## Start a throwaway PostgreSQL that stays up; prints its DATABASE_URL and how to stop it
	@$(WITH_PG) --keep

.PHONY: migrate
migrate: ## Apply migrations to DATABASE_URL (relay migrate)
	$(GO) run ./cmd/relay migrate $(ARGS)

.PHONY: run
run: ## Run the relay against DATABASE_URL (relay run)
	$(GO) run ./cmd/relay run $(ARGS)

.PHONY: clean
clean: ## Remove bin/ and coverage and profile files
	rm -rf bin coverage.out coverage.html *.coverprofile *.prof *.test
