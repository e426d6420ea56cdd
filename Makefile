# slipway's build and test entry points. `make test` is what CI runs.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/slipway-deploy/slipway/internal/cli.Version=$(VERSION)

.PHONY: build test test-deps unit e2e fuzz vet dist

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/slipway ./cmd/slipway

# Installs what the end-to-end suite needs (OpenSSH server, git, nginx,
# php-fpm), then runs every test: unit tests, the end-to-end suite against
# real sshd hosts (once with delta uploads, the default, and once forcing
# full, gzipped uploads), short runs of the fuzz targets, and the release
# build's test (tools/dist, a module of its own, so ./... leaves it out).
test: test-deps vet
	$(GO) test -count=1 -timeout 25m ./...
	SLIPWAY_E2E_UPLOAD=full $(GO) test -count=1 -timeout 25m ./e2e/
	$(MAKE) fuzz
	$(GO) -C tools/dist test -count=1 ./...

# Release files in dist/: slipway_<version>_<os>_<arch>.tar.gz (.zip for
# Windows) for linux, darwin and windows on amd64 and arm64, each with the
# binary, README.md and any LICENSE/NOTICE; a .deb and an .rpm per Linux
# architecture; SHA256SUMS. Outside git (a source tarball), give the
# version: VERSION=1.2.3 make dist. tools/dist is a module of its own, so
# nfpm never enters slipway's go.mod. Files carry the commit's time
# (SOURCE_DATE_EPOCH), so a clean tree builds the same files again.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
dist:
	rm -rf dist
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) -C tools/dist run . -version '$(VERSION)' -src '$(CURDIR)' -out '$(CURDIR)/dist'

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

# Fuzz budgets are counts of executions (about 10 s each here), not times:
# with a time, Go 1.26's fuzz coordinator can fail a run that found nothing
# with "context deadline exceeded" when a busy worker misses the deadline
# (go.dev/issue/75804, fixed in Go 1.27). FuzzQuote runs a shell per input;
# FuzzScripts runs sh -n on each of about 30 scripts per input.
# Longer runs by hand: make fuzz FUZZ_QUOTE=60000x FUZZ_N=2000000x
FUZZ_QUOTE   ?= 5000x
FUZZ_SCRIPTS ?= 300x
FUZZ_N       ?= 200000x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzQuote$$' -fuzztime $(FUZZ_QUOTE) ./internal/shell/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZ_N) ./internal/config/
	$(GO) test -run '^$$' -fuzz '^FuzzParseManifest$$' -fuzztime $(FUZZ_N) ./internal/source/
	$(GO) test -run '^$$' -fuzz '^FuzzParseState$$' -fuzztime $(FUZZ_N) ./internal/deploy/
	$(GO) test -run '^$$' -fuzz '^FuzzScripts$$' -fuzztime $(FUZZ_SCRIPTS) ./internal/deploy/

# Measures slipway against Capistrano 3 on fleets of real sshd hosts: first
# issue 15's goals (10 hosts, each on its own loop-mounted XFS, with no
# added delay and at a 50 ms round-trip time; slipway alone on 50 such
# hosts), then on one shared file system (10, 50 and 100 hosts), and
# pushing against the artifact store (10 and 50 hosts, a paced 100 Mbit/s
# uplink), and writes docs/benchmarks.md and docs/scaling.md. Needs root;
# takes well over an hour on 2 cores (the store's part alone about 35
# minutes, issue 15's about 15, below). See bench/main.go for the settings.
.PHONY: bench bench-quick bench-store bench-wan
bench:
	@bench/install-deps.sh
	$(GO) run ./bench

# A smoke run of the same code (a minute or two, half without Capistrano): one
# repetition on fleets of 2 and 3 hosts with a small app, the WAN part at a
# 10 ms round-trip time on XFS hosts; prints its report
# instead of writing docs/. `make test` makes the same run (TestQuickRun in
# bench/), with Capistrano only if it is installed: test-deps does not
# install it.
bench-quick:
	@bench/install-deps.sh
	BENCH_QUICK=1 $(GO) run ./bench

# Only the artifact store's part of the benchmark: cold deploys and
# redeploys of 10 and 50 hosts through a paced 100 Mbit/s uplink, pushed
# and through the store (SeaweedFS on loopback), BENCH_REPS times each
# (default 3); rewrites its two parts of docs/scaling.md in place (the
# measurements, and the plan with the store under "1,000 hosts and
# more"). Needs root; about 35 minutes on 2 cores (removing the 50 hosts'
# releases between repetitions is a good part of it), more the first time
# (it builds SeaweedFS).
bench-store:
	@bench/install-deps.sh store
	BENCH_ONLY=store $(GO) run ./bench

# Only issue 15's part of the benchmark: slipway and Capistrano on 10
# hosts, each on its own loop-mounted XFS with reflinks, with no added
# delay and at BENCH_RTT (default 50ms, 25 ms each way, added by the
# benchmark's relays), BENCH_REPS times each (default 3); then slipway
# alone on 50 such hosts at BENCH_RTT. Rewrites its section of
# docs/benchmarks.md in place. Needs root; about 15 minutes on 2 cores.
# BENCH_FS=ext4 (or shared) changes the hosts' file systems.
bench-wan:
	@bench/install-deps.sh
	BENCH_ONLY=wan $(GO) run ./bench
