# slipway's build and test entry points. `make test` is what CI runs.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/slipway-deploy/slipway/internal/cli.Version=$(VERSION)

.PHONY: build test test-deps unit e2e fuzz vet

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/slipway ./cmd/slipway

# Installs what the end-to-end suite needs (OpenSSH server, git, nginx,
# php-fpm), then runs every test: unit tests, the end-to-end suite against
# real sshd hosts (once with delta uploads, the default, and once forcing
# full, gzipped uploads), and short runs of the fuzz targets.
test: test-deps vet
	$(GO) test -count=1 -timeout 25m ./...
	SLIPWAY_E2E_UPLOAD=full $(GO) test -count=1 -timeout 25m ./e2e/
	$(MAKE) fuzz FUZZTIME=10s

test-deps:
	@scripts/install-test-deps.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -short ./...

e2e:
	$(GO) test -count=1 -timeout 25m ./e2e/...

# Runs the fault-injection suite (e2e/faults_test.go: slipway killed at
# every step, lost connections, a full disk) and writes its matrix to
# docs/reliability.md.
.PHONY: reliability
reliability:
	SLIPWAY_WRITE_RELIABILITY=1 $(GO) test -count=1 -timeout 10m -run '^TestFaultInjection$$' ./e2e/

FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzQuote$$' -fuzztime $(FUZZTIME) ./internal/shell/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/config/
	$(GO) test -run '^$$' -fuzz '^FuzzParseManifest$$' -fuzztime $(FUZZTIME) ./internal/source/
	$(GO) test -run '^$$' -fuzz '^FuzzParseState$$' -fuzztime $(FUZZTIME) ./internal/deploy/

# Measures slipway against Capistrano 3 on fleets of real sshd hosts (10, 50
# and 100) and writes docs/benchmarks.md and docs/scaling.md. Needs root;
# takes about half an hour. BENCH_QUICK=1 is a smoke run of a few minutes
# that prints its report instead; see bench/main.go for the other settings.
.PHONY: bench
bench:
	@bench/install-deps.sh
	$(GO) run ./bench
