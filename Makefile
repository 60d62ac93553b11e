# Every tool runs from a version pinned in this repo (go.mod tool directives,
# tools/buf/go.mod), so a fresh machine needs only Go.
BUF := go tool -modfile=tools/buf/go.mod buf

.PHONY: all test test-postgres generate check-generated lint fmt run bench fuzz

all: lint test

## test: the whole test suite with the race detector
test:
	go test -race -count=1 ./...

## test-postgres: the suite with a temporary PostgreSQL (installed from Debian packages if missing)
test-postgres:
	.ci/with-postgres go test -race -count=1 ./...

## generate: regenerate Go code from proto/
generate:
	$(BUF) generate

## check-generated: fail if regenerating changes committed code
check-generated: generate
	@git diff --exit-code -- proto || (echo "generated code is stale: run make generate and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- proto)" || (git status --porcelain -- proto; echo "untracked generated files" >&2; exit 1)

## lint: buf lint, buf format, gofmt and go vet
lint:
	$(BUF) lint
	$(BUF) format --diff --exit-code
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed" >&2; exit 1)
	go vet ./...

## fmt: format Go and proto sources
fmt:
	gofmt -w $$(git ls-files '*.go')
	$(BUF) format -w

## run: the server in dev mode
run:
	go run ./cmd/careplan-server --dev

## bench: benchmark harness with same-run baselines (quick run by default;
## BENCHFLAGS="-plans 1000000" for the full scale run)
BENCHFLAGS ?=
bench:
	go run ./bench $(BENCHFLAGS)

## fuzz: run each fuzz target for FUZZTIME (default 30s; a count such as 50000x also works)
FUZZTIME ?= 30s
fuzz:
	go test ./validate -run=NONE -fuzz=FuzzNHSNumber -fuzztime=$(FUZZTIME)
	go test ./validate -run=NONE -fuzz=FuzzCarePlan -fuzztime=$(FUZZTIME)
	go test ./server -run=NONE -fuzz=FuzzApplyMask -fuzztime=$(FUZZTIME)
	go test ./auth -run=NONE -fuzz=FuzzVerify -fuzztime=$(FUZZTIME)

## crashtest: SIGKILL/SIGTERM the real server under load and verify every acknowledged write (CYCLES=20)
CYCLES ?= 20
## failover: two replicas on a temporary PostgreSQL, one SIGKILLed per cycle (CYCLES, as crashtest)
failover:
	.ci/with-postgres bash -c 'psql "$$CAREPLAN_TEST_POSTGRES" -qc "CREATE DATABASE careplan_failover" && \
	  go run ./cmd/crashtest -store "$${CAREPLAN_TEST_POSTGRES%/postgres*}/careplan_failover?sslmode=disable" -cycles $(CYCLES) -writers 8'

.PHONY: crashtest failover
crashtest:
	go run ./cmd/crashtest -cycles $(CYCLES) $(CRASHTEST_FLAGS)
